//! The AsyncAPI document agrees with the code: topic names, schema files, internal references.

use contract::{RequestKind, Topics};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn document() -> Value {
    let text = std::fs::read_to_string(repo_root().join("asyncapi.yaml")).unwrap();
    serde_norway::from_str(&text).unwrap()
}

fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("$ref", Value::String(target)) => refs.push(target.clone()),
                    _ => collect_refs(child, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, refs)),
        _ => {}
    }
}

#[test]
fn document_is_asyncapi_3_and_names_every_topic() {
    let document = document();
    assert!(document["asyncapi"].as_str().unwrap().starts_with("3."));
    let addresses: BTreeSet<&str> = document["channels"]
        .as_object()
        .unwrap()
        .values()
        .map(|channel| channel["address"].as_str().unwrap())
        .collect();
    let topics = Topics::default();
    let expected: BTreeSet<String> = RequestKind::ALL
        .iter()
        .flat_map(|kind| {
            [
                topics.request(*kind),
                topics.reply(*kind),
                topics.dead_letter(*kind),
            ]
        })
        .collect();
    assert_eq!(addresses, expected.iter().map(String::as_str).collect());
}

#[test]
fn every_reference_resolves_and_every_schema_is_used() {
    let document = document();
    let mut refs = Vec::new();
    collect_refs(&document, &mut refs);
    let mut files = BTreeSet::new();
    for target in refs {
        if let Some(pointer) = target.strip_prefix('#') {
            assert!(
                document.pointer(pointer).is_some(),
                "dangling reference {target}"
            );
        } else {
            let path = repo_root().join(&target);
            assert!(path.is_file(), "{target} does not exist");
            files.insert(path.canonicalize().unwrap());
        }
    }
    let generated: BTreeSet<PathBuf> = contract::schema::all()
        .into_iter()
        .map(|(name, _)| contract::schema::path(name).canonicalize().unwrap())
        .collect();
    assert_eq!(
        files, generated,
        "the document must reference exactly the generated schemas"
    );
}

/// Every header the library writes is described where a reader of the document looks for it:
/// a request's, a reply's (the worker-* stamp among them) and a dead letter's.
#[test]
fn every_header_the_library_writes_is_documented() {
    use request_reply::headers;
    use request_reply::stamp::{WorkerIdentity, WorkerStamp};
    use std::time::{Duration, SystemTime};

    let document = document();
    let documented = |schema: &str| -> BTreeSet<String> {
        document["components"]["schemas"][schema]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("{schema} has properties"))
            .keys()
            .cloned()
            .collect()
    };
    let stamp = WorkerStamp::new(
        WorkerIdentity {
            group: "group".into(),
            client_id: "client".into(),
            host: "host".into(),
        },
        SystemTime::now(),
        Duration::ZERO,
        Duration::ZERO,
    );
    let reply_headers = [
        headers::CORRELATION_ID,
        headers::CONTENT_TYPE,
        headers::TRACEPARENT,
        headers::NEST_IS_DISPOSED,
        headers::NEST_ERR,
    ]
    .into_iter()
    .chain(stamp.headers().map(|(name, _)| name));
    let expected = [
        (
            "RequestHeaders",
            [
                headers::CORRELATION_ID,
                headers::REPLY_TOPIC,
                headers::REPLY_PARTITION,
                headers::CONTENT_TYPE,
                headers::TRACEPARENT,
                headers::DEADLINE,
            ]
            .into_iter()
            .map(str::to_owned)
            .collect::<BTreeSet<_>>(),
        ),
        ("ReplyHeaders", reply_headers.map(str::to_owned).collect()),
        (
            "DeadLetterHeaders",
            [
                headers::DEAD_LETTER_REASON,
                headers::DEAD_LETTER_SOURCE,
                headers::DEAD_LETTER_TRUNCATED,
            ]
            .into_iter()
            .map(str::to_owned)
            .collect(),
        ),
    ];
    for (schema, written) in expected {
        assert_eq!(documented(schema), written, "the headers of {schema}");
    }
}
