//! JSON Schemas of the payloads, generated from the contract types.
//!
//! The generated schemas are checked in under `contract/schemas/` (the AsyncAPI document
//! refers to them); a test fails when the Rust types and the files disagree, so neither can drift.
//! Regenerate with `UPDATE_SCHEMAS=1 cargo test -p contract schema`.

use crate::{Invoice, InvoiceRequest, Reply, Score, ScoreRequest};
use schemars::schema_for;

/// Every payload schema, by the file name it is checked in under (without `.schema.json`).
pub fn all() -> Vec<(&'static str, serde_json::Value)> {
    let value = |schema: schemars::Schema| schema.to_value();
    vec![
        ("invoice-request", value(schema_for!(InvoiceRequest))),
        ("score-request", value(schema_for!(ScoreRequest))),
        ("invoice-reply", value(schema_for!(Reply<Invoice>))),
        ("score-reply", value(schema_for!(Reply<Score>))),
    ]
}

/// The checked-in file of the schema called `name`.
pub fn path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("schemas")
        .join(format!("{name}.schema.json"))
}

/// Why `instance` does not match the checked-in schema `name` (empty when it does).
#[cfg(any(test, feature = "schema-check"))]
pub fn problems(name: &str, instance: &serde_json::Value) -> Vec<String> {
    let text = std::fs::read_to_string(path(name))
        .unwrap_or_else(|error| panic!("schema {name}: {error}"));
    let schema: serde_json::Value = serde_json::from_str(&text).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    validator
        .iter_errors(instance)
        .map(|error| error.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, LineItem, SCHEMA_VERSION};
    use serde_json::json;

    #[test]
    fn schemas_accept_what_the_types_write_and_reject_what_they_would_not_read() {
        let request = InvoiceRequest {
            schema_version: SCHEMA_VERSION,
            customer: "a".into(),
            lines: vec![LineItem {
                description: "d".into(),
                quantity: 1,
                unit_price_cents: 1,
            }],
        };
        assert_eq!(
            problems("invoice-request", &serde_json::to_value(&request).unwrap()),
            Vec::<String>::new()
        );
        let error: Reply<Score> = Reply::error(ErrorCode::InvalidRequest, "m");
        assert!(problems("score-reply", &serde_json::to_value(&error).unwrap()).is_empty());
        assert!(!problems("invoice-request", &json!({"customer": "a", "lines": [{"description": "d", "quantity": "1", "unit_price_cents": 1}]})).is_empty());
        assert!(!problems("score-request", &json!({"name": "a"})).is_empty());
        assert!(
            !problems(
                "score-reply",
                &json!({"schema_version": 1, "error": {"code": "nope", "message": "m"}})
            )
            .is_empty()
        );
    }

    #[test]
    fn checked_in_schemas_match_the_rust_types() {
        let update = std::env::var_os("UPDATE_SCHEMAS").is_some();
        for (name, schema) in all() {
            let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
            let file = path(name);
            if update {
                std::fs::write(&file, &generated).unwrap();
                continue;
            }
            let checked_in = std::fs::read_to_string(&file).unwrap_or_default();
            assert!(
                checked_in == generated,
                "{} differs from the Rust types: the wire format changed. If that is intended, \
                 run `UPDATE_SCHEMAS=1 cargo test -p contract schema` and commit the files.",
                file.display()
            );
        }
    }
}
