//! The generic provider's schema: strict at the door (a 400 naming the mistake), and the published JSON
//! Schema agrees with the parser on every fixture.

use std::collections::BTreeSet;

use em_providers::{BodyError, Provider};
use http::HeaderMap;
use serde_json::{json, Value};

use crate::common::{fixture_dir, Case};

fn generic() -> &'static Provider {
    em_providers::by_name("generic").expect("registered")
}

fn refused(body: &Value) -> String {
    let bytes = serde_json::to_vec(body).expect("JSON");
    match generic().inspect(&HeaderMap::new(), &bytes) {
        Err(BodyError::Schema(message)) => message,
        other => panic!("{body}: {other:?}"),
    }
}

fn deployment() -> Value {
    json!({
        "version": 1, "type": "deployment", "id": "d-1", "repository": "acme/app",
        "environment": "production", "sha": "abcdef1", "status": "success",
        "time": "2025-04-03T14:05:09Z"
    })
}

#[test]
fn a_valid_report_passes_the_door() {
    let bytes = serde_json::to_vec(&deployment()).expect("JSON");
    let i = generic()
        .inspect(&HeaderMap::new(), &bytes)
        .expect("accepted");
    assert_eq!(i.delivery_id, "d-1");
}

#[test]
fn mistakes_are_refused_at_the_door_with_what_is_wrong() {
    let with = |k: &str, v: Value| {
        let mut d = deployment();
        d[k] = v;
        d
    };
    let without = |k: &str| {
        let mut d = deployment();
        d.as_object_mut().expect("object").remove(k);
        d
    };
    let cases: Vec<(Value, &str)> = vec![
        (with("colour", json!("blue")), "colour"),
        (without("sha"), "sha"),
        (with("sha", json!(" ")), "sha"),
        (with("status", json!("succeeded")), "succeeded"),
        (with("time", json!("2025-04-03 14:05")), "RFC 3339"),
        (with("version", json!(2)), "version"),
        (without("version"), "version"),
        (with("type", json!("build")), "type"),
        (without("type"), "type"),
        (
            json!({"version": 1, "type": "change", "id": "c", "repository": "a/b", "commits": []}),
            "commits",
        ),
        (
            json!({"version": 1, "type": "incident", "id": "i", "incident_id": "1", "service": "s",
                   "status": "triggered", "time": "2025-04-03T14:05:09Z"}),
            "triggered",
        ),
    ];
    for (body, names) in cases {
        let message = refused(&body);
        assert!(message.contains(names), "{body}: {message}");
    }
    // The delivery id is checked like every provider's: an id that is not plain is a 400 of its own.
    let bytes = serde_json::to_vec(&with("id", json!("has spaces"))).expect("JSON");
    assert!(matches!(
        generic().inspect(&HeaderMap::new(), &bytes),
        Err(BodyError::BadDeliveryId)
    ));
}

/// Each fixture's fields are the ones the JSON Schema allows for its type, and it has the ones required.
#[test]
fn the_published_schema_agrees_with_every_fixture() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/schemas/generic-v1.schema.json"
    );
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("the schema")).expect("JSON");
    let names = |v: &Value| -> BTreeSet<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let strings = |v: &Value| -> BTreeSet<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let cases = Case::all(generic());
    assert!(cases.len() >= 2, "{}", fixture_dir(generic()).display());
    let mut types = BTreeSet::new();
    for case in cases {
        let body: Value = serde_json::from_slice(&case.body).expect("JSON");
        let kind = body["type"].as_str().expect("a type").to_string();
        let branch = schema["oneOf"]
            .as_array()
            .expect("oneOf")
            .iter()
            .find(|b| b["properties"]["type"]["const"] == kind.as_str())
            .unwrap_or_else(|| panic!("no schema for {kind}"));
        let allowed = names(&branch["properties"]);
        let present = names(&body);
        assert!(
            present.is_subset(&allowed),
            "{}: {:?} not in the schema",
            case.name,
            present.difference(&allowed).collect::<Vec<_>>()
        );
        let required: BTreeSet<String> = strings(&branch["required"])
            .union(&strings(&schema["required"]))
            .cloned()
            .collect();
        assert!(
            required.is_subset(&present),
            "{}: lacks {required:?}",
            case.name
        );
        types.insert(kind);
    }
    assert_eq!(
        types,
        strings(&schema["properties"]["type"]["enum"]),
        "a fixture of every type"
    );
}
