//! A service's transient and permanent failures: retries, their pauses and their limits.

use super::*;

/// A service that fails `failures` times (transiently or for good), then echoes; counts calls.
struct Flaky {
    failures: u32,
    transient: bool,
    calls: std::sync::atomic::AtomicU32,
}

impl Flaky {
    fn new(failures: u32, transient: bool) -> Self {
        Flaky {
            failures,
            transient,
            calls: std::sync::atomic::AtomicU32::new(0),
        }
    }

    fn calls(&self) -> u32 {
        self.calls.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn attempt(&self) -> Result<(), Failure> {
        let call = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        match (call < self.failures, self.transient) {
            (false, _) => Ok(()),
            (true, true) => Err(Failure::transient(format!("database busy ({call})"))),
            (true, false) => Err(Failure::permanent("no such customer")),
        }
    }
}

impl Service for Flaky {
    type Request = EchoRequest;
    type Response = Echo;

    async fn handle(&self, request: EchoRequest, origin: Origin) -> Result<Echo, Failure> {
        self.attempt()?;
        EchoService.handle(request, origin).await
    }

    async fn handle_text(&self, text: &str, origin: Origin) -> Result<String, Failure> {
        self.attempt()?;
        EchoService.handle_text(text, origin).await
    }
}

/// [`plan`] with `service`, now, under the default retry policy.
async fn plan_by_default(service: &Flaky, request: &Inbound) -> Plan {
    plan(
        service,
        &routing(),
        request,
        SystemTime::now(),
        &RetryPolicy::default(),
    )
    .await
}

fn correlated_request() -> Inbound {
    inbound(
        Some(&valid_payload("Retry Ltd")),
        &[(headers::CORRELATION_ID, b"retry-1")],
    )
}

/// Transient failures are retried after 100 ms, then 200 ms (the default policy), and the
/// third try's answer is the reply.
#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_growing_pauses_until_the_service_answers() {
    let service = Flaky::new(2, true);
    let started = tokio::time::Instant::now();
    let planned = plan_by_default(&service, &correlated_request()).await;
    assert_eq!(service.calls(), 3);
    assert_eq!(planned.retries, 2);
    assert_eq!(planned.verdict, Verdict::Answered);
    assert_eq!(started.elapsed(), std::time::Duration::from_millis(300));
    assert!(matches!(decode(&planned.caused[0]).outcome, Outcome::Ok(_)));
}

/// Past the last retry a transient failure is given up like a permanent one: dead-lettered
/// with the last error, and a `handling_failed` reply.
#[tokio::test(start_paused = true)]
async fn a_service_that_keeps_failing_is_given_up_after_the_last_retry() {
    let service = Flaky::new(u32::MAX, true);
    let request = correlated_request();
    let retry = RetryPolicy {
        max_retries: 2,
        ..RetryPolicy::default()
    };
    let planned = plan(&service, &routing(), &request, SystemTime::now(), &retry).await;
    assert_eq!(service.calls(), 3, "the first try and two retries");
    assert_eq!(planned.retries, 2);
    assert_eq!(planned.verdict, Verdict::Rejected);
    assert_eq!(planned.caused.len(), 2, "{:?}", planned.caused);
    let reason = assert_dead_letter(&planned.caused[0], &request, "kept failing");
    assert!(
        reason.contains("database busy (2)"),
        "the last error: {reason}"
    );
    assert_eq!(error_code(&planned.caused[1]), ErrorCode::HandlingFailed);
}

/// A permanent failure is answered at once: no retry, no wait.
#[tokio::test(start_paused = true)]
async fn a_permanent_failure_is_not_retried() {
    let service = Flaky::new(1, false);
    let request = correlated_request();
    let started = tokio::time::Instant::now();
    let planned = plan_by_default(&service, &request).await;
    assert_eq!(service.calls(), 1);
    assert_eq!(planned.retries, 0);
    assert_eq!(started.elapsed(), std::time::Duration::ZERO);
    assert_dead_letter(&planned.caused[0], &request, "no such customer");
    assert_eq!(error_code(&planned.caused[1]), ErrorCode::HandlingFailed);
}

/// A plain-text request the service fails on has no one to tell (no correlation ID): it is
/// dead-lettered with the reason and nothing else is sent.
#[tokio::test(start_paused = true)]
async fn a_failed_plain_text_request_is_dead_lettered() {
    let service = Flaky::new(1, false);
    let request = inbound(Some(INVOICE_REQUEST_TEXT.as_bytes()), &[]);
    let planned = plan_by_default(&service, &request).await;
    assert_eq!(planned.verdict, Verdict::Rejected);
    assert_eq!(planned.caused.len(), 1, "{:?}", planned.caused);
    assert_dead_letter(&planned.caused[0], &request, "no such customer");
}

/// Retries stop where the requester stops waiting: with 250 ms left, the retries after 100 and
/// 200 ms would end past the deadline after the first, so the request is given up then.
#[tokio::test(start_paused = true)]
async fn no_retry_is_tried_after_the_requesters_deadline() {
    let service = Flaky::new(u32::MAX, true);
    let now = SystemTime::now();
    let deadline = Deadline::at(now + std::time::Duration::from_millis(250));
    let request = inbound(
        Some(&valid_payload("Hurry Ltd")),
        &[
            (headers::CORRELATION_ID, b"hurry"),
            (headers::DEADLINE, deadline.header_value().as_bytes()),
        ],
    );
    let planned = plan(&service, &routing(), &request, now, &RetryPolicy::default()).await;
    assert_eq!(
        service.calls(),
        2,
        "the first try and the retry after 100 ms"
    );
    assert_eq!(planned.retries, 1);
    assert_eq!(error_code(&planned.caused[1]), ErrorCode::HandlingFailed);
}
