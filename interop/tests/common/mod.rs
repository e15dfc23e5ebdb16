//! What the interop tests share: the dashboard and both workers in-process (the dashboard's own
//! end-to-end harness, `dashboard/tests/common`, used as it is) and the peers in other languages.

#[path = "../../../dashboard/tests/common/mod.rs"]
mod system;

pub mod peers;

pub use system::*;
