//! A year of generated history through the embedded aggregator (`cargo bench --bench history`).
//!
//! The generator: `SERVICES` services (default 200, env `EM_BENCH_SERVICES`), each one repository and one
//! incident service, ten services to a team. Every service deploys the latest commit to production four times
//! a day, each deployment after two pushes of 1–3 commits, and has an incident (trigger, acknowledgement,
//! resolution) every ten days; service 0 deploys eight times a day. A year: 2025-01-01 to 2026-01-01, about
//! 13 deliveries per service-day (200 services: about 0.9 million).
//!
//! Measured (medians and percentiles over the runs, printed):
//! 1. per-delivery cost: 300 new deliveries of service 0 (push, then deployment), each processed alone
//!    (`process_facts`, as a batch of one), on an empty store and on one holding the year, interleaved: p50/p90
//!    of each and their ratio;
//! 2. throughput: the whole year through `process_facts` in batches of 256, in time order;
//! 3. a team's 365-day DORA query (`MetricsReader::observations` + the figures): p50/p95 over 200 runs.
//!
//! Facts go in without their JSON (the providers' parsing is benched in `em-providers`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use em_aggregator::Aggregator;
use em_core::config::Config;
use em_core::domain::{
    Commit, Deployment, DeploymentOutcome, Fact, IncidentEvent, IncidentEventKind, Push,
};
use em_core::ports::MetricsReader;
use em_core::time::Millis;
use em_metrics::dora::{compute, Scope, Window};
use em_sqlite::{EmbeddedStore, Options};

