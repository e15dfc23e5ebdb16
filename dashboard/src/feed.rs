//! The feed of uncorrelated replies (those with no correlation ID, such as the original Python
//! workers' text replies), bounded by count, by the bytes kept of each reply and by the bytes
//! kept in all.
//!
//! Anyone who can write to a reply topic decides how big these replies are: with a bound on the
//! count alone, 200 replies of 900 KB made `GET /` a 90 MB page (and as much memory held). The
//! original workers' replies are a few dozen bytes, so a cut at [`REPLY_TEXT_BYTES`] loses
//! nothing real; the cut is marked on the page, and the whole message stays in Kafka at the
//! position shown.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::SystemTime;

use contract::RequestKind;

/// How many uncorrelated replies are kept.
pub const FEED_REPLIES: usize = 100;
/// Most bytes of one reply's text kept (the marker saying it was cut comes on top).
pub const REPLY_TEXT_BYTES: usize = 1024;
/// Most bytes the whole feed keeps: the oldest replies go first beyond it.
pub const FEED_BYTES: usize = 64 * 1024;

/// A reply with no correlation ID, e.g. from the original Python workers.
#[derive(Clone, Debug)]
pub struct UncorrelatedReply {
    pub kind: RequestKind,
    /// The reply's text, cut to `REPLY_TEXT_BYTES` (1 KiB) with a marker saying so.
    pub text: String,
    /// The number read out of one of the original text forms, if it is one.
    pub number: Option<u64>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub received_at: SystemTime,
}

impl UncorrelatedReply {
    /// Bytes this entry holds, as counted against [`FEED_BYTES`].
    fn cost(&self) -> usize {
        std::mem::size_of::<Self>() + self.text.len() + self.topic.len()
    }
}

/// `text`, or its first `max_bytes` (at a character boundary) and a marker with its full size.
pub fn cut_text(text: &str, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text.to_owned();
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut: {} bytes in all]", &text[..end], text.len())
}

/// The newest uncorrelated replies, newest first.
#[derive(Debug, Default)]
pub(crate) struct Feed {
    replies: VecDeque<Arc<UncorrelatedReply>>,
    bytes: usize,
}

impl Feed {
    /// Adds `reply` (its text already cut) as the newest, dropping the oldest beyond the
    /// bounds; returns it shared, for the live-update event.
    pub(crate) fn push(&mut self, reply: UncorrelatedReply) -> Arc<UncorrelatedReply> {
        let reply = Arc::new(reply);
        self.bytes += reply.cost();
        self.replies.push_front(Arc::clone(&reply));
        while self.replies.len() > FEED_REPLIES || self.bytes > FEED_BYTES {
            let Some(oldest) = self.replies.pop_back() else {
                break;
            };
            self.bytes -= oldest.cost();
        }
        reply
    }

    /// The replies, newest first; each is shared, not copied.
    pub(crate) fn snapshot(&self) -> Vec<Arc<UncorrelatedReply>> {
        self.replies.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(text: &str) -> UncorrelatedReply {
        UncorrelatedReply {
            kind: RequestKind::Score,
            text: cut_text(text, REPLY_TEXT_BYTES),
            number: None,
            topic: "score-calculated".into(),
            partition: 0,
            offset: 0,
            received_at: SystemTime::now(),
        }
    }

    #[test]
    fn long_texts_are_cut_at_a_character_boundary_with_a_marker() {
        assert_eq!(cut_text("short", 10), "short");
        let long = "é".repeat(1000);
        let cut = cut_text(&long, 101);
        assert!(cut.starts_with(&"é".repeat(50)), "{cut}");
        assert!(cut.ends_with("… [cut: 2000 bytes in all]"), "{cut}");
        assert!(cut.len() < 101 + 40);
    }

    #[test]
    fn the_feed_is_bounded_by_count_and_by_bytes() {
        let mut feed = Feed::default();
        for _ in 0..2 * FEED_REPLIES {
            feed.push(reply("Calculated score: 42."));
        }
        assert_eq!(feed.snapshot().len(), FEED_REPLIES);

        let big = "x".repeat(900 * 1024);
        for _ in 0..200 {
            feed.push(reply(&big));
        }
        let kept = feed.snapshot();
        let bytes: usize = kept.iter().map(|reply| reply.text.len()).sum();
        assert!(bytes <= FEED_BYTES, "{bytes}");
        assert!(kept.len() > 10, "{}", kept.len());
        assert!(
            kept.iter()
                .all(|reply| reply.text.len() < REPLY_TEXT_BYTES + 40)
        );
        assert_eq!(
            feed.bytes,
            kept.iter().map(|reply| reply.cost()).sum::<usize>()
        );
    }
}
