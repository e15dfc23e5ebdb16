//! The dashboard in a real browser: headless Chromium (Debian's `/usr/bin/chromium`), driven by
//! `tests/browser/e2e.mjs` through playwright-core, against the whole system started in-process
//! on the test broker. The script submits both forms, watches replies arrive without a reload,
//! takes the no-JavaScript path, checks field errors, filters and a phone-sized layout, and saves
//! screenshots to `target/screenshots/` (with `UPDATE_README_SCREENSHOT=1`, also the README's
//! `dashboard/docs/screenshot.png`).
//!
//! Needs Chromium and the script's `node_modules`: `dashboard/tests/browser/install` sets both up.
//!
//! What a browser cannot do, the script asks of this test on its stdout, one line each, and waits
//! for the answer on its stdin: `#control duplicate-reply <correlation-id>` (write a second reply
//! to that invoice request, as a redelivery would; answered with where it is, `topic/partition/
//! offset`), `#control stop-worker score` (stop the score worker; answered `stopped`) and
//! `#control join-silently score` (a consumer that answers nothing joins the score worker's
//! group; answered `joined`).

#[allow(dead_code)]
use test_support::system;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use system::System;

/// The browser the script drives, unless `CHROMIUM_PATH` names another.
const CHROMIUM: &str = "/usr/bin/chromium";
/// How long the whole script may take; it has its own, shorter, deadline and per-step timeouts.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(240);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `target/screenshots`, beside the integration tests' scratch directory `target/tmp`.
fn screenshot_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("screenshots")
}

/// Panics with the way out when something the script needs is not installed.
fn check_prerequisites() {
    let install = browser_dir().join("install");
    let chromium = std::env::var_os("CHROMIUM_PATH").map_or_else(|| CHROMIUM.into(), PathBuf::from);
    assert!(
        chromium.is_file(),
        "{} is missing: run {} (installs Debian's chromium and the script's node_modules)",
        chromium.display(),
        install.display()
    );
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "{} is missing: run {} (npm ci of the pinned playwright-core)",
        playwright.display(),
        install.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|output| output.status.success()),
        "node is not runnable ({node:?}): install Node.js 20 or later, then run {}",
        install.display()
    );
}

/// Reads a child's pipe to the end on a thread of its own, so that neither pipe fills up.
fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Reads the child's stdout line by line on a thread of its own: every line is kept for the
/// report, and the script's `#control` lines are passed on as they come.
fn collect_lines(pipe: impl Read + Send + 'static) -> (JoinHandle<String>, mpsc::Receiver<String>) {
    let (controls, requests) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(request) = line.strip_prefix("#control ") {
                let _ = controls.send(request.to_owned());
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    (reader, requests)
}

/// Writes a second reply to an invoice request, the way a redelivered request is answered
/// again; returns where it is.
async fn send_duplicate_reply(system: &System, correlation_id: &str) -> String {
    use request_reply::headers;
    let topic = test_support::topics(&system.topics).reply(contract::RequestKind::Invoice);
    let body = serde_json::json!({
        "schema_version": 1,
        "ok": {
            "number": 1000, "customer": "ACME Corp", "lines": [], "subtotal_cents": 0,
            "tax_cents": 0, "total_cents": 0
        }
    });
    let message = request_reply::kafka::Outgoing::new(&topic, body.to_string())
        .header(headers::CORRELATION_ID, correlation_id)
        .header(headers::CONTENT_TYPE, headers::JSON_CONTENT_TYPE);
    send(system, &message).await
}

/// A consumer in the score worker's group that takes partitions and answers nothing: the group
/// has a member again, so the dashboard no longer says why requests wait, yet they do (what a
/// hung worker looks like). Leaves the group when dropped.
struct SilentMember {
    stop: Arc<AtomicBool>,
    polling: Option<JoinHandle<()>>,
}

impl SilentMember {
    fn join(system: &System) -> Self {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let mut config = test_support::kafka().consumer_config();
        config
            .set("group.id", test_support::group_id(&system.topics, "scores"))
            .set("enable.auto.commit", "false");
        let consumer: BaseConsumer = config.create().expect("create the silent member");
        let topic = test_support::topics(&system.topics).request(contract::RequestKind::Score);
        consumer
            .subscribe(&[&topic])
            .expect("subscribe the silent member");
        let stop = Arc::new(AtomicBool::new(false));
        let polling = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                // Polling keeps it in the group; what it gets is neither answered nor committed.
                while !stop.load(Ordering::Relaxed) {
                    let _ = consumer.poll(Duration::from_millis(100));
                }
            }
        });
        SilentMember {
            stop,
            polling: Some(polling),
        }
    }
}

