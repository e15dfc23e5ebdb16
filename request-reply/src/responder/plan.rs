//! What one consumed request causes (its reply, or a dead-letter copy and an error reply, or for
//! a request past its deadline an error reply alone), decided by a function that touches no
//! broker, so every rule is unit-tested without one: it depends only on the request, the time
//! and what the service answers (retries wait on tokio's clock, which tests pause and advance).

use super::inbound::Inbound;
use super::retry::{Failure, RetryPolicy};
use super::routing::{ReplyTarget, Routing, reply_target};
use super::{Origin, Service};
use crate::codec::{MAX_QUOTED_CHARS, RequestBody, decode_request, excerpt, loggable};
use crate::deadline::Deadline;
use crate::envelope::{ErrorCode, Outcome, Reply};
use crate::headers::{self, CorrelationId, TraceContext};
use crate::kafka::Outgoing;
use serde::Serialize;
use std::time::SystemTime;

/// Longest reason, in characters, put in `dlq-reason` and error replies: reasons quote header
/// values and parser messages, which a hostile request can make as large as itself.
const MAX_REASON_CHARS: usize = 1000;
/// What a request came to, for the worker's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The service handled it; `caused` holds the reply.
    Answered,
    /// It was bad, or the service failed on it for good; `caused` holds its dead-letter copy
    /// and, when the requester can be told, an error reply.
    Rejected,
    /// Its deadline had passed: not handled, only an error reply saying so (when the requester
    /// can be told), no dead letter (nothing is wrong with it).
    Expired,
}

/// What one consumed request causes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The messages to produce, in order; the request's offset may be stored once all of them
    /// are acknowledged.
    pub caused: Vec<Outgoing>,
    /// Which of the three it came to.
    pub verdict: Verdict,
    /// How often the service was tried again after a transient failure.
    pub retries: u32,
}

/// Decides what one consumed request causes, handled at `now`: its reply; for a bad request a
/// dead-letter copy and (when the requester can be told) an error reply; for a request whose
/// deadline passed before `now`, a `deadline_exceeded` error reply without calling the service;
/// for a request the service fails on, after `retry`'s tries for a transient failure, a
/// dead-letter copy and a `handling_failed` error reply.
pub async fn plan<S: Service>(
    service: &S,
    routing: &Routing,
    inbound: &Inbound,
    now: SystemTime,
    retry: &RetryPolicy,
) -> Plan {
    let correlation_id = inbound.correlation_id();
    let origin = Origin {
        partition: inbound.partition,
        offset: inbound.offset,
    };
    let target = match reply_target(routing, inbound) {
        Ok(target) => target,
        Err(reason) => {
            let fallback = ReplyTarget {
                topic: routing.default_reply_topic.clone(),
                partition: None,
            };
            return reject::<S>(
                routing,
                inbound,
                &fallback,
                correlation_id,
                ErrorCode::InvalidHeaders,
                &reason,
            );
        }
    };
    if let [first, ..] = inbound.headers.unreadable() {
        let reason = format!(
            "{} header name(s) are not UTF-8 (the first is header {first}); they are left out of \
             the dead-letter copy",
            inbound.headers.unreadable().len()
        );
        return reject::<S>(
            routing,
            inbound,
            &target,
            correlation_id,
            ErrorCode::InvalidHeaders,
            &reason,
        );
    }
    let deadline = match inbound.deadline() {
        Err(reason) => {
            return reject::<S>(
                routing,
                inbound,
                &target,
                correlation_id,
                ErrorCode::InvalidHeaders,
                &reason,
            );
        }
        Ok(Some(deadline)) => {
            if let Some(overdue) = deadline.overdue(now) {
                return expired::<S>(inbound, &target, correlation_id, overdue);
            }
            Some(deadline)
        }
        Ok(None) => None,
    };
    // Retries stop where the requester stops waiting.
    let retry = Retry {
        policy: retry,
        started: now,
        deadline,
    };
    let content_type = inbound.headers.last(headers::CONTENT_TYPE);
    match decode_request::<S::Request>(inbound.payload.as_deref(), content_type) {
        Ok(RequestBody::Json(request)) => {
            let (answer, retries) =
                with_retries(&retry, || service.handle(request.clone(), origin)).await;
            let mut plan = match answer {
                Ok(response) => {
                    tracing::info!("answered request");
                    answered(vec![json_reply(
                        &target,
                        inbound,
                        correlation_id.as_ref(),
                        &Reply::ok(response),
                    )])
                }
                Err(failure) => failed::<S>(routing, inbound, &target, correlation_id, &failure),
            };
            plan.retries = retries;
            plan
        }
        Ok(RequestBody::Text(text)) => {
            let (answer, retries) =
                with_retries(&retry, || service.handle_text(&text, origin)).await;
            let answer = match answer {
                Ok(answer) => answer,
                Err(failure) => {
                    let mut plan = failed::<S>(routing, inbound, &target, correlation_id, &failure);
                    plan.retries = retries;
                    return plan;
                }
            };
            tracing::info!(
                request = %loggable(&text, MAX_QUOTED_CHARS),
                reply = %loggable(&answer, MAX_QUOTED_CHARS),
                "answered plain-text request"
            );
            let mut reply = Outgoing::new(&target.topic, answer);
            reply.partition = target.partition;
            // The original system's messages carry no headers; answer them the same way.
            if !inbound.headers.is_empty() {
                if let Some(id) = &correlation_id {
                    reply = reply.header(headers::CORRELATION_ID, id.as_bytes());
                }
                reply = reply
                    .header(headers::CONTENT_TYPE, headers::TEXT_CONTENT_TYPE)
                    .header(headers::NEST_IS_DISPOSED, headers::NEST_IS_DISPOSED_VALUE);
            }
            let mut plan = answered(vec![reply]);
            plan.retries = retries;
            plan
        }
        Err(error) => reject::<S>(
            routing,
            inbound,
            &target,
            correlation_id,
            error.code(),
            &error.to_string(),
        ),
    }
}

