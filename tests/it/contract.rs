//! One contract for every adapter of the queue and store ports: each check below runs against the embedded
//! adapters (SQLite) and the AWS ones (SQS, DynamoDB, S3 over real HTTP to an AWS-compatible server on
//! the loopback; `./scripts/test.sh` starts one and sets `AWS_ENDPOINT_URL`).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use em_aws::secrets::Layout;
use em_aws::{
    create_resources, sdk_config, AwsNames, DynamoStore, SecretsManagerSecrets, SqsQueue,
};
use em_core::domain::{
    Commit, Deployment, DeploymentOutcome, Fact, IncidentEvent, IncidentEventKind, Push,
};
use em_core::ports::{Cut, MetricsReader, Outbox};
use em_core::ports::{DeadLetters, EnqueueOutcome, Envelope, Queue, SecretSource, Store};
use em_core::rows::{Attribution, ChangeRow, DeploymentRow, IncidentRow, Linked};
use em_sqlite::{EmbeddedStore, Options};

const DAY: i64 = 86_400_000;
/// 2025-03-01T00:00:00Z
const T0: i64 = 1_740_787_200_000;

// ---- the adapters under test ----

fn aws_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("AWS_ENDPOINT_URL").is_err() {
            panic!(
                "the AWS contract tests need an AWS-compatible server: run ./scripts/test.sh, or start \
                 `moto_server -H 127.0.0.1 -p 5000` and set AWS_ENDPOINT_URL=http://127.0.0.1:5000"
            );
        }
        for (k, v) in [
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            if std::env::var(k).is_err() {
                std::env::set_var(k, v);
            }
        }
    });
}

/// Fresh, uniquely named AWS resources, so tests run in parallel on one server.
async fn aws(max_receives: u32, visibility_seconds: u32) -> (DynamoStore, SqsQueue) {
    aws_env();
    let sdk = sdk_config().await;
    let tag = uuid::Uuid::new_v4().simple().to_string()[..10].to_string();
    let names = AwsNames {
        table: format!("contract-{tag}"),
        deliveries_table: format!("contract-{tag}-deliveries"),
        queue: format!("contract-{tag}"),
        dead_letter_queue: Some(format!("contract-{tag}-dlq")),
        bucket: format!("contract-{tag}"),
        retention_days: 30,
    };
    let names = create_resources(&sdk, &names, max_receives, visibility_seconds)
        .await
        .expect("resources");
    let store = DynamoStore::new(&sdk, names.table.clone());
    let queue = SqsQueue::connect(&sdk, &names)
        .await
        .expect("queue")
        .with_wait_seconds(0);
    (store, queue)
}

fn embedded(max_receives: u32, visibility: Duration) -> (tempfile::TempDir, EmbeddedStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(
        dir.path(),
        Options {
            visibility_timeout: visibility,
            max_receives,
            ..Options::default()
        },
    )
    .expect("store");
    (dir, store)
}

/// Runs a store check against both stores.
async fn both_stores<F, Fut>(check: F)
where
    F: Fn(String, Box<dyn StoreAny>) -> Fut,
    Fut: Future<Output = ()>,
{
    let (_dir, e) = embedded(5, Duration::from_secs(30));
    check("embedded".into(), Box::new(e)).await;
    let (d, _) = aws(5, 30).await;
    check("dynamodb".into(), Box::new(d)).await;
}

/// The store port as an object, so one check body serves both adapters.
/// A boxed future borrowing the store.
type Boxed<'a, T> = std::pin::Pin<Box<dyn Future<Output = T> + 'a>>;

trait StoreAny {
    fn put(&self, facts: Vec<Fact>) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>>;
    fn load(
        &self,
        repos: Vec<String>,
        names: Vec<String>,
    ) -> std::pin::Pin<Box<dyn Future<Output = em_core::ports::StoredFacts> + '_>>;
    fn sources(&self) -> std::pin::Pin<Box<dyn Future<Output = em_core::ports::FactSources> + '_>>;
    fn replace(&self, service: &str, d: Linked)
        -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>>;
    fn retain(&self, keep: Vec<String>) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>>;
    fn rows(
        &self,
        services: Option<Vec<String>>,
        from: i64,
        to: i64,
    ) -> std::pin::Pin<Box<dyn Future<Output = WindowRows> + '_>>;
    fn meta(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<String>> + '_>>;
    fn delivery(
        &self,
        repos: Option<Vec<String>>,
        from: i64,
        to: i64,
    ) -> std::pin::Pin<Box<dyn Future<Output = em_core::ports::DeliveryFacts> + '_>>;
    fn shipped(&self, service: &str, shas: Vec<String>) -> Boxed<'_, Vec<(String, i64)>>;
    fn linked(
        &self,
        services: Option<Vec<String>>,
        from: i64,
        to: i64,
    ) -> Boxed<'_, Vec<(String, Linked)>>;
    /// The incidents' events as linking reads them (`Links::incident_events`).
    fn incident_events(
        &self,
        aliases: Vec<String>,
        ids: Vec<String>,
    ) -> Boxed<'_, Vec<IncidentEvent>>;
}

/// What a window's observations say, in a shape easy to compare.
#[derive(Debug, Default, PartialEq)]
struct WindowRows {
    /// (failed, rework)
    deployments: Vec<(bool, bool)>,
    lead_times: Vec<i64>,
    /// Attributed incidents' recovery times.
    recoveries: Vec<Option<i64>>,
}

impl<S: Store + MetricsReader> StoreAny for S {
    fn put(&self, facts: Vec<Fact>) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(async move { self.put_facts(facts).await.expect("put_facts") })
    }
    fn load(
        &self,
        repos: Vec<String>,
        names: Vec<String>,
    ) -> std::pin::Pin<Box<dyn Future<Output = em_core::ports::StoredFacts> + '_>> {
        Box::pin(async move {
            let mut f = self.load_facts(repos, names).await.expect("load_facts");
            f.pushes.sort_by(|a, b| a.after.cmp(&b.after));
            f.deployments
                .sort_by(|a, b| a.deployment_id.cmp(&b.deployment_id));
            f.incident_events
                .sort_by(|a, b| a.event_id.cmp(&b.event_id));
            f
        })
    }
    fn sources(&self) -> std::pin::Pin<Box<dyn Future<Output = em_core::ports::FactSources> + '_>> {
        Box::pin(async move { self.fact_sources().await.expect("fact_sources") })
    }
    fn replace(
        &self,
        service: &str,
        d: Linked,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>> {
        let service = service.to_string();
        Box::pin(async move {
            let v = self.rows_version(service.clone()).await.expect("version");
            assert!(self
                .replace_rows(service, Cut::All, d, v)
                .await
                .expect("replace"));
        })
    }
    fn retain(&self, keep: Vec<String>) -> std::pin::Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(async move { self.retain_rows(keep).await.expect("retain") })
    }
    fn linked(
        &self,
        services: Option<Vec<String>>,
        from: i64,
        to: i64,
    ) -> Boxed<'_, Vec<(String, Linked)>> {
        Box::pin(async move {
            let mut rows = MetricsReader::rows(self, services, from, to)
                .await
                .expect("rows");
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            rows
        })
    }
    fn incident_events(
        &self,
        aliases: Vec<String>,
        ids: Vec<String>,
    ) -> Boxed<'_, Vec<IncidentEvent>> {
        Box::pin(async move {
            use em_core::ports::Links;
            let links = self
                .links(Vec::new(), aliases.clone())
                .await
                .expect("links");
            let mut events = links
                .incident_events(&aliases, &ids)
                .await
                .expect("incident_events");
            events.sort_by(|a, b| a.event_id.cmp(&b.event_id));
            events
        })
    }
    fn rows(
        &self,
        services: Option<Vec<String>>,
        from: i64,
        to: i64,
    ) -> std::pin::Pin<Box<dyn Future<Output = WindowRows> + '_>> {
        Box::pin(async move {
            let o = self
                .observations(services, from, to)
                .await
                .expect("observations");
            let mut r = WindowRows {
                deployments: o.deployments.iter().map(|d| (d.failed, d.rework)).collect(),
                lead_times: o.changes.iter().map(|c| c.lead).collect(),
                recoveries: o
                    .incidents
                    .iter()
                    .filter(|i| i.attributed)
                    .map(|i| i.recovery)
                    .collect(),
            };
            r.deployments.sort();
            r.lead_times.sort();
            r.recoveries.sort();
            r
        })
    }
    fn meta(
        &self,
        key: &str,
        value: Option<&str>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Option<String>> + '_>> {
        let (key, value) = (key.to_string(), value.map(str::to_string));
        Box::pin(async move {
            if let Some(v) = value {
                self.set_meta(key.clone(), v).await.expect("set_meta");
            }
            self.get_meta(key).await.expect("get_meta")
        })
    }
    fn delivery(
        &self,
        repos: Option<Vec<String>>,
        from: i64,
        to: i64,
    ) -> std::pin::Pin<Box<dyn Future<Output = em_core::ports::DeliveryFacts> + '_>> {
        Box::pin(async move {
            let mut f = MetricsReader::delivery(self, repos, from, to)
                .await
                .expect("delivery");
            f.builds.sort_by(|a, b| a.run_id.cmp(&b.run_id));
            f.failed_attempts
                .sort_by(|a, b| a.deployment_id.cmp(&b.deployment_id));
            f.pull_requests.sort_by_key(|p| p.number);
            f
        })
    }
    fn shipped(&self, service: &str, shas: Vec<String>) -> Boxed<'_, Vec<(String, i64)>> {
        let service = service.to_string();
        Box::pin(async move {
            let mut out = MetricsReader::shipped(self, service, shas)
                .await
                .expect("shipped");
            out.sort();
            out
        })
    }
}

