//! The incremental linker against the reference and against itself: random histories delivered whole, or
//! shuffled, re-delivered and in small batches, must give the same rows.

use em_core::config::Config;
use em_core::domain::{Fact, IncidentEventKind, NULL_SHA};
use em_core::ports::{Cut, StoredFacts};
use em_core::rows::Linked;
use em_core::time::Millis;
use em_metrics::derive::{derive, ServiceFacts};
use em_metrics::history::{config, deployment, history, incident, push};
use em_metrics::link::{cut_for, relink, Service, Stored};
use em_metrics::memory::MemoryLinks;

use em_metrics::history::{H, T0};

async fn whole(config: &Config, facts: &[Fact]) -> Linked {
    let mut links = MemoryLinks::incremental();
    links.put(facts.iter().cloned());
    let service = Service::of(config, "shop");
    let refs: Vec<&Fact> = facts.iter().collect();
    let work = cut_for(&MemoryLinks::whole(), &service, &refs, Stored::NotYet)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(work.cut, Cut::All);
    relink(&links, &service, &work).await.unwrap()
}

/// Delivers `facts` in batches, re-linking from each batch's cut, as the aggregator does.
async fn incrementally(config: &Config, batches: &[Vec<Fact>]) -> Linked {
    let mut links = MemoryLinks::incremental();
    let service = Service::of(config, "shop");
    for batch in batches {
        let refs: Vec<&Fact> = batch.iter().collect();
        let work = cut_for(&links, &service, &refs, Stored::NotYet)
            .await
            .unwrap();
        links.put(batch.iter().cloned());
        if let Some(work) = work {
            let rows = relink(&links, &service, &work).await.unwrap();
            links.replace_rows("shop", work.cut, rows);
        }
    }
    links.rows("shop")
}

fn stored(facts: &[Fact]) -> StoredFacts {
    let mut s = StoredFacts::default();
    let mut seen_deployments = std::collections::BTreeSet::new();
    for f in facts {
        match f {
            Fact::Push(p) => s.pushes.push(p.clone()),
            Fact::Deployment(d) => {
                if seen_deployments.insert(d.deployment_id.clone()) {
                    s.deployments.push(d.clone())
                }
            }
            Fact::Incident(i) => s.incident_events.push(i.clone()),
            Fact::PullRequest(_) | Fact::Build(_) | Fact::WorkItem(_) | Fact::QualityReport(_) => {}
        }
    }
    s
}

/// The whole re-link agrees with the reference on every row it shares with it.
fn assert_matches_reference(config: &Config, facts: &[Fact], linked: &Linked, seed: u64) {
    let reference = derive(
        &ServiceFacts::from_stored(config, stored(facts)),
        config.attribution_window(),
    );
    let mut want: Vec<_> = reference
        .deployments
        .iter()
        .map(|d| (d.key.clone(), d.time, d.sha.clone(), d.failed, d.rework))
        .collect();
    want.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let got: Vec<_> = linked
        .deployments
        .iter()
        .map(|d| (d.key.clone(), d.time, d.sha.clone(), d.failed, d.rework))
        .collect();
    assert_eq!(got, want, "deployments, seed {seed}");
    let mut want: Vec<_> = reference
        .changes
        .iter()
        .map(|c| {
            (
                c.sha.clone(),
                c.deployment_key.clone(),
                c.commit_time,
                c.unlisted,
            )
        })
        .collect();
    want.sort();
    let got: Vec<_> = linked
        .changes
        .iter()
        .map(|c| {
            (
                c.sha.clone(),
                c.deployment_key.clone(),
                c.commit_time,
                c.unlisted,
            )
        })
        .collect();
    assert_eq!(got, want, "changes, seed {seed}");
    let want: Vec<_> = reference
        .incidents
        .iter()
        .map(|i| {
            (
                i.id.clone(),
                i.opened,
                i.resolved,
                i.attributed_to.clone(),
                i.outage.clone(),
            )
        })
        .collect();
    let got: Vec<_> = linked
        .incidents
        .iter()
        .map(|i| {
            (
                i.id.clone(),
                i.opened,
                i.resolved,
                i.attributed_to.as_ref().map(|a| a.deployment_key.clone()),
                i.outage.clone(),
            )
        })
        .collect();
    let (mut got, mut want) = (got, want);
    got.sort();
    want.sort();
    assert_eq!(got, want, "incidents, seed {seed}");
}

