//! The whole system against a real broker: dashboard, both workers, browser-style forms and the
//! JSON API.

#[allow(dead_code)] // each test binary uses only some of the shared helpers
use test_support::system;

use contract::{RequestKind, legacy};
use futures::future::join_all;
use request_reply::kafka::Outgoing;
use request_reply::requester::Requester;
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;
use system::{Dashboard, System, http_client, post_api, wait_api};

#[tokio::test(flavor = "multi_thread")]
async fn api_requests_complete_with_the_right_replies() {
    let system = System::start().await;

    let invoice_id = system
        .post_api(
            "/api/invoices",
            &json!({"customer": "ACME", "lines": [{"description": "Widget", "quantity": 3, "unit_price_cents": 1250}]}),
        )
        .await;
    let score_id = system
        .post_api("/api/scores", &json!({"customer": "Globex"}))
        .await;

    let invoice = system.wait_api(&invoice_id).await;
    assert_eq!(invoice["status"], "completed", "{invoice}");
    assert_eq!(invoice["correlation_id"], invoice_id.as_str());
    assert_eq!(invoice["reply"]["ok"]["customer"], "ACME");
    assert_eq!(invoice["reply"]["ok"]["subtotal_cents"], 3750);
    assert_eq!(invoice["reply"]["ok"]["total_cents"], 4125);
    assert!(invoice["round_trip_ms"].as_f64().unwrap() > 0.0);

    let score = system.wait_api(&score_id).await;
    assert_eq!(score["status"], "completed", "{score}");
    assert_eq!(
        score["reply"]["ok"]["score"],
        score_calculator::score_of("Globex")
    );

    // The table's filters pick by kind and status.
    let page = |query: &'static str| {
        let url = system.dashboard.url(&format!("/?{query}"));
        let http = system.http.clone();
        async move { http.get(url).send().await.unwrap().text().await.unwrap() }
    };
    let scores = page("kind=score").await;
    assert!(
        scores.contains(&format!("req-{score_id}"))
            && !scores.contains(&format!("req-{invoice_id}"))
    );
    let completed = page("status=completed").await;
    assert!(
        completed.contains(&format!("req-{score_id}"))
            && completed.contains(&format!("req-{invoice_id}"))
    );
    let failed = page("kind=invoice&status=failed").await;
    assert!(
        failed.contains("No requests match this filter."),
        "{failed}"
    );

    system.stop().await;
}