impl Drop for SilentMember {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(polling) = self.polling.take() {
            let _ = polling.join();
        }
    }
}

/// Carries out one `#control` request of the script and answers it on its stdin.
async fn obey(
    system: &mut System,
    silent: &mut Vec<SilentMember>,
    request: &str,
    answers: &mut ChildStdin,
) {
    let answer = match request.split_once(' ') {
        Some(("duplicate-reply", id)) => send_duplicate_reply(system, id).await,
        Some(("stop-worker", "score")) => {
            system.stop_worker(contract::RequestKind::Score).await;
            "stopped".to_owned()
        }
        Some(("join-silently", "score")) => {
            silent.push(SilentMember::join(system));
            "joined".to_owned()
        }
        _ => panic!("the browser script asked for {request:?}, which this test does not do"),
    };
    writeln!(answers, "{answer}").expect("answer the browser script");
    answers.flush().expect("answer the browser script");
}

/// Waits for the child until `deadline`, carrying out its `#control` requests meanwhile; past
/// the deadline, asks it to stop (SIGTERM lets playwright close Chromium), then kills it. `None`
/// when it had to be stopped.
async fn wait_with_deadline(
    child: &mut Child,
    deadline: Duration,
    system: &mut System,
    controls: &mpsc::Receiver<String>,
) -> Option<ExitStatus> {
    let started = Instant::now();
    let mut answers = child.stdin.take().expect("piped stdin");
    // Kept until the script ends.
    let mut silent = Vec::new();
    loop {
        while let Ok(request) = controls.try_recv() {
            obey(system, &mut silent, &request, &mut answers).await;
        }
        if let Some(status) = child.try_wait().expect("poll the browser script") {
            return Some(status);
        }
        if started.elapsed() > deadline {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(10) {
                if child.try_wait().expect("poll the browser script").is_some() {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends the invoice worker a request that is not JSON, for the dead-letter page to show; returns
/// where it is (`topic/partition/offset`, as the dead letter's `dlq-source` names it).
async fn send_a_request_to_dead_letter(system: &System) -> String {
    use request_reply::headers;
    let topic = test_support::topics(&system.topics).request(contract::RequestKind::Invoice);
    let message = request_reply::kafka::Outgoing::new(&topic, "{not json")
        .header(headers::CORRELATION_ID, "browser-dead-letter")
        .header(headers::CONTENT_TYPE, headers::JSON_CONTENT_TYPE);
    send(system, &message).await
}

/// Produces `message` past the dashboard; returns where it is, as `topic/partition/offset`.
async fn send(system: &System, message: &request_reply::kafka::Outgoing) -> String {
    let requester = request_reply::requester::Requester::new(
        &test_support::kafka(),
        test_support::topics(&system.topics),
        Duration::from_secs(10),
    )
    .unwrap();
    let sent = requester.send_outgoing(message).await.unwrap();
    format!("{}/{}/{}", message.topic, sent.partition, sent.offset)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_works_in_headless_chromium() {
    check_prerequisites();
    let mut system = System::start().await;
    let dead_letter_source = send_a_request_to_dead_letter(&system).await;
    let screenshots = screenshot_dir();
    std::fs::create_dir_all(&screenshots).expect("create target/screenshots");

    let started = Instant::now();
    let mut child = Command::new("node")
        .arg(browser_dir().join("e2e.mjs"))
        .arg(&system.dashboard.base)
        .arg(&screenshots)
        .arg(&dead_letter_source)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node");
    let (stdout, controls) = collect_lines(child.stdout.take().expect("piped stdout"));
    let stderr = collect(child.stderr.take().expect("piped stderr"));
    let status = wait_with_deadline(&mut child, SCRIPT_DEADLINE, &mut system, &controls).await;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let elapsed = started.elapsed();
    system.stop().await;

    let output = format!("--- e2e.mjs stdout ---\n{stdout}--- e2e.mjs stderr ---\n{stderr}");
    match status {
        None => panic!("the browser script was stopped after {SCRIPT_DEADLINE:?}\n{output}"),
        Some(status) => assert!(
            status.success(),
            "the browser script failed ({status}) after {elapsed:.1?}\n{output}"
        ),
    }
    println!("{output}browser script passed in {elapsed:.1?}");
}