#[tokio::test]
async fn whole_relinking_agrees_with_the_reference() {
    let config = config();
    let mut with_outages = 0;
    for seed in 0..400 {
        let facts = history(seed);
        let linked = whole(&config, &facts).await;
        assert_matches_reference(&config, &facts, &linked, seed);
        with_outages += usize::from(linked.incidents.iter().any(|i| i.outage.is_some()));
    }
    // The histories exercise the outage rule: several tools' reports of one outage.
    assert!(
        with_outages >= 100,
        "{with_outages} histories with an outage of several reports"
    );
}

#[tokio::test]
async fn shuffled_redelivered_batches_give_the_whole_relink() {
    let config = config();
    for seed in 0..400 {
        let facts = history(seed);
        let want = whole(&config, &facts).await;
        let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
        let mut delivered = facts.clone();
        for f in &facts {
            if rng.u8(0..5) == 0 {
                delivered.push(f.clone());
            }
        }
        rng.shuffle(&mut delivered);
        let mut batches = Vec::new();
        while !delivered.is_empty() {
            let n = rng.usize(1..=4).min(delivered.len());
            batches.push(delivered.drain(..n).collect::<Vec<_>>());
        }
        let got = incrementally(&config, &batches).await;
        assert_eq!(got, want, "seed {seed}");
    }
}

async fn link(
    links: &mut MemoryLinks,
    service: &Service<'_>,
    work: Option<em_metrics::link::Work>,
) {
    if let Some(w) = work {
        let rows = relink(links, service, &w).await.unwrap();
        links.replace_rows("shop", w.cut, rows);
    }
}

/// Two writers racing, as concurrent aggregators do: A works out its cut, B links a batch of its own, then
/// A (whose facts are stored before or after B linked) loses the version check and re-links from the cut
/// worked out again over stored facts. Every race ends with the whole re-link.
#[tokio::test]
async fn a_writer_that_lost_a_race_relinks_from_stored_facts_to_the_whole_relink() {
    let config = config();
    let service = Service::of(&config, "shop");
    for seed in 0..400 {
        let facts = history(seed);
        let want = whole(&config, &facts).await;
        let mut rng = fastrand::Rng::with_seed(seed ^ 0xace);
        let mut delivered = facts.clone();
        rng.shuffle(&mut delivered);
        let batches: Vec<Vec<Fact>> = delivered.chunks(3).map(|c| c.to_vec()).collect();
        let mut links = MemoryLinks::incremental();
        for pair in batches.chunks(2) {
            let a: Vec<&Fact> = pair[0].iter().collect();
            let first = cut_for(&links, &service, &a, Stored::NotYet).await.unwrap();
            let stored_first = rng.bool();
            if stored_first {
                links.put(pair[0].iter().cloned());
            }
            if let Some(b) = pair.get(1) {
                let refs: Vec<&Fact> = b.iter().collect();
                let work = cut_for(&links, &service, &refs, Stored::NotYet)
                    .await
                    .unwrap();
                links.put(b.iter().cloned());
                link(&mut links, &service, work).await;
            }
            if !stored_first {
                links.put(pair[0].iter().cloned());
            }
            // A's first cut was worked out on rows B has changed since: it is not used.
            drop(first);
            let again = cut_for(&links, &service, &a, Stored::Already)
                .await
                .unwrap();
            link(&mut links, &service, again).await;
        }
        assert_eq!(links.rows("shop"), want, "seed {seed}");
    }
}

