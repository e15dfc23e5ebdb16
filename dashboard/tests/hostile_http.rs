//! Hostile HTTP clients against the dashboard as served (`dashboard::run` on a real socket):
//! DNS rebinding (foreign `Host`/`Origin`), slowloris headers, trickled bodies, connection
//! floods, live-update stream floods, shutdown with half-sent requests, oversized forms, and
//! (with the test broker) huge replies on a reply topic.
//!
//! The clients are raw std sockets, so the tests control every byte and its timing. Kafka is
//! pointed at a closed port except in the last test: a request that passes every HTTP check
//! ends in 503 (Kafka unreachable), which tells it apart from the refusals tested here. All
//! bounds are set short; every wait is a condition with a deadline.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
use test_support::system;

use contract::RequestKind;
use dashboard::{DashboardConfig, HttpSettings};
use request_reply::kafka::Outgoing;
use request_reply::requester::Requester;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use system::Dashboard;

/// Longest any single exchange or wait may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(10);

/// A dashboard served by `dashboard::run`, with Kafka at a closed port.
struct Server {
    address: SocketAddr,
    dashboard: Dashboard,
}

impl Server {
    async fn start(http: HttpSettings) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let config = DashboardConfig {
            http,
            ..system::offline_config(address)
        };
        Server {
            address,
            dashboard: Dashboard::serve(config, listener),
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.address.port())
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.address).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream
    }

    async fn stop(self) {
        tokio::time::timeout(DEADLINE, self.dashboard.stop())
            .await
            .expect("the dashboard stops");
    }
}

/// A response as read off the socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
        Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    /// The `name=value` of the first `Set-Cookie`.
    fn cookie(&self) -> String {
        let line = self
            .head
            .lines()
            .find(|line| line.to_ascii_lowercase().starts_with("set-cookie:"))
            .expect("a Set-Cookie header");
        system::cookie_of(line.split_once(':').unwrap().1.trim())
    }

    /// The value of the forms' hidden `csrf_token` field.
    fn csrf_token(&self) -> String {
        system::csrf_tokens(&self.body)
            .into_iter()
            .next()
            .expect("a csrf_token field")
    }
}

/// Reads until the peer closes (or resets) the connection; panics after [`DEADLINE`].
fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return (received, started.elapsed()),
            Ok(count) => received.extend_from_slice(&buffer[..count]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                panic!("the connection is still open after {DEADLINE:?}")
            }
            Err(_) => return (received, started.elapsed()),
        }
    }
}

/// Sends `request` (which should say `Connection: close`) and reads the whole answer.
fn exchange(server: &Server, request: &str) -> Answer {
    let mut stream = server.connect();
    stream.write_all(request.as_bytes()).unwrap();
    Answer::parse(&read_until_closed(&mut stream).0)
}

