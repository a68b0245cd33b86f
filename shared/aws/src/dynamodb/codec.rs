//! Items and their attributes: the attribute helpers, facts and linked rows as items, and facts read back
//! from their items.

use std::collections::{BTreeMap, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;

use super::keys::{incident_pk, metric_pk, prefix, repo_pk, tkey};
use em_core::domain::{
    Build, BuildOutcome, Commit, Deployment, DeploymentOutcome, Fact, IncidentEvent,
    IncidentEventKind, PullRequestEvent, PullRequestEventKind, Push, QualityReport, WorkItem,
    WorkItemAction, MIN_SHA_LEN,
};
use em_core::ports::{CommitRow, PortError};
use em_core::rows::{Attribution, ChangeRow, DeploymentRow, IncidentRow, Linked};

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn b(v: bool) -> AttributeValue {
    AttributeValue::Bool(v)
}

fn get_b(item: &Item, name: &str) -> bool {
    item.get(name)
        .and_then(|v| v.as_bool().ok())
        .copied()
        .unwrap_or(false)
}

fn get_opt_n(item: &Item, name: &str) -> Result<Option<i64>, PortError> {
    item.get(name).map(|_| get_n(item, name)).transpose()
}

fn get_opt_s(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(crate) fn get_s(item: &Item, name: &str) -> Result<String, PortError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .cloned()
        .ok_or_else(|| PortError::invalid(format!("item without string {name}")))
}

/// A count kept only when not zero: absent (or not a count) is zero.
pub(crate) fn get_count(item: &Item, name: &str) -> u32 {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn get_n(item: &Item, name: &str) -> Result<i64, PortError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| PortError::invalid(format!("item without number {name}")))
}

/// A push's commits as JSON texts, each well under DynamoDB's 400 KB item size: a push of 2,048 commits
/// with long messages is several megabytes.
const PUSH_PART_BYTES: usize = 256 * 1024;

pub(crate) fn push_parts(commits: &[Commit]) -> Result<Vec<String>, PortError> {
    let mut parts = Vec::new();
    let mut part: Vec<String> = Vec::new();
    let mut size = 2;
    for c in commits {
        let json = serde_json::to_string(c).map_err(PortError::invalid)?;
        if !part.is_empty() && size + json.len() + 1 > PUSH_PART_BYTES {
            parts.push(format!("[{}]", part.join(",")));
            part.clear();
            size = 2;
        }
        size += json.len() + 1;
        part.push(json);
    }
    parts.push(format!("[{}]", part.join(",")));
    Ok(parts)
}

/// A deployment report's attributes added to `item` (its key).
pub(crate) fn deployment_item(mut item: Item, d: &Deployment) -> Item {
    item.insert("provider".into(), s(&d.provider));
    item.insert("repo".into(), s(&d.repo));
    item.insert("deployment_id".into(), s(&d.deployment_id));
    item.insert("environment".into(), s(&d.environment));
    item.insert("sha".into(), s(&d.sha));
    item.insert("time".into(), n(d.time));
    item.insert("outcome".into(), s(d.outcome.as_str()));
    if let Some(p) = d.production {
        item.insert("production".into(), AttributeValue::Bool(p));
    }
    if d.rollback {
        item.insert("rollback".into(), AttributeValue::Bool(true));
    }
    if d.rework {
        item.insert("rework".into(), AttributeValue::Bool(true));
    }
    item
}

/// A build's attributes added to `item` (its key).
pub(crate) fn build_item(mut item: Item, b: &Build) -> Item {
    item.insert("provider".into(), s(&b.provider));
    item.insert("repo".into(), s(&b.repo));
    item.insert("run_id".into(), s(&b.run_id));
    item.insert("attempt".into(), n(i64::from(b.attempt)));
    item.insert("name".into(), s(&b.name));
    item.insert("sha".into(), s(&b.sha));
    item.insert("branch".into(), s(&b.branch));
    item.insert("outcome".into(), s(b.outcome.as_str()));
    item.insert("finished".into(), n(b.finished));
    if let Some(t) = b.started {
        item.insert("started".into(), n(t));
    }
    item
}