#[tokio::test]
async fn in_time_order_each_delivery_relinks_only_recent_rows() {
    // Delivered in time order, a deployment's cut is the deployment before it: never earlier.
    let config = config();
    let facts = history(7);
    let mut ordered = facts.clone();
    let time = |f: &Fact| match f {
        Fact::Push(p) => p.commits.last().map_or(0, |c| c.time),
        Fact::Deployment(d) => d.time,
        Fact::Incident(i) => i.time,
        Fact::PullRequest(p) => p.time,
        Fact::Build(b) => b.finished,
        Fact::WorkItem(w) => w.time,
        Fact::QualityReport(q) => q.time,
    };
    ordered.sort_by_key(time);
    let mut links = MemoryLinks::incremental();
    let service = Service::of(&config, "shop");
    for f in &ordered {
        let work = cut_for(&links, &service, &[f], Stored::NotYet)
            .await
            .unwrap();
        if let (Fact::Deployment(d), Some(w)) = (f, &work) {
            // The earlier of the repository's previous deployment (a rollback compares deployments of one
            // repository) and the service's (which may lose incidents to this one).
            let rows = links.rows("shop");
            let in_repo = rows.deployments.iter().rev().find(|p| p.repo == d.repo);
            let prev = [in_repo, rows.deployments.last()]
                .into_iter()
                .flatten()
                .map(|p| p.time)
                .min();
            if d.environment == "production" {
                assert_eq!(w.cut, Cut::From(prev.unwrap_or(d.time).min(d.time)));
            }
        }
        links.put([f.clone()]);
        if let Some(work) = work {
            let rows = relink(&links, &service, &work).await.unwrap();
            links.replace_rows("shop", work.cut, rows);
        }
    }
    assert_eq!(links.rows("shop"), whole(&config, &facts).await);
}

fn commits(shas: &[&str], from: Millis) -> Vec<(String, Millis, String)> {
    shas.iter()
        .enumerate()
        .map(|(i, s)| (s.to_string(), from + i as Millis * H, format!("change {s}")))
        .collect()
}

fn shipped_by(l: &Linked, sha: &str) -> Option<String> {
    l.changes
        .iter()
        .find(|c| c.sha == sha)
        .map(|c| c.deployment_key.clone())
}

#[tokio::test]
async fn a_late_push_moves_a_commit_to_the_deployment_that_shipped_it() {
    let config = config();
    let a = commits(&["a1", "a2"], T0);
    let b = commits(&["b1", "b2"], T0 + 2 * H);
    // d1 deploys b2 before the push of b1..b2 arrives: it ships nothing it can see; d2 redeploys b2 later.
    let early = vec![
        push(NULL_SHA, &a),
        deployment("d0", "a2", T0 + 2 * H, "production"),
        deployment("d1", "b2", T0 + 5 * H, "production"),
        deployment("d2", "b2", T0 + 9 * H, "production"),
    ];
    let late = vec![push("a2", &b)];
    let before = incrementally(&config, std::slice::from_ref(&early)).await;
    assert_eq!(shipped_by(&before, "b1"), None);
    let d1 = before
        .deployments
        .iter()
        .find(|d| d.key.ends_with("/d1"))
        .unwrap();
    assert_eq!(d1.frontier.as_deref(), Some("b2"), "d1 waits for b2's push");
    let after = incrementally(&config, &[early.clone(), late.clone()]).await;
    assert_eq!(
        shipped_by(&after, "b1").as_deref(),
        Some("github/acme/shop/d1")
    );
    assert_eq!(
        shipped_by(&after, "b2").as_deref(),
        Some("github/acme/shop/d1")
    );
    let all: Vec<Fact> = early.into_iter().chain(late).collect();
    assert_eq!(after, whole(&config, &all).await);
}

