//! The delivery facts of a window (builds, failed attempts, merged pull requests) and when merge commits
//! shipped: what the delivery metrics read for each query.

use std::collections::HashMap;

use em_core::domain::{Commit, DeploymentOutcome, PullRequestEventKind};
use em_core::ports::{DeliveryFacts, MergedPullRequest};
use em_core::time::Millis;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::codec::{bad_text, build_row, deployment_fact};

/// Runs `sql` (whose `{repo}` is a repository condition on `?1`, and `?2`, `?3` the window) for each of
/// `repos`, or once over every repository, collecting the rows `map` reads.
fn per_repo<T>(
    c: &Connection,
    sql: &str,
    repos: Option<&[String]>,
    from: Millis,
    to: Millis,
    map: impl Fn(&Row) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    let mut out = Vec::new();
    match repos {
        Some(list) => {
            let mut s = c.prepare_cached(&sql.replace("{repo}", "repo = ?1"))?;
            for repo in list {
                for row in s.query_map(params![repo, from, to], &map)? {
                    out.push(row?);
                }
            }
        }
        None => {
            let mut s = c.prepare_cached(&sql.replace("{repo}", "?1 IS NULL"))?;
            for row in s.query_map(params![Option::<String>::None, from, to], &map)? {
                out.push(row?);
            }
        }
    }
    Ok(out)
}

/// The full sha a merge's `sha` names: itself when full, else the one known commit it starts.
fn full_sha(c: &Connection, repo: &str, sha: &str) -> rusqlite::Result<Option<String>> {
    if sha.len() >= 40 {
        return Ok(Some(sha.to_string()));
    }
    let hits: Vec<String> = c
        .prepare_cached(
            "SELECT sha FROM commits WHERE repo = ?1 AND sha >= ?2 ORDER BY sha LIMIT 2",
        )?
        .query_map(params![repo, sha], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let hits: Vec<String> = hits.into_iter().filter(|s| s.starts_with(sha)).collect();
    Ok(match hits.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    })
}

/// The earliest commit time of the push that first listed `sha`.
fn first_commit(c: &Connection, repo: &str, sha: &str) -> rusqlite::Result<Option<Millis>> {
    let Some((before, after)) = c
        .prepare_cached("SELECT push_before, push_after FROM commits WHERE repo = ?1 AND sha = ?2")?
        .query_row(params![repo, sha], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let Some(commits) = c
        .prepare_cached(
            "SELECT commits FROM pushes WHERE repo = ?1 AND before_sha = ?2 AND after_sha = ?3",
        )?
        .query_row(params![repo, before, after], |r| r.get::<_, String>(0))
        .optional()?
    else {
        return Ok(None);
    };
    let commits: Vec<Commit> =
        serde_json::from_str(&commits).map_err(|_| bad_text(0, "unreadable push commits"))?;
    Ok(commits.iter().map(|c| c.time).min())
}

pub(crate) fn delivery(
    c: &Connection,
    repos: Option<&[String]>,
    from: Millis,
    to: Millis,
) -> rusqlite::Result<DeliveryFacts> {
    let builds = per_repo(
        c,
        "SELECT provider, repo, run_id, attempt, name, sha, branch, outcome, started, finished
         FROM builds WHERE {repo} AND finished >= ?2 AND finished < ?3",
        repos,
        from,
        to,
        build_row,
    )?;
    let failed_attempts = per_repo(
        c,
        "SELECT provider, repo, deployment_id, environment, production, sha, time, rollback, rework
         FROM deployments WHERE {repo} AND outcome = 'failure' AND time >= ?2 AND time < ?3",
        repos,
        from,
        to,
        |r| deployment_fact(r, DeploymentOutcome::Failure),
    )?;
    let merged = per_repo(
        c,
        "SELECT provider, repo, number, time, sha FROM pull_requests
         WHERE {repo} AND kind = 'merged' AND time >= ?2 AND time < ?3",
        repos,
        from,
        to,
        |r| {
            Ok(MergedPullRequest {
                provider: r.get(0)?,
                repo: r.get(1)?,
                number: r.get::<_, i64>(2)? as u64,
                merged: r.get(3)?,
                sha: r.get(4)?,
                first_commit: None,
                opened: None,
                first_review: None,
                approved: None,
            })
        },
    )?;
    let mut pull_requests = Vec::with_capacity(merged.len());
    let mut events = c.prepare_cached(
        "SELECT kind, time FROM pull_requests WHERE provider = ?1 AND repo = ?2 AND number = ?3",
    )?;
    for mut p in merged {
        let rows = events.query_map(params![p.provider, p.repo, p.number as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Millis>(1)?))
        })?;
        for row in rows {
            let (kind, time) = row?;
            let earliest = |slot: &mut Option<Millis>| {
                *slot = Some(slot.map_or(time, |t| t.min(time)));
            };
            match PullRequestEventKind::parse(&kind) {
                Some(PullRequestEventKind::Opened) => earliest(&mut p.opened),
                Some(PullRequestEventKind::Reviewed) => earliest(&mut p.first_review),
                Some(PullRequestEventKind::Approved) => {
                    earliest(&mut p.approved);
                    earliest(&mut p.first_review);
                }
                _ => {}
            }
        }
        if let Some(sha) = p.sha.take() {
            p.sha = Some(full_sha(c, &p.repo, &sha)?.unwrap_or(sha));
        }
        if let Some(sha) = &p.sha {
            p.first_commit = first_commit(c, &p.repo, sha)?;
        }
        pull_requests.push(p);
    }
    Ok(DeliveryFacts {
        builds,
        failed_attempts,
        pull_requests,
    })
}

/// When `service` shipped each of `shas` that it did.
pub(crate) fn shipped(
    c: &Connection,
    service: &str,
    shas: &[String],
) -> rusqlite::Result<Vec<(String, Millis)>> {
    let mut s =
        c.prepare_cached("SELECT deployment_time FROM o_changes WHERE service = ?1 AND sha = ?2")?;
    let mut out = HashMap::new();
    for sha in shas {
        if let Some(t) = s
            .query_row(params![service, sha], |r| r.get(0))
            .optional()?
        {
            out.insert(sha.clone(), t);
        }
    }
    Ok(out.into_iter().collect())
}
