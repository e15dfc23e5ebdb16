//! What a learner reads where they meet a term on a page: a sentence on each Kafka header the
//! request and reply pages show. The terms of the pages themselves (topic, partition, offset,
//! consumer group, lag) are explained in their templates, next to where they appear.

/// What a header is for, in a sentence a learner can follow; `None` for headers with no
/// explanation.
pub fn header_explanation(name: &str) -> Option<&'static str> {
    use request_reply::headers;
    Some(match name {
        headers::CORRELATION_ID => {
            "Ties the reply to its request: the worker copies it from the request onto the reply."
        }
        headers::REPLY_TOPIC => {
            "Where the requester wants the reply: the worker writes its reply to this topic."
        }
        headers::REPLY_PARTITION => "Which partition of the reply topic to answer on.",
        headers::TRACEPARENT => {
            "W3C trace context: one trace ID follows the request through every service, so \
             their logs and spans can be joined up."
        }
        headers::DEADLINE => {
            "When the requester stops waiting (ms since 1970): a worker that gets the request \
             later answers an error instead of doing the work."
        }
        headers::NEST_IS_DISPOSED => {
            "For NestJS clients: marks the last reply to a request, so the call completes."
        }
        headers::NEST_ERR => "For NestJS clients: the error, when the reply is one.",
        headers::CONTENT_TYPE => "How the payload is encoded.",
        headers::WORKER_GROUP | headers::WORKER_CLIENT_ID | headers::WORKER_HOST => {
            "Which worker answered: its consumer group, client id and host."
        }
        headers::WORKER_RECEIVED_AT => "When the worker read the request (ms since 1970).",
        headers::WORKER_QUEUED_US => {
            "How long the request waited behind earlier ones with the same key (µs)."
        }
        headers::WORKER_HANDLER_US => "How long the worker took to handle it (µs).",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use request_reply::headers;

    /// Every header our requests and replies carry is explained where it is shown.
    #[test]
    fn every_header_we_write_is_explained() {
        for name in [
            headers::CORRELATION_ID,
            headers::REPLY_TOPIC,
            headers::REPLY_PARTITION,
            headers::CONTENT_TYPE,
            headers::DEADLINE,
            headers::TRACEPARENT,
            headers::NEST_IS_DISPOSED,
            headers::NEST_ERR,
            headers::WORKER_GROUP,
            headers::WORKER_CLIENT_ID,
            headers::WORKER_HOST,
            headers::WORKER_RECEIVED_AT,
            headers::WORKER_QUEUED_US,
            headers::WORKER_HANDLER_US,
        ] {
            assert!(
                header_explanation(name).is_some(),
                "{name} is not explained"
            );
        }
        assert_eq!(header_explanation("x-custom"), None);
    }
}
