//! Rows to facts and back: the decoders of the stored facts and the linked rows, the columns they read, and
//! a push's commits into the commit graph.

use rusqlite::{params, Connection, Row};

use em_core::domain::{
    Commit, Deployment, DeploymentOutcome, IncidentEvent, IncidentEventKind, Push,
};
use em_core::ports::CommitRow;
use em_core::rows::{Attribution, ChangeRow, DeploymentRow, IncidentRow};

/// A row of `provider, repo, before_sha, after_sha, commits, unlisted`.
pub(crate) fn push_row(r: &rusqlite::Row) -> rusqlite::Result<Push> {
    let commits: String = r.get(4)?;
    let commits: Vec<Commit> = serde_json::from_str(&commits).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok(Push {
        provider: r.get(0)?,
        repo: r.get(1)?,
        before: r.get(2)?,
        after: r.get(3)?,
        commits,
        unlisted: r.get(5)?,
    })
}

/// A push's commits into the commit graph: the parent of a commit listed by several pushes is the one the
/// first of them (by `before`, `after`) gives.
pub(crate) fn put_commits(c: &Connection, p: &Push) -> rusqlite::Result<()> {
    let mut put = c.prepare_cached(
        "INSERT INTO commits (repo, sha, parent, time, message, push_before, push_after, unlisted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (repo, sha) DO UPDATE SET parent = excluded.parent, time = excluded.time,
           message = excluded.message, push_before = excluded.push_before,
           push_after = excluded.push_after, unlisted = excluded.unlisted
         WHERE (excluded.push_before, excluded.push_after) < (commits.push_before, commits.push_after)",
    )?;
    let mut parent = p.before.as_str();
    for (i, commit) in p.commits.iter().enumerate() {
        // The commits a push did not list sit between `before` and its oldest listed commit.
        let unlisted = if i == 0 { p.unlisted } else { 0 };
        put.execute(params![
            p.repo,
            commit.sha,
            parent,
            commit.time,
            commit.message,
            p.before,
            p.after,
            unlisted
        ])?;
        parent = commit.sha.as_str();
    }
    Ok(())
}

/// A row of `provider, repo, deployment_id, environment, production, sha, time, rollback, rework` of a
/// success.
pub(crate) fn successful_deployment(r: &Row) -> rusqlite::Result<Deployment> {
    deployment_fact(r, DeploymentOutcome::Success)
}

/// A row of `provider, repo, deployment_id, environment, production, sha, time, rollback, rework` of
/// `outcome`.
pub(crate) fn deployment_fact(r: &Row, outcome: DeploymentOutcome) -> rusqlite::Result<Deployment> {
    Ok(Deployment {
        provider: r.get(0)?,
        repo: r.get(1)?,
        deployment_id: r.get(2)?,
        environment: r.get(3)?,
        production: r.get(4)?,
        sha: r.get(5)?,
        time: r.get(6)?,
        outcome,
        rollback: r.get(7)?,
        rework: r.get(8)?,
    })
}

pub(crate) fn bad_text(column: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        what.to_string().into(),
    )
}

/// A row of `provider, repo, run_id, attempt, name, sha, branch, outcome, started, finished`.
pub(crate) fn build_row(r: &Row) -> rusqlite::Result<em_core::domain::Build> {
    let outcome: String = r.get(7)?;
    Ok(em_core::domain::Build {
        provider: r.get(0)?,
        repo: r.get(1)?,
        run_id: r.get(2)?,
        attempt: r.get(3)?,
        name: r.get(4)?,
        sha: r.get(5)?,
        branch: r.get(6)?,
        outcome: em_core::domain::BuildOutcome::parse(&outcome)
            .ok_or_else(|| bad_text(7, "unknown build outcome"))?,
        started: r.get(8)?,
        finished: r.get(9)?,
    })
}

