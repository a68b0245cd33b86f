//! The cost of accepting and of parsing one delivery, per provider, on real payloads.
//!
//! Each group is one payload and has three functions:
//! - `floor`: HMAC-SHA256 of the body plus `serde_json::from_slice::<Value>` of it, the least any
//!   authenticate-and-read-JSON step can cost;
//! - `hmac-sha256`: the HMAC alone, to tell the signature's share from the JSON's;
//! - `authenticate+inspect`: what `POST /webhooks/{provider}` does before it enqueues (signature or token
//!   check, JSON validation, delivery id);
//! - `authenticate+parse`: signature check plus parsing into facts, what the aggregator does per message
//!   (it trusts the queue and does not authenticate again; the sum keeps the two paths comparable).
//!
//! Throughput is in bytes of body. The payloads are in `benches/data/` (see `SOURCES.md` there). Every
//! registered provider is also measured on its sample fixture (`<provider>/sample`), so a new provider is
//! benchmarked without editing this file.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use em_providers::{Clock, Provider};
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;

const SECRET: &[u8] = b"bench-secret-0123456789abcdef";

struct Case {
    provider: &'static str,
    /// Group name: `provider/event`.
    name: &'static str,
    file: &'static str,
    /// Headers the provider sends besides its signature or token.
    headers: &'static [(&'static str, &'static str)],
    /// The event name handed to `parse`, as the ingest path records it.
    event: Option<&'static str>,
}

const CASES: &[Case] = &[
    Case {
        provider: "github",
        name: "github/push",
        file: "github/push-branch.json",
        headers: &[
            ("x-github-event", "push"),
            ("x-github-delivery", "6f0c4a1e-5b9a-11ee-8c99-0242ac120002"),
        ],
        event: Some("push"),
    },
    Case {
        provider: "github",
        name: "github/deployment_status",
        file: "github/deployment_status-success.json",
        headers: &[
            ("x-github-event", "deployment_status"),
            ("x-github-delivery", "7a1d5b2f-5b9a-11ee-8c99-0242ac120002"),
        ],
        event: Some("deployment_status"),
    },
    Case {
        provider: "gitlab",
        name: "gitlab/push",
        file: "gitlab/push-hook.json",
        headers: &[
            ("x-gitlab-event", "Push Hook"),
            ("idempotency-key", "66de3655-589f-4d45-85f1-c8ea96a11c29"),
        ],
        event: Some("Push Hook"),
    },
    Case {
        provider: "gitlab",
        name: "gitlab/deployment",
        file: "gitlab/deployment-hook.json",
        headers: &[
            ("x-gitlab-event", "Deployment Hook"),
            ("idempotency-key", "0f3c2b6e-8d1a-4c57-9e0b-5a7d2c1e4f68"),
        ],
        event: Some("Deployment Hook"),
    },
    Case {
        provider: "pagerduty",
        name: "pagerduty/incident",
        file: "pagerduty/incident.triggered.json",
        headers: &[],
        event: None,
    },
];

fn load(file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("benches/data")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn signed_headers(p: &Provider, case: &Case, body: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    for (k, v) in case.headers {
        headers.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    for (k, v) in p.sign(SECRET, body, 0) {
        headers.insert(
            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).expect("header name"),
            HeaderValue::from_str(&v).expect("header value"),
        );
    }
    headers
}

fn hmac(body: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET).expect("any key length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn floor(body: &[u8]) -> ([u8; 32], serde_json::Value) {
    let value = serde_json::from_slice::<serde_json::Value>(body).expect("fixture is JSON");
    (hmac(body), value)
}

/// The two paths of a delivery through the product, as one group's functions.
fn bench_paths(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    p: &Provider,
    headers: &HeaderMap,
    body: &[u8],
    event: Option<&str>,
) {
    let secrets = vec![SECRET.to_vec()];
    group.bench_function("authenticate+inspect", |b| {
        b.iter(|| {
            p.authenticate(black_box(headers), black_box(body), &secrets, Clock::at(0))
                .expect("authentic");
            p.inspect(black_box(headers), black_box(body))
                .expect("inspectable")
        })
    });
    group.bench_function("authenticate+parse", |b| {
        b.iter(|| {
            p.authenticate(black_box(headers), black_box(body), &secrets, Clock::at(0))
                .expect("authentic");
            p.parse(black_box(event), black_box(body))
                .expect("parseable")
        })
    });
}

fn bench_ingest(c: &mut Criterion) {
    let secrets = vec![SECRET.to_vec()];
    for case in CASES {
        let p = em_providers::by_name(case.provider).expect("known provider");
        let body = load(case.file);
        let headers = signed_headers(p, case, &body);

        // The paths must succeed on these payloads, or the figures would measure an early error.
        p.authenticate(&headers, &body, &secrets, Clock::at(0))
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let inspection = p
            .inspect(&headers, &body)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(inspection.event.as_deref(), case.event, "{}", case.name);
        p.parse(case.event, &body)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));

        let mut group = c.benchmark_group(case.name);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("floor", |b| b.iter(|| floor(black_box(&body))));
        group.bench_function("hmac-sha256", |b| b.iter(|| hmac(black_box(&body))));
        bench_paths(&mut group, p, &headers, &body, case.event);
        group.finish();
    }
}

/// Each registered provider's sample fixture, with the headers recorded beside it.
fn bench_samples(c: &mut Criterion) {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for p in em_providers::all() {
        let dir = fixtures.join(p.name);
        let body = std::fs::read(dir.join(format!("{}.json", p.sample))).expect("the sample");
        let mut headers = HeaderMap::new();
        if let Ok(text) = std::fs::read(dir.join(format!("{}.headers.json", p.sample))) {
            let map: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&text).expect("a headers file");
            for (k, v) in map {
                headers.insert(
                    HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                    HeaderValue::from_str(v.as_str().unwrap_or_default()).expect("header value"),
                );
            }
        }
        for (k, v) in p.sign(SECRET, &body, 0) {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(&v).expect("header value"),
            );
        }
        let inspection = p.inspect(&headers, &body).expect("the sample inspects");
        let event = inspection.event.clone();
        assert!(!p.parse(event.as_deref(), &body).expect("parses").is_empty());

        let mut group = c.benchmark_group(format!("{}/sample", p.name));
        group.throughput(Throughput::Bytes(body.len() as u64));
        bench_paths(&mut group, p, &headers, &body, event.as_deref());
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = bench_ingest, bench_samples
}
criterion_main!(benches);