fn answered(caused: Vec<Outgoing>) -> Plan {
    Plan {
        caused,
        verdict: Verdict::Answered,
        retries: 0,
    }
}

/// How a request's transient failures are retried: by `policy`, but never past `deadline`.
struct Retry<'a> {
    policy: &'a RetryPolicy,
    /// When handling began.
    started: SystemTime,
    deadline: Option<Deadline>,
}

/// Calls `attempt` until it succeeds, fails for good, or fails transiently once more than
/// `retry` allows (or when the next try would come after the requester's deadline); returns the
/// last outcome and how many retries it took.
async fn with_retries<T, F, Fut>(retry: &Retry<'_>, mut attempt: F) -> (Result<T, Failure>, u32)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let clock = tokio::time::Instant::now();
    let mut retries = 0;
    loop {
        match attempt().await {
            Err(failure) if failure.transient => {
                let next_try = retry.policy.backoff(retries + 1).filter(|pause| {
                    let at = retry.started + clock.elapsed() + *pause;
                    retry
                        .deadline
                        .is_none_or(|deadline| deadline.overdue(at).is_none())
                });
                let Some(pause) = next_try else {
                    return (Err(failure), retries);
                };
                retries += 1;
                tracing::info!(
                    retry = retries,
                    pause_ms = pause.as_millis(),
                    error = %failure.message,
                    "transient failure; trying again"
                );
                tokio::time::sleep(pause).await;
            }
            outcome => return (outcome, retries),
        }
    }
}

/// The service failed on the request for good (or transiently once too often): dead-lettered
/// with the reason, and a `handling_failed` error reply.
fn failed<S: Service>(
    routing: &Routing,
    inbound: &Inbound,
    target: &ReplyTarget,
    correlation_id: Option<CorrelationId>,
    failure: &Failure,
) -> Plan {
    let reason = if failure.transient {
        format!("the service kept failing: {}", failure.message)
    } else {
        format!("the service failed: {}", failure.message)
    };
    reject::<S>(
        routing,
        inbound,
        target,
        correlation_id,
        ErrorCode::HandlingFailed,
        &reason,
    )
}

pub(super) fn json_reply<T: Serialize>(
    target: &ReplyTarget,
    inbound: &Inbound,
    correlation_id: Option<&CorrelationId>,
    reply: &Reply<T>,
) -> Outgoing {
    // Serializing an envelope cannot fail unless the service's `Serialize` does (a map with
    // non-string keys, say); the reply is then empty, which the requester shows as undecodable.
    let payload = serde_json::to_vec(reply).unwrap_or_default();
    let mut outgoing = Outgoing::new(&target.topic, payload);
    outgoing.partition = target.partition;
    outgoing.key.clone_from(&inbound.key);
    if let Some(id) = correlation_id {
        outgoing = outgoing.header(headers::CORRELATION_ID, id.as_bytes());
    }
    // What a NestJS client needs: `kafka_nest-err` fails its call with our error body, and
    // `kafka_nest-is-disposed` (on every reply: there is only one) completes it.
    if let Outcome::Error(body) = &reply.outcome {
        let error = serde_json::to_vec(body).unwrap_or_default();
        outgoing = outgoing.header(headers::NEST_ERR, error);
    }
    outgoing = outgoing.header(headers::NEST_IS_DISPOSED, headers::NEST_IS_DISPOSED_VALUE);
    // The reply is a new span in the requester's trace (or the start of one).
    let trace = inbound
        .trace_context()
        .map_or_else(TraceContext::new_root, |parent| parent.child());
    outgoing
        .header(headers::CONTENT_TYPE, headers::JSON_CONTENT_TYPE)
        .header(headers::TRACEPARENT, trace.header_value())
}

fn reject<S: Service>(
    routing: &Routing,
    inbound: &Inbound,
    target: &ReplyTarget,
    correlation_id: Option<CorrelationId>,
    code: ErrorCode,
    reason: &str,
) -> Plan {
    let bounded = excerpt(reason, MAX_REASON_CHARS);
    let reason: &str = &bounded;
    tracing::warn!(reason, "rejected request; copied to the dead-letter topic");
    let mut caused = vec![inbound.dead_letter(&routing.dead_letter_topic, reason)];
    if let Some(id) = correlation_id {
        let reply: Reply<S::Response> = Reply::error(code, reason);
        caused.push(json_reply(target, inbound, Some(&id), &reply));
    }
    Plan {
        caused,
        verdict: Verdict::Rejected,
        retries: 0,
    }
}

fn expired<S: Service>(
    inbound: &Inbound,
    target: &ReplyTarget,
    correlation_id: Option<CorrelationId>,
    overdue: std::time::Duration,
) -> Plan {
    let overdue_ms = overdue.as_millis();
    tracing::info!(overdue_ms, "request past its deadline; not handled");
    let caused = correlation_id
        .map(|id| {
            let reply: Reply<S::Response> = Reply::error(
                ErrorCode::DeadlineExceeded,
                format!(
                    "the request's deadline had passed {overdue_ms} ms before a worker picked it \
                     up; it was not handled"
                ),
            );
            json_reply(target, inbound, Some(&id), &reply)
        })
        .into_iter()
        .collect();
    Plan {
        caused,
        verdict: Verdict::Expired,
        retries: 0,
    }
}
