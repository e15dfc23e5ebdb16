//! Producing requests and replies: at once when nothing waits, in batches under load
//! ([`adaptive`]), on a new producer when one stops delivering ([`renewing`]), and again when an
//! acknowledgement does not say where the message is ([`acknowledgement`]).

pub mod acknowledgement;
pub mod adaptive;
pub mod renewing;

pub use adaptive::AdaptiveProducer;
pub use renewing::RenewingProducer;