/// A repository's pull request events, builds and work items, into `out`.
pub(crate) fn other_facts(
    c: &Connection,
    repo: &str,
    out: &mut em_core::ports::StoredFacts,
) -> rusqlite::Result<()> {
    use em_core::domain::{PullRequestEvent, PullRequestEventKind, WorkItem, WorkItemAction};
    let mut s = c.prepare_cached(
        "SELECT provider, repo, number, kind, time, title, sha FROM pull_requests WHERE repo = ?1",
    )?;
    for p in s.query_map([repo], |r| {
        let kind: String = r.get(3)?;
        let kind = PullRequestEventKind::parse(&kind)
            .ok_or_else(|| bad_text(3, "unknown pull request event kind"))?;
        Ok(PullRequestEvent {
            provider: r.get(0)?,
            repo: r.get(1)?,
            number: r.get::<_, i64>(2)? as u64,
            kind,
            time: r.get(4)?,
            title: r.get(5)?,
            sha: r.get(6)?,
        })
    })? {
        out.pull_requests.push(p?);
    }
    let mut s = c.prepare_cached(
        "SELECT provider, repo, run_id, attempt, name, sha, branch, outcome, started, finished
         FROM builds WHERE repo = ?1",
    )?;
    for b in s.query_map([repo], build_row)? {
        out.builds.push(b?);
    }
    let mut s = c.prepare_cached(
        "SELECT provider, repo, number, action, time, title FROM work_items WHERE repo = ?1",
    )?;
    for w in s.query_map([repo], |r| {
        let action: String = r.get(3)?;
        Ok(WorkItem {
            provider: r.get(0)?,
            repo: r.get(1)?,
            number: r.get::<_, i64>(2)? as u64,
            action: WorkItemAction::parse(&action)
                .ok_or_else(|| bad_text(3, "unknown work item action"))?,
            time: r.get(4)?,
            title: r.get(5)?,
        })
    })? {
        out.work_items.push(w?);
    }
    let mut s = c.prepare_cached(
        "SELECT provider, repo, analysis_id, sha, branch, time, passed, coverage_bp, new_issues
         FROM quality_reports WHERE repo = ?1",
    )?;
    for q in s.query_map([repo], |r| {
        Ok(em_core::domain::QualityReport {
            provider: r.get(0)?,
            repo: r.get(1)?,
            analysis_id: r.get(2)?,
            sha: r.get(3)?,
            branch: r.get(4)?,
            time: r.get(5)?,
            passed: r.get(6)?,
            coverage_bp: r.get(7)?,
            new_issues: r.get::<_, Option<i64>>(8)?.map(|n| n as u64),
        })
    })? {
        out.quality_reports.push(q?);
    }
    Ok(())
}

/// A row of `provider, incident_id, event_id, kind, time, service_name, title`.
pub(crate) fn incident_event(r: &Row) -> rusqlite::Result<IncidentEvent> {
    let kind: String = r.get(3)?;
    let kind = IncidentEventKind::parse(&kind).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            3,
            rusqlite::types::Type::Text,
            format!("unknown incident event kind {kind:?}").into(),
        )
    })?;
    Ok(IncidentEvent {
        provider: r.get(0)?,
        incident_id: r.get(1)?,
        event_id: r.get(2)?,
        kind,
        time: r.get(4)?,
        service_name: r.get(5)?,
        title: r.get(6)?,
        severity: r.get(7)?,
    })
}

pub(crate) fn deployment_row(r: &Row) -> rusqlite::Result<DeploymentRow> {
    Ok(DeploymentRow {
        key: r.get("key")?,
        repo: r.get("repo")?,
        environment: r.get("environment")?,
        time: r.get("time")?,
        sha: r.get("sha")?,
        frontier: r.get("frontier")?,
        failed: r.get("failed")?,
        rework: r.get("rework")?,
        rollback: r.get("rollback")?,
    })
}

/// A row of `sha, parent, time, message, unlisted` from `commits`.
pub(crate) fn commit_row(r: &Row) -> rusqlite::Result<CommitRow> {
    Ok(CommitRow {
        sha: r.get(0)?,
        parent: r.get(1)?,
        time: r.get(2)?,
        message: r.get(3)?,
        unlisted: r.get(4)?,
    })
}

pub(crate) fn change_row(r: &Row) -> rusqlite::Result<ChangeRow> {
    Ok(ChangeRow {
        sha: r.get("sha")?,
        repo: r.get("repo")?,
        environment: r.get("environment")?,
        deployment_key: r.get("deployment_key")?,
        deployment_time: r.get("deployment_time")?,
        commit_time: r.get("commit_time")?,
        unlisted: r.get("unlisted")?,
    })
}

pub(crate) fn incident_row(r: &Row) -> rusqlite::Result<IncidentRow> {
    let key: Option<String> = r.get("attributed_key")?;
    Ok(IncidentRow {
        id: r.get("id")?,
        opened: r.get("opened")?,
        acknowledged: r.get("acknowledged")?,
        resolved: r.get("resolved")?,
        attributed_to: match key {
            Some(deployment_key) => Some(Attribution {
                deployment_key,
                repo: r
                    .get::<_, Option<String>>("attributed_repo")?
                    .unwrap_or_default(),
                environment: r
                    .get::<_, Option<String>>("attributed_environment")?
                    .unwrap_or_default(),
            }),
            None => None,
        },
        outage: r.get("outage")?,
    })
}

pub(crate) const DEPLOYMENT_COLUMNS: &str =
    "key, repo, environment, time, sha, frontier, failed, rework, rollback";
pub(crate) const CHANGE_COLUMNS: &str =
    "sha, repo, environment, deployment_key, deployment_time, commit_time, unlisted";
pub(crate) const INCIDENT_COLUMNS: &str =
    "id, opened, acknowledged, resolved, attributed_key, attributed_repo, attributed_environment, outage";

pub(crate) fn frontier7(f: &str) -> String {
    f.chars().take(7).collect()
}

pub(crate) fn in_list(column: &str, n: usize) -> String {
    let marks = vec!["?"; n].join(", ");
    format!("{column} IN ({marks})")
}
