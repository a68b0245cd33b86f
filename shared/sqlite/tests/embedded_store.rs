//! The embedded adapters against their port contracts, on a real SQLite file: durable and de-duplicated
//! enqueue, visibility timeout, receive counts, dead-lettering and redrive, idempotent facts and metric rows.

use std::time::Duration;

use bytes::Bytes;
use em_core::domain::{
    Commit, Deployment, DeploymentOutcome, Fact, IncidentEvent, IncidentEventKind, Push,
};
use em_core::ports::{
    Cut, DeadLetters, EnqueueOutcome, Envelope, Links, MetricsReader, Queue, Store,
};
use em_core::rows::{Attribution, ChangeRow, DeploymentRow, IncidentRow, Linked, DAY};
use em_sqlite::{EmbeddedStore, Options};

/// The queue's visibility timeout. The queue tests move the store's clock past it by hand: nothing waits,
/// and no receive can see a message reappear because the machine was slow.
const VISIBILITY: Duration = Duration::from_secs(30);

/// A store whose clock stands still until the test moves it.
struct Timed {
    q: EmbeddedStore,
    now: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Timed {
    fn open(dir: &std::path::Path) -> Timed {
        let now = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(
            em_core::time::now_millis(),
        ));
        let read = now.clone();
        let q = EmbeddedStore::open(
            dir,
            Options {
                visibility_timeout: VISIBILITY,
                max_receives: 2,
                clock: em_core::time::Clock::from_fn(move || {
                    read.load(std::sync::atomic::Ordering::SeqCst)
                }),
                ..Options::default()
            },
        )
        .expect("store opens");
        Timed { q, now }
    }