fn get(server: &Server, path: &str, host: &str) -> Answer {
    exchange(
        server,
        &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
}

fn post(server: &Server, path: &str, headers: &str, content_type: &str, body: &str) -> Answer {
    exchange(
        server,
        &format!(
            "POST {path} HTTP/1.1\r\n{headers}Content-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        ),
    )
}

const SCORE: &str = r#"{"customer":"ACME"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn requests_naming_another_host_are_refused_so_dns_rebinding_gets_nothing() {
    let server = Server::start(HttpSettings {
        allowed_hosts: "dashboard, proxy.example:8443".parse().unwrap(),
        ..HttpSettings::default()
    })
    .await;
    let port = server.address.port();
    let ours = server.host();
    let api = |host: &str, extra: &str| {
        post(
            &server,
            "/api/scores",
            &format!("Host: {host}\r\n{extra}"),
            "application/json",
            SCORE,
        )
    };

    // The rebinding attack: the attacker's name, resolved to us, on our port or any other.
    for host in ["evil.example".to_owned(), format!("evil.example:{port}")] {
        let answer = api(&host, "");
        assert_eq!(answer.status, 421, "{host}: {answer:?}");
        assert!(
            answer.body.contains("evil.example") && answer.body.contains("allowed_hosts"),
            "{answer:?}"
        );
    }
    // Our own names, and the configured ones, pass the check (then 503: Kafka is down).
    for host in [
        ours.clone(),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("dashboard:{port}"),
        "proxy.example:8443".to_owned(),
    ] {
        assert_eq!(api(&host, "").status, 503, "{host}");
    }
    assert_eq!(api(&format!("127.0.0.1:{}", port + 1), "").status, 421);
    assert_eq!(api("proxy.example:8444", "").status, 421);

    // A page elsewhere posting to our name: refused by its Origin.
    for origin in ["http://evil.example", "http://localhost:1"] {
        let answer = api(&ours, &format!("Origin: {origin}\r\n"));
        assert_eq!(answer.status, 403, "{origin}: {answer:?}");
        assert!(answer.body.contains("refused"), "{answer:?}");
    }
    // Our own names, and `null`: what a browser sends for the dashboard's own form posts, its
    // pages being served with `Referrer-Policy: no-referrer`.
    for origin in [format!("http://localhost:{port}"), "null".to_owned()] {
        let answer = api(&ours, &format!("Origin: {origin}\r\n"));
        assert_eq!(answer.status, 503, "{origin}: {answer:?}");
    }

    // The form flow: the page is not served under the attacker's name, and a form posted with
    // a valid cookie and token under it is refused too.
    assert_eq!(get(&server, "/", "evil.example").status, 421);
    let page = get(&server, "/", &ours);
    assert_eq!(page.status, 200);
    let form = format!(
        "csrf_token={}&customer=ACME&description=Widget&quantity=1&unit_price=1",
        page.csrf_token()
    );
    let cookie = format!("Cookie: {}\r\n", page.cookie());
    let form_post = |host: &str| {
        post(
            &server,
            "/invoices",
            &format!("Host: {host}\r\n{cookie}"),
            "application/x-www-form-urlencoded",
            &form,
        )
    };
    assert_eq!(form_post("evil.example").status, 421);
    assert_eq!(
        form_post(&ours).status,
        503,
        "the same form under our name passes"
    );

    // Probes reach the health checks under whatever name they use.
    for host in [
        ours.as_str(),
        "localhost:3000",
        "dashboard:3000",
        "10.1.2.3:3000",
    ] {
        assert_eq!(get(&server, "/healthz", host).status, 200, "{host}");
        assert_eq!(
            get(&server, "/readyz", host).status,
            503,
            "{host}: not ready, not 421"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_or_oversized_headers_and_idle_connections_are_closed() {
    let timeout = Duration::from_millis(500);
    let server = Server::start(HttpSettings {
        header_read_timeout: timeout,
        max_header_bytes: 4096,
        ..HttpSettings::default()
    })
    .await;

    // Slowloris: headers that never end, a byte every 100 ms.
    let mut slow = server.connect();
    slow.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\nX-Slow: ", server.host()).as_bytes())
        .unwrap();
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        while writer.write_all(b"a").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (_, open_for) = read_until_closed(&mut slow);
    assert!(
        open_for >= timeout - Duration::from_millis(100),
        "{open_for:?}"
    );
    trickle.join().unwrap();

    // A keep-alive connection left idle after its answer.
    let mut idle = server.connect();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", server.host()).as_bytes())
        .unwrap();
    let (received, _) = read_until_closed(&mut idle);
    assert_eq!(Answer::parse(&received).status, 200);

    // Headers over the limit.
    let answer = get(
        &server,
        "/healthz",
        &format!("{}\r\nX-Big: {}", server.host(), "b".repeat(8192)),
    );
    assert_eq!(answer.status, 431, "{answer:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_trickled_in_is_cut_off_at_the_body_deadline() {
    let server = Server::start(HttpSettings {
        body_read_timeout: Duration::from_millis(500),
        ..HttpSettings::default()
    })
    .await;
    let mut slow = server.connect();
    slow.write_all(
        format!(
            "POST /api/scores HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: 1000\r\n\r\n{{",
            server.host()
        )
        .as_bytes(),
    )
    .unwrap();
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        while writer.write_all(b" ").is_ok() {
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let (received, open_for) = read_until_closed(&mut slow);
    let answer = Answer::parse(&received);
    assert_eq!(answer.status, 408, "{answer:?}");
    assert!(answer.body.contains("did not arrive in time"), "{answer:?}");
    assert!(open_for < Duration::from_secs(5), "{open_for:?}");
    trickle.join().unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_beyond_the_cap_are_refused_and_health_checks_get_through() {
    let server = Server::start(HttpSettings {
        max_connections: 3,
        header_read_timeout: Duration::from_secs(1),
        ..HttpSettings::default()
    })
    .await;
    // Three event streams hold every slot for as long as they are open.
    let mut streams: Vec<TcpStream> = (0..3).map(|_| open_event_stream(&server).1).collect();
    let answer = get(&server, "/healthz", &server.host());
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        answer.body.contains("Too many open connections"),
        "{answer:?}"
    );
    streams.pop();
    wait_for_health(&server, "a slot to be given back").await;
    drop(streams);

    // A flood of idle connections, many more than the cap: those beyond it are refused, the
    // others closed by the header timeout, and the health check answers again.
    let flood: Vec<TcpStream> = (0..50).map(|_| server.connect()).collect();
    wait_for_health(&server, "/healthz despite 50 idle connections").await;
    drop(flood);
    server.stop().await;
}

async fn wait_for_health(server: &Server, what: &str) {
    test_support::wait_for(what, DEADLINE, || async {
        (get(server, "/healthz", &server.host()).status == 200).then_some(())
    })
    .await;
}

/// Opens `/events` and reads the answer's head: its status, and the connection.
fn open_event_stream(server: &Server) -> (Answer, TcpStream) {
    let mut stream = server.connect();
    stream
        .write_all(format!("GET /events HTTP/1.1\r\nHost: {}\r\n\r\n", server.host()).as_bytes())
        .unwrap();
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    while !received.windows(4).any(|window| window == b"\r\n\r\n") {
        let count = stream.read(&mut buffer).expect("an answer to /events");
        assert!(count > 0, "closed before answering");
        received.extend_from_slice(&buffer[..count]);
    }
    (Answer::parse(&received), stream)
}

#[tokio::test(flavor = "multi_thread")]
async fn live_update_streams_are_capped() {
    let server = Server::start(HttpSettings {
        max_event_streams: 2,
        ..HttpSettings::default()
    })
    .await;
    let mut open: Vec<TcpStream> = (0..2)
        .map(|_| {
            let (answer, stream) = open_event_stream(&server);
            assert_eq!(answer.status, 200, "{answer:?}");
            assert!(answer.head.contains("text/event-stream"), "{answer:?}");
            stream
        })
        .collect();
    let mut third = server.connect();
    third
        .write_all(
            format!(
                "GET /events HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
                server.host()
            )
            .as_bytes(),
        )
        .unwrap();
    let refused = Answer::parse(&read_until_closed(&mut third).0);
    assert_eq!(refused.status, 503, "{refused:?}");
    assert!(
        refused.body.contains("Too many live-update streams"),
        "{refused:?}"
    );
    // A stream whose client went away gives its slot back.
    open.pop();
    let (_, again) = test_support::wait_for("an event stream slot", DEADLINE, || async {
        let (answer, stream) = open_event_stream(&server);
        (answer.status == 200).then_some((answer, stream))
    })
    .await;
    drop((open, again));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_does_not_wait_for_clients_that_never_finish() {
    let grace = Duration::from_millis(300);
    let server = Server::start(HttpSettings {
        shutdown_grace: grace,
        header_read_timeout: Duration::from_secs(60),
        body_read_timeout: Duration::from_secs(60),
        ..HttpSettings::default()
    })
    .await;
    let mut half_sent: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut stream = server.connect();
            stream
                .write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\nX-", server.host()).as_bytes())
                .unwrap();
            stream
        })
        .collect();
    let mut slow_body = server.connect();
    slow_body
        .write_all(
            format!(
                "POST /api/scores HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
                 Content-Length: 100\r\n\r\n{{",
                server.host()
            )
            .as_bytes(),
        )
        .unwrap();
    half_sent.push(slow_body);
    // Connections are accepted in order: once a later one is answered, these are being served.
    assert_eq!(get(&server, "/healthz", &server.host()).status, 200);

    let started = Instant::now();
    server.stop().await;
    let took = started.elapsed();
    assert!(
        took < grace + Duration::from_secs(1),
        "shutdown took {took:?}"
    );
    for stream in &mut half_sent {
        read_until_closed(stream);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_form_with_thousands_of_rows_is_refused_without_echoing_them() {
    let server = Server::start(HttpSettings::default()).await;
    let page = get(&server, "/", &server.host());
    let mut form = format!("csrf_token={}&customer=ACME", page.csrf_token());
    while form.len() < 60 * 1024 {
        form.push_str("&description=%3Cb%3E&quantity=x&unit_price=y");
    }
    let answer = post(
        &server,
        "/invoices",
        &format!("Host: {}\r\nCookie: {}\r\n", server.host(), page.cookie()),
        "application/x-www-form-urlencoded",
        &form,
    );
    assert_eq!(answer.status, 400);
    assert!(
        answer.body.contains("an invoice has at most 100 lines"),
        "{}",
        &answer.body[..answer.body.len().min(2000)]
    );
    assert!(answer.body.len() < 20_000, "{} bytes", answer.body.len());
    server.stop().await;
}

/// Needs the test broker: replies of 900 KB and a 100 KB correlation ID written to a reply
/// topic by anyone who may write there.
#[tokio::test(flavor = "multi_thread")]
async fn huge_replies_on_a_reply_topic_keep_the_home_page_small() {
    let system = system::System::start_with(false, Duration::from_secs(30)).await;
    let topics = test_support::topics(&system.topics);
    let requester = Requester::new(&test_support::kafka(), topics.clone(), DEADLINE).unwrap();
    let reply_topic = topics.reply(RequestKind::Invoice);
    const REPLIES: usize = 30;
    for index in 0..REPLIES {
        let text = format!("reply {index:02} {}", "x".repeat(900 * 1024));
        requester
            .send_outgoing(&Outgoing::new(&reply_topic, text))
            .await
            .unwrap();
    }
    let long_id = "i".repeat(100 * 1024);
    requester
        .send_outgoing(
            &Outgoing::new(&reply_topic, "Calculated score: 1.")
                .header("kafka_correlationId", long_id.as_bytes()),
        )
        .await
        .unwrap();

    let url = system.dashboard.url("/");
    let http = &system.http;
    let last = format!("reply {:02} ", REPLIES - 1);
    let html = test_support::wait_for("the last big reply on the page", DEADLINE * 6, || async {
        let html = http.get(&url).send().await.ok()?.text().await.ok()?;
        html.contains(&last).then_some(html)
    })
    .await;
    let metrics = test_support::wait_for("the long-ID reply to be counted", DEADLINE, || async {
        let text = http
            .get(system.dashboard.url("/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.contains("outcome=\"foreign\"} 1").then_some(text)
    })
    .await;
    assert!(html.len() < 256 * 1024, "GET / is {} bytes", html.len());
    assert!(html.contains("[cut: 921609 bytes in all]"), "no cut marker");
    assert!(
        !html.contains(&long_id[..1000]),
        "the long ID is on the page"
    );
    assert!(metrics.contains("dashboard_replies_total"), "{metrics}");
    system.stop().await;
}
