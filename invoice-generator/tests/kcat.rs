//! A worker driven by hand with kcat, as the README shows: correlated JSON with headers, and the
//! original system's plain text without any.

use contract::{RequestKind, legacy};
use request_reply::headers::CorrelationId;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;
use test_support::InProcessWorker;

fn kcat(args: &[&str], input: &str) -> String {
    let mut child = Command::new("kcat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kcat is not installed (apt-get install kcat; .ci/run installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kcat {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn kcat_by_hand_gets_correlated_and_plain_text_replies() {
    let settings = test_support::unique_topics();
    let topics = test_support::topics(&settings);
    let servers = test_support::kafka().bootstrap_servers().to_owned();
    let worker = InProcessWorker::spawn(|shutdown| {
        invoice_generator::run(test_support::worker_config(&settings, "invoices"), shutdown)
    });
    // Creates the topics, as any of our services does at start-up.
    drop(test_support::client(&settings).await);

    let request_topic = topics.request(RequestKind::Invoice);
    let reply_topic = topics.reply(RequestKind::Invoice);
    let id = CorrelationId::generate().key();
    let correlation = format!("kafka_correlationId={id}");
    let reply_to = format!("kafka_replyTopic={reply_topic}");
    kcat(
        &[
            "-P",
            "-b",
            &servers,
            "-t",
            &request_topic,
            "-H",
            &correlation,
            "-H",
            &reply_to,
            "-H",
            "content-type=application/json",
        ],
        r#"{"customer":"kcat user","lines":[{"description":"Cable","quantity":2,"unit_price_cents":350}]}"#,
    );
    kcat(
        &["-P", "-b", &servers, "-t", &request_topic],
        legacy::INVOICE_REQUEST_TEXT,
    );

    let lines = test_support::wait_for(
        "both replies, read back with kcat",
        Duration::from_secs(30),
        || {
            let output = kcat(
                &[
                    "-C",
                    "-b",
                    &servers,
                    "-t",
                    &reply_topic,
                    "-o",
                    "beginning",
                    "-e",
                    "-q",
                    "-f",
                    "%h\t%s\n",
                ],
                "",
            );
            let lines: Vec<String> = output.lines().map(str::to_owned).collect();
            std::future::ready((lines.len() >= 2).then_some(lines))
        },
    )
    .await;
    let json = lines
        .iter()
        .find(|line| line.contains(&id))
        .expect("the correlated reply");
    assert!(
        json.contains(&format!("kafka_correlationId={id}")),
        "{json}"
    );
    assert!(
        json.contains(r#""customer":"kcat user""#) && json.contains(r#""subtotal_cents":700"#),
        "{json}"
    );
    let text = lines
        .iter()
        .find(|line| line.contains("Invoice number: #"))
        .expect("the plain-text reply");
    assert!(text.ends_with(" generated."), "{text}");
    assert!(
        !text.contains("kafka_correlationId"),
        "plain text is answered without headers: {text}"
    );

    worker.stop().await;
}