// ---- facts ----

fn push(repo: &str, before: &str, after: &str, time: i64) -> Fact {
    Fact::Push(Push {
        provider: "github".into(),
        repo: repo.into(),
        before: before.into(),
        after: after.into(),
        commits: vec![Commit {
            sha: after.into(),
            time,
            message: "change".into(),
        }],
        unlisted: 0,
    })
}

fn deployment(repo: &str, id: &str, time: i64, outcome: DeploymentOutcome) -> Fact {
    Fact::Deployment(Deployment {
        provider: "github".into(),
        repo: repo.into(),
        deployment_id: id.into(),
        environment: "production".into(),
        production: Some(true),
        sha: "b".repeat(40),
        time,
        outcome,
        rollback: false,
        rework: false,
    })
}

fn incident(service_name: &str, event_id: &str, kind: IncidentEventKind, time: i64) -> Fact {
    Fact::Incident(IncidentEvent {
        provider: "pagerduty".into(),
        incident_id: "P1".into(),
        event_id: event_id.into(),
        kind,
        time,
        service_name: service_name.into(),
        title: "down".into(),
        severity: "critical".into(),
    })
}

#[tokio::test]
async fn facts_are_idempotent_and_the_earliest_deployment_report_stands() {
    both_stores(|name, s| async move {
        let facts = vec![
            push("Acme/Shop", "a", "b", T0),
            push("acme/shop", "b", "c", T0 + 1000),
            deployment("acme/shop", "7", T0 + 5000, DeploymentOutcome::Success),
            deployment("acme/shop", "8", T0 + 6000, DeploymentOutcome::Failure),
            incident("Shop API", "e1", IncidentEventKind::Opened, T0 + 9000),
            incident("shop api", "e2", IncidentEventKind::Opened, T0 + 9000),
        ];
        s.put(facts.clone()).await;
        let first = s
            .load(vec!["ACME/shop".into()], vec!["Shop API".into()])
            .await;
        assert_eq!(
            first.pushes.len(),
            2,
            "{name}: repositories match case-insensitively"
        );
        assert_eq!(
            first.deployments.len(),
            1,
            "{name}: only successful deployments"
        );
        assert_eq!(first.deployments[0].time, T0 + 5000);
        assert_eq!(
            first.incident_events.len(),
            1,
            "{name}: incident services match exactly"
        );
        assert_eq!(first.incident_events[0].event_id, "e1");
        // The alert's severity is kept as sent, for the facts and for linking alike.
        assert_eq!(first.incident_events[0].severity, "critical", "{name}");
        let linking = s
            .incident_events(vec!["Shop API".into()], vec!["P1".into()])
            .await;
        assert_eq!(linking.len(), 1, "{name}");
        assert_eq!(linking[0].severity, "critical", "{name}");

        // At-least-once: everything again, then a later and an earlier report of deployment 7.
        s.put(facts).await;
        s.put(vec![deployment(
            "acme/shop",
            "7",
            T0 + 7000,
            DeploymentOutcome::Success,
        )])
        .await;
        assert_eq!(
            s.load(vec!["ACME/shop".into()], vec!["Shop API".into()])
                .await,
            first,
            "{name}: storing facts again changes nothing"
        );
        s.put(vec![deployment(
            "acme/shop",
            "7",
            T0 + 4000,
            DeploymentOutcome::Success,
        )])
        .await;
        let later = s.load(vec!["acme/shop".into()], vec![]).await;
        assert_eq!(
            later.deployments[0].time,
            T0 + 4000,
            "{name}: the earliest report stands"
        );

        let sources = s.sources().await;
        assert_eq!(sources.repositories.len(), 1, "{name}: {sources:?}");
        assert!(sources.repositories[0].eq_ignore_ascii_case("acme/shop"));
        let mut names = sources.incident_services.clone();
        names.sort();
        assert_eq!(names, vec!["Shop API", "shop api"], "{name}");
    })
    .await;
}