/// A pull request event's attributes added to `item` (its key).
pub(crate) fn pull_request_item(mut item: Item, p: &PullRequestEvent) -> Item {
    item.insert("provider".into(), s(&p.provider));
    item.insert("repo".into(), s(&p.repo));
    item.insert("number".into(), n(p.number as i64));
    item.insert("kind".into(), s(p.kind.as_str()));
    item.insert("time".into(), n(p.time));
    item.insert("title".into(), s(&p.title));
    if let Some(sha) = &p.sha {
        item.insert("sha".into(), s(sha));
    }
    item
}

// ---- the index items of facts ----

/// A conditional put: the item, and its condition with its values (`None`: unconditional).
pub(crate) type IndexPut = (Item, Option<(&'static str, Item)>);

/// The index items of one fact, written beside it.
pub(crate) fn fact_index(fact: &Fact) -> Vec<IndexPut> {
    let key = |pk: String, sk: String| -> Item {
        HashMap::from([("pk".to_string(), s(pk)), ("sk".to_string(), s(sk))])
    };
    match fact {
        Fact::Push(p) => {
            let mut out = Vec::with_capacity(p.commits.len());
            let mut parent = p.before.as_str();
            for (i, c) in p.commits.iter().enumerate() {
                let mut item = key(repo_pk(&p.repo), format!("c#{}", c.sha));
                item.insert("sha".into(), s(&c.sha));
                item.insert("parent".into(), s(parent));
                // The commits a push did not list sit between `before` and its oldest listed commit.
                if i == 0 && p.unlisted > 0 {
                    item.insert("unlisted".into(), n(i64::from(p.unlisted)));
                }
                item.insert("time".into(), n(c.time));
                item.insert("message".into(), s(&c.message));
                item.insert("pb".into(), s(&p.before));
                item.insert("pa".into(), s(&p.after));
                // The parent the first push (by before, after) gives stands, whatever the arrival order.
                let values = HashMap::from([
                    (":b".to_string(), s(&p.before)),
                    (":a".to_string(), s(&p.after)),
                ]);
                out.push((
                    item,
                    Some((
                        "attribute_not_exists(pk) OR pb > :b OR (pb = :b AND pa > :a)",
                        values,
                    )),
                ));
                parent = c.sha.as_str();
            }
            out
        }
        Fact::Deployment(d) if d.outcome == em_core::domain::DeploymentOutcome::Success => {
            // Every report gets its entry; readers keep only the one the deployment item (the earliest
            // report) agrees with.
            let mut item = key(
                repo_pk(&d.repo),
                format!("t#{}#{}#{}", tkey(d.time), d.provider, d.deployment_id),
            );
            item.insert("provider".into(), s(&d.provider));
            item.insert("deployment_id".into(), s(&d.deployment_id));
            vec![(item, None)]
        }
        Fact::Incident(i) => {
            let mut by_incident = incident_attrs(i);
            by_incident.extend(key(
                incident_pk(&i.service_name),
                format!("n#{}#{}#{}", i.incident_id, i.provider, i.event_id),
            ));
            let mut out = vec![(by_incident, None)];
            if i.kind == IncidentEventKind::Opened {
                let mut opening = key(
                    incident_pk(&i.service_name),
                    format!("o#{}#{}#{}", tkey(i.time), i.provider, i.event_id),
                );
                opening.insert("incident_id".into(), s(&i.incident_id));
                out.push((opening, None));
            }
            out
        }
        Fact::Deployment(_)
        | Fact::PullRequest(_)
        | Fact::Build(_)
        | Fact::WorkItem(_)
        | Fact::QualityReport(_) => Vec::new(),
    }
}

/// The attributes of an incident event (the fact item and its copy by incident).
pub(crate) fn incident_attrs(i: &IncidentEvent) -> Item {
    let mut item = HashMap::from([
        ("provider".to_string(), s(&i.provider)),
        ("incident_id".to_string(), s(&i.incident_id)),
        ("event_id".to_string(), s(&i.event_id)),
        ("kind".to_string(), s(i.kind.as_str())),
        ("time".to_string(), n(i.time)),
        ("service_name".to_string(), s(&i.service_name)),
        ("title".to_string(), s(&i.title)),
    ]);
    // Only when the tool gave one: most incidents carry none, and an absent attribute costs nothing.
    if !i.severity.is_empty() {
        item.insert("sev".to_string(), s(&i.severity));
    }
    item
}

/// The time-ordered index item of a fact the delivery metrics read, if it is one.
pub(crate) fn index_item(fact: &Fact) -> Option<Item> {
    let key = |repo: &str, sk: String| -> Item {
        HashMap::from([
            ("pk".to_string(), s(repo_pk(repo))),
            ("sk".to_string(), s(sk)),
        ])
    };
    match fact {
        Fact::Build(b) => Some(build_item(
            key(
                &b.repo,
                format!(
                    "T#{}#b#{}#{}#{}",
                    tkey(b.finished),
                    b.provider,
                    b.run_id,
                    b.attempt
                ),
            ),
            b,
        )),
        Fact::Deployment(d) if d.outcome == DeploymentOutcome::Failure => Some(deployment_item(
            key(
                &d.repo,
                format!("T#{}#f#{}#{}", tkey(d.time), d.provider, d.deployment_id),
            ),
            d,
        )),
        Fact::PullRequest(p) if p.kind == PullRequestEventKind::Merged => Some(pull_request_item(
            key(
                &p.repo,
                format!("T#{}#m#{}#{}", tkey(p.time), p.provider, p.number),
            ),
            p,
        )),
        _ => None,
    }
}

/// The sources item naming a repository that has delivery facts.
pub(crate) fn source_of(fact: &Fact) -> Option<(String, String)> {
    let repo = match fact {
        Fact::Build(b) => &b.repo,
        Fact::Deployment(d) if d.outcome == DeploymentOutcome::Failure => &d.repo,
        Fact::PullRequest(p) if p.kind == PullRequestEventKind::Merged => &p.repo,
        _ => return None,
    };
    Some((format!("x#{}", repo.to_lowercase()), repo.clone()))
}

// ---- linked rows as items ----

fn deployment_attrs(d: &DeploymentRow) -> Item {
    let mut item = HashMap::from([
        ("key".to_string(), s(&d.key)),
        ("repo".to_string(), s(&d.repo)),
        ("environment".to_string(), s(&d.environment)),
        ("time".to_string(), n(d.time)),
        ("sha".to_string(), s(&d.sha)),
        ("failed".to_string(), b(d.failed)),
        ("rework".to_string(), b(d.rework)),
    ]);
    if d.rollback {
        item.insert("rollback".into(), b(true));
    }
    if let Some(f) = &d.frontier {
        item.insert("frontier".into(), s(f));
    }
    item
}

pub(super) fn deployment_row(item: &Item) -> Result<DeploymentRow, PortError> {
    Ok(DeploymentRow {
        key: get_s(item, "key")?,
        repo: get_s(item, "repo")?,
        environment: get_s(item, "environment")?,
        time: get_n(item, "time")?,
        sha: get_s(item, "sha")?,
        frontier: get_opt_s(item, "frontier"),
        failed: get_b(item, "failed"),
        rework: get_b(item, "rework"),
        rollback: get_b(item, "rollback"),
    })
}

fn change_attrs(x: &ChangeRow) -> Item {
    let mut item = HashMap::from([
        ("sha".to_string(), s(&x.sha)),
        ("repo".to_string(), s(&x.repo)),
        ("environment".to_string(), s(&x.environment)),
        ("deployment_key".to_string(), s(&x.deployment_key)),
        ("deployment_time".to_string(), n(x.deployment_time)),
        ("commit_time".to_string(), n(x.commit_time)),
    ]);
    if x.unlisted > 0 {
        item.insert("unlisted".to_string(), n(i64::from(x.unlisted)));
    }
    item
}

pub(super) fn change_row(item: &Item) -> Result<ChangeRow, PortError> {
    Ok(ChangeRow {
        sha: get_s(item, "sha")?,
        repo: get_s(item, "repo")?,
        environment: get_s(item, "environment")?,
        deployment_key: get_s(item, "deployment_key")?,
        deployment_time: get_n(item, "deployment_time")?,
        commit_time: get_n(item, "commit_time")?,
        unlisted: get_count(item, "unlisted"),
    })
}

fn incident_row_attrs(i: &IncidentRow) -> Item {
    let mut item = HashMap::from([
        ("id".to_string(), s(&i.id)),
        ("opened".to_string(), n(i.opened)),
    ]);
    if let Some(t) = i.acknowledged {
        item.insert("acknowledged".into(), n(t));
    }
    if let Some(t) = i.resolved {
        item.insert("resolved".into(), n(t));
    }
    if let Some(a) = &i.attributed_to {
        item.insert("attributed_key".into(), s(&a.deployment_key));
        item.insert("attributed_repo".into(), s(&a.repo));
        item.insert("attributed_environment".into(), s(&a.environment));
    }
    if let Some(lead) = &i.outage {
        item.insert("outage".into(), s(lead));
    }
    item
}

pub(super) fn incident_row(item: &Item) -> Result<IncidentRow, PortError> {
    Ok(IncidentRow {
        id: get_s(item, "id")?,
        opened: get_n(item, "opened")?,
        acknowledged: get_opt_n(item, "acknowledged")?,
        resolved: get_opt_n(item, "resolved")?,
        attributed_to: get_opt_s(item, "attributed_key").map(|deployment_key| Attribution {
            deployment_key,
            repo: get_opt_s(item, "attributed_repo").unwrap_or_default(),
            environment: get_opt_s(item, "attributed_environment").unwrap_or_default(),
        }),
        outage: get_opt_s(item, "outage"),
    })
}

/// Every item of a service's rows, by sort key (each row's item and its index items).
pub(crate) fn row_items(service: &str, rows: &Linked) -> BTreeMap<String, Item> {
    let mut out = BTreeMap::new();
    let pk = metric_pk(service);
    let mut add = |sk: String, attrs: &Item| {
        let mut item = attrs.clone();
        item.insert("pk".into(), s(&pk));
        item.insert("sk".into(), s(&sk));
        out.insert(sk, item);
    };
    for d in &rows.deployments {
        let attrs = deployment_attrs(d);
        let at = format!("{}#{}", tkey(d.time), d.key);
        add(format!("D#{at}"), &attrs);
        add(format!("P#{}#{at}", d.repo.to_lowercase()), &attrs);
        // Shas that can name the same commit share their first characters (a shorter one is only ever
        // equal to itself).
        if !d.sha.is_empty() {
            add(format!("S#{}#{at}", prefix(&d.sha, MIN_SHA_LEN)), &attrs);
        }
        if let Some(f) = &d.frontier {
            add(format!("F#{f}#{at}"), &attrs);
        }
    }
    for x in &rows.changes {
        let attrs = change_attrs(x);
        add(format!("C#{}", x.sha), &attrs);
        add(format!("c#{}#{}", tkey(x.deployment_time), x.sha), &attrs);
    }
    for i in &rows.incidents {
        let attrs = incident_row_attrs(i);
        add(format!("I#{}", i.id), &attrs);
        add(format!("O#{}#{}", tkey(i.opened), i.id), &attrs);
        if i.attributed_to.is_some() {
            let resolved = i.resolved.map_or_else(|| "~".to_string(), tkey);
            add(format!("A#{resolved}#{}", i.id), &attrs);
        }
    }
    out
}

pub(super) fn commit_row(item: &Item) -> Result<CommitRow, PortError> {
    Ok(CommitRow {
        sha: get_s(item, "sha")?,
        parent: get_s(item, "parent")?,
        time: get_n(item, "time")?,
        message: get_s(item, "message")?,
        unlisted: get_count(item, "unlisted"),
    })
}

// ---- facts from their items ----

/// A push from its head item, with the commits of its other parts (`parts`, in order) after the head's.
pub(crate) fn parse_push(item: &Item, parts: &[&Item]) -> Result<Push, PortError> {
    let expected = get_count(item, "parts").max(1) as usize;
    if parts.len() + 1 != expected {
        // A reader between the writes of a push's parts: the writer's retry completes it.
        return Err(PortError::transient(format!(
            "push {} has {} of its {expected} parts",
            get_s(item, "sk")?,
            parts.len() + 1
        )));
    }
    let mut commits: Vec<Commit> =
        serde_json::from_str(&get_s(item, "commits")?).map_err(PortError::invalid)?;
    for part in parts {
        let more: Vec<Commit> =
            serde_json::from_str(&get_s(part, "commits")?).map_err(PortError::invalid)?;
        commits.extend(more);
    }
    Ok(Push {
        provider: get_s(item, "provider")?,
        repo: get_s(item, "repo")?,
        before: get_s(item, "before")?,
        after: get_s(item, "after")?,
        commits,
        unlisted: get_count(item, "unlisted"),
    })
}

pub(crate) fn parse_deployment(item: &Item) -> Result<Deployment, PortError> {
    Ok(Deployment {
        provider: get_s(item, "provider")?,
        repo: get_s(item, "repo")?,
        deployment_id: get_s(item, "deployment_id")?,
        environment: get_s(item, "environment")?,
        production: item
            .get("production")
            .and_then(|v| v.as_bool().ok())
            .copied(),
        sha: get_s(item, "sha")?,
        time: get_n(item, "time")?,
        outcome: DeploymentOutcome::Success,
        rollback: item
            .get("rollback")
            .and_then(|v| v.as_bool().ok())
            .is_some_and(|b| *b),
        rework: item
            .get("rework")
            .and_then(|v| v.as_bool().ok())
            .is_some_and(|b| *b),
    })
}

pub(crate) fn parse_pull_request(item: &Item) -> Result<PullRequestEvent, PortError> {
    let kind = get_s(item, "kind")?;
    Ok(PullRequestEvent {
        provider: get_s(item, "provider")?,
        repo: get_s(item, "repo")?,
        number: get_n(item, "number")? as u64,
        kind: PullRequestEventKind::parse(&kind).ok_or_else(|| {
            PortError::invalid(format!("unknown pull request event kind {kind:?}"))
        })?,
        time: get_n(item, "time")?,
        title: get_s(item, "title")?,
        sha: item.get("sha").and_then(|v| v.as_s().ok()).cloned(),
    })
}

pub(crate) fn parse_build(item: &Item) -> Result<Build, PortError> {
    let outcome = get_s(item, "outcome")?;
    Ok(Build {
        provider: get_s(item, "provider")?,
        repo: get_s(item, "repo")?,
        run_id: get_s(item, "run_id")?,
        attempt: u32::try_from(get_n(item, "attempt")?).map_err(PortError::invalid)?,
        name: get_s(item, "name")?,
        sha: get_s(item, "sha")?,
        branch: get_s(item, "branch")?,
        outcome: BuildOutcome::parse(&outcome)
            .ok_or_else(|| PortError::invalid(format!("unknown build outcome {outcome:?}")))?,
        started: item
            .get("started")
            .map(|_| get_n(item, "started"))
            .transpose()?,
        finished: get_n(item, "finished")?,
    })
}

pub(super) fn parse_work_item(item: &Item) -> Result<WorkItem, PortError> {
    let action = get_s(item, "action")?;
    Ok(WorkItem {
        provider: get_s(item, "provider")?,
        repo: get_s(item, "repo")?,
        number: get_n(item, "number")? as u64,
        action: WorkItemAction::parse(&action)
            .ok_or_else(|| PortError::invalid(format!("unknown work item action {action:?}")))?,
        time: get_n(item, "time")?,
        title: get_s(item, "title")?,
    })
}

pub(super) fn parse_quality_report(item: &Item) -> Result<QualityReport, PortError> {
    let opt_n = |name: &str| item.get(name).map(|_| get_n(item, name)).transpose();
    Ok(QualityReport {
        provider: get_s(item, "provider")?,
        repo: get_s(item, "repo")?,
        analysis_id: get_s(item, "analysis_id")?,
        sha: get_s(item, "sha")?,
        branch: get_s(item, "branch")?,
        time: get_n(item, "time")?,
        passed: item.get("passed").and_then(|v| v.as_bool().ok()).copied(),
        coverage_bp: opt_n("coverage_bp")?
            .map(u32::try_from)
            .transpose()
            .map_err(PortError::invalid)?,
        new_issues: opt_n("new_issues")?.map(|v| v as u64),
    })
}

pub(crate) fn parse_incident_event(item: &Item) -> Result<IncidentEvent, PortError> {
    let kind = get_s(item, "kind")?;
    Ok(IncidentEvent {
        provider: get_s(item, "provider")?,
        incident_id: get_s(item, "incident_id")?,
        event_id: get_s(item, "event_id")?,
        kind: IncidentEventKind::parse(&kind)
            .ok_or_else(|| PortError::invalid(format!("unknown incident event kind {kind:?}")))?,
        time: get_n(item, "time")?,
        service_name: get_s(item, "service_name")?,
        title: get_s(item, "title")?,
        // Absent from events stored before severities were kept, and when the tool gave none.
        severity: get_opt_s(item, "sev").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_from_their_items() {
        let rows = Linked {
            deployments: vec![DeploymentRow {
                key: "gh/acme/shop/1".into(),
                repo: "acme/shop".into(),
                environment: "production".into(),
                time: 5,
                sha: "abcdef0".into(),
                frontier: Some("0123456789".into()),
                failed: true,
                rework: false,
                rollback: false,
            }],
            changes: vec![ChangeRow {
                sha: "abcdef0".into(),
                repo: "acme/shop".into(),
                environment: "production".into(),
                deployment_key: "gh/acme/shop/1".into(),
                deployment_time: 5,
                commit_time: -3,
                unlisted: 0,
            }],
            incidents: vec![IncidentRow {
                id: "P1".into(),
                opened: 7,
                acknowledged: None,
                resolved: Some(9),
                attributed_to: Some(Attribution {
                    deployment_key: "gh/acme/shop/1".into(),
                    repo: "acme/shop".into(),
                    environment: "production".into(),
                }),
                outage: Some("P0".into()),
            }],
        };
        let items = row_items("shop", &rows);
        let keys: Vec<&str> = items.keys().map(String::as_str).collect();
        let t = |x: i64| tkey(x);
        assert_eq!(
            keys,
            [
                format!("A#{}#P1", t(9)),
                "C#abcdef0".to_string(),
                format!("D#{}#gh/acme/shop/1", t(5)),
                format!("F#0123456789#{}#gh/acme/shop/1", t(5)),
                "I#P1".to_string(),
                format!("O#{}#P1", t(7)),
                format!("P#acme/shop#{}#gh/acme/shop/1", t(5)),
                format!("S#abcd#{}#gh/acme/shop/1", t(5)),
                format!("c#{}#abcdef0", t(5)),
            ]
        );
        let d = deployment_row(&items[&format!("D#{}#gh/acme/shop/1", t(5))]).unwrap();
        assert_eq!(d, rows.deployments[0]);
        let c = change_row(&items["C#abcdef0"]).unwrap();
        assert_eq!(c, rows.changes[0]);
        let i = incident_row(&items["I#P1"]).unwrap();
        assert_eq!(i, rows.incidents[0]);
    }
}