#[tokio::test]
async fn a_late_incident_fails_the_deployment_before_it_and_makes_the_next_rework() {
    let config = config();
    let a = commits(&["a1", "a2", "a3"], T0);
    let early = vec![
        push(NULL_SHA, &a),
        deployment("d1", "a1", T0 + 10 * H, "production"),
        deployment("d2", "a2", T0 + 20 * H, "production"),
        deployment("d3", "a3", T0 + 22 * H, "production"),
    ];
    let late = vec![
        incident("P1", "e2", IncidentEventKind::Resolved, T0 + 23 * H),
        incident("P1", "e1", IncidentEventKind::Opened, T0 + 21 * H),
    ];
    let before = incrementally(&config, std::slice::from_ref(&early)).await;
    assert!(before.deployments.iter().all(|d| !d.failed && !d.rework));
    // The resolution first (no row yet), then the trigger.
    let after = incrementally(
        &config,
        &[early.clone(), vec![late[0].clone()], vec![late[1].clone()]],
    )
    .await;
    let by = |k: &str| {
        after
            .deployments
            .iter()
            .find(|d| d.key.ends_with(k))
            .unwrap()
    };
    assert!(by("/d2").failed, "the incident is attributed to d2");
    assert!(by("/d3").rework, "d3 went out while it was open");
    assert!(!by("/d1").failed);
    let all: Vec<Fact> = early.into_iter().chain(late).collect();
    assert_eq!(after, whole(&config, &all).await);
}

#[tokio::test]
async fn a_redeployed_earlier_version_is_a_rollback_and_an_incidents_rework_is_not() {
    let config = config();
    let a = commits(&["a1", "a2", "a3"], T0);
    let facts = vec![
        push(NULL_SHA, &a),
        deployment("d1", "a1", T0 + 10 * H, "production"),
        deployment("d2", "a2", T0 + 20 * H, "production"),
        // a1 again: d2 is rolled back.
        deployment("d3", "a1", T0 + 21 * H, "production"),
        incident("P1", "e1", IncidentEventKind::Opened, T0 + 21 * H + H / 2),
        // Out while P1 (attributed to d3) is open: rework, not a rollback.
        deployment("d4", "a3", T0 + 22 * H, "production"),
    ];
    let rows = whole(&config, &facts).await;
    let flags: Vec<(String, bool, bool, bool)> = rows
        .deployments
        .iter()
        .map(|d| {
            let name = d.key.rsplit('/').next().unwrap_or_default().to_string();
            (name, d.failed, d.rework, d.rollback)
        })
        .collect();
    assert_eq!(
        flags,
        [
            ("d1".to_string(), false, false, false),
            ("d2".to_string(), true, false, false),
            ("d3".to_string(), true, true, true),
            ("d4".to_string(), false, true, false),
        ]
    );
    assert_eq!(
        incrementally(&config, std::slice::from_ref(&facts)).await,
        rows
    );
}

/// The two-provider rule's edge: another provider's report of the same sha and environment exactly 10
/// minutes after the one kept is the same deployment; a millisecond later it is a deployment of its own.
/// Both the whole re-link, the reference and the incremental linker agree.
#[tokio::test]
async fn another_providers_report_joins_at_exactly_ten_minutes_and_not_a_millisecond_later() {
    use em_metrics::rules::SAME_DEPLOYMENT_WINDOW;
    assert_eq!(SAME_DEPLOYMENT_WINDOW, 600_000);
    let config = config();
    let a = commits(&["a1", "a2"], T0);
    let by = |provider: &str, id: &str, sha: &str, time: Millis| match deployment(
        id,
        sha,
        time,
        "production",
    ) {
        Fact::Deployment(mut d) => {
            d.provider = provider.into();
            Fact::Deployment(d)
        }
        other => other,
    };
    let facts = vec![
        push(NULL_SHA, &a),
        by("github", "g1", "a1", T0 + 10 * H),
        // Exactly 10 minutes later: the same deployment.
        by("circleci", "c1", "a1", T0 + 10 * H + 600_000),
        by("github", "g2", "a2", T0 + 20 * H),
        // 10 minutes and 1 ms later: a deployment of its own (a redeploy of a2).
        by("circleci", "c2", "a2", T0 + 20 * H + 600_001),
    ];
    let rows = whole(&config, &facts).await;
    let kept: Vec<String> = rows.deployments.iter().map(|d| d.key.clone()).collect();
    assert_eq!(
        kept,
        [
            "github/acme/shop/g1",
            "github/acme/shop/g2",
            "circleci/acme/shop/c2"
        ],
        "{rows:?}"
    );
    assert_matches_reference(&config, &facts, &rows, 0);
    assert_eq!(
        incrementally(
            &config,
            &facts.iter().map(|f| vec![f.clone()]).collect::<Vec<_>>()
        )
        .await,
        rows
    );
}