#[tokio::test]
async fn pull_requests_builds_and_work_items_are_stored_and_read_back() {
    use em_core::domain::{
        Build, BuildOutcome, PullRequestEvent, PullRequestEventKind, QualityReport, WorkItem,
        WorkItemAction,
    };
    both_stores(|name, s| async move {
        let pr = |kind, time| {
            Fact::PullRequest(PullRequestEvent {
                provider: "github".into(),
                repo: "acme/shop".into(),
                number: 7,
                kind,
                time,
                title: "Speed up checkout".into(),
                sha: (kind == PullRequestEventKind::Merged).then(|| "a".repeat(40)),
            })
        };
        let build = Build {
            provider: "github".into(),
            repo: "Acme/Shop".into(),
            run_id: "289782451".into(),
            attempt: 2,
            name: "ci".into(),
            sha: "3484a3fb816e0859fd6e1cea078d76385ff50625".into(),
            branch: "main".into(),
            outcome: BuildOutcome::Failure,
            started: Some(T0 + 1000),
            finished: T0 + 61_000,
        };
        let item = |time| {
            Fact::WorkItem(WorkItem {
                provider: "github".into(),
                repo: "acme/shop".into(),
                number: 3,
                action: WorkItemAction::Closed,
                time,
                title: "Checkout is slow".into(),
            })
        };
        let gate = QualityReport {
            provider: "sonarqube".into(),
            repo: "acme/shop".into(),
            analysis_id: "AYx1".into(),
            sha: "3484a3fb816e0859fd6e1cea078d76385ff50625".into(),
            branch: "main".into(),
            time: T0 + 70_000,
            passed: Some(false),
            coverage_bp: Some(8125),
            new_issues: Some(3),
        };
        let bare = QualityReport {
            analysis_id: "AYx2".into(),
            passed: None,
            coverage_bp: None,
            new_issues: None,
            ..gate.clone()
        };
        s.put(vec![
            pr(PullRequestEventKind::Opened, T0),
            pr(PullRequestEventKind::Approved, T0 + 10),
            Fact::Build(build.clone()),
            item(T0 + 5),
            Fact::QualityReport(gate.clone()),
            Fact::QualityReport(bare.clone()),
        ])
        .await;
        // Again, with a later report of the opening and an earlier one of the close: the earliest stands.
        s.put(vec![
            pr(PullRequestEventKind::Opened, T0 + 99),
            Fact::Build(build.clone()),
            item(T0 + 1),
            Fact::QualityReport(gate.clone()),
        ])
        .await;
        let mut f = s.load(vec!["ACME/shop".into()], vec![]).await;
        f.pull_requests.sort_by_key(|p| p.time);
        let prs: Vec<(PullRequestEventKind, i64)> =
            f.pull_requests.iter().map(|p| (p.kind, p.time)).collect();
        assert_eq!(
            prs,
            [
                (PullRequestEventKind::Opened, T0),
                (PullRequestEventKind::Approved, T0 + 10)
            ],
            "{name}"
        );
        assert_eq!(f.builds, vec![build.clone()], "{name}");
        assert_eq!(f.work_items.len(), 1, "{name}");
        assert_eq!(
            f.work_items[0].time,
            T0 + 1,
            "{name}: the earliest report stands"
        );
        assert_eq!(f.work_items[0].action, WorkItemAction::Closed, "{name}");
        // Quality reports: once per analysis, every measure as reported (or absent).
        f.quality_reports
            .sort_by(|a, b| a.analysis_id.cmp(&b.analysis_id));
        assert_eq!(
            f.quality_reports,
            vec![gate.clone(), bare.clone()],
            "{name}"
        );
    })
    .await;
}

// ---- metric rows ----

fn derived(days: std::ops::Range<i64>, failed_every: i64) -> Linked {
    let mut d = Linked::default();
    for day in days {
        let t = T0 + day * DAY + 3_600_000;
        let key = format!("github/acme/shop/{day}");
        d.deployments.push(DeploymentRow {
            key: key.clone(),
            repo: "acme/shop".into(),
            environment: "production".into(),
            time: t,
            sha: format!("{day:040}"),
            frontier: None,
            failed: day % failed_every == 0,
            rework: day % 3 == 0,
            rollback: false,
        });
        d.changes.push(ChangeRow {
            sha: format!("c{day}"),
            repo: "acme/shop".into(),
            environment: "production".into(),
            deployment_key: key.clone(),
            deployment_time: t,
            commit_time: t - (day + 1) * 60_000,
            unlisted: 0,
        });
        d.incidents.push(IncidentRow {
            id: format!("i{day}"),
            opened: t + 60_000,
            acknowledged: None,
            resolved: (day % 2 == 0).then_some(t + 60_000 + 600_000),
            attributed_to: (day % 4 != 1).then(|| Attribution {
                deployment_key: key.clone(),
                repo: "acme/shop".into(),
                environment: "production".into(),
            }),
            outage: None,
        });
    }
    d
}

#[tokio::test]
async fn metric_rows_are_replaced_whole_and_read_by_exact_window() {
    both_stores(|name, s| async move {
        s.replace("shop", derived(0..10, 5)).await;
        s.replace("search", derived(3..5, 2)).await;
        // Half-open window [day 2 + 1 h, day 6 + 1 h): the deployments of days 2..=5, each exactly on its
        // instant, so the edges matter.
        let from = T0 + 2 * DAY + 3_600_000;
        let to = T0 + 6 * DAY + 3_600_000;
        let rows = s.rows(Some(vec!["shop".into()]), from, to).await;
        assert_eq!(rows.deployments.len(), 4, "{name}");
        assert_eq!(
            rows.deployments.iter().filter(|d| d.0).count(),
            1,
            "{name}: day 5 failed"
        );
        assert_eq!(
            rows.lead_times,
            vec![180_000, 240_000, 300_000, 360_000],
            "{name}"
        );
        // Incidents open 1 min after each deployment: days 2..=5, of which day 5 is unattributed.
        assert_eq!(
            rows.recoveries,
            vec![None, Some(600_000), Some(600_000)],
            "{name}"
        );

        let all = s.rows(None, T0, T0 + 30 * DAY).await;
        assert_eq!(all.deployments.len(), 12, "{name}: every service");
        let some = s
            .rows(
                Some(vec!["search".into(), "nothing".into()]),
                T0,
                T0 + 30 * DAY,
            )
            .await;
        assert_eq!(
            some.deployments.len(),
            2,
            "{name}: an unknown service is empty"
        );
        assert!(s
            .rows(Some(vec![]), T0, T0 + 30 * DAY)
            .await
            .deployments
            .is_empty());

        // A replacement drops the days that are gone.
        s.replace("shop", derived(8..9, 5)).await;
        let rows = s.rows(Some(vec!["shop".into()]), T0, T0 + 30 * DAY).await;
        assert_eq!(rows.deployments.len(), 1, "{name}");

        s.retain(vec!["shop".into()]).await;
        assert!(
            s.rows(Some(vec!["search".into()]), T0, T0 + 30 * DAY)
                .await
                .deployments
                .is_empty(),
            "{name}: retain drops the others"
        );
        assert_eq!(
            s.rows(None, T0, T0 + 30 * DAY).await.deployments.len(),
            1,
            "{name}"
        );

        assert_eq!(s.meta("fingerprint", None).await, None, "{name}");
        assert_eq!(
            s.meta("fingerprint", Some("abc")).await.as_deref(),
            Some("abc")
        );
        assert_eq!(
            s.meta("fingerprint", Some("def")).await.as_deref(),
            Some("def")
        );
    })
    .await;
}

/// The rows a digest names its changes, recoveries and rollbacks from: each service's, by exact window, with
/// every field as linked (the rollback flag included).
#[tokio::test]
async fn linked_rows_are_read_back_by_service_and_window() {
    both_stores(|name, s| async move {
        let mut shop = derived(0..10, 5);
        shop.deployments[4].rollback = true;
        s.replace("shop", shop.clone()).await;
        s.replace("search", derived(3..5, 2)).await;
        let from = T0 + 2 * DAY + 3_600_000;
        let to = T0 + 6 * DAY + 3_600_000;
        let got = s.linked(Some(vec!["shop".into()]), from, to).await;
        assert_eq!(got.len(), 1, "{name}");
        let (service, rows) = &got[0];
        assert_eq!(service, "shop");
        let mut want = Linked {
            deployments: shop.deployments[2..6].to_vec(),
            changes: shop.changes[2..6].to_vec(),
            incidents: shop.incidents[2..6].to_vec(),
        };
        let mut rows = rows.clone();
        for l in [&mut want, &mut rows] {
            l.deployments.sort_by(|a, b| a.key.cmp(&b.key));
            l.changes.sort_by(|a, b| a.sha.cmp(&b.sha));
            l.incidents.sort_by(|a, b| a.id.cmp(&b.id));
        }
        assert_eq!(rows, want, "{name}: days 2 to 5, as written");
        assert!(rows.deployments.iter().any(|d| d.rollback), "{name}");
        let every = s.linked(None, T0, T0 + 30 * DAY).await;
        let names: Vec<&str> = every.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(names, ["search", "shop"], "{name}: every service");
        assert_eq!(every[0].1.deployments.len(), 2, "{name}");
    })
    .await;
}