    /// Moves the clock past the visibility timeout: every received message is visible again.
    fn pass_visibility(&self) {
        self.now.fetch_add(
            VISIBILITY.as_millis() as i64 + 1,
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// Receives once the hidden messages' timeout has passed.
    async fn receive_when_visible(&self) -> Vec<em_core::ports::Received> {
        assert!(
            self.q.receive(10).await.unwrap().is_empty(),
            "visible before the timeout"
        );
        self.pass_visibility();
        self.q.receive(10).await.unwrap()
    }

    /// Lets the received messages time out once more: past their receives, the next receive dead-letters
    /// them instead of handing them over.
    async fn until_dead_lettered(&self, dead_letters: u64) {
        self.pass_visibility();
        assert!(self.q.receive(10).await.unwrap().is_empty());
        assert_eq!(self.q.stats().await.unwrap().dead_letters, dead_letters);
    }
}

fn open(dir: &std::path::Path) -> EmbeddedStore {
    EmbeddedStore::open(
        dir,
        Options {
            visibility_timeout: VISIBILITY,
            max_receives: 2,
            ..Options::default()
        },
    )
    .expect("store opens")
}

/// A body of its own for each delivery: the same bytes under another delivery id are a duplicate.
fn own_body(id: &str) -> String {
    format!(r#"{{"delivery":"{id}"}}"#)
}

fn envelope(provider: &str, id: &str, body: &str) -> Envelope {
    Envelope {
        provider: provider.into(),
        delivery_id: id.into(),
        event: Some("push".into()),
        received_at: 1_700_000_000_000,
        body: Bytes::from(body.to_string()),
    }
}

#[tokio::test]
async fn enqueue_is_deduplicated_per_provider_and_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let q = open(dir.path());
        let a = envelope("github", "d-1", r#"{"a":1}"#);
        assert_eq!(
            q.enqueue(a.clone()).await.unwrap(),
            EnqueueOutcome::Accepted
        );
        assert_eq!(q.enqueue(a).await.unwrap(), EnqueueOutcome::Duplicate);
        // Delivery ids are the provider's own: the same id from another provider is another delivery.
        let b = envelope("gitlab", "d-1", r#"{"b":2}"#);
        assert_eq!(q.enqueue(b).await.unwrap(), EnqueueOutcome::Accepted);
        let s = q.stats().await.unwrap();
        assert_eq!((s.deliveries, s.queued), (2, 2));
    }
    let q = open(dir.path());
    let got = q.receive(10).await.unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].envelope, envelope("github", "d-1", r#"{"a":1}"#));
    assert_eq!(got[1].envelope.body, Bytes::from_static(br#"{"b":2}"#));
    assert!(got.iter().all(|m| m.receive_count == 1));
    // Still known after the reopen: a re-delivery stays a duplicate.
    assert_eq!(
        q.enqueue(envelope("github", "d-1", "{}")).await.unwrap(),
        EnqueueOutcome::Duplicate
    );
}

#[tokio::test]
async fn received_messages_hide_until_the_timeout_then_dead_letter_after_max_receives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Timed::open(dir.path());
    let q = &t.q;
    for id in ["m-1", "m-2", "m-3"] {
        q.enqueue(envelope("github", id, &own_body(id)))
            .await
            .unwrap();
    }
    let first = q.receive(2).await.unwrap();
    assert_eq!(
        first
            .iter()
            .map(|m| m.envelope.delivery_id.as_str())
            .collect::<Vec<_>>(),
        ["m-1", "m-2"]
    );
    // Hidden while being processed: only the third is visible.
    let rest = q.receive(10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].envelope.delivery_id, "m-3");
    assert!(q.receive(10).await.unwrap().is_empty());

    q.ack(vec![first[0].receipt.clone()]).await.unwrap();
    q.dead_letter(rest[0].receipt.clone(), "cannot parse".into())
        .await
        .unwrap();
    // m-2 was never acknowledged: it comes back, received a second time.
    let again = t.receive_when_visible().await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].envelope.delivery_id, "m-2");
    assert_eq!(again[0].receive_count, 2);

    // Two receives without an ack is the limit: it moves to the dead letters instead of coming back.
    t.until_dead_lettered(2).await;
    let s = q.stats().await.unwrap();
    assert_eq!((s.deliveries, s.queued, s.dead_letters), (3, 0, 2));
    let state = |id: &str| q.delivery_state("github".into(), id.into());
    assert_eq!(state("m-1").await.unwrap(), Some("processed"));
    assert_eq!(state("m-2").await.unwrap(), Some("dead_letter"));
    assert_eq!(state("m-3").await.unwrap(), Some("dead_letter"));
    assert_eq!(state("never").await.unwrap(), None);
}

#[tokio::test]
async fn redrive_puts_a_dead_letter_back_as_a_fresh_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let t = Timed::open(dir.path());
    let q = &t.q;
    let original = envelope("github", "r-1", r#"{"ref":"refs/heads/main"}"#);
    q.enqueue(original.clone()).await.unwrap();
    // Received max_receives (2) times without an ack: the next receive dead-letters it.
    assert_eq!(q.receive(10).await.unwrap().len(), 1);
    assert_eq!(t.receive_when_visible().await.len(), 1);
    t.until_dead_lettered(1).await;
    assert_eq!(q.dead_letter_count().await.unwrap(), 1);
    assert_eq!(
        q.delivery_state("github".into(), "r-1".into())
            .await
            .unwrap(),
        Some("dead_letter")
    );

    assert_eq!(q.redrive(100).await.unwrap(), 1);
    assert_eq!(q.dead_letter_count().await.unwrap(), 0);
    let s = q.stats().await.unwrap();
    assert_eq!((s.deliveries, s.queued, s.dead_letters), (1, 1, 0));
    // Visible at once, with its body, and counted as never received: it gets max_receives tries again.
    let back = q.receive(10).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].envelope, original);
    assert_eq!(back[0].receive_count, 1);
    // The delivery is still known: the provider re-sending it is a duplicate, not a second message.
    assert_eq!(
        q.enqueue(original).await.unwrap(),
        EnqueueOutcome::Duplicate
    );
    assert_eq!(q.redrive(100).await.unwrap(), 0);

    q.ack(vec![back[0].receipt.clone()]).await.unwrap();
    assert_eq!(
        q.delivery_state("github".into(), "r-1".into())
            .await
            .unwrap(),
        Some("processed")
    );
}

