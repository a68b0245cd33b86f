//! Random histories of one service, for the tests that hold the linkers and the stores to each other and
//! for the benchmarks: a chain of commits in pushes, deployments (some of older shas, some by short sha, some
//! not production), incidents (some triggered twice, some never). Deterministic for a seed.

use em_core::config::Config;
use em_core::domain::{
    Commit, Deployment, DeploymentOutcome, Fact, IncidentEvent, IncidentEventKind, Push, NULL_SHA,
};
use em_core::time::Millis;

pub const H: Millis = 3_600_000;
/// 2025-03-01T00:00:00Z
pub const T0: Millis = 1_740_787_200_000;

/// One service, `shop`: repositories `acme/shop` and `acme/shop-web`, incident service `Shop`, a 6-hour
/// attribution window.
pub fn config() -> Config {
    Config::parse(
        r#"
incident_attribution_window = "6h"
[[services]]
name = "shop"
repositories = ["acme/shop", "acme/shop-web"]
aliases = ["Shop"]
"#,
    )
    .unwrap_or_default()
}

pub fn sha(rng: &mut fastrand::Rng) -> String {
    (0..40)
        .map(|_| char::from_digit(rng.u32(0..16), 16).unwrap_or('0'))
        .collect()
}

pub fn push(before: &str, commits: &[(String, Millis, String)]) -> Fact {
    push_to("acme/shop", before, commits)
}

pub fn push_to(repo: &str, before: &str, commits: &[(String, Millis, String)]) -> Fact {
    Fact::Push(Push {
        provider: "github".into(),
        repo: repo.into(),
        before: before.into(),
        after: commits.last().map(|c| c.0.clone()).unwrap_or_default(),
        commits: commits
            .iter()
            .map(|(sha, time, message)| Commit {
                sha: sha.clone(),
                time: *time,
                message: message.clone(),
            })
            .collect(),
        unlisted: 0,
    })
}

pub fn deployment(id: &str, sha: &str, time: Millis, environment: &str) -> Fact {
    deployment_to("acme/shop", id, sha, time, environment)
}

pub fn deployment_to(repo: &str, id: &str, sha: &str, time: Millis, environment: &str) -> Fact {
    Fact::Deployment(Deployment {
        provider: "github".into(),
        repo: repo.into(),
        deployment_id: id.into(),
        environment: environment.into(),
        production: None,
        sha: sha.into(),
        time,
        outcome: DeploymentOutcome::Success,
        rollback: false,
        rework: false,
    })
}

pub fn incident(id: &str, event: &str, kind: IncidentEventKind, time: Millis) -> Fact {
    alert(id, event, kind, time, "pagerduty", "")
}

/// An incident event of `provider` at `severity` (`""`: none).
pub fn alert(
    id: &str,
    event: &str,
    kind: IncidentEventKind,
    time: Millis,
    provider: &str,
    severity: &str,
) -> Fact {
    Fact::Incident(IncidentEvent {
        provider: provider.into(),
        incident_id: id.into(),
        event_id: event.into(),
        kind,
        time,
        service_name: "Shop".into(),
        title: "down".into(),
        severity: severity.into(),
    })
}