#[tokio::test]
async fn a_replacement_of_many_days_switches_at_once() {
    both_stores(|name, s| async move {
        s.replace("shop", derived(0..20, 7)).await;
        // 400 days: far more items than one transaction takes.
        s.replace("shop", derived(0..400, 7)).await;
        let rows = s.rows(Some(vec!["shop".into()]), T0, T0 + 400 * DAY).await;
        assert_eq!(rows.deployments.len(), 400, "{name}");
        assert_eq!(
            rows.deployments.iter().filter(|d| d.0).count(),
            58,
            "{name}"
        );
        s.replace("shop", derived(0..3, 7)).await;
        let rows = s.rows(Some(vec!["shop".into()]), T0, T0 + 400 * DAY).await;
        assert_eq!(rows.deployments.len(), 3, "{name}");
    })
    .await;
}

#[tokio::test]
async fn dynamodb_refuses_a_replacement_from_a_stale_version() {
    let (store, _) = aws(5, 30).await;
    let v0 = store.rows_version("shop".into()).await.unwrap();
    assert!(store
        .replace_rows("shop".into(), Cut::All, derived(0..2, 5), v0)
        .await
        .unwrap());
    let v1 = store.rows_version("shop".into()).await.unwrap();
    assert!(v1 > v0);
    // A recompute that read v0 before the one above landed must not overwrite it...
    assert!(!store
        .replace_rows("shop".into(), Cut::All, derived(0..1, 5), v0)
        .await
        .unwrap());
    // ...even when it would change nothing, the version moves.
    assert!(store
        .replace_rows("shop".into(), Cut::All, derived(0..2, 5), v1)
        .await
        .unwrap());
    assert_eq!(store.rows_version("shop".into()).await.unwrap(), v1 + 1);
    let rows = store
        .observations(Some(vec!["shop".into()]), T0, T0 + 10 * DAY)
        .await
        .unwrap();
    assert_eq!(rows.deployments.len(), 2);

    // Six recomputes that all read the same version before any of them writes (the race of concurrent
    // aggregators, interleaved deterministically): exactly one lands, the others must start over.
    let v = store.rows_version("shop".into()).await.unwrap();
    let mut landed = 0;
    for i in 0..6 {
        landed += usize::from(
            store
                .replace_rows("shop".into(), Cut::All, derived(0..(i + 1), 5), v)
                .await
                .unwrap(),
        );
    }
    assert_eq!(landed, 1);
    let rows = store
        .observations(Some(vec!["shop".into()]), T0, T0 + 10 * DAY)
        .await
        .unwrap();
    assert_eq!(rows.deployments.len(), 1, "the first writer's rows stand");
}

// ---- queues ----

fn envelope(provider: &str, id: &str, body: String) -> Envelope {
    Envelope {
        provider: provider.into(),
        delivery_id: id.into(),
        event: Some("push".into()),
        received_at: T0,
        body: Bytes::from(body),
    }
}