/// Which alerts are incidents (docs/metrics.md): a monitoring tool's warning fails nothing by default, its
/// critical alert does, an alert without a severity does, and a configured list decides for its tool.
#[tokio::test]
async fn only_alerts_at_a_severity_that_counts_fail_a_deployment() {
    use em_metrics::history::alert;
    let a = commits(&["a1"], T0);
    let facts = |provider: &str, severity: &str| {
        vec![
            push(NULL_SHA, &a),
            deployment("d1", "a1", T0 + 10 * H, "production"),
            alert(
                "A1",
                "e1",
                IncidentEventKind::Opened,
                T0 + 11 * H,
                provider,
                severity,
            ),
        ]
    };
    let failed = |linked: Linked| (linked.deployments[0].failed, linked.incidents.len());
    let default = config();
    for (provider, severity, counts) in [
        ("alertmanager", "warning", false),
        ("alertmanager", "critical", true),
        ("alertmanager", "CRITICAL", true),
        ("alertmanager", "", true),
        ("pagerduty", "low", true),
    ] {
        let f = facts(provider, severity);
        let want = if counts { (true, 1) } else { (false, 0) };
        assert_eq!(
            failed(whole(&default, &f).await),
            want,
            "{provider} {severity:?}"
        );
        assert_eq!(
            failed(incrementally(&default, std::slice::from_ref(&f)).await),
            want,
            "{provider} {severity:?}"
        );
        assert_matches_reference(&default, &f, &whole(&default, &f).await, 0);
    }
    // A recovery carries no severity of its own: it has no say, so a warning's incident still does not count.
    let mut resolved_warning = facts("alertmanager", "warning");
    resolved_warning.push(alert(
        "A1",
        "e2",
        IncidentEventKind::Resolved,
        T0 + 12 * H,
        "alertmanager",
        "",
    ));
    assert_eq!(failed(whole(&default, &resolved_warning).await), (false, 0));
    assert_eq!(
        failed(incrementally(&default, std::slice::from_ref(&resolved_warning)).await),
        (false, 0)
    );
    assert_matches_reference(
        &default,
        &resolved_warning,
        &whole(&default, &resolved_warning).await,
        0,
    );
    let configured = Config::parse(
        r#"
incident_attribution_window = "6h"
[[services]]
name = "shop"
repositories = ["acme/shop"]
aliases = ["Shop"]
[incidents.severities]
alertmanager = ["warning"]
"#,
    )
    .unwrap();
    assert_ne!(configured.fingerprint(), default.fingerprint());
    let warning = facts("alertmanager", "warning");
    assert_eq!(failed(whole(&configured, &warning).await), (true, 1));
    let critical = facts("alertmanager", "critical");
    assert_eq!(failed(whole(&configured, &critical).await), (false, 0));
    assert_matches_reference(
        &configured,
        &critical,
        &whole(&configured, &critical).await,
        0,
    );
}