/// `Prefer: wait=N` (RFC 7240) makes the POST request/reply in one call: 200 with the settled
/// request's state when the reply comes within N seconds.
#[tokio::test(flavor = "multi_thread")]
async fn a_post_that_prefers_to_wait_answers_with_the_reply() {
    let system = System::start().await;
    let response = system
        .http
        .post(system.dashboard.url("/api/scores"))
        .header("prefer", "wait=30")
        .json(&json!({"customer": "Initech"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.headers()["preference-applied"], "wait=30");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let state: serde_json::Value = response.json().await.unwrap();
    assert_eq!(state["status"], "completed", "{state}");
    assert_eq!(
        state["reply"]["ok"]["score"],
        score_calculator::score_of("Initech")
    );
    assert_eq!(
        location,
        format!(
            "/api/requests/{}",
            state["correlation_id"].as_str().unwrap()
        )
    );
    system.stop().await;
}

/// With no worker the wait runs out, and the answer is the usual 202 with where to look later.
#[tokio::test(flavor = "multi_thread")]
async fn a_post_whose_wait_runs_out_answers_202() {
    let system = System::start_with(false, Duration::from_secs(30)).await;
    let response = system
        .http
        .post(system.dashboard.url("/api/scores"))
        .header("prefer", "respond-async, wait=1")
        .json(&json!({"customer": "Nobody home"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    assert_eq!(response.headers()["preference-applied"], "wait=1");
    let accepted: serde_json::Value = response.json().await.unwrap();
    let id = accepted["correlation_id"].as_str().unwrap();
    assert_eq!(
        system.get_json(&format!("/api/requests/{id}")).await["status"],
        "pending"
    );
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn html_form_redirects_to_the_request_page_which_shows_the_reply() {
    let system = System::start().await;
    let response = system
        .dashboard
        .post_form(
            &system.http,
            "/invoices",
            &[
                ("customer", "Initech <b>"),
                ("description", "Stapler"),
                ("quantity", "2"),
                ("unit_price", "7.50"),
                ("description", ""),
                ("quantity", ""),
                ("unit_price", ""),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let id = location
        .strip_prefix("/requests/")
        .expect("redirect to the request page");

    let state = system.wait_api(id).await;
    assert_eq!(state["status"], "completed", "{state}");
    let page = system
        .http
        .get(system.dashboard.url(&location))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let number = state["reply"]["ok"]["number"].as_u64().unwrap();
    assert!(
        html.contains(&format!("Invoice #{number}, total 16.50")),
        "{html}"
    );
    assert!(
        html.contains("Initech &#60;b&#62;"),
        "customer not escaped: {html}"
    );
    assert!(
        html.contains("kafka_correlationId"),
        "reply headers not shown"
    );

    let home = system.dashboard.get_text(&system.http, "/").await;
    assert!(
        home.contains(&format!("id=\"req-{id}\"")),
        "request missing from the table"
    );
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_requests_all_complete_without_mix_ups() {
    let system = System::start().await;
    let sent = join_all((0..200).map(|index| {
        let system = &system;
        async move {
            let customer = format!("customer-{index}");
            let id = if index % 2 == 0 {
                system
                    .post_api(
                        "/api/invoices",
                        &json!({"customer": customer, "lines": [{"description": "x", "quantity": index + 1, "unit_price_cents": 100}]}),
                    )
                    .await
            } else {
                system.post_api("/api/scores", &json!({"customer": customer})).await
            };
            (index, customer, id)
        }
    }))
    .await;
    let states = join_all(sent.iter().map(|(_, _, id)| system.wait_api(id))).await;
    let mut invoice_numbers = std::collections::HashSet::new();
    for ((index, customer, id), state) in sent.iter().zip(&states) {
        assert_eq!(state["status"], "completed", "{state}");
        assert_eq!(state["correlation_id"], id.as_str());
        assert_eq!(
            state["reply"]["ok"]["customer"],
            customer.as_str(),
            "mixed-up reply"
        );
        if index % 2 == 0 {
            assert_eq!(state["reply"]["ok"]["subtotal_cents"], (index + 1) * 100);
            assert!(invoice_numbers.insert(state["reply"]["ok"]["number"].as_u64().unwrap()));
        } else {
            assert_eq!(
                state["reply"]["ok"]["score"],
                score_calculator::score_of(customer)
            );
        }
    }
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_text_replies_show_as_uncorrelated_with_their_number() {
    let system = System::start_with(false, Duration::from_secs(30)).await;
    let requester = Requester::new(
        &test_support::kafka(),
        test_support::topics(&system.topics),
        Duration::from_secs(10),
    )
    .unwrap();
    let reply_topic = test_support::topics(&system.topics).reply(RequestKind::Invoice);
    requester
        .send_outgoing(&Outgoing::new(
            &reply_topic,
            legacy::invoice_reply_text(48213),
        ))
        .await
        .unwrap();

    let url = system.dashboard.url("/");
    let http = &system.http;
    let html = test_support::wait_for(
        "the uncorrelated reply on the page",
        Duration::from_secs(30),
        || async {
            let html = http.get(&url).send().await.ok()?.text().await.ok()?;
            html.contains("Invoice number: #48213 generated.")
                .then_some(html)
        },
    )
    .await;
    assert!(html.contains("№ 48213"), "number not parsed out: {html}");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_without_a_worker_time_out() {
    let system = System::start_with(false, Duration::from_millis(1500)).await;
    let id = system
        .post_api("/api/scores", &json!({"customer": "Nobody home"}))
        .await;
    let state = system.wait_api(&id).await;
    assert_eq!(state["status"], "timed_out", "{state}");
    assert!(state["reply"].is_null());
    let page = system
        .dashboard
        .get_text(&system.http, &format!("/requests/{id}"))
        .await;
    assert!(page.contains("timed out"), "{page}");
    system.stop().await;
}

/// A request that timed out while no worker ran carries its deadline: the worker that starts
/// later does not score it, it answers `deadline_exceeded`, and the dashboard shows the timed-out
/// request as failed, late, with that reason.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_read_after_its_deadline_is_answered_deadline_exceeded() {
    let system = System::start_with(false, Duration::from_millis(1500)).await;
    let id = system
        .post_api("/api/scores", &json!({"customer": "Too Late Ltd"}))
        .await;
    let state = system.wait_api(&id).await;
    assert_eq!(state["status"], "timed_out", "{state}");

    let config = test_support::worker_config(&system.topics, "scores");
    let worker =
        test_support::InProcessWorker::spawn(|shutdown| score_calculator::run(config, shutdown));
    let state = test_support::wait_for(
        "the late deadline_exceeded reply",
        Duration::from_secs(60),
        || async {
            let state = system.get_json(&format!("/api/requests/{id}")).await;
            (state["status"] == "failed").then_some(state)
        },
    )
    .await;
    assert_eq!(state["late"], true, "{state}");
    assert_eq!(
        state["reply"]["error"]["code"], "deadline_exceeded",
        "{state}"
    );
    assert!(
        state["error"].as_str().unwrap().contains("deadline"),
        "{state}"
    );
    worker.stop().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_4xx_that_names_the_field() {
    let system = System::start_with(false, Duration::from_secs(30)).await;
    let form = system
        .dashboard
        .post_form(
            &system.http,
            "/invoices",
            &[
                ("customer", "A"),
                ("description", "W"),
                ("quantity", "lots"),
                ("unit_price", "1"),
            ],
        )
        .await;
    assert_eq!(form.status(), StatusCode::BAD_REQUEST);
    let html = form.text().await.unwrap();
    assert!(
        html.contains("line 1 quantity: must be a whole number"),
        "{html}"
    );
    assert!(html.contains("value=\"lots\""), "typed value not kept");

    let api = system
        .http
        .post(system.dashboard.url("/api/scores"))
        .json(&json!({"customer": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = api.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().starts_with("customer:"),
        "{body}"
    );

    let missing = system
        .http
        .get(system.dashboard.url("/api/requests/no-such-id"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let huge = system
        .http
        .post(system.dashboard.url("/api/scores"))
        .body(vec![b' '; 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_dashboards_each_get_the_replies_to_their_own_requests() {
    let system = System::start().await;
    let http = http_client();
    let second = Dashboard::start(
        test_support::kafka(),
        &system.topics,
        Duration::from_secs(30),
    )
    .await;
    second.wait_ready(&http).await;

    let first_id = system
        .post_api("/api/scores", &json!({"customer": "first"}))
        .await;
    let second_id = post_api(
        &http,
        &second,
        "/api/scores",
        &json!({"customer": "second"}),
    )
    .await;
    let first_state = system.wait_api(&first_id).await;
    let second_state = wait_api(&http, &second, &second_id).await;
    assert_eq!(first_state["status"], "completed");
    assert_eq!(first_state["reply"]["ok"]["customer"], "first");
    assert_eq!(second_state["status"], "completed");
    assert_eq!(second_state["reply"]["ok"]["customer"], "second");
    // Each dashboard knows only its own requests.
    let foreign = http
        .get(second.url(&format!("/api/requests/{first_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);

    second.stop().await;
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_broker_is_shown_and_the_api_answers_503() {
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kafka = request_reply::config::KafkaSettings::for_bootstrap(&format!("127.0.0.1:{port}"));
    let dashboard = Dashboard::start(
        kafka,
        &test_support::unique_topics(),
        Duration::from_secs(30),
    )
    .await;
    let http = http_client();

    let ready = http.get(dashboard.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let started = std::time::Instant::now();
    let refused = http
        .post(dashboard.url("/api/scores"))
        .json(&json!({"customer": "ACME"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the API hung instead of refusing"
    );
    let home_url = dashboard.url("/");
    test_support::wait_for("the outage banner", Duration::from_secs(30), || async {
        let html = http.get(&home_url).send().await.ok()?.text().await.ok()?;
        (html.contains("Cannot reach Kafka") || html.contains("is unreachable")).then_some(())
    })
    .await;
    assert_eq!(
        http.get(dashboard.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    dashboard.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_requests_replies_and_round_trips() {
    let system = System::start().await;
    let id = system
        .post_api("/api/scores", &json!({"customer": "Metered"}))
        .await;
    assert_eq!(system.wait_api(&id).await["status"], "completed");

    let text = system.dashboard.get_text(&system.http, "/metrics").await;
    for expected in [
        "dashboard_requests_sent_total{kind=\"score\"} 1",
        "dashboard_replies_total{outcome=\"matched\"} 1",
        "dashboard_round_trip_seconds_count 1",
        "dashboard_pending 0",
        "dashboard_broker_up 1",
    ] {
        assert!(text.contains(expected), "missing {expected}:\n{text}");
    }
    system.stop().await;
}

/// The `traceparent` values of a request and its reply, as shown on the request page.
fn traceparents(html: &str) -> Vec<String> {
    // The header's name cell (with its explanation), then the value cell.
    html.split("<tr><td><code>traceparent</code>")
        .skip(1)
        .filter_map(|rest| rest.split_once("</td><td><code>"))
        .filter_map(|(_, value)| value.split('<').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn one_trace_spans_dashboard_worker_and_back() {
    let system = System::start().await;
    let id = system
        .post_api("/api/scores", &json!({"customer": "Traced"}))
        .await;
    assert_eq!(system.wait_api(&id).await["status"], "completed");
    let html = system
        .dashboard
        .get_text(&system.http, &format!("/requests/{id}"))
        .await;
    let [request, reply] = <[String; 2]>::try_from(traceparents(&html)).expect("two traceparents");
    let parse = |value: &str| {
        request_reply::headers::TraceContext::parse(value.as_bytes())
            .unwrap_or_else(|| panic!("not a traceparent: {value}"))
    };
    let (request, reply) = (parse(&request), parse(&reply));
    assert_eq!(request.trace_id, reply.trace_id, "reply left the trace");
    assert_ne!(request.span_id, reply.span_id, "reply must be a new span");
    system.stop().await;
}

/// Every request and reply the services produce validates against the checked-in JSON Schemas,
/// error replies included.
#[tokio::test(flavor = "multi_thread")]
async fn produced_messages_match_the_published_schemas() {
    let system = System::start().await;
    let invoice = system
        .post_api(
            "/api/invoices",
            &json!({"customer": "Schema", "lines": [{"description": "x", "quantity": 1, "unit_price_cents": 1}]}),
        )
        .await;
    let score = system
        .post_api("/api/scores", &json!({"customer": "Schema"}))
        .await;
    assert_eq!(system.wait_api(&invoice).await["status"], "completed");
    assert_eq!(system.wait_api(&score).await["status"], "completed");
    // An error reply: a request with a schema version the worker does not know.
    let requester = Requester::new(
        &test_support::kafka(),
        test_support::topics(&system.topics),
        Duration::from_secs(10),
    )
    .unwrap();
    requester
        .send(
            RequestKind::Score,
            &request_reply::headers::CorrelationId::generate(),
            &json!({"schema_version": 9, "customer": "Future"}),
        )
        .await
        .unwrap();

    let topics = test_support::topics(&system.topics);
    for (topic, schema, expected) in [
        (topics.request(RequestKind::Invoice), "invoice-request", 1),
        (topics.request(RequestKind::Score), "score-request", 1),
        (topics.reply(RequestKind::Invoice), "invoice-reply", 1),
        (topics.reply(RequestKind::Score), "score-reply", 2),
    ] {
        let mut reader = test_support::TopicReader::new(&topic, system.topics.partitions);
        let messages = reader
            .read_until(&topic, Duration::from_secs(30), |seen| {
                seen.len() >= expected
            })
            .await;
        for message in messages {
            if schema == "score-request" && message.text().contains("\"schema_version\":9") {
                continue; // deliberately invalid
            }
            if schema.ends_with("-request") {
                // The dashboard keys requests by customer, so each customer's are answered in order.
                assert_eq!(message.key.as_deref(), Some(&b"Schema"[..]), "{topic}");
            }
            test_support::assert_valid_payload(
                schema,
                message.payload.as_deref().unwrap_or_default(),
            );
        }
    }
    system.stop().await;
}

/// The log is the source of truth: a dashboard that restarts rebuilds its history from the
/// request and reply topics, so requests made before the restart, and the replies that arrived
/// while it was down, are shown and matched; replies after the restart keep arriving live.
#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_dashboard_rebuilds_its_history_from_the_log() {
    let first = System::start_with(false, Duration::from_secs(120)).await;
    let topics = first.topics.clone();
    let mut sent = Vec::new();
    for index in 0..3 {
        let customer = format!("before-restart-{index}");
        let invoice = json!({"customer": customer, "lines": [{"description": "x", "quantity": 1, "unit_price_cents": 100}]});
        sent.push((
            first.post_api("/api/invoices", &invoice).await,
            customer.clone(),
        ));
        sent.push((
            first
                .post_api("/api/scores", &json!({"customer": customer}))
                .await,
            customer,
        ));
    }
    first.stop().await;

    // The workers answer while no dashboard runs.
    let (stop_workers, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let workers = [
        tokio::spawn(invoice_generator::run(
            test_support::worker_config(&topics, "invoices"),
            until_stopped(stopped.clone()),
        )),
        tokio::spawn(score_calculator::run(
            test_support::worker_config(&topics, "scores"),
            until_stopped(stopped.clone()),
        )),
    ];
    for kind in RequestKind::ALL {
        let mut replies = test_support::TopicReader::new(
            &test_support::topics(&topics).reply(kind),
            topics.partitions,
        );
        replies
            .read_until(
                "the replies sent while the dashboard was down",
                Duration::from_secs(60),
                |seen| seen.len() >= 3,
            )
            .await;
    }

    let second = System::start_on(topics, false, Duration::from_secs(120)).await;
    for (id, customer) in &sent {
        let state = second.get_json(&format!("/api/requests/{id}")).await;
        assert_eq!(state["status"], "completed", "{state}");
        assert_eq!(state["reply"]["ok"]["customer"], customer.as_str());
        assert_eq!(state["request"]["customer"], customer.as_str());
        assert!(state["round_trip_ms"].as_f64().unwrap() > 0.0, "{state}");

        // The status alone: the same outcome, no payloads.
        let status = second
            .get_json(&format!("/api/requests/{id}?payloads=false"))
            .await;
        assert_eq!(status["status"], "completed", "{status}");
        assert_eq!(status["duplicate_replies"], state["duplicate_replies"]);
        assert!(
            status["request"].is_null() && status["reply"].is_null(),
            "{status}"
        );
    }
    // The detail page of a rebuilt request holds nothing in memory: request and reply are
    // read back from Kafka by their positions, with their headers.
    let (id, customer) = &sent[0];
    let html = second
        .dashboard
        .get_text(&second.http, &format!("/requests/{id}"))
        .await;
    let request_body = section(&html, "<pre id=\"request-body\">");
    assert!(
        request_body.contains(&format!("&#34;customer&#34;: &#34;{customer}&#34;")),
        "request payload not shown: {html}"
    );
    let reply_body = section(&html, "<pre id=\"reply-body\">");
    assert!(
        reply_body.contains("&#34;total_cents&#34;: 110"),
        "reply payload not shown: {html}"
    );
    assert_eq!(
        html.matches(&format!("<code>{id}</code></td>")).count(),
        2,
        "both messages' kafka_correlationId headers: {html}"
    );
    // And it goes on live from where the log ended.
    let after = second
        .post_api("/api/scores", &json!({"customer": "after-restart"}))
        .await;
    assert_eq!(second.wait_api(&after).await["status"], "completed");
    let home = second.dashboard.get_text(&second.http, "/").await;
    assert!(
        home.contains("before-restart-0"),
        "rebuilt requests missing from the table"
    );

    stop_workers.send_replace(true);
    for worker in workers {
        worker.await.unwrap().unwrap();
    }
    second.stop().await;
}

/// The text of a `<pre>` block that starts with `opening`.
fn section<'a>(html: &'a str, opening: &str) -> &'a str {
    let start = html
        .find(opening)
        .unwrap_or_else(|| panic!("no {opening} in {html}"))
        + opening.len();
    html[start..].split("</pre>").next().unwrap()
}

/// The detail page reads the messages back from Kafka; once retention has removed them it says
/// so, with what the dashboard still knows, instead of failing.
#[tokio::test(flavor = "multi_thread")]
async fn the_detail_page_says_when_kafka_no_longer_has_the_messages() {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

    let system = System::start().await;
    let id = system
        .post_api("/api/scores", &json!({"customer": "Ephemeral"}))
        .await;
    let state = system.wait_api(&id).await;
    assert_eq!(state["status"], "completed", "{state}");
    let page = |id: String| {
        let url = system.dashboard.url(&format!("/requests/{id}"));
        let http = system.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    };
    let (status, html) = page(id.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        section(&html, "<pre id=\"request-body\">").contains("Ephemeral"),
        "{html}"
    );
    assert!(
        section(&html, "<pre id=\"reply-body\">").contains("&#34;score&#34;"),
        "{html}"
    );
    assert!(!html.contains("no longer in Kafka"), "{html}");

    // What retention does, at once: every record of both topics deleted.
    let admin: AdminClient<DefaultClientContext> =
        test_support::kafka().common_config().create().unwrap();
    let topics = test_support::topics(&system.topics);
    let mut everything = TopicPartitionList::new();
    for topic in [
        topics.request(RequestKind::Score),
        topics.reply(RequestKind::Score),
    ] {
        for partition in 0..system.topics.partitions {
            everything
                .add_partition_offset(&topic, partition, Offset::End)
                .unwrap();
        }
    }
    let deleted = admin
        .delete_records(&everything, &AdminOptions::new())
        .await
        .unwrap();
    for element in deleted.elements() {
        assert!(element.error().is_ok(), "{element:?}");
    }

    let (status, html) = page(id.clone()).await;
    assert_eq!(status, StatusCode::OK, "{html}");
    assert_eq!(
        html.matches("message is no longer in Kafka").count(),
        2,
        "request and reply both explained: {html}"
    );
    // What the store knows is still shown: status, outcome, positions.
    assert!(html.contains("data-status=\"completed\""), "{html}");
    let score = score_calculator::score_of("Ephemeral");
    assert!(html.contains(&format!("Score {score}")), "{html}");
    assert!(html.contains(&topics.reply(RequestKind::Score)), "{html}");
    system.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dead_letter_page_shows_what_a_worker_could_not_handle_and_where_it_was() {
    let system = System::start().await;
    let empty = system
        .dashboard
        .get_text(&system.http, "/dead-letters")
        .await;
    assert!(
        empty.contains("No dead letters: every invoice request so far could be handled."),
        "{empty}"
    );
    // A request that is not JSON, with a correlation ID: the worker dead-letters it.
    let topics = test_support::topics(&system.topics);
    let requester = Requester::new(
        &test_support::kafka(),
        topics.clone(),
        Duration::from_secs(10),
    )
    .unwrap();
    let sent = requester
        .send_outgoing(
            &Outgoing::new(topics.request(RequestKind::Invoice), "{not json")
                .header(request_reply::headers::CORRELATION_ID, "bad-request-1")
                .header(
                    request_reply::headers::CONTENT_TYPE,
                    request_reply::headers::JSON_CONTENT_TYPE,
                )
                .header(
                    request_reply::headers::REPLY_TOPIC,
                    topics.reply(RequestKind::Invoice),
                ),
        )
        .await
        .unwrap();
    let source = format!(
        "{}/{}/{}",
        topics.request(RequestKind::Invoice),
        sent.partition,
        sent.offset
    );
    let http = &system.http;
    let page = test_support::wait_for(
        "the dead letter on the page",
        Duration::from_secs(30),
        || {
            let dashboard = &system.dashboard;
            let source = source.clone();
            async move {
                let html = dashboard.get_text(http, "/dead-letters").await;
                html.contains(&source).then_some(html)
            }
        },
    )
    .await;
    assert!(page.contains("bad-request-1"), "{page}");
    assert!(page.contains("{not json"), "the payload's start: {page}");
    assert!(
        page.contains(&topics.dead_letter(RequestKind::Invoice)),
        "{page}"
    );
    assert!(
        page.contains("No dead letters: every score request so far could be handled."),
        "the other kind's topic is listed too: {page}"
    );
    system.stop().await;
}
