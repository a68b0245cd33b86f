//! The aggregator over a whole scenario, and `derive` alone.
//!
//! - `aggregate/scenario-basic/process_batch`: every message of `tests/data/scenarios/basic` (as the queue
//!   would hold them: re-deliveries of a delivery id already seen are dropped, as the webhook does) through
//!   `Aggregator::process_batch` in batches of 256 (the `serve` default), on a fresh embedded SQLite store in
//!   a temporary directory per iteration. Opening the store is not timed; every commit is fsync'd, as in
//!   production.
//! - `derive/<largest service>`: `derive` alone on the stored facts of the service with the most facts.

use std::collections::HashSet;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use em_aggregator::Aggregator;
use em_core::config::Config;
use em_core::ports::{Envelope, Store};
use em_metrics::derive::{derive, ServiceFacts};
use em_sqlite::{EmbeddedStore, Options};
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::runtime::Runtime;

const BATCH: usize = 256;

fn scenario_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/data/scenarios/basic")
}

#[derive(serde::Deserialize)]
struct Delivery {
    provider: String,
    headers: std::collections::BTreeMap<String, String>,
    body: String,
}

/// The scenario's deliveries as the queue would hand them to the aggregator, in arrival order.
fn load_envelopes(dir: &Path) -> Vec<Envelope> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("deliveries"))
        .expect("scenario deliveries")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut seen = HashSet::new();
    let mut envelopes = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let text = std::fs::read_to_string(file).expect("delivery file");
        let d: Delivery = serde_json::from_str(&text).expect("delivery JSON");
        let p = em_providers::by_name(&d.provider).expect("known provider");
        let mut headers = HeaderMap::new();
        for (k, v) in &d.headers {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        let inspection = p.inspect(&headers, d.body.as_bytes()).expect("inspect");
        if !seen.insert((p.name, inspection.delivery_id.clone())) {
            continue;
        }
        envelopes.push(Envelope {
            provider: p.name.to_string(),
            delivery_id: inspection.delivery_id,
            event: inspection.event,
            received_at: i as i64,
            body: d.body.into_bytes().into(),
        });
    }
    envelopes
}

fn open_store(dir: &Path) -> EmbeddedStore {
    EmbeddedStore::open(dir, Options::default()).expect("open store")
}

async fn process_all(aggregator: &Aggregator<EmbeddedStore>, envelopes: &[Envelope]) {
    for batch in envelopes.chunks(BATCH) {
        for r in aggregator.process_batch(batch).await {
            r.expect("every scenario message is processed");
        }
    }
}

/// The facts of the service with the most facts, as the reference linking `derive` takes them.
async fn largest_service(store: &EmbeddedStore, config: &Config) -> (String, ServiceFacts) {
    let mut best: Option<(String, ServiceFacts)> = None;
    for s in config.services() {
        let stored = store
            .load_facts(config.repositories_of(&s.name), config.aliases_of(&s.name))
            .await
            .expect("load facts");
        let facts = ServiceFacts::from_stored(config, stored);
        if best.as_ref().is_none_or(|(_, b)| size(b) < size(&facts)) {
            best = Some((s.name.clone(), facts));
        }
    }
    best.expect("the scenario configures services")
}

fn size(f: &ServiceFacts) -> usize {
    f.pushes.iter().map(|p| 1 + p.commits.len()).sum::<usize>()
        + f.deployments.len()
        + f.incident_events.len()
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn bench_aggregate(c: &mut Criterion) {
    let dir = scenario_dir();
    let config =
        Arc::new(Config::load(&dir.join("em-agent.toml")).expect("scenario config em-agent.toml"));
    let envelopes = load_envelopes(&dir);
    let rt = runtime();

    let mut group = c.benchmark_group("aggregate/scenario-basic");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(envelopes.len() as u64));
    group.bench_function(format!("process_batch/{BATCH}"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let tmp = tempfile::tempdir().expect("temp dir");
                let aggregator = Aggregator::new(open_store(tmp.path()), config.clone());
                let start = Instant::now();
                rt.block_on(process_all(&aggregator, &envelopes));
                total += start.elapsed();
                drop(aggregator);
            }
            total
        })
    });
    group.finish();

    // The facts `derive` sees for the largest service once the whole scenario is stored.
    let tmp = tempfile::tempdir().expect("temp dir");
    let store = open_store(tmp.path());
    let aggregator = Aggregator::new(store.clone(), config.clone());
    let (service, facts) = rt.block_on(async {
        process_all(&aggregator, &envelopes).await;
        largest_service(&store, &config).await
    });
    let window = config.attribution_window();
    let mut group = c.benchmark_group("derive");
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(size(&facts) as u64));
    eprintln!(
        "derive/{service}: {} pushes, {} commits, {} production deployments, {} incident events",
        facts.pushes.len(),
        facts.pushes.iter().map(|p| p.commits.len()).sum::<usize>(),
        facts.deployments.len(),
        facts.incident_events.len()
    );
    group.bench_function(service, |b| b.iter(|| derive(black_box(&facts), window)));
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = bench_aggregate
}
criterion_main!(benches);
