//! Property tests: arbitrary bytes and mutated real payloads never make a provider's `inspect` or `parse`
//! panic, whatever their shape (the webhook turns their errors into a 400, the aggregator into a
//! dead-lettered message; a panic would be a 5xx or a lost batch).

use std::sync::OnceLock;

use http::HeaderMap;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::Value;

use crate::common::Case;

/// Every fixture of every provider: its provider, its event (as `inspect` reads it) and its JSON.
fn fixtures() -> &'static [(&'static em_providers::Provider, Option<String>, Value)] {
    static ALL: OnceLock<Vec<(&'static em_providers::Provider, Option<String>, Value)>> =
        OnceLock::new();
    ALL.get_or_init(|| {
        let mut out = Vec::new();
        for p in em_providers::all() {
            for case in Case::all(p) {
                let event = p
                    .inspect(&case.headers, &case.body)
                    .ok()
                    .and_then(|i| i.event);
                if let Ok(v) = serde_json::from_slice(&case.body) {
                    out.push((*p, event, v));
                }
            }
        }
        assert!(!out.is_empty(), "no fixtures");
        out
    })
}

/// Something to put where a JSON value was: every type, the extremes of numbers, odd strings.
fn a_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        Just(Value::from(i64::MIN)),
        Just(Value::from(u64::MAX)),
        any::<f64>().prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
        Just(Value::String("9999-12-31T23:59:59Z".into())),
        Just(Value::String("0000-01-01T00:00:00Z".into())),
        Just(Value::Array(vec![])),
        Just(Value::Object(Default::default())),
    ]
}

/// The `n`-th node of `v` in depth-first order, replaced by `with`; `n` counts down as nodes are passed.
fn replace_node(v: &mut Value, n: &mut usize, with: &Value) -> bool {
    if *n == 0 {
        *v = with.clone();
        return true;
    }
    *n -= 1;
    match v {
        Value::Array(items) => items.iter_mut().any(|x| replace_node(x, n, with)),
        Value::Object(map) => map.values_mut().any(|x| replace_node(x, n, with)),
        _ => false,
    }
}

fn count_nodes(v: &Value) -> usize {
    1 + match v {
        Value::Array(items) => items.iter().map(count_nodes).sum(),
        Value::Object(map) => map.values().map(count_nodes).sum(),
        _ => 0,
    }
}

fn check(p: &em_providers::Provider, event: Option<&str>, body: &[u8]) {
    let _ = p.inspect(&HeaderMap::new(), body);
    let _ = p.parse(event, body);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        event in proptest::option::of("[a-z_]{1,24}"),
    ) {
        for p in em_providers::all() {
            check(p, event.as_deref(), &body);
        }
    }

    #[test]
    fn real_payloads_with_a_value_replaced_never_panic(
        which in any::<Index>(),
        edits in proptest::collection::vec((any::<Index>(), a_value()), 1..6),
    ) {
        let all = fixtures();
        let (p, event, json) = &all[which.index(all.len())];
        let mut json = json.clone();
        for (at, with) in &edits {
            let mut n = at.index(count_nodes(&json));
            replace_node(&mut json, &mut n, with);
        }
        let body = serde_json::to_vec(&json).unwrap_or_default();
        check(p, event.as_deref(), &body);
    }

    #[test]
    fn real_payloads_with_bytes_flipped_cut_or_inserted_never_panic(
        which in any::<Index>(),
        edits in proptest::collection::vec((any::<Index>(), any::<u8>(), 0u8..3), 1..8),
    ) {
        let all = fixtures();
        let (p, event, json) = &all[which.index(all.len())];
        let mut body = serde_json::to_vec(json).unwrap_or_default();
        for (at, byte, op) in edits {
            let i = at.index(body.len().max(1)).min(body.len());
            match op {
                0 if i < body.len() => body[i] = byte,
                1 if i < body.len() => {
                    body.remove(i);
                }
                _ => body.insert(i, byte),
            }
        }
        check(p, event.as_deref(), &body);
    }
}