/// A random history of one service: a chain of commits in pushes, deployments (some of older shas, some
/// by short sha, some not production), incidents (some triggered twice, some never).
pub fn history(seed: u64) -> Vec<Fact> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = rng.usize(4..40);
    let commits: Vec<(String, Millis, String)> = (0..n)
        .map(|i| {
            let message = match rng.u8(0..10) {
                0 => "Revert \"something\"".to_string(),
                1 => "hotfix: the thing".to_string(),
                _ => format!("change {i}"),
            };
            (sha(&mut rng), T0 + i as Millis * H, message)
        })
        .collect();
    let mut facts = Vec::new();
    let mut start = 0;
    let mut before = NULL_SHA.to_string();
    while start < n {
        let end = (start + rng.usize(1..4)).min(n);
        let mut p = push(&before, &commits[start..end]);
        // Now and then a push that listed only its latest commits (GitLab lists 20).
        if let (Fact::Push(p), 0) = (&mut p, rng.u8(0..6)) {
            p.unlisted = rng.u32(1..25);
        }
        facts.push(p);
        before = commits[end - 1].0.clone();
        start = end;
    }
    let deployments = rng.usize(1..20);
    let mut time = T0;
    for d in 0..deployments {
        time += rng.i64(0..6 * H);
        let reach = ((time - T0) / H).clamp(0, n as Millis - 1) as usize;
        let at = if rng.u8(0..6) == 0 {
            rng.usize(0..=reach)
        } else {
            reach
        };
        let mut s = commits[at].0.clone();
        if rng.u8(0..8) == 0 {
            s.truncate(8);
        }
        let env = if rng.u8(0..8) == 0 {
            "staging"
        } else {
            "production"
        };
        let mut f = deployment(&format!("d{d}"), &s, time, env);
        // Now and then one the provider says is a rollback (a rollback release), or rework restoring a
        // version after a failed attempt (a circuit breaker's).
        if let Fact::Deployment(d) = &mut f {
            match rng.u8(0..10) {
                0 => d.rollback = true,
                1 => d.rework = true,
                _ => {}
            }
        }
        // Now and then a second provider reports the same deployment (a CI deploy job beside the GitHub
        // deployment it creates): minutes later, or long enough after to be a deployment of its own.
        if let (Fact::Deployment(d), 0) = (&f, rng.u8(0..6)) {
            let mut again = d.clone();
            again.provider = "circleci".into();
            again.deployment_id = format!("c{}", d.deployment_id);
            again.time += rng.i64(0..15 * 60 * 1000);
            again.rollback = false;
            again.rework = false;
            facts.push(Fact::Deployment(again));
        }
        facts.push(f);
    }
    let mut alerts = fastrand::Rng::with_seed(seed ^ 0x5e7e);
    for i in 0..rng.usize(0..7) {
        let id = format!("P{i}");
        // Whose alert it is: an incident tool's, or a monitoring tool's at a severity that counts by default
        // or does not (drawn apart, so the histories are otherwise those of every seed before).
        let (provider, severity) = match alerts.u8(0..4) {
            0 => ("pagerduty", ""),
            1 => ("alertmanager", "critical"),
            2 => ("alertmanager", "warning"),
            _ => ("alertmanager", ""),
        };
        let incident =
            |id: &str, event: &str, kind, time| alert(id, event, kind, time, provider, severity);
        let opened = T0 + rng.i64(0..(n as Millis + 12) * H);
        // Now and then another tool reports the same outage: minutes apart, or long enough to be another.
        if alerts.u8(0..3) == 0 {
            let echo = format!("E{i}");
            let tool = if provider == "pagerduty" {
                "opsgenie"
            } else {
                "pagerduty"
            };
            let at = opened + alerts.i64(-20 * 60_000..20 * 60_000);
            facts.push(alert(
                &echo,
                &format!("{echo}-t"),
                IncidentEventKind::Opened,
                at,
                tool,
                "",
            ));
            if alerts.bool() {
                let end = at + alerts.i64(1..4 * H);
                facts.push(alert(
                    &echo,
                    &format!("{echo}-r"),
                    IncidentEventKind::Resolved,
                    end,
                    tool,
                    "",
                ));
            }
        }
        if rng.u8(0..5) != 0 {
            facts.push(incident(
                &id,
                &format!("{id}-t"),
                IncidentEventKind::Opened,
                opened,
            ));
        }
        if rng.bool() {
            facts.push(incident(
                &id,
                &format!("{id}-t2"),
                IncidentEventKind::Opened,
                opened + rng.i64(-H..H),
            ));
        }
        if rng.bool() {
            facts.push(incident(
                &id,
                &format!("{id}-a"),
                IncidentEventKind::Acknowledged,
                opened + 60_000,
            ));
        }
        if rng.u8(0..3) != 0 {
            let resolved = opened + rng.i64(1..30 * H);
            facts.push(incident(
                &id,
                &format!("{id}-r"),
                IncidentEventKind::Resolved,
                resolved,
            ));
            // Some are reopened, and some of those resolved again.
            if rng.u8(0..4) == 0 {
                let reopened = resolved + rng.i64(1..6 * H);
                facts.push(incident(
                    &id,
                    &format!("{id}-o"),
                    IncidentEventKind::Reopened,
                    reopened,
                ));
                if rng.bool() {
                    facts.push(incident(
                        &id,
                        &format!("{id}-r2"),
                        IncidentEventKind::Resolved,
                        reopened + rng.i64(1..6 * H),
                    ));
                }
            }
        }
        if rng.u8(0..6) == 0 {
            facts.push(incident(
                &id,
                &format!("{id}-e"),
                IncidentEventKind::Escalated,
                opened + 120_000,
            ));
        }
    }
    // Half the histories have a second repository deploying between the first's deployments, with
    // redeploys and rollbacks of its own (a rollback compares deployments of one repository).
    let mut web = fastrand::Rng::with_seed(seed ^ 0x77eb);
    if web.bool() {
        let n = web.usize(2..8);
        let chain: Vec<(String, Millis, String)> = (0..n)
            .map(|i| (sha(&mut web), T0 + i as Millis * 2 * H, format!("web {i}")))
            .collect();
        let split = web.usize(1..=n);
        facts.push(push_to("acme/shop-web", NULL_SHA, &chain[..split]));
        if split < n {
            facts.push(push_to(
                "acme/shop-web",
                &chain[split - 1].0,
                &chain[split..],
            ));
        }
        for d in 0..web.usize(1..7) {
            let at = web.usize(0..n);
            let time = T0 + (at as Millis) * 2 * H + web.i64(0..3 * H);
            facts.push(deployment_to(
                "acme/shop-web",
                &format!("w{d}"),
                &chain[at].0,
                time,
                "production",
            ));
        }
    }
    facts
}

/// Observations as sorted lines, to compare linkings whatever order their rows came in.
pub fn flat(o: &em_core::rows::Observations) -> Vec<String> {
    let at = |i: u32| {
        let x = &o.origins[i as usize];
        format!("{}/{}", x.repo, x.environment)
    };
    let mut v: Vec<String> = o
        .deployments
        .iter()
        .map(|d| format!("d {} {} {} {}", at(d.origin), d.time, d.failed, d.rework))
        .chain(
            o.changes
                .iter()
                .map(|c| format!("c {} {} {} {}", at(c.origin), c.time, c.lead, c.unlisted)),
        )
        .chain(o.incidents.iter().map(|i| {
            format!(
                "i {} {} {:?} {:?} {}",
                at(i.origin),
                i.opened,
                i.acknowledged,
                i.recovery,
                i.attributed
            )
        }))
        .collect();
    v.sort();
    v
}