#[tokio::test]
async fn one_outage_three_tools_report_counts_once_as_its_first_report() {
    use em_metrics::history::alert;
    use IncidentEventKind::{Opened, Resolved};
    let config = config();
    let a = commits(&["a1", "a2"], T0);
    let m = 60_000;
    let facts = vec![
        push(NULL_SHA, &a),
        deployment("d1", "a1", T0 + 10 * H, "production"),
        deployment("d2", "a2", T0 + 11 * H, "production"),
        // Alertmanager fires 50 minutes after d1; PagerDuty pages after d2 went out, while the alert is
        // still firing; incident.io opens within ten minutes of the page. Without the rule, PagerDuty's and
        // incident.io's incidents would be blamed on d2.
        alert(
            "am",
            "am-t",
            Opened,
            T0 + 10 * H + 50 * m,
            "alertmanager",
            "critical",
        ),
        alert("pd", "pd-t", Opened, T0 + 11 * H + 5 * m, "pagerduty", ""),
        alert(
            "io",
            "io-t",
            Opened,
            T0 + 11 * H + 14 * m,
            "incident-io",
            "",
        ),
        alert(
            "am",
            "am-r",
            Resolved,
            T0 + 12 * H,
            "alertmanager",
            "critical",
        ),
        alert(
            "io",
            "io-r",
            Resolved,
            T0 + 12 * H + 30 * m,
            "incident-io",
            "",
        ),
        alert("pd", "pd-r", Resolved, T0 + 13 * H, "pagerduty", ""),
        // The same tool again, hours later: an outage of its own.
        alert("pd2", "pd2-t", Opened, T0 + 16 * H, "pagerduty", ""),
        alert(
            "pd2",
            "pd2-r",
            Resolved,
            T0 + 16 * H + 20 * m,
            "pagerduty",
            "",
        ),
    ];
    let linked = whole(&config, &facts).await;
    assert_matches_reference(&config, &facts, &linked, 0);
    let by_id = |id: &str| {
        linked
            .incidents
            .iter()
            .find(|i| i.id == id)
            .unwrap()
            .clone()
    };
    let d1 = Some("github/acme/shop/d1".to_string());
    let key = |id: &str| by_id(id).attributed_to.map(|a| a.deployment_key);
    for id in ["am", "pd", "io"] {
        assert_eq!(key(id), d1, "{id}: the outage is blamed on d1");
    }
    assert_eq!(by_id("pd").outage.as_deref(), Some("am"));
    assert_eq!(by_id("io").outage.as_deref(), Some("am"));
    // The first report stands for the outage: opened at its opening, resolved at the last resolution.
    assert_eq!(by_id("am").outage, None);
    assert_eq!(by_id("am").resolved, Some(T0 + 13 * H));
    assert_eq!(
        by_id("io").resolved,
        Some(T0 + 12 * H + 30 * m),
        "each keeps its own"
    );
    assert_eq!(by_id("pd2").outage, None);
    assert_eq!(key("pd2"), Some("github/acme/shop/d2".to_string()));
    let d = |k: &str| {
        linked
            .deployments
            .iter()
            .find(|d| d.key.ends_with(k))
            .unwrap()
            .clone()
    };
    assert!(d("/d1").failed);
    assert!(d("/d2").failed, "by the later PagerDuty incident alone");
    assert!(d("/d2").rework, "it went out during d1's outage");
    // Recovery counts the outage once (2 h 10 min) and the second incident (20 min).
    let days = em_core::rows::days_of(&linked);
    let mut obs = em_core::rows::Observations::default();
    for (_, o) in days {
        obs.extend_within(o, Millis::MIN, Millis::MAX);
    }
    let f = em_metrics::dora::figures(&obs, 1.0);
    assert_eq!(f.recovery_time.incidents, 2);
    assert_eq!(
        f.recovery_time.median_seconds,
        Some((130 * 60 + 20 * 60) as f64 / 2.0)
    );
    // Delivered one fact at a time in any order, the same rows.
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..20 {
        let mut shuffled = facts.clone();
        rng.shuffle(&mut shuffled);
        let batches: Vec<Vec<Fact>> = shuffled.into_iter().map(|f| vec![f]).collect();
        assert_eq!(incrementally(&config, &batches).await, linked);
    }
}
