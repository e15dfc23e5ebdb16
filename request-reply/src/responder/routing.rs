//! Which topics a worker reads and writes, and where each reply goes: the default reply topic,
//! or one the request names, if it is allowed.

use super::inbound::Inbound;
use crate::codec::{MAX_QUOTED_CHARS, excerpt};
use crate::headers;
use crate::route::Route;
use std::collections::{BTreeSet, HashSet};

/// The topics one worker reads from and writes to.
#[derive(Clone, Debug)]
pub struct Routing {
    /// The topic the worker consumes.
    pub request_topic: String,
    /// Where replies go unless the request names another allowed topic.
    pub default_reply_topic: String,
    /// Where requests that cannot be answered are copied.
    pub dead_letter_topic: String,
    /// Every topic a request may name in `kafka_replyTopic`.
    pub allowed_reply_topics: HashSet<String>,
}

impl Routing {
    /// The topics of `route`, plus `extra_reply_topics` a request may name; the route's reply
    /// topic and its NestJS reply topic are always allowed.
    pub fn new(route: &Route, extra_reply_topics: &[String]) -> Self {
        let mut allowed_reply_topics: HashSet<String> =
            extra_reply_topics.iter().cloned().collect();
        allowed_reply_topics.insert(route.reply_topic.clone());
        allowed_reply_topics.insert(route.nest_reply_topic());
        Routing {
            request_topic: route.request_topic.clone(),
            default_reply_topic: route.reply_topic.clone(),
            dead_letter_topic: route.dead_letter_topic.clone(),
            allowed_reply_topics,
        }
    }

    /// Every topic the worker needs to exist, sorted for stable logs.
    pub(super) fn all_topics(&self) -> Vec<String> {
        let mut all: BTreeSet<String> = self.allowed_reply_topics.iter().cloned().collect();
        all.insert(self.request_topic.clone());
        all.insert(self.dead_letter_topic.clone());
        all.into_iter().collect()
    }
}

/// Where a reply goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ReplyTarget {
    pub(super) topic: String,
    pub(super) partition: Option<i32>,
}

pub(super) fn reply_target(routing: &Routing, inbound: &Inbound) -> Result<ReplyTarget, String> {
    let topic = match inbound.headers.last(headers::REPLY_TOPIC) {
        None => routing.default_reply_topic.clone(),
        Some(bytes) => {
            let topic = std::str::from_utf8(bytes)
                .map_err(|_| format!("{} is not UTF-8", headers::REPLY_TOPIC))?;
            if !routing.allowed_reply_topics.contains(topic) {
                let topic = excerpt(topic, MAX_QUOTED_CHARS);
                return Err(format!("reply topic {topic:?} is not allowed"));
            }
            topic.to_owned()
        }
    };
    let partition = match inbound.headers.last(headers::REPLY_PARTITION) {
        None => None,
        Some(bytes) => Some(headers::decode_reply_partition(bytes).ok_or_else(|| {
            let shown = &bytes[..bytes.len().min(16)];
            let more = if bytes.len() > shown.len() {
                format!("… ({} bytes)", bytes.len())
            } else {
                String::new()
            };
            format!(
                "{} {shown:?}{more} is not a partition number",
                headers::REPLY_PARTITION
            )
        })?),
    };
    Ok(ReplyTarget { topic, partition })
}
