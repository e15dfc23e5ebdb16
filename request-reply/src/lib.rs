//! What the dashboard and the workers share: the message contract and the request/reply machinery.

pub mod codec;
pub mod config;
pub mod contract;
pub mod headers;
