//! Producing requests and replies: at once when nothing waits, in batches under load
//! ([`adaptive`]), and on a new producer when one stops delivering ([`renewing`]).

pub mod adaptive;
pub mod renewing;

pub use adaptive::AdaptiveProducer;
pub use renewing::RenewingProducer;
