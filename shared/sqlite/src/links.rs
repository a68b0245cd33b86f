//! The embedded link state and observations: linked rows per service, one blob of observations per
//! service-day, and the indexed lookups incremental linking makes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use em_core::domain::{same_sha, Deployment, DeploymentOutcome, IncidentEvent, IncidentEventKind};
use em_core::ports::{CommitRow, Cut, Links, PortError};
use em_core::rows::{
    blob, day_of, days_of, earliest_waiting, Attribution, ChangeRow, DeploymentRow, IncidentRow,
    Linked, Observations, DAY,
};
use em_core::time::Millis;

use crate::EmbeddedStore;

/// Linking's view of the embedded store: one connection of its own, in one read transaction (a consistent
/// snapshot, and one lock taken rather than one per lookup). Its lookups are short indexed queries run inline
/// (a thread hop each would cost more than the query).
pub struct SqliteLinks<'a> {
    store: &'a EmbeddedStore,
    conn: Mutex<Option<Connection>>,
}

impl<'a> SqliteLinks<'a> {
    pub(crate) fn new(store: &'a EmbeddedStore) -> Result<Self, PortError> {
        let pooled = store
            .inner
            .linkers
            .lock()
            .map_err(|_| PortError::transient("linker pool lock poisoned"))?
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => crate::open_connection(&store.inner.path).map_err(crate::classify)?,
        };
        conn.execute_batch("BEGIN").map_err(crate::classify)?;
        Ok(SqliteLinks {
            store,
            conn: Mutex::new(Some(conn)),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, PortError> {
        let guard = self
            .conn
            .lock()
            .map_err(|_| PortError::transient("linker connection lock poisoned"))?;
        let conn = guard
            .as_ref()
            .ok_or_else(|| PortError::transient("linker connection gone"))?;
        f(conn).map_err(crate::classify)
    }
}

impl Drop for SqliteLinks<'_> {
    /// Ends the read transaction and gives the connection back to the pool.
    fn drop(&mut self) {
        let Some(conn) = self.conn.get_mut().ok().and_then(Option::take) else {
            return;
        };
        if conn.execute_batch("COMMIT").is_ok() {
            if let Ok(mut pool) = self.store.inner.linkers.lock() {
                pool.push(conn);
            }
        }
    }
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
    })
}

fn deployment_row(r: &Row) -> rusqlite::Result<DeploymentRow> {
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
fn commit_row(r: &Row) -> rusqlite::Result<CommitRow> {
    Ok(CommitRow {
        sha: r.get(0)?,
        parent: r.get(1)?,
        time: r.get(2)?,
        message: r.get(3)?,
        unlisted: r.get(4)?,
    })
}

fn change_row(r: &Row) -> rusqlite::Result<ChangeRow> {
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

fn incident_row(r: &Row) -> rusqlite::Result<IncidentRow> {
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
    })
}

const DEPLOYMENT_COLUMNS: &str =
    "key, repo, environment, time, sha, frontier, failed, rework, rollback";
const CHANGE_COLUMNS: &str =
    "sha, repo, environment, deployment_key, deployment_time, commit_time, unlisted";
const INCIDENT_COLUMNS: &str =
    "id, opened, acknowledged, resolved, attributed_key, attributed_repo, attributed_environment";

fn frontier7(f: &str) -> String {
    f.chars().take(7).collect()
}