#[tokio::test]
async fn dead_letters_are_kept_apart_and_redriven_oldest_first_up_to_max() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = open(dir.path());
    // Each message is dead-lettered once the queue is empty, so both had the same queue seq.
    for id in ["old", "new"] {
        q.enqueue(envelope("github", id, &own_body(id)))
            .await
            .unwrap();
        let got = q.receive(10).await.unwrap();
        assert_eq!(got.len(), 1);
        q.dead_letter(got[0].receipt.clone(), "cannot parse".into())
            .await
            .unwrap();
    }
    assert_eq!(q.dead_letter_count().await.unwrap(), 2);

    assert_eq!(q.redrive(1).await.unwrap(), 1);
    assert_eq!(q.dead_letter_count().await.unwrap(), 1);
    let first = q.receive(10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].envelope.delivery_id, "old");

    assert_eq!(q.redrive(0).await.unwrap(), 0);
    assert_eq!(q.redrive(5).await.unwrap(), 1);
    let second = q.receive(10).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].envelope.delivery_id, "new");
    assert_eq!(q.dead_letter_count().await.unwrap(), 0);
}

fn push(after: &str, before: &str, shas: &[(&str, i64)]) -> Fact {
    Fact::Push(Push {
        provider: "github".into(),
        repo: "acme/app".into(),
        before: before.into(),
        after: after.into(),
        commits: shas
            .iter()
            .map(|(sha, t)| Commit {
                sha: sha.to_string(),
                time: *t,
                message: format!("commit {sha}"),
            })
            .collect(),
        unlisted: 0,
    })
}

fn deployment(id: &str, time: i64, outcome: DeploymentOutcome) -> Fact {
    Fact::Deployment(Deployment {
        provider: "github".into(),
        repo: "acme/app".into(),
        deployment_id: id.into(),
        environment: "production".into(),
        production: Some(true),
        sha: "b".into(),
        time,
        outcome,
        rollback: false,
        rework: false,
    })
}

fn incident_event(event_id: &str, kind: IncidentEventKind, time: i64) -> Fact {
    Fact::Incident(IncidentEvent {
        provider: "pagerduty".into(),
        incident_id: "INC1".into(),
        event_id: event_id.into(),
        kind,
        time,
        service_name: "App".into(),
        title: "down".into(),
        severity: "critical".into(),
    })
}

#[tokio::test]
async fn facts_are_idempotent_and_the_earliest_deployment_report_stands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let facts = vec![
        push("b", "a", &[("a1", 10), ("b", 20)]),
        deployment("7", 500, DeploymentOutcome::Success),
        deployment("8", 600, DeploymentOutcome::Failure),
        incident_event("e1", IncidentEventKind::Opened, 700),
        incident_event("e2", IncidentEventKind::Resolved, 900),
    ];
    s.put_facts(facts.clone()).await.unwrap();
    let once = s
        .load_facts(vec!["ACME/app".into()], vec!["App".into()])
        .await
        .unwrap();
    assert_eq!(once.pushes.len(), 1);
    assert_eq!(once.pushes[0].commits.len(), 2);
    // Only successful deployments are loaded: a failed attempt is kept but is no deployment.
    assert_eq!(once.deployments.len(), 1);
    assert_eq!(once.incident_events.len(), 2);

    // The same facts again, and the same deployment reported later and earlier.
    s.put_facts(facts).await.unwrap();
    s.put_facts(vec![deployment("7", 800, DeploymentOutcome::Success)])
        .await
        .unwrap();
    let later = s
        .load_facts(vec!["acme/app".into()], vec!["App".into()])
        .await
        .unwrap();
    assert_eq!(later, once);
    s.put_facts(vec![deployment("7", 400, DeploymentOutcome::Success)])
        .await
        .unwrap();
    let earlier = s
        .load_facts(vec!["acme/app".into()], vec!["App".into()])
        .await
        .unwrap();
    assert_eq!(earlier.deployments[0].time, 400);

    let sources = s.fact_sources().await.unwrap();
    assert_eq!(sources.repositories, vec!["acme/app"]);
    assert_eq!(sources.incident_services, vec!["App"]);
}

