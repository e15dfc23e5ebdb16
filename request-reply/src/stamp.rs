//! What a worker adds to its replies so that a requester can draw the request's journey: who
//! handled it (consumer group, client id, host), when the request arrived, how long it waited
//! for the earlier requests of its key, and how long the handler took.
//!
//! Only the worker knows these: the broker's timestamps say when the request and the reply were
//! appended, the requester knows when it sent and when the reply came back, but the time in
//! between is a single gap without them. The headers are extra: a requester that does not read
//! them (the original dashboard, Spring, NestJS) is not affected, and a reply without them (from
//! the original or a Spring or NestJS worker) simply has no worker hops to show.

use crate::headers::{
    WORKER_CLIENT_ID, WORKER_GROUP, WORKER_HANDLER_US, WORKER_HOST, WORKER_QUEUED_US,
    WORKER_RECEIVED_AT,
};
use crate::kafka::{HeaderList, Outgoing};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Which worker replica this is, as the broker's consumer-group view names it too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerIdentity {
    /// The consumer group it consumes requests in.
    pub group: String,
    /// Its consumer's `client.id`, which the group's member list shows.
    pub client_id: String,
    /// The machine (or container) it runs on.
    pub host: String,
}

impl WorkerIdentity {
    /// This process's host name: the kernel's, else `$HOSTNAME`, else `unknown`.
    pub fn this_host() -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "unknown".to_owned())
    }
}

/// What a worker knows of one request's time with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerStamp {
    /// Who handled it.
    pub worker: WorkerIdentity,
    /// When the worker consumed the request, in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// How long it waited for the earlier requests of its key before it was handled.
    pub queued: Duration,
    /// How long handling took, retries included.
    pub handled: Duration,
}

impl WorkerStamp {
    /// The stamp of a request consumed at `received_at`.
    pub fn new(
        worker: WorkerIdentity,
        received_at: SystemTime,
        queued: Duration,
        handled: Duration,
    ) -> Self {
        let received_at_ms = received_at.duration_since(UNIX_EPOCH).map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        });
        WorkerStamp {
            worker,
            received_at_ms,
            queued,
            handled,
        }
    }

    /// The headers, in the order they are written.
    pub fn headers(&self) -> [(&'static str, Vec<u8>); 6] {
        let micros = |duration: Duration| {
            u64::try_from(duration.as_micros())
                .unwrap_or(u64::MAX)
                .to_string()
                .into_bytes()
        };
        [
            (WORKER_GROUP, self.worker.group.clone().into_bytes()),
            (WORKER_CLIENT_ID, self.worker.client_id.clone().into_bytes()),
            (WORKER_HOST, self.worker.host.clone().into_bytes()),
            (
                WORKER_RECEIVED_AT,
                self.received_at_ms.to_string().into_bytes(),
            ),
            (WORKER_QUEUED_US, micros(self.queued)),
            (WORKER_HANDLER_US, micros(self.handled)),
        ]
    }

    /// The stamp a reply carries; `None` unless all six headers are there and readable (a
    /// reply from a worker that does not stamp, or a forged or damaged one).
    pub fn read(headers: &HeaderList) -> Option<WorkerStamp> {
        let text = |name| {
            headers
                .last(name)
                .and_then(|value| std::str::from_utf8(value).ok())
        };
        let micros = |name| text(name)?.parse::<u64>().ok().map(Duration::from_micros);
        Some(WorkerStamp {
            worker: WorkerIdentity {
                group: text(WORKER_GROUP)?.to_owned(),
                client_id: text(WORKER_CLIENT_ID)?.to_owned(),
                host: text(WORKER_HOST)?.to_owned(),
            },
            received_at_ms: text(WORKER_RECEIVED_AT)?.parse().ok()?,
            queued: micros(WORKER_QUEUED_US)?,
            handled: micros(WORKER_HANDLER_US)?,
        })
    }
}

/// Adds `stamp` to every reply among `caused`: not to dead-letter copies (they are the request
/// as it came, with the reason), and not to a reply without headers (the original system's
/// plain-text requests carry none, and are answered the same way).
pub(crate) fn stamp_replies(
    caused: Vec<Outgoing>,
    dead_letter_topic: &str,
    stamp: &WorkerStamp,
) -> Vec<Outgoing> {
    caused
        .into_iter()
        .map(|outgoing| {
            if outgoing.topic == dead_letter_topic || outgoing.headers.is_empty() {
                return outgoing;
            }
            stamp
                .headers()
                .into_iter()
                .fold(outgoing, |outgoing, (name, value)| {
                    outgoing.header(name, value)
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::headers;

    fn stamp() -> WorkerStamp {
        WorkerStamp::new(
            WorkerIdentity {
                group: "generate-invoice".into(),
                client_id: "generate-invoice-box-42-0".into(),
                host: "box".into(),
            },
            UNIX_EPOCH + Duration::from_millis(1_764_547_200_123),
            Duration::from_micros(250),
            Duration::from_micros(1_500),
        )
    }

    fn header_list(outgoing: &Outgoing) -> HeaderList {
        HeaderList::from_pairs(
            outgoing
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), Some(value.clone()))),
        )
    }

    #[test]
    fn replies_are_stamped_and_read_back() {
        let reply = Outgoing::new("invoice-generated", "{}").header(headers::CORRELATION_ID, "c");
        let [stamped] = <[Outgoing; 1]>::try_from(stamp_replies(vec![reply], "dlq", &stamp()))
            .expect("one message");
        let list = header_list(&stamped);
        assert_eq!(list.last(headers::CORRELATION_ID), Some(&b"c"[..]));
        assert_eq!(
            list.last(headers::WORKER_RECEIVED_AT),
            Some(&b"1764547200123"[..])
        );
        assert_eq!(list.last(headers::WORKER_QUEUED_US), Some(&b"250"[..]));
        assert_eq!(list.last(headers::WORKER_HANDLER_US), Some(&b"1500"[..]));
        assert_eq!(WorkerStamp::read(&list), Some(stamp()));
    }

    #[test]
    fn dead_letters_and_headerless_replies_are_left_as_they_are() {
        let dead_letter = Outgoing::new("dlq", "bad").header(headers::DEAD_LETTER_REASON, "why");
        let plain = Outgoing::new("invoice-generated", "Invoice #1");
        let caused = vec![dead_letter.clone(), plain.clone()];
        assert_eq!(stamp_replies(caused, "dlq", &stamp()), [dead_letter, plain]);
    }

    #[test]
    fn a_reply_missing_a_header_or_with_a_bad_number_has_no_stamp() {
        let full: Vec<(String, Option<Vec<u8>>)> = stamp()
            .headers()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), Some(value)))
            .collect();
        for left_out in 0..full.len() {
            let mut partial = full.clone();
            partial.remove(left_out);
            assert_eq!(WorkerStamp::read(&HeaderList::from_pairs(partial)), None);
        }
        let mut bad = full.clone();
        bad[5].1 = Some(b"-3".to_vec());
        assert_eq!(WorkerStamp::read(&HeaderList::from_pairs(bad)), None);
        let mut null = full;
        null[0].1 = None;
        assert_eq!(WorkerStamp::read(&HeaderList::from_pairs(null)), None);
    }
}