const DAY: Millis = 86_400_000;
/// Deliveries per aggregator batch in the bulk load (env `EM_BENCH_BATCH`).
fn batch() -> usize {
    std::env::var("EM_BENCH_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}
/// 2025-01-01T00:00:00Z
const START: Millis = 1_735_689_600_000;

struct Generator {
    rng: fastrand::Rng,
    heads: Vec<String>,
    counter: u64,
}

impl Generator {
    fn new(services: usize) -> Self {
        Generator {
            rng: fastrand::Rng::with_seed(7),
            heads: vec![em_core::domain::NULL_SHA.to_string(); services],
            counter: 0,
        }
    }

    fn sha(&mut self) -> String {
        self.counter += 1;
        format!("{:040x}", (self.counter as u128) * 0x9e37_79b9_7f4a_7c15)
    }

    fn push(&mut self, s: usize, t: Millis) -> Fact {
        let n = self.rng.usize(1..=3);
        let before = self.heads[s].clone();
        let commits: Vec<Commit> = (0..n)
            .map(|i| Commit {
                sha: self.sha(),
                time: t - (n - i) as Millis * 600_000,
                message: if self.rng.u8(0..30) == 0 {
                    "Revert \"a change\"".into()
                } else {
                    "a change".into()
                },
            })
            .collect();
        let after = commits.last().map(|c| c.sha.clone()).unwrap_or_default();
        self.heads[s] = after.clone();
        Fact::Push(Push {
            provider: "github".into(),
            repo: format!("acme/svc-{s}"),
            before,
            after,
            commits,
            unlisted: 0,
        })
    }

    fn deployment(&mut self, s: usize, t: Millis) -> Fact {
        self.counter += 1;
        Fact::Deployment(Deployment {
            provider: "github".into(),
            repo: format!("acme/svc-{s}"),
            deployment_id: format!("{}", self.counter),
            environment: "production".into(),
            production: None,
            sha: self.heads[s].clone(),
            time: t,
            outcome: DeploymentOutcome::Success,
            rollback: false,
            rework: false,
        })
    }

    fn incident(&mut self, s: usize, t: Millis) -> Vec<Fact> {
        self.counter += 1;
        let id = format!("P{}", self.counter);
        [
            (IncidentEventKind::Opened, 0),
            (IncidentEventKind::Acknowledged, 300_000),
            (IncidentEventKind::Resolved, 3_600_000),
        ]
        .into_iter()
        .map(|(kind, after)| {
            Fact::Incident(IncidentEvent {
                provider: "pagerduty".into(),
                incident_id: id.clone(),
                event_id: format!("{id}-{}", kind.as_str()),
                kind,
                time: t + after,
                service_name: format!("Svc {s}"),
                title: "down".into(),
                severity: String::new(),
            })
        })
        .collect()
    }

    /// One day of every service, as deliveries of one fact each, in time order.
    fn day(&mut self, services: usize, day: i64) -> Vec<(Millis, Fact)> {
        let mut out = Vec::new();
        let base = START + day * DAY;
        for s in 0..services {
            let deploys = if s == 0 { 8 } else { 4 };
            for k in 0..deploys {
                let t = base + 8 * 3_600_000 + k * 5_400_000 + self.rng.i64(0..600_000);
                out.push((t - 2_400_000, self.push(s, t - 2_400_000)));
                out.push((t - 1_200_000, self.push(s, t - 1_200_000)));
                out.push((t, self.deployment(s, t)));
            }
            if (day + s as i64) % 10 == 0 {
                let t = base + 11 * 3_600_000;
                out.extend(self.incident(s, t).into_iter().map(|f| (t, f)));
            }
        }
        out.sort_by_key(|(t, _)| *t);
        out
    }
}

fn config(services: usize) -> Config {
    let mut toml = String::from("incident_attribution_window = \"24h\"\n");
    for s in 0..services {
        toml.push_str(&format!(
            "[[services]]\nname = \"svc-{s}\"\nteam = \"t{}\"\nrepositories = [\"acme/svc-{s}\"]\naliases = [\"Svc {s}\"]\n",
            s / 10
        ));
    }
    Config::parse(&toml).expect("generated config")
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted[rank - 1]
}

async fn process_one(aggregator: &Aggregator<EmbeddedStore>, f: Fact) -> Duration {
    let start = Instant::now();
    let (results, _) = aggregator.process_facts(vec![vec![f]], vec![Ok(())]).await;
    let took = start.elapsed();
    assert!(results.iter().all(|r| r.is_ok()));
    took
}

fn main() {
    let services: usize = std::env::var("EM_BENCH_SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = Arc::new(config(services));
    let mut gen = Generator::new(services);
    let mut year = Vec::new();
    for day in 0..365 {
        year.extend(gen.day(services, day).into_iter().map(|(_, f)| f));
    }
    // The deliveries measured one by one: service 0 on the day after the year.
    let probe: Vec<Fact> = (0..150)
        .flat_map(|k| {
            let t = START + 365 * DAY + k * 300_000;
            [gen.push(0, t), gen.deployment(0, t + 60_000)]
        })
        .collect();
    println!(
        "generated: {services} services, {} deliveries in a year",
        year.len()
    );

    rt.block_on(async {
        let empty_dir = tempfile::tempdir().expect("tempdir");
        let empty = Aggregator::new(
            EmbeddedStore::open(empty_dir.path(), Options::default()).expect("store"),
            config.clone(),
        );
        empty.ensure_config_current().await.expect("config");

        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
        let aggregator = Aggregator::new(store.clone(), config.clone());
        aggregator.ensure_config_current().await.expect("config");
        let start = Instant::now();
        for batch in year.chunks(batch()) {
            let n = batch.len();
            let parsed = batch.iter().map(|f| vec![f.clone()]).collect();
            let (results, _) = aggregator.process_facts(parsed, vec![Ok(()); n]).await;
            assert!(results.iter().all(|r| r.is_ok()));
        }
        let took = start.elapsed();
        println!(
            "year through the aggregator: {} deliveries in {:.1} s ({:.0}/s)",
            year.len(),
            took.as_secs_f64(),
            year.len() as f64 / took.as_secs_f64()
        );

        // Reopened, so the bulk load's write-ahead log is checkpointed before measuring, as on a server that
        // has been running.
        drop(aggregator);
        drop(store);
        let store = EmbeddedStore::open(dir.path(), Options::default()).expect("store");
        let aggregator = Aggregator::new(store.clone(), config.clone());
        // Interleaved, one delivery to each store in turn, so both see the same machine (the bulk load's
        // writeback, other processes).
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        for f in &probe {
            cold.push(process_one(&empty, f.clone()).await);
            warm.push(process_one(&aggregator, f.clone()).await);
        }
        cold.sort();
        warm.sort();
        let (c50, c90) = (percentile(&cold, 50), percentile(&cold, 90));
        let (w50, w90) = (percentile(&warm, 50), percentile(&warm, 90));
        println!(
            "per delivery, empty store: p50 {:.3} ms, p90 {:.3} ms",
            c50.as_secs_f64() * 1e3,
            c90.as_secs_f64() * 1e3
        );
        println!(
            "per delivery, a year stored: p50 {:.3} ms, p90 {:.3} ms; p90 ratio {:.2}",
            w50.as_secs_f64() * 1e3,
            w90.as_secs_f64() * 1e3,
            w90.as_secs_f64() / c90.as_secs_f64()
        );

        let team = config.services_of_team("t0");
        let to = START + 365 * DAY;
        let window = Window {
            from: to - 365 * DAY,
            to,
            from_text: String::new(),
            to_text: String::new(),
        };
        let mut times = Vec::new();
        let mut deployments = 0;
        for _ in 0..200 {
            let start = Instant::now();
            let obs = store
                .observations(Some(team.clone()), window.from, window.to)
                .await
                .expect("query");
            let r = compute(
                Scope {
                    service: None,
                    team: Some("t0".into()),
                },
                &window,
                &obs,
            );
            times.push(start.elapsed());
            deployments = r.deployment_frequency.deployments;
        }
        times.sort();
        println!(
            "team t0 ({} services), 365-day query: p50 {:.2} ms, p95 {:.2} ms ({deployments} deployments)",
            team.len(),
            percentile(&times, 50).as_secs_f64() * 1e3,
            percentile(&times, 95).as_secs_f64() * 1e3
        );
    });
}