fn linked(times: &[i64]) -> Linked {
    Linked {
        deployments: times
            .iter()
            .map(|&t| DeploymentRow {
                key: format!("d{t}"),
                repo: "acme/app".into(),
                environment: "production".into(),
                time: t,
                sha: format!("s{t}"),
                frontier: (t == 300).then(|| "f00dfeed".to_string()),
                failed: t % 2 == 0,
                rework: false,
                rollback: false,
            })
            .collect(),
        changes: times
            .iter()
            .map(|&t| ChangeRow {
                sha: format!("c{t}"),
                repo: "acme/app".into(),
                environment: "production".into(),
                deployment_key: format!("d{t}"),
                deployment_time: t,
                commit_time: t - 5,
                unlisted: 0,
            })
            .collect(),
        incidents: vec![IncidentRow {
            id: format!("i{}", times[0]),
            opened: times[0] + 1,
            acknowledged: None,
            resolved: None,
            attributed_to: Some(Attribution {
                deployment_key: format!("d{}", times[0]),
                repo: "acme/app".into(),
                environment: "production".into(),
            }),
            outage: None,
        }],
    }
}

async fn replace(s: &EmbeddedStore, service: &str, cut: Cut, rows: Linked) {
    let v = s.rows_version(service.into()).await.unwrap();
    assert!(s.replace_rows(service.into(), cut, rows, v).await.unwrap());
}

#[tokio::test]
async fn rows_are_replaced_from_a_cut_and_read_back_as_observations() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let days = [DAY, 2 * DAY, 3 * DAY];
    replace(&s, "a", Cut::All, linked(&days)).await;
    replace(&s, "b", Cut::All, linked(&[DAY + 50])).await;

    // [DAY, 3 DAY): the deployment at 3 DAY is out, the one at DAY is in.
    let o = s
        .observations(Some(vec!["a".into()]), DAY, 3 * DAY)
        .await
        .unwrap();
    assert_eq!(o.deployments.len(), 2);
    assert_eq!(o.changes.iter().map(|c| c.lead).collect::<Vec<_>>(), [5, 5]);
    assert_eq!(o.incidents.len(), 1);
    assert_eq!(
        s.observations(None, 0, 10 * DAY)
            .await
            .unwrap()
            .deployments
            .len(),
        4
    );
    assert!(s
        .observations(Some(vec![]), 0, 10 * DAY)
        .await
        .unwrap()
        .deployments
        .is_empty());

    // From a cut at 2 DAY: the row before it stays, the rows after it are what the re-link says.
    replace(&s, "a", Cut::From(2 * DAY), linked(&[2 * DAY + 7])).await;
    let o = s
        .observations(Some(vec!["a".into()]), 0, 10 * DAY)
        .await
        .unwrap();
    assert_eq!(
        o.deployments.iter().map(|d| d.time).collect::<Vec<_>>(),
        [DAY, 2 * DAY + 7]
    );
    // The link state answers what linking asks.
    let links = s.links(vec![], vec![]).await.unwrap();
    assert_eq!(links.shipped_at("a", "c86400000").await.unwrap(), Some(DAY));
    assert_eq!(
        links.shipped_at("a", "c259200000").await.unwrap(),
        None,
        "gone with its day"
    );
    let before = links
        .deployment_rows_before("a", None, 2 * DAY + 7, "", 2)
        .await
        .unwrap();
    assert_eq!(before.iter().map(|d| d.time).collect::<Vec<_>>(), [DAY]);
    assert!(links
        .deployed_before("a", "acme/app", "s86400000", 2 * DAY, "")
        .await
        .unwrap());
    assert!(!links
        .deployed_before("a", "acme/app", "s86400000", DAY, "")
        .await
        .unwrap());
    // Rollbacks compare deployments of one repository, whatever its letter case.
    assert!(links
        .deployed_before("a", "ACME/App", "s86400000", 2 * DAY, "")
        .await
        .unwrap());
    assert!(!links
        .deployed_before("a", "acme/other", "s86400000", 2 * DAY, "")
        .await
        .unwrap());
    assert!(links
        .deployment_rows_before("a", Some("acme/other"), 2 * DAY + 7, "", 2)
        .await
        .unwrap()
        .is_empty());
    let open = links.incidents_open_at("a", DAY + 2).await.unwrap();
    assert_eq!(open.len(), 1);
    // A later report of an outage reads back naming the outage's first report, and adds nothing to the
    // observations.
    let mut report = linked(&[DAY]);
    report.incidents[0].outage = Some("i0".into());
    replace(&s, "c", Cut::All, report.clone()).await;
    let links = s.links(vec![], vec![]).await.unwrap();
    assert_eq!(
        links
            .incident_rows("c", &[report.incidents[0].id.clone()])
            .await
            .unwrap(),
        report.incidents
    );
    let o = s
        .observations(Some(vec!["c".into()]), 0, 4 * DAY)
        .await
        .unwrap();
    assert!(o.incidents.is_empty() && !o.deployments.is_empty());
    assert!(links.incidents_open_at("a", DAY).await.unwrap().is_empty());

    // A writer that read an older version is refused.
    let v = s.rows_version("a".into()).await.unwrap();
    assert!(!s
        .replace_rows("a".into(), Cut::All, linked(&[DAY]), v - 1)
        .await
        .unwrap());

    s.retain_rows(vec!["b".into()]).await.unwrap();
    let left = s.observations(None, 0, 10 * DAY).await.unwrap();
    assert_eq!(left.deployments.len(), 1);

    assert_eq!(s.get_meta("k".into()).await.unwrap(), None);
    s.set_meta("k".into(), "v".into()).await.unwrap();
    assert_eq!(s.get_meta("k".into()).await.unwrap().as_deref(), Some("v"));
}

