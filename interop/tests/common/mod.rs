//! What the interop tests share: the dashboard and both workers in-process (the system harness
//! of `test_support`, which the dashboard's end-to-end tests use too) and the peers in other
//! languages.

pub mod peers;

pub use test_support::system::*;
