//! Requests read after their `request-deadline`, and malformed deadlines.

use super::*;

/// A request whose deadline has passed is not handled: its requester gets a
/// `deadline_exceeded` error reply saying by how much, and nothing is dead-lettered, since
/// nothing is wrong with the request.
#[test]
fn a_request_past_its_deadline_is_answered_deadline_exceeded_without_handling() {
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000);
    let passed = Deadline::at(now - std::time::Duration::from_millis(1500));
    let request = inbound(
        Some(&valid_payload("Late Ltd")),
        &[
            (headers::CORRELATION_ID, b"late-1"),
            (headers::DEADLINE, passed.header_value().as_bytes()),
        ],
    );
    let planned = planned(&request, now);
    assert_eq!(planned.verdict, Verdict::Expired);
    assert_eq!(planned.caused.len(), 1, "{:?}", planned.caused);
    let reply = &planned.caused[0];
    assert_eq!(reply.topic, "t.invoice-generated");
    assert_eq!(header(reply, headers::CORRELATION_ID), Some(&b"late-1"[..]));
    let Outcome::Error(body) = decode(reply).outcome else {
        panic!("expected an error reply");
    };
    assert_eq!(body.code, ErrorCode::DeadlineExceeded);
    assert!(body.message.contains("1500 ms"), "{}", body.message);
    // A NestJS client fails its call with the error, as for any error reply.
    assert!(header(reply, headers::NEST_ERR).is_some());
}

/// Before its deadline (and at it, to the millisecond) a request is handled as usual.
#[test]
fn a_request_before_its_deadline_is_handled() {
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000);
    for deadline in [now + std::time::Duration::from_secs(30), now] {
        let request = inbound(
            Some(&valid_payload("On Time Ltd")),
            &[
                (headers::CORRELATION_ID, b"on-time"),
                (
                    headers::DEADLINE,
                    Deadline::at(deadline).header_value().as_bytes(),
                ),
            ],
        );
        let planned = planned(&request, now);
        assert_eq!(planned.verdict, Verdict::Answered);
        assert!(matches!(
            decode(&planned.caused[0]).outcome,
            Outcome::Ok(Echo { ref customer, .. }) if customer == "On Time Ltd"
        ));
    }
}

/// Past its deadline with no correlation ID, nobody can be told: nothing is produced, and the
/// request still counts as expired (its offset is stored like any other).
#[test]
fn an_uncorrelated_request_past_its_deadline_causes_nothing() {
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(2_000_000_000);
    let passed = Deadline::at(now - std::time::Duration::from_secs(1));
    let request = inbound(
        Some(&valid_payload("Nobody")),
        &[(headers::DEADLINE, passed.header_value().as_bytes())],
    );
    let planned = planned(&request, now);
    assert_eq!(planned.verdict, Verdict::Expired);
    assert!(planned.caused.is_empty(), "{:?}", planned.caused);
}

/// A deadline that is not one is a bad header: dead-lettered with the reason, and an
/// `invalid_headers` error reply, as for a bad reply partition.
#[test]
fn a_malformed_deadline_is_rejected_as_an_invalid_header() {
    for bad in [&b"soon"[..], b"-1", b"2026-11-30T12:00:00Z", b""] {
        let request = inbound(
            Some(&valid_payload("Odd Ltd")),
            &[(headers::CORRELATION_ID, b"odd"), (headers::DEADLINE, bad)],
        );
        let planned = planned(&request, SystemTime::now());
        assert_eq!(planned.verdict, Verdict::Rejected, "{bad:?}");
        assert_eq!(planned.caused.len(), 2, "{bad:?}: {:?}", planned.caused);
        assert_dead_letter(&planned.caused[0], &request, headers::DEADLINE);
        assert_eq!(error_code(&planned.caused[1]), ErrorCode::InvalidHeaders);
    }
}
