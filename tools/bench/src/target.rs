//! What one measured call goes through: the library's `Client::call`, or a POST to the
//! dashboard's JSON API and a GET of the request's state; and the payload it sends.

//! `bench load`: correlated round trips through the library or the dashboard's JSON API.

use crate::load::{LoadArgs, Via};
use crate::{Kind, is_loopback_host};
use anyhow::{Context, bail};
use contract::{
    InvoiceRequest, LineItem, Outcome, ReplyContent, SCHEMA_VERSION, ScoreRequest, Topics,
};
use dashboard::api::{Accepted, RequestState, Status};
use request_reply::requester::{Client, RequestError};
use std::time::Duration;
use tokio::time::Instant;

/// The request every call sends.
#[derive(Debug, Clone)]
pub(crate) enum Payload {
    Invoice(InvoiceRequest),
    Score(ScoreRequest),
}

impl Payload {
    pub(crate) fn build(kind: Kind, bytes: usize) -> Self {
        match kind {
            Kind::Invoice => {
                let line = |description: String| LineItem {
                    description,
                    quantity: 3,
                    unit_price_cents: 1250,
                };
                let mut request = InvoiceRequest {
                    schema_version: SCHEMA_VERSION,
                    customer: "ACME".into(),
                    lines: vec![line("Widget".into())],
                };
                let size = |request: &InvoiceRequest| {
                    serde_json::to_vec(request).unwrap_or_default().len()
                };
                while size(&request) < bytes && request.lines.len() < 100 {
                    let missing = bytes - size(&request);
                    request.lines.push(line("w".repeat(missing.clamp(1, 200))));
                }
                Payload::Invoice(request)
            }
            Kind::Score => {
                let base = serde_json::to_vec(&ScoreRequest {
                    schema_version: SCHEMA_VERSION,
                    customer: "ACME".into(),
                })
                .unwrap_or_default()
                .len();
                let extra = bytes.saturating_sub(base).min(196);
                Payload::Score(ScoreRequest {
                    schema_version: SCHEMA_VERSION,
                    customer: format!("ACME{}", "x".repeat(extra)),
                })
            }
        }
    }

    pub(crate) fn json(&self) -> Vec<u8> {
        match self {
            Payload::Invoice(request) => serde_json::to_vec(request),
            Payload::Score(request) => serde_json::to_vec(request),
        }
        .unwrap_or_default()
    }
}

/// How one call ended.
pub(crate) enum CallOutcome {
    Ok,
    /// A reply came, but it is an error reply (or the dashboard marked the request failed).
    Failed(String),
    /// No reply in time.
    Timeout,
    /// The call itself failed (not sent, HTTP error).
    Error(String),
}

/// What the calls are made with.
pub(crate) enum Target {
    Library {
        client: Client<Topics>,
        kind: Kind,
        payload: Payload,
        timeout: Duration,
    },
    Http {
        http: reqwest::Client,
        post_url: String,
        status_url: String,
        body: Vec<u8>,
        wait_ms: u128,
    },
}

impl Target {
    pub(crate) async fn call(&self) -> CallOutcome {
        match self {
            Target::Library {
                client,
                kind,
                payload,
                timeout,
            } => {
                let result = match payload {
                    Payload::Invoice(request) => {
                        client.call((*kind).into(), request, *timeout).await
                    }
                    Payload::Score(request) => client.call((*kind).into(), request, *timeout).await,
                };
                match result {
                    Ok(reply) => match reply.content {
                        ReplyContent::Invoice(Outcome::Ok(_))
                        | ReplyContent::Score(Outcome::Ok(_)) => CallOutcome::Ok,
                        other => CallOutcome::Failed(format!("{other:?}")),
                    },
                    Err(RequestError::Timeout(_)) => CallOutcome::Timeout,
                    Err(error) => CallOutcome::Error(error.to_string()),
                }
            }
            Target::Http {
                http,
                post_url,
                status_url,
                body,
                wait_ms,
            } => match http_call(http, post_url, status_url, body, *wait_ms).await {
                Ok(outcome) => outcome,
                Err(error) => CallOutcome::Error(format!("{error:#}")),
            },
        }
    }
}

pub(crate) async fn http_call(
    http: &reqwest::Client,
    post_url: &str,
    status_url: &str,
    body: &[u8],
    wait_ms: u128,
) -> anyhow::Result<CallOutcome> {
    // One call when the reply comes within the wait (200 with the request's state), else the
    // status URL, polled with the rest of the time-out.
    let response = http
        .post(post_url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("prefer", format!("wait={}", wait_ms.div_ceil(1000)))
        .body(body.to_vec())
        .send()
        .await?;
    let status = response.status();
    let response = match status {
        reqwest::StatusCode::OK => response,
        reqwest::StatusCode::ACCEPTED => {
            let accepted: Accepted = response.json().await?;
            let response = http
                .get(format!(
                    "{status_url}{}?wait_ms={wait_ms}",
                    accepted.correlation_id
                ))
                .send()
                .await?;
            let status = response.status();
            if !status.is_success() {
                bail!("GET answered {status}");
            }
            response
        }
        _ => {
            let text = response.text().await.unwrap_or_default();
            bail!(
                "POST answered {status}: {}",
                text.chars().take(200).collect::<String>()
            );
        }
    };
    let state: RequestState = response.json().await?;
    Ok(match state.status {
        Status::Completed => CallOutcome::Ok,
        Status::Failed => CallOutcome::Failed(state.error.unwrap_or_default()),
        Status::Pending | Status::TimedOut => CallOutcome::Timeout,
    })
}

/// Latencies and counts of the calls started in the measured window.
pub(crate) async fn connect(args: &LoadArgs, payload: Payload) -> anyhow::Result<Target> {
    match args.via {
        Via::Library => {
            let kafka = args.kafka.settings()?;
            let topics = args.kafka.topics()?;
            let client = Client::connect(
                &kafka,
                &topics,
                Topics::with_prefix(&topics.prefix),
                crate::GROUP_ID,
            )
            .await
            .context("cannot connect the request/reply client")?;
            Ok(Target::Library {
                client,
                kind: args.kind,
                payload,
                timeout: args.timeout,
            })
        }
        Via::Http => {
            let base =
                reqwest::Url::parse(&args.url).with_context(|| format!("--url {}", args.url))?;
            let host = base.host_str().unwrap_or_default();
            if base.scheme() != "http" || !is_loopback_host(host) {
                bail!(
                    "--url {}: only http:// on a loopback address may be loaded",
                    args.url
                );
            }
            let base = args.url.trim_end_matches('/');
            let path = match args.kind {
                Kind::Invoice => "invoices",
                Kind::Score => "scores",
            };
            let http = reqwest::Client::builder()
                .tcp_nodelay(true)
                .pool_max_idle_per_host(usize::MAX)
                .timeout(args.timeout + Duration::from_secs(5))
                .no_proxy()
                .build()
                .context("cannot build the HTTP client")?;
            Ok(Target::Http {
                http,
                post_url: format!("{base}/api/{path}"),
                status_url: format!("{base}/api/requests/"),
                body: payload.json(),
                wait_ms: args.timeout.as_millis(),
            })
        }
    }
}

/// Waits for the dashboard's `/readyz` to answer 200 (reply listener assigned, broker reachable).
pub(crate) async fn wait_until_ready(
    http: &reqwest::Client,
    url: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let readyz = format!("{}/readyz", url.trim_end_matches('/'));
    loop {
        let answer = http.get(&readyz).send().await;
        if answer
            .as_ref()
            .is_ok_and(|response| response.status().is_success())
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{readyz} did not answer 200 within {within:?}: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
