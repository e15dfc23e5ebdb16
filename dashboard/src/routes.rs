//! HTTP routes: the pages, the JSON API, live updates, health checks and static assets.

use crate::AppState;
use crate::api::{Accepted, RequestState, Status, preferred_wait};
use crate::body::{FormBody, JsonBody};
use crate::error::{ApiError, AppError};
use crate::forms::{FieldError, InvoiceForm, ScoreForm, parse_json_request};
use crate::records::{self, ReadBack};
use crate::security;
use crate::store::RequestRecord;
use crate::views::{
    BannerView, Filter, IndexPage, RECENT_ROWS, RequestPage, RowFragment, RowView,
    UncorrelatedFragment, UncorrelatedView,
};
use askama::Template;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use contract::{CustomerKey, InvoiceRequest, RequestKind, ScoreRequest};
use futures::{Stream, StreamExt};
use request_reply::deadline::Deadline;
use request_reply::headers::{CorrelationId, TraceContext};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio_stream::wrappers::{BroadcastStream, WatchStream};
use tracing::Instrument;

/// Longest `wait_ms` (or `Prefer: wait`) the API honours.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// RFC 7240's request header, and the response header that says a preference was honoured.
const PREFER: header::HeaderName = header::HeaderName::from_static("prefer");
const PREFERENCE_APPLIED: header::HeaderName =
    header::HeaderName::from_static("preference-applied");

/// Every route of the dashboard and its handler; [`crate::build_app`] puts the layers around
/// them.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/invoices", post(submit_invoice_form))
        .route("/scores", post(submit_score_form))
        .route("/requests/{id}", get(request_page))
        .route("/dead-letters", get(crate::dead_letters::dead_letters_page))
        .route("/system", get(crate::system::system_page))
        .route("/charts", get(crate::charts::charts_page))
        .route("/charts/live", get(crate::charts::live_charts))
        .route("/events", get(live_updates))
        .route("/api/invoices", post(api_invoice))
        .route("/api/scores", post(api_score))
        .route("/api/requests/{id}", get(api_request))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/static/app.js", get(script))
        .route("/static/style.css", get(stylesheet))
        .fallback(not_found)
}

fn banner(state: &AppState) -> BannerView {
    BannerView::from(state.broker_status())
}

fn home_page(state: &AppState, filter: Filter) -> IndexPage {
    let status = state.broker_status();
    let rows = state
        .store()
        .recent(RECENT_ROWS, |kind, status| filter.matches(kind, status))
        .iter()
        .map(|record| RowView::explained(record, &status))
        .collect();
    let uncorrelated = state
        .store()
        .uncorrelated()
        .iter()
        .map(|reply| UncorrelatedView::from(&**reply))
        .collect();
    IndexPage::new(banner(state), filter, rows, uncorrelated)
}

/// The home page; its forms carry the visitor's anti-forgery token (and the cookie it is
/// bound to, on a first visit).
async fn index(
    State(state): State<AppState>,
    Query(filter): Query<Filter>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let (nonce, cookies) = security::page_nonce(&headers)?;
    let token = state.security().csrf_token(&nonce);
    Ok((cookies, home_page(&state, filter).with_csrf_token(token)).into_response())
}

