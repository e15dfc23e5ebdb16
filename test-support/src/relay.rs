//! A relay (a TCP proxy) in front of the test broker's relayed listener that damages every gzip
//! stream the broker sends through it, for the tests of a message no client can decode.
//!
//! The broker checks every batch a producer gives it, so a real log never holds a corrupt one;
//! what a client can still meet is a batch damaged on the way (librdkafka does not check batch
//! CRCs by default, `check.crcs=false`), which it cannot inflate. librdkafka then reports
//! `BadCompression` and fetches the same batch again, for ever: the stall the readers' watchdog
//! must get past. The relayed listener tells clients to come back on the relay's address, so a
//! client bootstrapped there reaches the broker only through the relay, fetches included.
//!
//! `scripts/test` gives its broker that listener and exports `KAFKA_RELAYED_LISTENER` (the
//! listener) and `KAFKA_RELAYED_BOOTSTRAP_SERVERS` (what it advertises, where the relay listens).

use request_reply::config::KafkaSettings;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The relay of this test process, started on first use; it runs until the process exits.
pub fn corrupting_relay() -> &'static Relay {
    static RELAY: OnceLock<Relay> = OnceLock::new();
    RELAY.get_or_init(|| {
        let variable = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name} is not set: run the tests with scripts/test, whose broker has a relayed listener")
            })
        };
        Relay::start(
            &variable("KAFKA_RELAYED_BOOTSTRAP_SERVERS"),
            &variable("KAFKA_RELAYED_LISTENER"),
        )
    })
}

/// A running relay.
#[derive(Debug)]
pub struct Relay {
    bootstrap: String,
    damaged: Arc<AtomicU64>,
}

impl Relay {
    fn start(listen_on: &str, forward_to: &str) -> Relay {
        let listener = TcpListener::bind(listen_on).unwrap_or_else(|error| {
            panic!(
                "the relay cannot listen on {listen_on}, where the broker sends clients: {error}"
            )
        });
        let damaged = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&damaged);
        let forward_to = forward_to.to_owned();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if let Ok(broker) = TcpStream::connect(&forward_to) {
                    relay_connection(client, broker, Arc::clone(&counter));
                }
            }
        });
        Relay {
            bootstrap: listen_on.to_owned(),
            damaged,
        }
    }

    /// Client settings that reach the broker only through this relay.
    pub fn kafka(&self) -> KafkaSettings {
        KafkaSettings::for_bootstrap(&self.bootstrap)
    }

    /// gzip streams damaged so far.
    pub fn damaged(&self) -> u64 {
        self.damaged.load(Ordering::Relaxed)
    }
}

/// Copies both ways on threads of their own, damaging what the broker sends.
fn relay_connection(client: TcpStream, broker: TcpStream, damaged: Arc<AtomicU64>) {
    let (Ok(client_reader), Ok(broker_reader)) = (client.try_clone(), broker.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut writer = broker;
        io::copy(&mut { client_reader }, &mut writer).ok();
        writer.shutdown(Shutdown::Write).ok();
    });
    std::thread::spawn(move || {
        let (mut reader, mut writer) = (broker_reader, client);
        let mut damage = GzipDamage::default();
        let mut buffer = vec![0; 64 * 1024];
        while let Ok(read) = reader.read(&mut buffer) {
            if read == 0 {
                break;
            }
            let streams = damage.apply(&mut buffer[..read]);
            damaged.fetch_add(streams, Ordering::Relaxed);
            if writer.write_all(&buffer[..read]).is_err() {
                break;
            }
        }
        writer.shutdown(Shutdown::Write).ok();
    });
}

/// The start of a gzip stream as zlib and Java write it (magic, deflate, no flags).
const GZIP_HEADER: [u8; 4] = [0x1f, 0x8b, 0x08, 0x00];
/// The rest of that header (modification time, extra flags, OS), left as it is.
const REST_OF_HEADER: usize = 6;
/// Bytes of deflate data inverted after the header: the stream cannot inflate, or its CRC fails.
const DAMAGED_BYTES: usize = 4;

/// Finds gzip streams in a byte stream that arrives in pieces and damages the start of each.
#[derive(Debug, Default)]
struct GzipDamage {
    /// Bytes of [`GZIP_HEADER`] matched so far.
    matched: usize,
    /// Header bytes still to pass over before damaging.
    to_pass: usize,
    /// Bytes still to damage.
    to_damage: usize,
}

impl GzipDamage {
    /// Damages the gzip streams in `piece`, the next piece of the stream; returns how many
    /// streams it found starting there.
    fn apply(&mut self, piece: &mut [u8]) -> u64 {
        let mut found = 0;
        for byte in piece {
            if self.to_pass > 0 {
                self.to_pass -= 1;
            } else if self.to_damage > 0 {
                *byte = !*byte;
                self.to_damage -= 1;
            } else if *byte == GZIP_HEADER[self.matched] {
                self.matched += 1;
                if self.matched == GZIP_HEADER.len() {
                    self.matched = 0;
                    self.to_pass = REST_OF_HEADER;
                    self.to_damage = DAMAGED_BYTES;
                    found += 1;
                }
            } else {
                self.matched = usize::from(*byte == GZIP_HEADER[0]);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Vec<u8> {
        let mut bytes = b"batch header ".to_vec();
        bytes.extend_from_slice(&GZIP_HEADER);
        bytes.extend_from_slice(&[0, 0, 0, 0, 0, 3]);
        bytes.extend_from_slice(&[0x10, 0x20, 0x30, 0x40, 0x50]);
        bytes
    }

    #[test]
    fn damages_the_deflate_data_after_a_gzip_header_and_nothing_else() {
        let mut bytes = stream();
        assert_eq!(GzipDamage::default().apply(&mut bytes), 1);
        let mut expected = stream();
        let data = expected.len() - 5;
        for byte in &mut expected[data..data + DAMAGED_BYTES] {
            *byte = !*byte;
        }
        assert_eq!(bytes, expected);
    }

    #[test]
    fn finds_a_header_split_across_pieces() {
        let whole = {
            let mut bytes = stream();
            GzipDamage::default().apply(&mut bytes);
            bytes
        };
        for split in 1..stream().len() {
            let mut bytes = stream();
            let mut damage = GzipDamage::default();
            let (first, second) = bytes.split_at_mut(split);
            let found = damage.apply(first) + damage.apply(second);
            assert_eq!(found, 1, "split at {split}");
            assert_eq!(bytes, whole, "split at {split}");
        }
    }

    #[test]
    fn leaves_other_bytes_alone() {
        let mut bytes = vec![0x1f, 0x8b, 0x07, 0x00, 0x1f, 0x1f, 0x8b, 0x09, 1, 2, 3];
        let before = bytes.clone();
        assert_eq!(GzipDamage::default().apply(&mut bytes), 0);
        assert_eq!(bytes, before);
    }
}