impl Links for SqliteLinks<'_> {
    fn keeps_rows(&self) -> bool {
        true
    }

    async fn commit(&self, repo: &str, sha: &str) -> Result<Option<CommitRow>, PortError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT sha, parent, time, message, unlisted FROM commits WHERE repo = ?1 AND sha = ?2",
            )?
            .query_row(params![repo, sha], commit_row)
            .optional()
        })
    }

    async fn commits(&self, repo: &str, shas: &[String]) -> Result<Vec<CommitRow>, PortError> {
        self.with(|c| {
            let mut out = Vec::with_capacity(shas.len());
            for chunk in shas.chunks(64) {
                let marks = vec!["?"; chunk.len()].join(", ");
                let mut s = c.prepare_cached(&format!(
                    "SELECT sha, parent, time, message, unlisted FROM commits WHERE repo = ? AND sha IN ({marks})"
                ))?;
                let args = std::iter::once(repo).chain(chunk.iter().map(String::as_str));
                for row in s.query_map(rusqlite::params_from_iter(args), commit_row)? {
                    out.push(row?);
                }
            }
            Ok(out)
        })
    }

    async fn resolve_prefix(&self, repo: &str, prefix: &str) -> Result<Option<String>, PortError> {
        self.with(|c| {
            let hits: Vec<String> = c
                .prepare_cached(
                    "SELECT sha FROM commits WHERE repo = ?1 AND sha >= ?2 ORDER BY sha LIMIT 2",
                )?
                .query_map(params![repo, prefix], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let hits: Vec<String> = hits.into_iter().filter(|s| s.starts_with(prefix)).collect();
            Ok(match hits.as_slice() {
                [one] => Some(one.clone()),
                _ => None,
            })
        })
    }

    async fn deployments_since(
        &self,
        repos: &[String],
        from: Option<Millis>,
    ) -> Result<Vec<Deployment>, PortError> {
        self.with(|c| {
            let mut out = Vec::new();
            let mut s = c.prepare_cached(
                "SELECT provider, repo, deployment_id, environment, production, sha, time, rollback, rework
                 FROM deployments WHERE repo = ?1 AND outcome = 'success' AND time >= ?2",
            )?;
            for repo in repos {
                let rows = s.query_map(
                    params![repo, from.unwrap_or(Millis::MIN)],
                    successful_deployment,
                )?;
                for d in rows {
                    out.push(d?);
                }
            }
            Ok(out)
        })
    }

    async fn incident_ids_since(
        &self,
        aliases: &[String],
        from: Option<Millis>,
    ) -> Result<Vec<String>, PortError> {
        self.with(|c| {
            let mut out = BTreeSet::new();
            let mut s = c.prepare_cached(
                "SELECT DISTINCT incident_id FROM incident_events
                 WHERE service_name = ?1 AND kind = 'opened' AND time >= ?2",
            )?;
            for a in aliases {
                for id in s.query_map(params![a, from.unwrap_or(Millis::MIN)], |r| r.get(0))? {
                    out.insert(id?);
                }
            }
            Ok(out.into_iter().collect())
        })
    }

    async fn incident_events(
        &self,
        aliases: &[String],
        ids: &[String],
    ) -> Result<Vec<IncidentEvent>, PortError> {
        self.with(|c| {
            let mut out = Vec::new();
            let mut s = c.prepare_cached(
                "SELECT provider, incident_id, event_id, kind, time, service_name, title
                 FROM incident_events WHERE service_name = ?1 AND incident_id = ?2",
            )?;
            for a in aliases {
                for id in ids {
                    let rows = s.query_map(params![a, id], incident_event)?;
                    for e in rows {
                        out.push(e?);
                    }
                }
            }
            Ok(out)
        })
    }

    async fn deployment_rows_before(
        &self,
        service: &str,
        repo: Option<&str>,
        time: Millis,
        key: &str,
        n: usize,
    ) -> Result<Vec<DeploymentRow>, PortError> {
        self.with(|c| match repo {
            None => c
                .prepare_cached(&format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM o_deployments
                     WHERE service = ?1 AND (time < ?2 OR (time = ?2 AND key < ?3))
                     ORDER BY time DESC, key DESC LIMIT ?4"
                ))?
                .query_map(params![service, time, key, n as i64], deployment_row)?
                .collect(),
            Some(repo) => c
                .prepare_cached(&format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM o_deployments INDEXED BY o_deployments_repo
                     WHERE service = ?1 AND repo = ?5 COLLATE NOCASE
                       AND (time < ?2 OR (time = ?2 AND key < ?3))
                     ORDER BY time DESC, key DESC LIMIT ?4"
                ))?
                .query_map(params![service, time, key, n as i64, repo], deployment_row)?
                .collect(),
        })
    }

    async fn deployed_before(
        &self,
        service: &str,
        repo: &str,
        sha: &str,
        time: Millis,
        key: &str,
    ) -> Result<bool, PortError> {
        self.with(|c| {
            // The same sha, or a longer one it abbreviates: a range of the (service, sha) index (a sha too
            // short to abbreviate anything is only itself).
            let upper = if sha.len() >= em_core::domain::MIN_SHA_LEN {
                format!("{sha}{}", char::MAX)
            } else {
                sha.to_string()
            };
            let exact = c
                .prepare_cached(
                    "SELECT 1 FROM o_deployments WHERE service = ?1 AND sha >= ?2 AND sha <= ?5
                     AND repo = ?6 COLLATE NOCASE
                     AND (time < ?3 OR (time = ?3 AND key < ?4)) LIMIT 1",
                )?
                .query_row(params![service, sha, time, key, upper, repo], |_| Ok(()))
                .optional()?
                .is_some();
            if exact {
                return Ok(true);
            }
            // ... or a short one that is a prefix of it.
            let shorts: Vec<String> = c
                .prepare_cached(
                    "SELECT sha FROM o_deployments INDEXED BY o_deployments_short
                     WHERE service = ?1 AND short = 1 AND repo = ?4 COLLATE NOCASE
                       AND (time < ?2 OR (time = ?2 AND key < ?3))",
                )?
                .query_map(params![service, time, key, repo], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(shorts.iter().any(|s| same_sha(s, sha)))
        })
    }

    async fn shipped_at(&self, service: &str, sha: &str) -> Result<Option<Millis>, PortError> {
        self.with(|c| {
            c.prepare_cached(
                "SELECT deployment_time FROM o_changes WHERE service = ?1 AND sha = ?2",
            )?
            .query_row(params![service, sha], |r| r.get(0))
            .optional()
        })
    }

    async fn waiting_on(
        &self,
        service: &str,
        shas: &[String],
    ) -> Result<Option<DeploymentRow>, PortError> {
        self.with(|c| {
            let mut candidates = Vec::new();
            for chunk in shas.chunks(64) {
                let keys: Vec<String> = chunk.iter().map(|s| frontier7(s)).collect();
                let marks = vec!["?"; keys.len()].join(", ");
                let mut s = c.prepare_cached(&format!(
                    "SELECT {DEPLOYMENT_COLUMNS} FROM o_deployments WHERE service = ? AND frontier7 IN ({marks})"
                ))?;
                let args = std::iter::once(service).chain(keys.iter().map(String::as_str));
                for d in s.query_map(rusqlite::params_from_iter(args), deployment_row)? {
                    candidates.push(d?);
                }
            }
            Ok(earliest_waiting(candidates, shas))
        })
    }

    async fn incident_rows(
        &self,
        service: &str,
        ids: &[String],
    ) -> Result<Vec<IncidentRow>, PortError> {
        self.with(|c| {
            let mut s = c.prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM o_incidents WHERE service = ?1 AND id = ?2"
            ))?;
            let mut out = Vec::new();
            for id in ids {
                if let Some(r) = s.query_row(params![service, id], incident_row).optional()? {
                    out.push(r);
                }
            }
            Ok(out)
        })
    }

    async fn incidents_open_at(
        &self,
        service: &str,
        at: Millis,
    ) -> Result<Vec<IncidentRow>, PortError> {
        self.with(|c| {
            c.prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM o_incidents INDEXED BY o_incidents_resolved
                 WHERE service = ?1 AND resolved IS NULL AND opened < ?2 AND attributed_key IS NOT NULL
                 UNION ALL
                 SELECT {INCIDENT_COLUMNS} FROM o_incidents
                 WHERE service = ?1 AND resolved > ?2 AND opened < ?2 AND attributed_key IS NOT NULL"
            ))?
            .query_map(params![service, at], incident_row)?
            .collect()
        })
    }
}