/// Records the request, sends it, and returns its correlation ID once the broker has it.
async fn submit<T: Serialize + CustomerKey>(
    state: &AppState,
    kind: RequestKind,
    request: &T,
) -> Result<String, AppError> {
    let status = state.broker_status();
    if !status.healthy() {
        return Err(AppError::Unavailable(status.message));
    }
    let correlation_id = CorrelationId::generate();
    let id = correlation_id.key();
    let trace = TraceContext::new_root();
    let mut message = state.requester().request_message(
        kind,
        &correlation_id,
        request,
        &trace,
        Some(Deadline::after(state.config().request_timeout)),
    );
    // Keyed by customer: one customer's requests are answered in order, others alongside.
    message.key = Some(request.kafka_key().to_vec());
    state.store().insert_pending(&id, kind, &message.payload);
    let span =
        tracing::info_span!("request", correlation_id = %id, trace_id = %trace.trace_id_hex());
    match state
        .requester()
        .send_outgoing(&message)
        .instrument(span.clone())
        .await
    {
        Ok(sent) => {
            span.in_scope(|| {
                tracing::info!(%kind, partition = sent.partition, offset = sent.offset, "request sent");
            });
            state.store().mark_sent(&id, &sent);
            state.metrics().request_sent(kind);
            Ok(id)
        }
        Err(error) => {
            span.in_scope(|| tracing::warn!(%error, "request not sent"));
            state
                .store()
                .mark_send_failed(&id, &format!("not sent: {error}"));
            Err(AppError::Unavailable(format!(
                "The request could not be sent to Kafka: {error}"
            )))
        }
    }
}

async fn submit_invoice_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Result<Response, AppError> {
    let nonce = state.security().check_form(&headers, &body)?;
    let form = InvoiceForm::from_body(&body);
    // Checked before anything is rendered: a 64 KiB form of bad rows made a 6.9 MB error page.
    form.check_row_count().map_err(AppError::BadRequest)?;
    let request = form.to_request();
    answer_form(
        &state,
        &nonce,
        RequestKind::Invoice,
        request,
        |page, errors| page.with_invoice_form(&form, errors),
    )
    .await
}

async fn submit_score_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    FormBody(body): FormBody,
) -> Result<Response, AppError> {
    let nonce = state.security().check_form(&headers, &body)?;
    let form = ScoreForm::from_body(&body);
    let request = form.to_request();
    answer_form(
        &state,
        &nonce,
        RequestKind::Score,
        request,
        |page, errors| page.with_score_form(&form, errors),
    )
    .await
}

/// Sends a valid form's request and redirects to its page. Shows the home page again, with the
/// form as it was posted (`refill`), when the form is not valid (400, what is wrong with it)
/// and when Kafka cannot take the request (503, why), so nothing typed is lost.
async fn answer_form<T: Serialize + CustomerKey>(
    state: &AppState,
    nonce: &str,
    kind: RequestKind,
    request: Result<T, Vec<FieldError>>,
    refill: impl FnOnce(IndexPage, Vec<FieldError>) -> IndexPage,
) -> Result<Response, AppError> {
    let (status, errors) = match request {
        Ok(request) => match submit(state, kind, &request).await {
            Ok(id) => return Ok(Redirect::to(&format!("/requests/{id}")).into_response()),
            Err(AppError::Unavailable(reason)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                vec![FieldError::not_sent(kind.as_str(), &reason)],
            ),
            Err(other) => return Err(other),
        },
        Err(errors) => (StatusCode::BAD_REQUEST, errors),
    };
    let page =
        home_page(state, Filter::default()).with_csrf_token(state.security().csrf_token(nonce));
    Ok((status, refill(page, errors)).into_response())
}

/// The detail page: what the store knows, and the request and reply messages in full, read
/// back from Kafka. A message that cannot be read is explained on the page, not turned into an
/// error page: the rest of what is known is still worth showing.
async fn request_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<RequestPage, AppError> {
    let record = state.store().get(&id).ok_or_else(|| unknown_request(&id))?;
    let request = match &record.sent {
        Some(sent) => {
            Some(read_for_page(&state, "request", &sent.topic, sent.partition, sent.offset).await?)
        }
        None => None,
    };
    let reply = match &record.reply {
        Some(reply) => {
            Some(read_for_page(&state, "reply", &reply.topic, reply.partition, reply.offset).await?)
        }
        None => None,
    };
    Ok(RequestPage::new(
        state.broker_status(),
        &record,
        request,
        reply,
    ))
}

