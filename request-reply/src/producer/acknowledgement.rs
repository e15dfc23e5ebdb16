//! What a broker's acknowledgement proves.
//!
//! An idempotent producer's acknowledgement carries the offset its message was written at, with
//! one exception: when the broker answers a retried batch with `DUPLICATE_SEQUENCE_NUMBER` ("I
//! hold this already, but no longer know where"), librdkafka reports its messages delivered at
//! no offset (-1001). The fault suite saw a request acknowledged so while the leader of its
//! partition was killed that no reader ever found in the log, and no worker answered. So a
//! message acknowledged without an offset is sent again: at worst the log then holds it twice,
//! which request/reply absorbs (a request answered twice, a reply read twice).

use rdkafka::ClientConfig;

/// Whether producers made from `config` are idempotent, so that their acknowledgements carry
/// offsets (a producer with `acks=0` never gets one).
pub fn idempotent(config: &ClientConfig) -> bool {
    config.get("enable.idempotence") == Some("true")
}

/// How many times one message is sent again for acknowledgements without an offset before the
/// last one is taken at its word.
pub const RESENDS: u32 = 3;

/// Whether a message acknowledged at `offset`, already sent again `resent` times, is to be sent
/// again. `idempotent`: see [`idempotent`].
pub fn send_again(idempotent: bool, offset: i64, resent: u32) -> bool {
    idempotent && offset < 0 && resent < RESENDS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka's `RD_KAFKA_OFFSET_INVALID`, the offset of a duplicate's acknowledgement.
    const NO_OFFSET: i64 = -1001;

    #[test]
    fn an_acknowledgement_with_an_offset_is_proof() {
        assert!(!send_again(true, 0, 0));
        assert!(!send_again(true, 41, 0));
    }

    #[test]
    fn one_without_an_offset_is_sent_again_a_few_times() {
        for resent in 0..RESENDS {
            assert!(send_again(true, NO_OFFSET, resent), "resent {resent}");
        }
        assert!(
            !send_again(true, NO_OFFSET, RESENDS),
            "then taken at its word"
        );
    }

    #[test]
    fn a_producer_that_is_not_idempotent_never_gets_offsets_to_check() {
        assert!(!send_again(false, NO_OFFSET, 0));
        let mut config = ClientConfig::new();
        assert!(!idempotent(&config), "librdkafka's default");
        config.set("enable.idempotence", "true");
        assert!(idempotent(&config));
    }
}