pub(crate) fn version(c: &Connection, service: &str) -> rusqlite::Result<u64> {
    Ok(
        c.prepare_cached("SELECT version FROM o_versions WHERE service = ?1")?
            .query_row([service], |r| r.get::<_, i64>(0))
            .optional()?
            .unwrap_or(0) as u64,
    )
}

/// A service's rows in `[from, to)`: deployments by time, changes by their deployment's time, incidents by
/// opening.
pub(crate) fn rows_between(
    c: &Connection,
    service: &str,
    from: Millis,
    to: Millis,
) -> rusqlite::Result<Linked> {
    let deployments = c
        .prepare_cached(&format!(
            "SELECT {DEPLOYMENT_COLUMNS} FROM o_deployments WHERE service = ?1 AND time >= ?2 AND time < ?3"
        ))?
        .query_map(params![service, from, to], deployment_row)?
        .collect::<rusqlite::Result<_>>()?;
    let changes = c
        .prepare_cached(&format!(
            "SELECT {CHANGE_COLUMNS} FROM o_changes WHERE service = ?1 AND deployment_time >= ?2 AND deployment_time < ?3"
        ))?
        .query_map(params![service, from, to], change_row)?
        .collect::<rusqlite::Result<_>>()?;
    let incidents = c
        .prepare_cached(&format!(
            "SELECT {INCIDENT_COLUMNS} FROM o_incidents WHERE service = ?1 AND opened >= ?2 AND opened < ?3"
        ))?
        .query_map(params![service, from, to], incident_row)?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Linked {
        deployments,
        changes,
        incidents,
    })
}