#[tokio::test]
async fn commits_keep_the_parent_of_the_first_push_in_key_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(dir.path());
    let push = |before: &str, after: &str, shas: &[&str]| {
        Fact::Push(Push {
            provider: "github".into(),
            repo: "Acme/App".into(),
            before: before.into(),
            after: after.into(),
            commits: shas
                .iter()
                .map(|sha| Commit {
                    sha: sha.to_string(),
                    time: 1,
                    message: "m".into(),
                })
                .collect(),
            unlisted: 0,
        })
    };
    // The same commit in two pushes: "b…" sorts after "a…", so the second push's parent wins whatever order.
    s.put_facts(vec![push("bbbb", "cafe01", &["cafe01"])])
        .await
        .unwrap();
    s.put_facts(vec![push("aaaa", "cafe01", &["cafe01"])])
        .await
        .unwrap();
    s.put_facts(vec![push("bbbb", "cafe01", &["cafe01"])])
        .await
        .unwrap();
    let links = s.links(vec![], vec![]).await.unwrap();
    let c = links.commit("acme/app", "cafe01").await.unwrap().unwrap();
    assert_eq!(c.parent, "aaaa");
    assert_eq!(
        links
            .resolve_prefix("acme/app", "cafe")
            .await
            .unwrap()
            .as_deref(),
        Some("cafe01")
    );
    s.put_facts(vec![push("cafe01", "cafe02", &["cafe02"])])
        .await
        .unwrap();
    // A view is one snapshot: the new commit shows in the next one.
    assert!(links.commit("acme/app", "cafe02").await.unwrap().is_none());
    drop(links);
    let links = s.links(vec![], vec![]).await.unwrap();
    assert_eq!(
        links.resolve_prefix("acme/app", "cafe").await.unwrap(),
        None,
        "ambiguous"
    );
}

