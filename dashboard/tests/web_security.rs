//! The dashboard as a web application, without a broker: anti-forgery tokens on the forms, JSON
//! only on the API, bounded bodies and fields, security headers on every response, optional
//! authentication, and the refusal to listen beyond loopback without it.
//!
//! The app is driven in-process (`build_app` + `oneshot`) with Kafka pointed at a closed port:
//! nothing here needs a reply, and a request that passes every check ends in 503 (Kafka
//! unreachable), which tells it apart from the 4xx of the checks.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
use test_support::system;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use dashboard::{AppState, DashboardConfig, ExposeSecret, SecretString, build_app};
use service::config::ConfigFile;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;
use system::{closed_port, cookie_of, csrf_tokens};
use tower::ServiceExt;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; object-src 'none'; frame-ancestors 'none'; form-action 'self'; \
     base-uri 'none'";
const TOKEN: &str = "correct-horse-battery-staple-42";

fn config(auth_token: Option<&str>) -> DashboardConfig {
    DashboardConfig {
        auth_token: auth_token.map(SecretString::from),
        ..system::offline_config(SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

fn app(auth_token: Option<&str>) -> Router {
    build_app(AppState::new(config(auth_token)).unwrap())
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    /// Asserts the status, showing the body when it is another.
    fn expect(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }
}

async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// Like [`send`], for responses whose body never ends (the event stream): headers only.
async fn head_of(app: &Router, request: Request<Body>) -> (StatusCode, HeaderMap) {
    let response = app.clone().oneshot(request).await.unwrap();
    (response.status(), response.headers().clone())
}

fn get(path: &str) -> axum::http::request::Builder {
    Request::builder().uri(path)
}

/// `GET path` with an `Authorization` header.
fn get_with(path: &str, authorization: &str) -> Request<Body> {
    get(path)
        .header(header::AUTHORIZATION, authorization)
        .body(Body::empty())
        .unwrap()
}

fn post(path: &str) -> axum::http::request::Builder {
    Request::builder().method(Method::POST).uri(path)
}

fn form_post(path: &str, cookie: Option<&str>, body: String) -> Request<Body> {
    let mut request = post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::from(body)).unwrap()
}

fn json_post(path: &str, content_type: &str, body: impl Into<Body>) -> Request<Body> {
    post(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(body.into())
        .unwrap()
}

/// The visitor's first look at the home page: the cookie to send back, and the forms' token.
async fn first_visit(app: &Router) -> (String, String) {
    let page = send(app, get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let set_cookie = page.headers[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie_of(set_cookie);
    let tokens = csrf_tokens(&page.body);
    assert_eq!(tokens.len(), 2, "both forms carry the token");
    (cookie, tokens[0].clone())
}

#[tokio::test]
async fn the_home_page_hands_out_a_cookie_once_and_signs_both_forms_for_it() {
    let app = app(None);
    let page = send(&app, get("/").body(Body::empty()).unwrap()).await;
    let set_cookie = page.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        set_cookie.starts_with("dashboard_csrf=")
            && set_cookie.contains("; HttpOnly")
            && set_cookie.contains("; SameSite=Strict")
            && set_cookie.contains("; Path=/"),
        "{set_cookie}"
    );
    let tokens = csrf_tokens(&page.body);
    assert_eq!(tokens.len(), 2, "{}", page.body);
    assert_eq!(tokens[0], tokens[1]);
    assert_eq!(tokens[0].len(), 64, "an HMAC-SHA256 in hex");

    // Coming back with the cookie: no new cookie, the same token.
    let cookie = cookie_of(set_cookie);
    let again = send(
        &app,
        get("/")
            .header(header::COOKIE, &cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(!again.headers.contains_key(header::SET_COOKIE));
    assert_eq!(csrf_tokens(&again.body), tokens);

    // Another visitor gets another nonce and so another token.
    let (other_cookie, other_token) = first_visit(&app).await;
    assert_ne!(other_cookie, cookie);
    assert_ne!(other_token, tokens[0]);
}

#[tokio::test]
async fn form_posts_without_a_valid_token_get_a_403_that_says_why() {
    let app = app(None);
    let (cookie, token) = first_visit(&app).await;
    let (other_cookie, other_token) = first_visit(&app).await;
    let fields = "customer=ACME";
    let cases = [
        (
            "no cookie, no token",
            None,
            fields.to_owned(),
            "cookie is missing",
        ),
        (
            "token without its cookie",
            None,
            format!("{fields}&csrf_token={token}"),
            "cookie is missing",
        ),
        (
            "cookie without a token",
            Some(cookie.clone()),
            fields.to_owned(),
            "no anti-forgery token",
        ),
        (
            "a made-up token",
            Some(cookie.clone()),
            format!("{fields}&csrf_token={}", "ab".repeat(32)),
            "not valid",
        ),
        (
            "another visitor's token",
            Some(cookie.clone()),
            format!("{fields}&csrf_token={other_token}"),
            "not valid",
        ),
        (
            "another visitor's cookie",
            Some(other_cookie.clone()),
            format!("{fields}&csrf_token={token}"),
            "not valid",
        ),
    ];
    for path in ["/scores", "/invoices"] {
        for (name, cookie, body, reason) in &cases {
            let answer = send(&app, form_post(path, cookie.as_deref(), body.clone())).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path} {name}");
            assert!(
                answer.body.contains("403 Forbidden") && answer.body.contains(reason),
                "{path} {name}: {}",
                answer.body
            );
        }
    }

    // A valid pair, but the browser says the form was on another site's page.
    for site in ["cross-site", "same-site"] {
        let request = post("/scores")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, &cookie)
            .header("sec-fetch-site", site)
            .header(header::ORIGIN, "https://evil.example")
            .body(Body::from(format!("{fields}&csrf_token={token}")))
            .unwrap();
        let answer = send(&app, request).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{site}");
        assert!(answer.body.contains("another site"), "{}", answer.body);
    }
}

#[tokio::test]
async fn form_posts_with_the_pages_token_are_accepted() {
    let app = app(None);
    let (cookie, token) = first_visit(&app).await;

    // Through the anti-forgery check to validation: the page comes back with the field error
    // and a form that can be posted again.
    let bad = send(
        &app,
        form_post(
            "/invoices",
            Some(&cookie),
            format!("customer=A&description=W&quantity=lots&unit_price=1&csrf_token={token}"),
        ),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(bad.body.contains("line 1 quantity: must be a whole number"));
    assert_eq!(csrf_tokens(&bad.body), [token.clone(), token.clone()]);

    // Through every check to Kafka, which is unreachable here (the end-to-end tests post the
    // same way against a broker and get their 303).
    let same_origin = post("/scores")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::COOKIE, format!("theme=dark; {cookie}"))
        .header("sec-fetch-site", "same-origin")
        .body(Body::from(format!("customer=ACME&csrf_token={token}")))
        .unwrap();
    let refused = send(&app, same_origin)
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    // The 503 is the home page again, saying why, with the form as typed and postable again.
    assert!(
        refused
            .body
            .contains(r##"<a href="#score-form">not sent: "##),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(r#"value="ACME""#), "{}", refused.body);
    assert_eq!(csrf_tokens(&refused.body), [token.clone(), token.clone()]);
}

#[tokio::test]
async fn api_posts_must_be_json_so_other_sites_cannot_forge_them() {
    let app = app(None);
    let body = r#"{"customer":"ACME"}"#;
    // What a cross-site form or a no-cors fetch can send.
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ] {
        let request = post("/api/scores")
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ORIGIN, "https://evil.example")
            .header("sec-fetch-site", "cross-site")
            .body(Body::from(body))
            .unwrap();
        let answer = send(&app, request).await;
        assert_eq!(
            answer.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type}"
        );
        let error: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert!(
            error["error"]
                .as_str()
                .unwrap()
                .contains("application/json"),
            "{error}"
        );
    }
    let no_type = post("/api/invoices").body(Body::from(body)).unwrap();
    assert_eq!(
        send(&app, no_type).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );

    // The preflight a cross-site JSON fetch needs is not granted.
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/scores")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .body(Body::empty())
        .unwrap();
    let answer = send(&app, preflight).await;
    assert!(!answer.status.is_success(), "{}", answer.status);
    assert!(
        !answer
            .headers
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );

    // JSON goes through to validation and then to Kafka.
    let answer = send(&app, json_post("/api/scores", "application/json", "{")).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
    let charset = json_post("/api/scores", "application/json; charset=utf-8", body);
    send(&app, charset)
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn bodies_and_fields_are_bounded() {
    let app = app(None);
    let huge = format!(r#"{{"customer":"{}"}}"#, "x".repeat(64 * 1024));
    let answer = send(&app, json_post("/api/scores", "application/json", huge)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);

    let (cookie, token) = first_visit(&app).await;
    let huge_form = format!("csrf_token={token}&customer={}", "x".repeat(64 * 1024));
    let answer = send(&app, form_post("/scores", Some(&cookie), huge_form)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);

    let long = "x".repeat(201);
    let line = |description: &str| serde_json::json!({"description": description, "quantity": 1, "unit_price_cents": 1});
    for (path, body, field) in [
        (
            "/api/scores",
            serde_json::json!({ "customer": long }),
            "customer:",
        ),
        (
            "/api/invoices",
            serde_json::json!({"customer": "A", "lines": [line(&long)]}),
            "lines[0].description:",
        ),
        (
            "/api/invoices",
            serde_json::json!({"customer": "A", "lines": vec![line("d"); 101]}),
            "lines:",
        ),
        (
            "/api/invoices",
            serde_json::json!({"customer": "A", "lines": [{"description": "d", "quantity": 1, "unit_price_cents": 1e30}]}),
            "lines[0].unit_price_cents:",
        ),
    ] {
        let answer = send(&app, json_post(path, "application/json", body.to_string())).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{path}: {}",
            answer.body
        );
        let error: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
        assert!(
            error["error"].as_str().unwrap().starts_with(field),
            "{path}: {error}"
        );
    }

    let answer = send(
        &app,
        form_post(
            "/scores",
            Some(&cookie),
            format!("csrf_token={token}&customer={long}"),
        ),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer
            .body
            .contains("customer: must be at most 200 characters (got 201)"),
        "{}",
        answer.body
    );
}

fn assert_security_headers(what: &str, headers: &HeaderMap) {
    let value = |name: &str| {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("{what}: no {name} header"))
            .to_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(value("content-security-policy"), CSP, "{what}");
    assert_eq!(value("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(value("referrer-policy"), "no-referrer", "{what}");
    assert_eq!(value("x-frame-options"), "DENY", "{what}");
    assert!(headers.contains_key(header::CACHE_CONTROL), "{what}");
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = app(None);
    let no_store = [
        ("home page", get("/").body(Body::empty()).unwrap()),
        (
            "unknown request page",
            get("/requests/nope").body(Body::empty()).unwrap(),
        ),
        (
            "API read",
            get("/api/requests/nope").body(Body::empty()).unwrap(),
        ),
        (
            "API post refused",
            json_post("/api/scores", "text/plain", "x"),
        ),
        (
            "form post refused",
            form_post("/scores", None, String::new()),
        ),
        (
            "missing page",
            get("/no/such/page").body(Body::empty()).unwrap(),
        ),
        (
            "wrong method",
            Request::builder()
                .method(Method::DELETE)
                .uri("/")
                .body(Body::empty())
                .unwrap(),
        ),
        ("health", get("/healthz").body(Body::empty()).unwrap()),
        ("readiness", get("/readyz").body(Body::empty()).unwrap()),
        ("metrics", get("/metrics").body(Body::empty()).unwrap()),
        ("charts page", get("/charts").body(Body::empty()).unwrap()),
        ("system page", get("/system").body(Body::empty()).unwrap()),
        (
            "dead-letter page",
            get("/dead-letters").body(Body::empty()).unwrap(),
        ),
        (
            "charts block",
            get("/charts/live").body(Body::empty()).unwrap(),
        ),
    ];
    for (what, request) in no_store {
        let answer = send(&app, request).await;
        assert_security_headers(what, &answer.headers);
        assert_eq!(answer.headers[header::CACHE_CONTROL], "no-store", "{what}");
    }
    let (status, headers) = head_of(&app, get("/events").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_security_headers("event stream", &headers);
    // axum's own for server-sent events; a stream is never replayed from a cache either way.
    assert_eq!(headers[header::CACHE_CONTROL], "no-cache");

    // Static files keep their own caching rule, and the policy allows them.
    for (path, content_type) in [
        ("/static/app.js", "text/javascript"),
        ("/static/style.css", "text/css"),
    ] {
        let answer = send(&app, get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_security_headers(path, &answer.headers);
        assert_eq!(answer.headers[header::CACHE_CONTROL], "no-cache");
        assert!(
            answer.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(content_type)
        );
    }

    // The pages need nothing the policy forbids: no inline script or style, no foreign origin.
    let page = send(&app, get("/").body(Body::empty()).unwrap()).await;
    assert!(
        page.body
            .contains("<script src=\"/static/app.js\" defer></script>")
    );
    assert_eq!(page.body.matches("<script").count(), 1, "{}", page.body);
    // With Kafka unreachable the system page says so rather than waiting on it.
    let system = send(&app, get("/system").body(Body::empty()).unwrap()).await;
    assert_eq!(system.status, StatusCode::OK);
    assert!(
        system.body.contains("Kafka is unreachable"),
        "{}",
        system.body
    );
    // The charts are inline SVG: presentation attributes, no style.
    let charts = send(&app, get("/charts").body(Body::empty()).unwrap()).await;
    assert_eq!(charts.body.matches("<svg ").count(), 4, "{}", charts.body);
    assert_eq!(charts.body.matches("<script").count(), 1, "{}", charts.body);
    for inline in [
        " style=",
        "<style",
        " onclick=",
        " onload=",
        "javascript:",
        "http://",
        "https://",
    ] {
        assert!(!page.body.contains(inline), "{inline} in the page");
        assert!(!charts.body.contains(inline), "{inline} in the charts page");
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {credentials}")
}

#[tokio::test]
async fn with_a_token_configured_everything_but_the_health_checks_needs_it() {
    let app = app(Some(TOKEN));
    for path in [
        "/",
        "/requests/x",
        "/events",
        "/api/requests/x",
        "/static/app.js",
        "/metrics",
    ] {
        let answer = send(&app, get(path).body(Body::empty()).unwrap()).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{path}");
        assert_security_headers(path, &answer.headers);
        let challenges: Vec<&str> = answer
            .headers
            .get_all(header::WWW_AUTHENTICATE)
            .iter()
            .map(|value| value.to_str().unwrap())
            .collect();
        let first = if path.starts_with("/api/") {
            "Bearer realm="
        } else {
            "Basic realm="
        };
        assert!(
            challenges
                .first()
                .is_some_and(|value| value.starts_with(first)),
            "{path}: {challenges:?}"
        );
        assert_eq!(challenges.len(), 2, "{path}: {challenges:?}");
    }
    let refused = send(&app, json_post("/api/scores", "application/json", "{}")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(serde_json::from_str::<serde_json::Value>(&refused.body).unwrap()["error"].is_string());
    let refused = send(&app, form_post("/scores", None, "customer=A".into())).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "auth comes before the form check"
    );

    // Health checks stay open for orchestrators.
    let health = send(&app, get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(health.status, StatusCode::OK);
    let ready = send(&app, get("/readyz").body(Body::empty()).unwrap()).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "open, and honest about Kafka"
    );

    // The token as a bearer token, or as the Basic password with any user name.
    for authorization in [
        format!("Bearer {TOKEN}"),
        basic("admin", TOKEN),
        basic("", TOKEN),
    ] {
        let page = send(&app, get_with("/", &authorization)).await;
        assert_eq!(page.status, StatusCode::OK, "{authorization}");
        assert!(!page.body.contains(TOKEN), "the token is never shown");
        let api = send(&app, get_with("/api/requests/x", &authorization)).await;
        assert_eq!(api.status, StatusCode::NOT_FOUND, "{authorization}");
    }
    for wrong in [
        "Bearer nope".to_owned(),
        format!("Bearer {TOKEN}x"),
        basic(TOKEN, "nope"),
        basic("admin", &TOKEN[1..]),
        format!("Token {TOKEN}"),
    ] {
        let answer = send(&app, get_with("/", &wrong)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{wrong}");
        assert!(answer.body.contains("not valid"), "{}", answer.body);
        assert!(!answer.body.contains(TOKEN));
    }

    // Authenticated form posts still need the anti-forgery token.
    let authorization = basic("admin", TOKEN);
    let page = send(&app, get_with("/", &authorization)).await;
    let cookie = cookie_of(page.headers[header::SET_COOKIE].to_str().unwrap());
    let token = csrf_tokens(&page.body).remove(0);
    let mut forged = form_post("/scores", Some(&cookie), "customer=ACME".into());
    forged
        .headers_mut()
        .insert(header::AUTHORIZATION, authorization.parse().unwrap());
    assert_eq!(send(&app, forged).await.status, StatusCode::FORBIDDEN);
    let mut genuine = form_post(
        "/scores",
        Some(&cookie),
        format!("customer=ACME&csrf_token={token}"),
    );
    genuine
        .headers_mut()
        .insert(header::AUTHORIZATION, authorization.parse().unwrap());
    assert_eq!(
        send(&app, genuine).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_non_loopback_listener_is_refused_without_authentication() {
    let exposed = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let error = dashboard::run(config(None), exposed, async {})
        .await
        .expect_err("must refuse to serve 0.0.0.0 without auth");
    let message = format!("{error:#}");
    assert!(
        message.contains("refusing to listen")
            && message.contains("auth_token")
            && message.contains("allow_unauthenticated"),
        "{message}"
    );

    // With a token, or when told explicitly, it serves (and stops at once here).
    let exposed = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    dashboard::run(config(Some(TOKEN)), exposed, async {})
        .await
        .unwrap();
    let exposed = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let allowed = DashboardConfig {
        allow_unauthenticated: true,
        http: dashboard::HttpSettings::default(),
        ..config(None)
    };
    dashboard::run(allowed, exposed, async {}).await.unwrap();
    let loopback = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    dashboard::run(config(None), loopback, async {})
        .await
        .unwrap();
}

/// The real binary, configured through the environment as in a container, refuses at start-up
/// with the reason, before it listens or touches Kafka.
#[tokio::test]
async fn the_binary_refuses_to_start_exposed_without_authentication() {
    let config_file = concat!(env!("CARGO_MANIFEST_DIR"), "/config/config.ini");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dashboard"))
        .arg(config_file)
        .env("DASHBOARD_LISTEN", "0.0.0.0:0")
        .env(
            "KAFKA_BOOTSTRAP_SERVERS",
            format!("127.0.0.1:{}", closed_port()),
        )
        .env_remove("DASHBOARD_AUTH_TOKEN")
        .env_remove("DASHBOARD_ALLOW_UNAUTHENTICATED")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = test_support::wait_for("the dashboard to exit", Duration::from_secs(30), || {
        std::future::ready(child.try_wait().unwrap())
    })
    .await;
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success());
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0"),
        "{stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("Dashboard: http"),
        "it must not claim to serve"
    );
}

#[test]
fn auth_settings_come_from_the_file_or_the_environment_and_never_show() {
    let file = |pairs: &[(&str, &str)]| {
        let dashboard: BTreeMap<String, String> = pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        ConfigFile::from_sections(BTreeMap::from([("dashboard".to_owned(), dashboard)]))
    };
    let token = |config: &DashboardConfig| {
        config
            .auth_token
            .as_ref()
            .map(|token| token.expose_secret().to_owned())
    };
    let config = DashboardConfig::from_file(&file(&[])).unwrap();
    assert_eq!(token(&config), None);
    assert!(!config.allow_unauthenticated);

    let with_token = file(&[
        ("auth_token", &format!("  {TOKEN} ")),
        ("allow_unauthenticated", "1"),
    ]);
    let shown = format!("{with_token:?}");
    assert!(
        !shown.contains(TOKEN) && shown.contains("auth_token"),
        "{shown}"
    );
    let config = DashboardConfig::from_file(&with_token).unwrap();
    assert_eq!(token(&config).as_deref(), Some(TOKEN));
    assert!(config.allow_unauthenticated);
    let shown = format!("{config:?}");
    assert!(!shown.contains(TOKEN), "{shown}");

    let blank = DashboardConfig::from_file(&file(&[("auth_token", "  ")])).unwrap();
    assert_eq!(token(&blank), None, "blank means no authentication");

    let short = "hunter2";
    let error = DashboardConfig::from_file(&file(&[("auth_token", short)]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("at least 16 characters"), "{error}");
    assert!(
        !error.contains(short),
        "the error quotes the token: {error}"
    );

    let error = DashboardConfig::from_file(&file(&[("allow_unauthenticated", "perhaps")]))
        .unwrap_err()
        .to_string();
    assert!(error.contains("allow_unauthenticated"), "{error}");

    for (var, key) in [
        ("DASHBOARD_AUTH_TOKEN", "auth_token"),
        ("DASHBOARD_ALLOW_UNAUTHENTICATED", "allow_unauthenticated"),
    ] {
        assert!(
            dashboard::ENV_OVERRIDES
                .iter()
                .any(|known| known.var == var && known.section == "dashboard" && known.key == key),
            "{var}"
        );
    }
}