fn put_deployment(c: &Connection, service: &str, d: &DeploymentRow) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO o_deployments
           (service, key, time, repo, environment, sha, short, frontier, frontier7, failed, rework,
            rollback)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        service,
        d.key,
        d.time,
        d.repo,
        d.environment,
        d.sha,
        d.sha.len() < 40,
        d.frontier,
        d.frontier.as_deref().map(frontier7),
        d.failed,
        d.rework,
        d.rollback
    ])?;
    Ok(())
}

fn put_change(c: &Connection, service: &str, x: &ChangeRow) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO o_changes
           (service, sha, repo, environment, deployment_key, deployment_time, commit_time, unlisted)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        service,
        x.sha,
        x.repo,
        x.environment,
        x.deployment_key,
        x.deployment_time,
        x.commit_time,
        x.unlisted
    ])?;
    Ok(())
}

fn put_incident(c: &Connection, service: &str, i: &IncidentRow) -> rusqlite::Result<()> {
    let a = i.attributed_to.as_ref();
    c.prepare_cached(
        "INSERT OR REPLACE INTO o_incidents
           (service, id, opened, acknowledged, resolved, attributed_key, attributed_repo, attributed_environment)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        service,
        i.id,
        i.opened,
        i.acknowledged,
        i.resolved,
        a.map(|a| &a.deployment_key),
        a.map(|a| &a.repo),
        a.map(|a| &a.environment)
    ])?;
    Ok(())
}

/// Writes the rows of `new` that differ from `old` (by key), deletes those gone, and notes the days either
/// touches.
fn diff<T: PartialEq>(
    old: &[T],
    new: &[T],
    key: impl Fn(&T) -> &str,
    time: impl Fn(&T) -> Millis,
    days: &mut BTreeSet<i64>,
    mut delete: impl FnMut(&str) -> rusqlite::Result<()>,
    mut put: impl FnMut(&T) -> rusqlite::Result<()>,
) -> rusqlite::Result<()> {
    let before: BTreeMap<&str, &T> = old.iter().map(|x| (key(x), x)).collect();
    let after: BTreeMap<&str, &T> = new.iter().map(|x| (key(x), x)).collect();
    for (k, x) in &before {
        if !after.contains_key(k) {
            delete(k)?;
            days.insert(day_of(time(x)));
        }
    }
    for (k, x) in &after {
        let was = before.get(k);
        if was != Some(x) {
            put(x)?;
            days.insert(day_of(time(x)));
            if let Some(o) = was {
                days.insert(day_of(time(o)));
            }
        }
    }
    Ok(())
}