/// The embedded store's link state against the reference: random histories delivered shuffled, re-delivered
/// and in small batches, re-linked from each batch's cut on SQLite as the aggregator does, give the
/// observations of a whole re-link in memory.
#[tokio::test]
async fn incremental_links_on_sqlite_give_the_whole_relink() {
    use em_core::rows::{days_of, Observations};
    use em_metrics::history::{config, flat, history};
    use em_metrics::link::{cut_for, relink, Service, Stored, Work};
    use em_metrics::memory::MemoryLinks;

    let config = config();
    let service = Service::of(&config, "shop");
    for seed in 0..60u64 {
        let facts = history(seed);
        let mut memory = MemoryLinks::incremental();
        memory.put(facts.iter().cloned());
        let whole = relink(&memory, &service, &Work::all(&service, &[]))
            .await
            .unwrap();
        let mut want = Observations::default();
        for (_, o) in days_of(&whole) {
            want.extend_within(o, i64::MIN, i64::MAX);
        }

        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(dir.path());
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut delivered = facts.clone();
        delivered.extend(facts.iter().filter(|_| rng.u8(0..4) == 0).cloned());
        rng.shuffle(&mut delivered);
        for batch in delivered.chunks(3) {
            let refs: Vec<&Fact> = batch.iter().collect();
            let work = {
                let links = s.links(vec![], vec![]).await.unwrap();
                cut_for(&links, &service, &refs, Stored::NotYet)
                    .await
                    .unwrap()
            };
            s.put_facts(batch.to_vec()).await.unwrap();
            if let Some(work) = work {
                let v = s.rows_version("shop".into()).await.unwrap();
                let rows = {
                    let links = s.links(vec![], vec![]).await.unwrap();
                    relink(&links, &service, &work).await.unwrap()
                };
                assert!(s
                    .replace_rows("shop".into(), work.cut, rows, v)
                    .await
                    .unwrap());
            }
        }
        let got = s
            .observations(Some(vec!["shop".into()]), i64::MIN, i64::MAX)
            .await
            .unwrap();
        assert_eq!(flat(&got), flat(&want), "seed {seed}");
    }
}

/// A store written before the commit graph existed (pushes, no commits) gets its graph on opening, so a
/// re-link after the upgrade still ships every change.
#[tokio::test]
async fn opening_an_older_store_fills_the_commit_graph_from_its_pushes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let push = Fact::Push(Push {
        provider: "github".into(),
        repo: "acme/app".into(),
        before: "0000".into(),
        after: "b2".into(),
        commits: vec![
            Commit {
                sha: "b1".into(),
                time: 1,
                message: "one".into(),
            },
            Commit {
                sha: "b2".into(),
                time: 2,
                message: "two".into(),
            },
        ],
        unlisted: 0,
    });
    {
        let s = open(dir.path());
        s.put_facts(vec![push]).await.unwrap();
    }
    // As the previous version left it: no commit graph.
    let raw = rusqlite::Connection::open(dir.path().join(em_sqlite::DB_FILE)).unwrap();
    raw.execute("DELETE FROM commits", []).unwrap();
    drop(raw);
    let s = open(dir.path());
    let links = s.links(vec![], vec![]).await.unwrap();
    let b2 = links
        .commit("acme/app", "b2")
        .await
        .unwrap()
        .expect("filled in");
    assert_eq!((b2.parent.as_str(), b2.time), ("b1", 2));
    let b1 = links
        .commit("acme/app", "b1")
        .await
        .unwrap()
        .expect("filled in");
    assert_eq!(b1.parent, "0000");
}