/// A message read back for the detail page, or why it is missing, for the page to say in its
/// place; internal errors still fail.
async fn read_for_page(
    state: &AppState,
    what: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Result<ReadBack, String>, AppError> {
    match records::read_back(state, what, topic, partition, offset).await {
        Ok(message) => Ok(Ok(message)),
        Err(AppError::Internal(error)) => Err(AppError::Internal(error)),
        Err(other) => Ok(Err(other.to_string())),
    }
}

/// Sends the request and answers 202 with where to read its state; or, when the client asked
/// for a wait (`Prefer: wait=N`, RFC 7240), holds the answer until the reply arrives or N seconds
/// pass and answers 200 with the request's state once it is settled: request/reply in one call.
async fn accept<T: Serialize + CustomerKey>(
    state: &AppState,
    headers: &HeaderMap,
    kind: RequestKind,
    request: &T,
) -> Result<Response, ApiError> {
    let wait = headers
        .get(PREFER)
        .and_then(|value| value.to_str().ok())
        .and_then(preferred_wait)
        .map(|wait| wait.min(MAX_WAIT));
    let id = submit(state, kind, request).await?;
    let status_url = format!("/api/requests/{id}");
    let Some(wait) = wait else {
        return Ok(still_pending(id, status_url, None));
    };
    let applied = format!("wait={}", wait.as_secs());
    let record = state
        .store()
        .wait_for_reply(&id, wait)
        .await
        .ok_or_else(|| unknown_request(&id))?;
    if record.status == Status::Pending {
        return Ok(still_pending(id, status_url, Some(applied)));
    }
    let settled = request_state(state, record, true).await?;
    Ok((
        StatusCode::OK,
        [
            (header::LOCATION, status_url),
            (PREFERENCE_APPLIED, applied),
        ],
        axum::Json(settled),
    )
        .into_response())
}

/// 202: the request is on its way; its state is at `status_url`. `applied` says which wait was
/// honoured, when one was asked for.
fn still_pending(correlation_id: String, status_url: String, applied: Option<String>) -> Response {
    let mut response = (
        StatusCode::ACCEPTED,
        [(header::LOCATION, status_url.clone())],
        axum::Json(Accepted {
            correlation_id,
            status_url,
        }),
    )
        .into_response();
    if let Some(applied) = applied.and_then(|value| value.parse().ok()) {
        response.headers_mut().insert(PREFERENCE_APPLIED, applied);
    }
    response
}

async fn api_invoice(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    security::check_api_post(&headers)?;
    let request: InvoiceRequest = parse_json_request(&body).map_err(AppError::BadRequest)?;
    accept(&state, &headers, RequestKind::Invoice, &request).await
}

async fn api_score(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    security::check_api_post(&headers)?;
    let request: ScoreRequest = parse_json_request(&body).map_err(AppError::BadRequest)?;
    accept(&state, &headers, RequestKind::Score, &request).await
}

#[derive(Deserialize)]
struct WaitQuery {
    /// Hold the answer until the reply arrives or this many milliseconds pass.
    wait_ms: Option<u64>,
    /// `false`: the status alone, with `request` and `reply` left null, so a client that checks
    /// many older requests does not make the dashboard read each message back from Kafka.
    payloads: Option<bool>,
}

impl RequestState {
    fn new(
        record: RequestRecord,
        request: serde_json::Value,
        reply: Option<serde_json::Value>,
    ) -> Self {
        RequestState {
            correlation_id: record.id,
            kind: record.kind,
            status: record.status,
            late: record.late,
            duplicate_replies: record.duplicate_replies,
            round_trip_ms: record
                .round_trip
                .map(|elapsed| elapsed.as_secs_f64() * 1000.0),
            request,
            reply,
            error: record.error,
        }
    }
}

async fn api_request(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<axum::Json<RequestState>, ApiError> {
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_WAIT);
    let record = state
        .store()
        .wait_for_reply(&id, wait)
        .await
        .ok_or_else(|| unknown_request(&id))?;
    Ok(axum::Json(
        request_state(&state, record, query.payloads != Some(false)).await?,
    ))
}

/// What the API says of a request; with `payloads`, the request and reply messages too.
async fn request_state(
    state: &AppState,
    record: RequestRecord,
    payloads: bool,
) -> Result<RequestState, AppError> {
    let (request, reply) = if payloads {
        (
            records::request_json(state, &record).await?,
            records::reply_json(state, &record).await?,
        )
    } else {
        (serde_json::Value::Null, None)
    };
    Ok(RequestState::new(record, request, reply))
}

/// Server-sent events: `request` (a re-rendered table row), `uncorrelated` (a feed entry) and
/// `broker` (the banner). Ends when the server shuts down. At most `max_event_streams` are open
/// at once (each holds a connection and renders every change): more are answered 503, and the
/// page works on without live updates.
async fn live_updates(
    State(state): State<AppState>,
) -> Result<Sse<impl Stream<Item = Result<Event, std::convert::Infallible>>>, AppError> {
    let slot = state.event_slots().try_acquire_owned().map_err(|_| {
        AppError::Unavailable(format!(
            "Too many live-update streams are open (the limit is {}); reload the page later \
             for live updates.",
            state.http_settings().max_event_streams
        ))
    })?;
    let store_events = {
        let state = state.clone();
        BroadcastStream::new(state.store().subscribe()).filter_map(move |change| {
            let event = match change {
                Ok(crate::store::Change::Request(id)) => state.store().get(&id).map(|record| {
                    let row = RowView::explained(&record, &state.broker_status());
                    let html = RowFragment { row: &row }.render().unwrap_or_default();
                    let data =
                        serde_json::json!({ "id": row.id, "status": row.status, "html": html });
                    Event::default().event("request").data(data.to_string())
                }),
                // The change carries the reply: nothing else of the feed is copied.
                Ok(crate::store::Change::Uncorrelated(reply)) => {
                    let view = UncorrelatedView::from(&*reply);
                    let html = UncorrelatedFragment { reply: &view }
                        .render()
                        .unwrap_or_default();
                    Some(
                        Event::default()
                            .event("uncorrelated")
                            .data(serde_json::json!({ "html": html }).to_string()),
                    )
                }
                // Fell behind: the page reloads to catch up.
                Err(_) => Some(Event::default().event("resync").data("{}")),
            };
            std::future::ready(event.map(Ok))
        })
    };
    let broker_events = WatchStream::new(state.watch_broker()).map(|status| {
        // Why each kind's requests wait, so pending rows already on a page say so too.
        let waiting: serde_json::Map<String, serde_json::Value> = RequestKind::ALL
            .iter()
            .map(|kind| {
                (
                    kind.as_str().to_owned(),
                    status.waiting_because(*kind).into(),
                )
            })
            .collect();
        let banner = BannerView::from(status);
        let data = serde_json::json!({
            "green": banner.green,
            "message": banner.message,
            "waiting": waiting,
        });
        Ok(Event::default().event("broker").data(data.to_string()))
    });
    let mut stopping = state.watch_stopping();
    let stopped = async move {
        // An error means the sender is gone: the server is stopping either way.
        let _ = stopping.wait_for(|stopping| *stopping).await;
    };
    let events = futures::stream::select(store_events, broker_events)
        .take_until(stopped)
        // The stream owns its slot: it is given back when the client goes or the stream ends.
        .map(move |event| {
            let _slot = &slot;
            event
        });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let text = state.metrics().render(state.store().pending_count());
    (
        [(header::CONTENT_TYPE, service::metrics::CONTENT_TYPE)],
        text,
    )
}

async fn readyz(State(state): State<AppState>) -> Response {
    let status = state.broker_status();
    let code = if status.healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "ready": status.healthy(),
        "broker_reachable": status.reachable,
        "reply_listener_assigned": status.listening,
        "message": status.message,
    });
    (code, axum::Json(body)).into_response()
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../static/app.js"),
    )
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("../static/style.css"),
    )
}

fn unknown_request(id: &str) -> AppError {
    AppError::NotFound(format!(
        "No request with correlation ID {id} is known to this dashboard."
    ))
}

async fn not_found() -> AppError {
    AppError::NotFound("There is no page at this address.".into())
}