/// Applies a re-link: rows that changed are written, rows that went are deleted, and the observation blob
/// of every day those touch is rebuilt. Nothing else is written.
pub(crate) fn replace_rows(
    c: &Connection,
    service: &str,
    cut: Cut,
    rows: Linked,
    expected: u64,
) -> rusqlite::Result<bool> {
    let current = version(c, service)?;
    if current != expected {
        return Ok(false);
    }
    let old = rows_between(c, service, cut.from().unwrap_or(Millis::MIN), Millis::MAX)?;
    let mut days = BTreeSet::new();
    diff(
        &old.deployments,
        &rows.deployments,
        |d| d.key.as_str(),
        |d| d.time,
        &mut days,
        |k| {
            c.prepare_cached("DELETE FROM o_deployments WHERE service = ?1 AND key = ?2")?
                .execute(params![service, k])
                .map(drop)
        },
        |d| put_deployment(c, service, d),
    )?;
    diff(
        &old.changes,
        &rows.changes,
        |x| x.sha.as_str(),
        |x| x.deployment_time,
        &mut days,
        |k| {
            c.prepare_cached("DELETE FROM o_changes WHERE service = ?1 AND sha = ?2")?
                .execute(params![service, k])
                .map(drop)
        },
        |x| put_change(c, service, x),
    )?;
    diff(
        &old.incidents,
        &rows.incidents,
        |x| x.id.as_str(),
        |x| x.opened,
        &mut days,
        |k| {
            c.prepare_cached("DELETE FROM o_incidents WHERE service = ?1 AND id = ?2")?
                .execute(params![service, k])
                .map(drop)
        },
        |x| put_incident(c, service, x),
    )?;

    for day in days {
        let linked = rows_between(c, service, day * DAY, (day + 1) * DAY)?;
        match days_of(&linked).remove(&day) {
            Some(obs) => {
                c.prepare_cached(
                    "INSERT OR REPLACE INTO o_days (service, day, rows) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![service, day, blob::encode(&obs)])?;
            }
            None => {
                c.prepare_cached("DELETE FROM o_days WHERE service = ?1 AND day = ?2")?
                    .execute(params![service, day])?;
            }
        }
    }
    c.prepare_cached("INSERT OR REPLACE INTO o_versions (service, version) VALUES (?1, ?2)")?
        .execute(params![service, current as i64 + 1])?;
    Ok(true)
}

/// The observations of `services` (all when `None`) in `[from, to)`: one blob per service-day.
pub(crate) fn observations(
    c: &Connection,
    services: Option<&[String]>,
    from: Millis,
    to: Millis,
) -> rusqlite::Result<Observations> {
    let mut out = Observations::default();
    if from >= to {
        return Ok(out);
    }
    let (first, last) = (day_of(from), day_of(to - 1));
    let mut add = |service: String, day: i64, bytes: Vec<u8>| -> rusqlite::Result<()> {
        if let Some(obs) = blob::decode_stored(&bytes, &service, &day.to_string()) {
            out.extend_within(obs, from, to);
        }
        Ok(())
    };
    match services {
        Some(list) => {
            let mut s = c.prepare_cached(
                "SELECT day, rows FROM o_days WHERE service = ?1 AND day >= ?2 AND day <= ?3",
            )?;
            for service in list {
                let blobs: Vec<(i64, Vec<u8>)> = s
                    .query_map(params![service, first, last], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?;
                for (day, b) in blobs {
                    add(service.clone(), day, b)?;
                }
            }
        }
        None => {
            let rows: Vec<(String, i64, Vec<u8>)> = c
                .prepare_cached(
                    "SELECT service, day, rows FROM o_days WHERE day >= ?1 AND day <= ?2",
                )?
                .query_map(params_from_iter([first, last]), |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            for (service, day, b) in rows {
                add(service, day, b)?;
            }
        }
    }
    Ok(out)
}