async fn queue_contract<Q: Queue + DeadLetters>(name: &str, q: &Q) {
    let a = envelope("github", "d-1", r#"{"a":"é"}"#.into());
    assert_eq!(
        q.enqueue(a.clone()).await.unwrap(),
        EnqueueOutcome::Accepted,
        "{name}"
    );
    assert_eq!(
        q.enqueue(a.clone()).await.unwrap(),
        EnqueueOutcome::Duplicate,
        "{name}"
    );
    // The same bytes under a fresh delivery id (a replay: GitHub's delivery id is not signed) are a
    // duplicate; other bytes under a fresh id are a delivery.
    assert_eq!(
        q.enqueue(envelope("github", "d-replayed", r#"{"a":"é"}"#.into()))
            .await
            .unwrap(),
        EnqueueOutcome::Duplicate,
        "{name}"
    );
    // Ids are the provider's own: the same id from another provider is another delivery.
    let b = envelope("gitlab", "d-1", r#"{"b":2}"#.into());
    assert_eq!(
        q.enqueue(b.clone()).await.unwrap(),
        EnqueueOutcome::Accepted,
        "{name}"
    );
    // A body larger than one SQS message (GitHub sends up to 25 MB) arrives whole.
    let big = envelope(
        "github",
        "d-big",
        format!(r#"{{"pad":"{}"}}"#, "x".repeat(600 * 1024)),
    );
    assert_eq!(
        q.enqueue(big.clone()).await.unwrap(),
        EnqueueOutcome::Accepted,
        "{name}"
    );

    let mut got: BTreeMap<String, (String, Envelope)> = BTreeMap::new();
    for _ in 0..20 {
        for r in q.receive(10).await.unwrap() {
            assert_eq!(r.receive_count, 1, "{name}");
            got.insert(
                format!("{}/{}", r.envelope.provider, r.envelope.delivery_id),
                (r.receipt, r.envelope),
            );
        }
        if got.len() == 3 {
            break;
        }
    }
    assert_eq!(got.len(), 3, "{name}: {:?}", got.keys().collect::<Vec<_>>());
    assert_eq!(got["github/d-1"].1, a, "{name}");
    assert_eq!(got["gitlab/d-1"].1, b, "{name}");
    assert_eq!(got["github/d-big"].1, big, "{name}");

    q.ack(vec![
        got["github/d-1"].0.clone(),
        got["github/d-big"].0.clone(),
    ])
    .await
    .unwrap();
    q.dead_letter(got["gitlab/d-1"].0.clone(), "cannot parse".into())
        .await
        .unwrap();
    assert!(
        q.receive(10).await.unwrap().is_empty(),
        "{name}: nothing left"
    );
    assert_eq!(q.dead_letter_count().await.unwrap(), 1, "{name}");
    assert_eq!(q.redrive(10).await.unwrap(), 1, "{name}");
    assert_eq!(q.redrive(10).await.unwrap(), 0, "{name}");
    assert_eq!(q.dead_letter_count().await.unwrap(), 0, "{name}");
    let again = q.receive(10).await.unwrap();
    assert_eq!(again.len(), 1, "{name}");
    assert_eq!(again[0].envelope, b, "{name}: redriven as it was");
    q.ack(vec![again[0].receipt.clone()]).await.unwrap();
    // Still a duplicate after processing: the marker outlives the message.
    assert_eq!(
        q.enqueue(a).await.unwrap(),
        EnqueueOutcome::Duplicate,
        "{name}"
    );
}

/// Once-only sends: a claim is a lease, a sent key is final, a lapsed claim is taken over, a settle by an
/// owner that lost its claim changes nothing, and of racing claimants exactly one wins.
async fn outbox_contract<O: Outbox + Clone>(name: &str, o: &O) {
    let key = || "digest/web/week/2025-04-07/slack".to_string();
    let claim = |owner: &str, now: i64, until: i64| o.claim(key(), owner.to_string(), now, until);
    assert!(
        claim("a", 100, 200).await.unwrap(),
        "{name}: a first claim wins"
    );
    assert!(!claim("b", 150, 250).await.unwrap(), "{name}: a held claim");
    assert!(
        claim("b", 200, 300).await.unwrap(),
        "{name}: a lapsed claim is taken over"
    );
    o.settle(key(), "a".into(), false).await.unwrap();
    assert!(
        !claim("c", 250, 350).await.unwrap(),
        "{name}: a's release freed b's claim"
    );
    o.settle(key(), "a".into(), true).await.unwrap();
    assert!(
        claim("c", 300, 400).await.unwrap(),
        "{name}: a's settle marked b's claim sent"
    );
    o.settle(key(), "c".into(), false).await.unwrap();
    assert!(
        claim("d", 301, 400).await.unwrap(),
        "{name}: a released key is free"
    );
    o.settle(key(), "d".into(), true).await.unwrap();
    assert!(
        !claim("e", 10_000, 20_000).await.unwrap(),
        "{name}: a sent key is final"
    );
    assert!(
        o.claim("digest/web/week/2025-04-07/email".into(), "e".into(), 0, 1)
            .await
            .unwrap(),
        "{name}: keys are independent"
    );
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let o = o.clone();
        racers.spawn(async move { o.claim("race".into(), format!("r{i}"), 0, 100).await });
    }
    let wins = racers
        .join_all()
        .await
        .into_iter()
        .filter(|w| *w.as_ref().unwrap())
        .count();
    assert_eq!(wins, 1, "{name}: one of eight racing claims wins");
}

#[tokio::test]
async fn a_send_is_claimed_once_on_both_stores() {
    let (_dir, e) = embedded(5, Duration::from_secs(30));
    outbox_contract("embedded", &e).await;
    let (d, _) = aws(5, 30).await;
    outbox_contract("dynamodb", &d).await;
}

#[tokio::test]
async fn queues_deduplicate_carry_large_bodies_and_redrive_dead_letters() {
    let (_dir, e) = embedded(5, Duration::from_secs(30));
    queue_contract("embedded", &e).await;
    let (_, q) = aws(5, 30).await;
    queue_contract("sqs", &q).await;
}

#[tokio::test]
async fn sqs_offloads_only_what_does_not_fit_and_names_bodies_safely() {
    let (_, q) = aws(5, 30).await;
    let q = q.with_offload_threshold(64);
    let e = envelope(
        "github",
        "id with / and ..",
        r#"{"small":"but over 64 bytes once wrapped in the envelope"}"#.into(),
    );
    assert_eq!(
        q.enqueue(e.clone()).await.unwrap(),
        EnqueueOutcome::Accepted
    );
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].envelope, e);
    let listed = q
        .payloads()
        .client()
        .list_objects_v2()
        .bucket(q.payloads().bucket())
        .send()
        .await
        .unwrap();
    let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
    assert_eq!(keys.len(), 1);
    assert!(
        keys[0].starts_with("github/") && !keys[0].contains(' '),
        "{keys:?}"
    );
    assert_eq!(
        q.delivery_state("github", "id with / and ..")
            .await
            .unwrap()
            .as_deref(),
        Some("queued")
    );
}

// ---- secrets ----

#[tokio::test]
async fn secrets_manager_revokes_a_replaced_secret_and_keeps_two_only_as_a_list() {
    aws_env();
    let sdk = sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let id = format!("webhooks-{}", uuid::Uuid::new_v4().simple());
    client
        .create_secret()
        .name(&id)
        .secret_string(r#"{"github":"old","gitlab":["g1","g2"],"pagerduty":""}"#)
        .send()
        .await
        .unwrap();
    let secrets = SecretsManagerSecrets::new(&sdk, &id, Layout::PerProvider)
        .with_ttl(Duration::from_secs(3600));
    assert_eq!(
        secrets.secrets("github").await.unwrap(),
        Some(vec![b"old".to_vec()])
    );
    assert_eq!(
        secrets.secrets("gitlab").await.unwrap(),
        Some(vec![b"g1".to_vec(), b"g2".to_vec()])
    );
    assert_eq!(
        secrets.secrets("pagerduty").await.unwrap(),
        None,
        "empty is off"
    );
    // The hint is answered to anyone: it never names the secret (an ARN names the account).
    assert!(!secrets.enable_hint("pagerduty").contains(&id));
    assert!(secrets.enable_hint("pagerduty").contains("pagerduty"));

    client
        .put_secret_value()
        .secret_id(&id)
        .secret_string(r#"{"github":"new"}"#)
        .send()
        .await
        .unwrap();
    // Cached for the TTL: the old secret alone until then.
    assert_eq!(
        secrets.secrets("github").await.unwrap(),
        Some(vec![b"old".to_vec()])
    );
    // Replaced is revoked: a reader that has not cached the old version knows only the new one, and a
    // provider left out of the new version is off.
    let fresh = SecretsManagerSecrets::new(&sdk, &id, Layout::PerProvider);
    assert_eq!(
        fresh.secrets("github").await.unwrap(),
        Some(vec![b"new".to_vec()]),
        "the previous version is not accepted"
    );
    assert_eq!(fresh.secrets("gitlab").await.unwrap(), None);
    // Old and new together only when the operator says so, as a list; the new value alone ends it.
    client
        .put_secret_value()
        .secret_id(&id)
        .secret_string(r#"{"github":["new","old"]}"#)
        .send()
        .await
        .unwrap();
    let rotating = SecretsManagerSecrets::new(&sdk, &id, Layout::PerProvider);
    assert_eq!(
        rotating.secrets("github").await.unwrap(),
        Some(vec![b"new".to_vec(), b"old".to_vec()])
    );
    client
        .put_secret_value()
        .secret_id(&id)
        .secret_string(r#"{"github":"new"}"#)
        .send()
        .await
        .unwrap();
    let revoked = SecretsManagerSecrets::new(&sdk, &id, Layout::PerProvider);
    assert_eq!(
        revoked.secrets("github").await.unwrap(),
        Some(vec![b"new".to_vec()])
    );

    let token = SecretsManagerSecrets::new(&sdk, &id, Layout::Single("api"));
    assert!(token.secrets("api").await.unwrap().is_some());
    // The API token rotates the same way: a list while clients move, then the new token alone.
    let token_id = format!("{id}-token");
    client
        .create_secret()
        .name(&token_id)
        .secret_string(r#"["tok-new","tok-old"]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        SecretsManagerSecrets::new(&sdk, &token_id, Layout::Single("api"))
            .secrets("api")
            .await
            .unwrap(),
        Some(vec![b"tok-new".to_vec(), b"tok-old".to_vec()])
    );
    client
        .put_secret_value()
        .secret_id(&token_id)
        .secret_string("tok-new")
        .send()
        .await
        .unwrap();
    assert_eq!(
        SecretsManagerSecrets::new(&sdk, &token_id, Layout::Single("api"))
            .secrets("api")
            .await
            .unwrap(),
        Some(vec![b"tok-new".to_vec()])
    );

    // A recipient removed from the digest addresses is gone at the next read, never merged back.
    let addresses_id = format!("{id}-addresses");
    client
        .create_secret()
        .name(&addresses_id)
        .secret_string(r#"{"payments/email":["lead@example.com","left@example.com"]}"#)
        .send()
        .await
        .unwrap();
    client
        .put_secret_value()
        .secret_id(&addresses_id)
        .secret_string(r#"{"payments/email":"lead@example.com"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(
        SecretsManagerSecrets::new(&sdk, &addresses_id, Layout::PerProvider)
            .secrets("payments/email")
            .await
            .unwrap(),
        Some(vec![b"lead@example.com".to_vec()])
    );

    // Fail closed: a secret that does not exist is an error (a 503), never "no secret needed".
    let missing = SecretsManagerSecrets::new(&sdk, "no-such-secret", Layout::PerProvider);
    assert!(missing.secrets("github").await.is_err());
}

#[tokio::test]
async fn a_provider_secret_is_its_text_a_list_or_its_key_of_a_shared_object() {
    aws_env();
    let sdk = sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let cases: [(&str, Option<Vec<&[u8]>>); 7] = [
        ("  s3cr3t-Only\n", Some(vec![b"s3cr3t-Only"])),
        (r#"["new","","old"]"#, Some(vec![b"new", b"old"])),
        (
            r#"{"GitHub":"from-shared","gitlab":"not-mine"}"#,
            Some(vec![b"from-shared"]),
        ),
        (r#"{"gitlab":"not-mine"}"#, None),
        (r#"{"github":["a","b"]}"#, Some(vec![b"a", b"b"])),
        ("[]", None),
        ("   ", None),
    ];
    for (text, want) in cases {
        let id = format!("webhook-github-{}", uuid::Uuid::new_v4().simple());
        client
            .create_secret()
            .name(&id)
            .secret_string(text)
            .send()
            .await
            .unwrap();
        let own = SecretsManagerSecrets::new(&sdk, &id, Layout::Provider("github".into()));
        let want = want.map(|v| v.into_iter().map(<[u8]>::to_vec).collect::<Vec<_>>());
        assert_eq!(own.secrets("github").await.unwrap(), want, "{text:?}");
        assert_eq!(
            own.secrets("gitlab").await.unwrap(),
            None,
            "{text:?}: only its own"
        );
        assert!(own.enable_hint("github").contains("github"));
        assert!(!own.enable_hint("github").contains(&id));
    }
    // A broken list fails closed, and its error quotes no part of it.
    let id = format!("webhook-github-{}", uuid::Uuid::new_v4().simple());
    client
        .create_secret()
        .name(&id)
        .secret_string(r#"["leaky-secret-value""#)
        .send()
        .await
        .unwrap();
    let own = SecretsManagerSecrets::new(&sdk, &id, Layout::Provider("github".into()));
    let err = own.secrets("github").await.expect_err("fails closed");
    assert!(!err.to_string().contains("leaky"), "{err}");
}

// ---- incremental linking under concurrent aggregators ----

use em_metrics::history::flat;

/// What a whole re-link of `facts` in memory observes.
async fn whole_observations(config: &em_core::config::Config, facts: &[Fact]) -> Vec<String> {
    use em_metrics::link::{relink, Service, Work};
    let service = Service::of(config, "shop");
    let mut memory = em_metrics::memory::MemoryLinks::incremental();
    memory.put(facts.iter().cloned());
    let whole = relink(&memory, &service, &Work::all(&service, &[]))
        .await
        .expect("whole relink");
    let mut o = em_core::rows::Observations::default();
    for (_, day) in em_core::rows::days_of(&whole) {
        o.extend_within(day, i64::MIN, i64::MAX);
    }
    flat(&o)
}

/// Delivers `facts` shuffled, a fifth of them twice, in batches of one to four shared among three
/// aggregators that run at once on `store`, each batch retried until it succeeds (as SQS redelivers).
async fn race<S: Store + MetricsReader>(store: &S, facts: &[Fact], seed: u64) {
    let config = std::sync::Arc::new(em_metrics::history::config());
    let mut rng = fastrand_like(seed);
    let mut delivered = facts.to_vec();
    for f in facts {
        if rng().is_multiple_of(5) {
            delivered.push(f.clone());
        }
    }
    // A deterministic shuffle.
    for i in (1..delivered.len()).rev() {
        delivered.swap(i, (rng() % (i as u64 + 1)) as usize);
    }
    let mut shares: Vec<Vec<Vec<Fact>>> = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut k = 0;
    while !delivered.is_empty() {
        let n = (1 + rng() % 4).min(delivered.len() as u64) as usize;
        shares[k % 3].push(delivered.drain(..n).collect());
        k += 1;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let aggregator = em_aggregator::Aggregator::new(store.clone(), config.clone());
        tasks.spawn(async move {
            for batch in share {
                let mut tries = 0;
                loop {
                    let (results, _) = aggregator
                        .process_facts(vec![batch.clone()], vec![Ok(())])
                        .await;
                    if results[0].is_ok() {
                        break;
                    }
                    tries += 1;
                    assert!(tries < 20, "a batch kept failing: {:?}", results[0]);
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("aggregator task");
    }
}

/// A small deterministic generator (xorshift), so a failing seed replays.
fn fastrand_like(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

async fn racing_aggregators_give_the_whole_relink_on<S, F, Fut>(name: &str, seeds: u64, fresh: F)
where
    S: Store + MetricsReader,
    F: Fn() -> Fut,
    Fut: Future<Output = (Box<dyn std::any::Any>, S)>,
{
    let config = em_metrics::history::config();
    for seed in 0..seeds {
        let facts = em_metrics::history::history(seed);
        let (_guard, store) = fresh().await;
        race(&store, &facts, seed).await;
        let got = store
            .observations(Some(vec!["shop".into()]), T0 - 30 * DAY, T0 + 365 * DAY)
            .await
            .expect("observations");
        assert_eq!(
            flat(&got),
            whole_observations(&config, &facts).await,
            "{name}, seed {seed}"
        );
    }
}

/// Random histories delivered out of order and twice by three aggregators at once give exactly what one
/// whole re-link gives, on both stores: each aggregator re-links from its batch's cut, and one that loses a
/// race to another's write re-links again from stored facts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_aggregators_give_the_whole_relink() {
    racing_aggregators_give_the_whole_relink_on("embedded", 40, || async {
        let (dir, store) = embedded(5, Duration::from_secs(30));
        (Box::new(dir) as Box<dyn std::any::Any>, store)
    })
    .await;
    racing_aggregators_give_the_whole_relink_on("dynamodb", 6, || async {
        let (store, _) = aws(5, 30).await;
        (Box::new(()) as Box<dyn std::any::Any>, store)
    })
    .await;
}

/// A writer that died half-way through a large replacement leaves its mark on the head: while the mark is
/// fresh other writers wait (and their messages are retried); once it is stale, the next writer re-links
/// from the mark's cut, repairing whatever the dead writer left half-written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_writers_mark_blocks_then_is_taken_over_on_dynamodb() {
    use aws_sdk_dynamodb::types::AttributeValue;
    let config = std::sync::Arc::new(em_metrics::history::config());
    let facts = em_metrics::history::history(3);
    let (store, _) = aws(5, 30).await;
    let aggregator = em_aggregator::Aggregator::new(store.clone(), config.clone());
    let (results, _) = aggregator
        .process_facts(vec![facts.clone()], vec![Ok(())])
        .await;
    assert!(results[0].is_ok(), "{results:?}");
    let want = whole_observations(&config, &facts).await;
    let read = || async {
        flat(
            &store
                .observations(Some(vec!["shop".into()]), T0 - 30 * DAY, T0 + 365 * DAY)
                .await
                .expect("observations"),
        )
    };
    assert_eq!(read().await, want);

    // The dead writer: its mark, and every deployment row and day item it had deleted before dying.
    let client = store.client();
    let items = client
        .query()
        .table_name(store.table())
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", AttributeValue::S("m#shop".into()))
        .send()
        .await
        .expect("query")
        .items
        .unwrap_or_default();
    let mut deleted = 0;
    for item in &items {
        let sk = item["sk"].as_s().expect("sk").clone();
        if sk.starts_with("D#") || sk.starts_with("d#") {
            client
                .delete_item()
                .table_name(store.table())
                .key("pk", AttributeValue::S("m#shop".into()))
                .key("sk", AttributeValue::S(sk))
                .send()
                .await
                .expect("delete");
            deleted += 1;
        }
    }
    assert!(deleted > 0);
    let version = store.rows_version("shop".into()).await.expect("version");
    let mark = |at: i64| {
        client
            .update_item()
            .table_name(store.table())
            .key("pk", AttributeValue::S("m#shop".into()))
            .key("sk", AttributeValue::S("#head".into()))
            .update_expression("SET version = :v, busy = :b, busy_at = :at, busy_from = :from")
            .expression_attribute_values(":v", AttributeValue::N((version + 1).to_string()))
            .expression_attribute_values(":b", AttributeValue::S("dead".into()))
            .expression_attribute_values(":at", AttributeValue::N(at.to_string()))
            .expression_attribute_values(
                ":from",
                AttributeValue::N(em_metrics::history::T0.to_string()),
            )
            .send()
    };
    mark(em_core::time::now_millis()).await.expect("mark");
    assert_ne!(read().await, want, "the damage shows");

    // A fresh mark: the writer is taken to be alive; the batch fails, to be retried.
    let again = vec![facts[0].clone()];
    let (results, _) = aggregator
        .process_facts(vec![again.clone()], vec![Ok(())])
        .await;
    assert!(
        matches!(results[0], Err(em_aggregator::Failure::Retry(_))),
        "{results:?}"
    );

    // A stale one: taken over, and the rows from its cut on are linked again.
    mark(1).await.expect("stale mark");
    let (results, _) = aggregator.process_facts(vec![again], vec![Ok(())]).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(read().await, want);
}

/// Facts dated outside 1970–2100 (a signed but broken body's `i64` extremes) are dropped before anything is
/// stored or linked: the batch succeeds, nothing wraps or panics, and the figures are those of the rest.
#[tokio::test]
async fn facts_dated_outside_1970_to_2100_are_dropped() {
    let (_dir, store) = embedded(5, Duration::from_secs(30));
    let config = std::sync::Arc::new(em_metrics::history::config());
    let aggregator = em_aggregator::Aggregator::new(store.clone(), config);
    let mut facts = vec![
        deployment("acme/shop", "far", i64::MAX, DeploymentOutcome::Success),
        deployment("acme/shop", "early", i64::MIN, DeploymentOutcome::Success),
        incident("Shop", "e-min", IncidentEventKind::Opened, i64::MIN),
        push(
            "acme/shop",
            "0000000000000000000000000000000000000000",
            "ffff",
            i64::MAX,
        ),
    ];
    facts.push(deployment(
        "acme/shop",
        "fine",
        T0,
        DeploymentOutcome::Success,
    ));
    let (results, _) = aggregator.process_facts(vec![facts], vec![Ok(())]).await;
    assert!(results[0].is_ok(), "{results:?}");
    let stored = store
        .load_facts(vec!["acme/shop".into()], vec!["Shop".into()])
        .await
        .expect("load");
    let ids: Vec<&str> = stored
        .deployments
        .iter()
        .map(|d| d.deployment_id.as_str())
        .collect();
    assert_eq!(ids, ["fine"]);
    assert!(stored.incident_events.is_empty() && stored.pushes.is_empty());
    let obs = store
        .observations(Some(vec!["shop".into()]), T0 - DAY, T0 + DAY)
        .await
        .expect("observations");
    assert_eq!(obs.deployments.len(), 1);
}

/// A webhook secret stored as a JSON scalar (not the object of provider secrets) is refused without its value
/// reaching the error, the log line or the answer: serde's own message would quote it.
#[tokio::test]
async fn a_scalar_secret_never_reaches_an_error_or_an_answer() {
    aws_env();
    let sdk = sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let id = format!("webhooks-{}", uuid::Uuid::new_v4().simple());
    let value = "s3cr3t-Value-0f-the-webhook";
    client
        .create_secret()
        .name(&id)
        .secret_string(format!("\"{value}\""))
        .send()
        .await
        .unwrap();
    let secrets = SecretsManagerSecrets::new(&sdk, &id, Layout::PerProvider);
    let e = secrets
        .secrets("github")
        .await
        .expect_err("a scalar is refused");
    assert!(!e.message.contains(value), "{}", e.message);
    let r = em_core::error::ApiError::from(e).response();
    assert_eq!(r.status(), 500);
    assert!(
        !r.body().contains(value) && !r.body().contains(&id),
        "{}",
        r.body()
    );
}

#[tokio::test]
async fn delivery_facts_are_read_by_window_with_each_pull_requests_stages() {
    use em_core::domain::{Build, BuildOutcome, PullRequestEvent, PullRequestEventKind};
    use em_core::ports::MergedPullRequest;
    const H: i64 = 3_600_000;
    let merge = format!("abc1234{}", "d".repeat(33));
    let first = "1".repeat(40);
    both_stores(|name, s| {
        let merge = merge.clone();
        let first = first.clone();
        async move {
            let build = |run: &str, started: Option<i64>, finished: i64, outcome| Build {
                provider: "circleci".into(),
                repo: "Acme/Shop".into(),
                run_id: run.into(),
                attempt: 1,
                name: "build".into(),
                sha: "e".repeat(40),
                branch: "main".into(),
                outcome,
                started,
                finished,
            };
            let deployment = |repo: &str, id: &str, time, outcome| Deployment {
                provider: "heroku".into(),
                repo: repo.into(),
                deployment_id: id.into(),
                environment: "production".into(),
                production: None,
                sha: "f".repeat(40),
                time,
                outcome,
                rollback: false,
                rework: false,
            };
            let pr = |number, kind, time, sha: Option<&str>| {
                Fact::PullRequest(PullRequestEvent {
                    provider: "bitbucket".into(),
                    repo: "acme/shop".into(),
                    number,
                    kind,
                    time,
                    title: "Faster checkout".into(),
                    sha: sha.map(str::to_string),
                })
            };
            let b1 = build("b1", Some(T0), T0 + 300_000, BuildOutcome::Success);
            let b2 = build("b2", None, T0 + DAY, BuildOutcome::Failure);
            let failed = deployment("acme/shop", "r-1", T0 + 2 * H, DeploymentOutcome::Failure);
            let other = deployment("acme/other", "r-9", T0 + 3 * H, DeploymentOutcome::Failure);
            s.put(vec![
                Fact::Build(b1.clone()),
                Fact::Build(b2.clone()),
                // Finished after the window.
                Fact::Build(build("b3", None, T0 + 10 * DAY, BuildOutcome::Success)),
                Fact::Deployment(failed.clone()),
                Fact::Deployment(other.clone()),
                Fact::Deployment(deployment(
                    "acme/shop",
                    "r-2",
                    T0 + 4 * H,
                    DeploymentOutcome::Success,
                )),
                pr(7, PullRequestEventKind::Opened, T0 - 2 * DAY, None),
                pr(7, PullRequestEventKind::Reviewed, T0 - DAY, None),
                pr(7, PullRequestEventKind::Approved, T0 - DAY + H, None),
                // A later approval: the earliest stands.
                pr(7, PullRequestEventKind::Approved, T0, None),
                // Bitbucket names the merge commit by a prefix.
                pr(7, PullRequestEventKind::Merged, T0 + H, Some("abc1234")),
                // Merged before the window.
                pr(8, PullRequestEventKind::Merged, T0 - H, Some("9999999")),
                // The push the merge made: the branch's commit and the merge commit.
                Fact::Push(Push {
                    provider: "bitbucket".into(),
                    repo: "acme/shop".into(),
                    before: "0".repeat(40),
                    after: merge.clone(),
                    commits: vec![
                        Commit {
                            sha: first.clone(),
                            time: T0 - 3 * DAY,
                            message: "start".into(),
                        },
                        Commit {
                            sha: merge.clone(),
                            time: T0 + H,
                            message: "Merged in feature".into(),
                        },
                    ],
                    unlisted: 0,
                }),
            ])
            .await;
            // Stored twice: read once.
            s.put(vec![Fact::Build(b1.clone())]).await;
            let expected_pr = MergedPullRequest {
                provider: "bitbucket".into(),
                repo: "acme/shop".into(),
                number: 7,
                merged: T0 + H,
                sha: Some(merge.clone()),
                first_commit: Some(T0 - 3 * DAY),
                opened: Some(T0 - 2 * DAY),
                first_review: Some(T0 - DAY),
                approved: Some(T0 - DAY + H),
            };
            let f = s
                .delivery(Some(vec!["acme/shop".into()]), T0, T0 + 5 * DAY)
                .await;
            assert_eq!(f.builds, vec![b1.clone(), b2.clone()], "{name}");
            assert_eq!(f.failed_attempts, vec![failed.clone()], "{name}");
            assert_eq!(f.pull_requests, vec![expected_pr.clone()], "{name}");
            let all = s.delivery(None, T0, T0 + 5 * DAY).await;
            assert_eq!(all.builds, vec![b1, b2], "{name}");
            assert_eq!(all.failed_attempts, vec![failed, other], "{name}");
            assert_eq!(all.pull_requests, vec![expected_pr], "{name}");
            // A window that ends before the builds is empty of them.
            assert!(
                s.delivery(None, T0 - DAY, T0).await.builds.is_empty(),
                "{name}"
            );

            assert!(
                s.shipped("shop", vec![merge.clone()]).await.is_empty(),
                "{name}"
            );
            let key = "bitbucket/acme/shop/d-1".to_string();
            s.replace(
                "shop",
                Linked {
                    deployments: vec![DeploymentRow {
                        key: key.clone(),
                        repo: "acme/shop".into(),
                        environment: "production".into(),
                        time: T0 + 5 * H,
                        sha: merge.clone(),
                        frontier: None,
                        failed: false,
                        rework: false,
                        rollback: false,
                    }],
                    changes: [&first, &merge]
                        .iter()
                        .map(|sha| ChangeRow {
                            sha: sha.to_string(),
                            repo: "acme/shop".into(),
                            environment: "production".into(),
                            deployment_key: key.clone(),
                            deployment_time: T0 + 5 * H,
                            commit_time: T0,
                            unlisted: 0,
                        })
                        .collect(),
                    incidents: vec![],
                },
            )
            .await;
            assert_eq!(
                s.shipped("shop", vec![merge.clone(), "7".repeat(40)]).await,
                vec![(merge.clone(), T0 + 5 * H)],
                "{name}"
            );
            assert!(s.shipped("search", vec![merge]).await.is_empty(), "{name}");
        }
    })
    .await;
}

// ---- unmapped services ----

/// 10,000 repositories no service maps: the hourly publication is one metric line per configured service
/// and one for all the others; a breakdown by service shows the configured ones and the most active
/// `max_unmapped_services` others, the rest as `unmapped`, adding up to the whole; `/v1/services` lists the
/// unmapped names so that they can be mapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_unmapped_repositories_stay_a_bounded_list() {
    use std::sync::Arc;
    const N: usize = 10_000;
    let config = Arc::new(
        em_core::config::Config::parse(
            r#"
max_unmapped_services = 50
[[services]]
name = "shop"
repositories = ["acme/shop"]
"#,
        )
        .expect("config"),
    );
    let (_dir, store) = embedded(5, Duration::from_secs(30));
    let aggregator = em_aggregator::Aggregator::new(store.clone(), config.clone());
    let deployment = |repo: String, id: usize, time: i64| {
        Fact::Deployment(Deployment {
            provider: "github".into(),
            repo,
            deployment_id: id.to_string(),
            environment: "production".into(),
            production: None,
            sha: format!("{id:040x}"),
            time,
            outcome: DeploymentOutcome::Success,
            rollback: false,
            rework: false,
        })
    };
    let mut facts: Vec<Fact> = (0..N)
        .map(|i| deployment(format!("org/repo-{i:05}"), i, T0 + (i as i64) * 1000))
        .collect();
    // The first 60 repositories deploy twice: the most active.
    facts.extend((0..60).map(|i| deployment(format!("org/repo-{i:05}"), N + i, T0 + DAY)));
    facts.push(deployment("acme/shop".into(), 2 * N, T0 + DAY));
    for chunk in facts.chunks(1000) {
        let (results, _) = aggregator
            .process_facts(
                chunk.iter().map(|f| vec![f.clone()]).collect(),
                vec![Ok(()); chunk.len()],
            )
            .await;
        assert!(results.iter().all(|r| r.is_ok()));
    }

    let services = aggregator.services().await.expect("services");
    assert_eq!(services.len(), N + 1);
    let lines = aggregator.figure_lines(services, T0 + 2 * DAY).await;
    let named: Vec<String> = lines
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("an EMF line");
            v["Service"].as_str().expect("a service").to_string()
        })
        .collect();
    assert_eq!(named, ["shop", "unmapped"]);
    let unmapped: serde_json::Value = serde_json::from_str(&lines[1]).expect("json");
    // The 30 days before T0 + 2 days hold every deployment: 10,060 of the unmapped over 30 days.
    assert!(
        em_agent_tests_close(
            unmapped["DeploymentsPerDay"].as_f64().expect("a rate"),
            (N + 60) as f64 / 30.0
        ),
        "{unmapped}"
    );

    let answer = |path: &'static str, query: &'static str| {
        let route = em_api::ROUTES
            .iter()
            .find(|(p, _)| *p == path)
            .map(|(_, r)| *r)
            .expect("a route");
        em_api::answer(
            &store,
            &config,
            route,
            Some(query).filter(|q| !q.is_empty()),
            T0 + 2 * DAY,
        )
    };
    let listed = answer("/v1/services", "").await.expect("services");
    assert_eq!(listed["services"][0]["name"], "shop");
    assert_eq!(listed["unmapped"]["count"], N);
    assert_eq!(listed["unmapped"]["shown_on_their_own"], 50);
    assert_eq!(
        listed["unmapped"]["repositories"]
            .as_array()
            .expect("names")
            .len(),
        em_api::UNMAPPED_LIST_LIMIT
    );
    assert_eq!(listed["unmapped"]["repositories"][0], "org/repo-00000");
    assert_eq!(listed["unmapped"]["truncated"], true);

    let by_service = answer(
        "/v1/metrics/dora",
        "from=2025-03-01&to=2025-03-03&group_by=service",
    )
    .await
    .expect("a breakdown");
    let groups = by_service["groups"].as_array().expect("groups");
    let names: Vec<&str> = groups
        .iter()
        .map(|g| g["group"].as_str().expect("a name"))
        .collect();
    assert_eq!(names.len(), 1 + 50 + 1, "{names:?}");
    assert!(names.contains(&"shop") && names.contains(&"unmapped"));
    // The 50 shown are among the 60 that deployed twice, the most active; the rest add up.
    assert!(names
        .iter()
        .filter(|n| n.starts_with("org/"))
        .all(|n| n < &"org/repo-00060"));
    let deployments = |g: &serde_json::Value| {
        g["deployment_frequency"]["deployments"]
            .as_u64()
            .unwrap_or(0)
    };
    assert_eq!(
        groups.iter().map(deployments).sum::<u64>(),
        deployments(&by_service)
    );
    assert_eq!(deployments(&by_service), (N + 60 + 1) as u64);
}

fn em_agent_tests_close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-9 * got.abs().max(want.abs())
}
