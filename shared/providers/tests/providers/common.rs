//! What the provider tests share: the fixtures folder and headers.

use std::path::{Path, PathBuf};

use em_core::domain::Fact;
use em_providers::Provider;
use http::{HeaderMap, HeaderName, HeaderValue};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

pub fn fixture_dir(p: &Provider) -> PathBuf {
    Path::new(FIXTURES).join(p.name)
}

pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap_or_else(|e| panic!("{k}: {e}")),
            HeaderValue::from_str(v).unwrap_or_else(|e| panic!("{k}: {e}")),
        );
    }
    h
}

/// Headers from a JSON object of header name to value, as `<case>.headers.json` holds them.
pub fn headers_of(obj: &serde_json::Value) -> HeaderMap {
    let map = obj
        .as_object()
        .unwrap_or_else(|| panic!("headers are a JSON object: {obj}"));
    let pairs: Vec<(&str, &str)> = map
        .iter()
        .map(|(k, v)| {
            let v = v
                .as_str()
                .unwrap_or_else(|| panic!("header {k} is not a string"));
            (k.as_str(), v)
        })
        .collect();
    headers(&pairs)
}

/// A fixture case: `<case>.json`, its optional `<case>.headers.json` and its `<case>.facts.jsonl`.
pub struct Case {
    pub name: String,
    pub body: Vec<u8>,
    pub headers: HeaderMap,
    /// `None` when the facts file is missing: a case without expectations is an error of the test data.
    pub facts: Option<Vec<Fact>>,
}

impl Case {
    pub fn load(p: &Provider, name: &str) -> Case {
        let dir = fixture_dir(p);
        let body = std::fs::read(dir.join(format!("{name}.json")))
            .unwrap_or_else(|e| panic!("{}/{name}.json: {e}", p.name));
        let headers = match std::fs::read(dir.join(format!("{name}.headers.json"))) {
            Ok(text) => headers_of(
                &serde_json::from_slice(&text)
                    .unwrap_or_else(|e| panic!("{}/{name}.headers.json: {e}", p.name)),
            ),
            Err(_) => HeaderMap::new(),
        };
        let facts = std::fs::read_to_string(dir.join(format!("{name}.facts.jsonl")))
            .ok()
            .map(|text| {
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .enumerate()
                    .map(|(i, l)| {
                        serde_json::from_str(l).unwrap_or_else(|e| {
                            panic!("{}/{name}.facts.jsonl line {}: {e}", p.name, i + 1)
                        })
                    })
                    .collect()
            });
        Case {
            name: name.to_string(),
            body,
            headers,
            facts,
        }
    }

    /// Every case of a provider, by name.
    pub fn all(p: &Provider) -> Vec<Case> {
        let dir = fixture_dir(p);
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| {
                e.expect("a directory entry")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .filter(|f| f.ends_with(".json") && !f.ends_with(".headers.json"))
            .map(|f| f.trim_end_matches(".json").to_string())
            .collect();
        names.sort();
        names.iter().map(|n| Case::load(p, n)).collect()
    }
}