/// A store written before pushes could leave commits unlisted has no `unlisted` columns: opening it adds
/// them, its rows read as having none, and a push that leaves some unlisted keeps the count.
#[tokio::test]
async fn opening_a_store_without_unlisted_columns_adds_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let raw = rusqlite::Connection::open(dir.path().join(em_sqlite::DB_FILE)).unwrap();
        raw.execute_batch(
            "CREATE TABLE pushes (
                repo TEXT NOT NULL COLLATE NOCASE, before_sha TEXT NOT NULL, after_sha TEXT NOT NULL,
                provider TEXT NOT NULL, commits TEXT NOT NULL,
                PRIMARY KEY (repo, before_sha, after_sha)) WITHOUT ROWID;
             CREATE TABLE commits (
                repo TEXT NOT NULL COLLATE NOCASE, sha TEXT NOT NULL, parent TEXT NOT NULL,
                time INTEGER NOT NULL, message TEXT NOT NULL, push_before TEXT NOT NULL,
                push_after TEXT NOT NULL, PRIMARY KEY (repo, sha)) WITHOUT ROWID;
             CREATE TABLE o_changes (
                service TEXT NOT NULL, sha TEXT NOT NULL, repo TEXT NOT NULL, environment TEXT NOT NULL,
                deployment_key TEXT NOT NULL, deployment_time INTEGER NOT NULL,
                commit_time INTEGER NOT NULL, PRIMARY KEY (service, sha)) WITHOUT ROWID;
             INSERT INTO pushes VALUES ('acme/app', '0000', 'a1', 'gitlab',
                '[{\"sha\":\"a1\",\"time\":\"2025-01-01T00:00:00Z\",\"message\":\"m\"}]');
             INSERT INTO commits VALUES ('acme/app', 'a1', '0000', 1, 'm', '0000', 'a1');",
        )
        .unwrap();
    }
    let s = open(dir.path());
    let links = s.links(vec![], vec![]).await.unwrap();
    let a1 = links.commit("acme/app", "a1").await.unwrap().expect("kept");
    assert_eq!((a1.parent.as_str(), a1.unlisted), ("0000", 0));
    drop(links);
    let mut p = match push("b2", "a1", &[("b1", 10), ("b2", 20)]) {
        Fact::Push(p) => p,
        _ => unreachable!(),
    };
    p.unlisted = 25;
    s.put_facts(vec![Fact::Push(p)]).await.unwrap();
    let links = s.links(vec![], vec![]).await.unwrap();
    let b1 = links
        .commit("acme/app", "b1")
        .await
        .unwrap()
        .expect("stored");
    let b2 = links
        .commit("acme/app", "b2")
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        (b1.parent.as_str(), b1.unlisted),
        ("a1", 25),
        "the oldest listed carries them"
    );
    assert_eq!(b2.unlisted, 0);
    drop(links);
    let facts = s
        .load_facts(vec!["acme/app".into()], vec![])
        .await
        .expect("facts");
    let unlisted: Vec<u32> = facts.pushes.iter().map(|p| p.unlisted).collect();
    assert_eq!(unlisted.iter().sum::<u32>(), 25, "{unlisted:?}");
}

/// Delivery markers and dead letters are kept for the retention, as DynamoDB's TTL keeps them: older
/// markers go (but not one whose message is still queued), and so do older dead letters.
#[tokio::test]
async fn markers_and_dead_letters_are_pruned_after_the_retention() {
    use em_core::ports::DeadLetters;
    let dir = tempfile::tempdir().expect("tempdir");
    let q = open(dir.path());
    // Received long ago (2023), processed; and one still queued.
    q.enqueue(envelope("github", "done", &own_body("done")))
        .await
        .unwrap();
    let got = q.receive(10).await.unwrap();
    q.ack(got.iter().map(|m| m.receipt.clone()).collect())
        .await
        .unwrap();
    q.enqueue(envelope("github", "queued", &own_body("queued")))
        .await
        .unwrap();
    q.enqueue(envelope("github", "poison", &own_body("poison")))
        .await
        .unwrap();
    let got = q.receive(10).await.unwrap();
    let poison = got
        .iter()
        .find(|m| m.envelope.delivery_id == "poison")
        .expect("received");
    q.dead_letter(poison.receipt.clone(), "bad".into())
        .await
        .unwrap();
    assert_eq!(q.dead_letter_count().await.unwrap(), 1);

    let now = em_core::time::now_millis();
    let (markers, dead) = q.prune_expired(now).await.unwrap();
    assert_eq!(
        (markers, dead),
        (2, 0),
        "the markers of the processed and the dead-lettered delivery; the dead letter is recent"
    );
    assert_eq!(
        q.enqueue(envelope("github", "done", &own_body("done")))
            .await
            .unwrap(),
        EnqueueOutcome::Accepted,
        "an expired delivery is accepted again"
    );
    assert_eq!(
        q.enqueue(envelope("github", "queued", &own_body("queued")))
            .await
            .unwrap(),
        EnqueueOutcome::Duplicate,
        "a queued one is still known"
    );
    let (_, dead) = q.prune_expired(now + 31 * 86_400_000).await.unwrap();
    assert_eq!(dead, 1);
    assert_eq!(q.dead_letter_count().await.unwrap(), 0);
}
