//! The embedded link state and observations: linked rows per service, one blob of observations per
//! service-day, and the indexed lookups incremental linking makes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

use em_core::domain::{same_sha, Deployment, IncidentEvent};
use em_core::ports::{CommitRow, Cut, Links, PortError};
use em_core::rows::{
    blob, day_of, days_of, earliest_waiting, ChangeRow, DeploymentRow, IncidentRow, Linked, DAY,
};
use em_core::time::Millis;

use crate::codec::{
    change_row, commit_row, deployment_row, frontier7, incident_event, incident_row,
    successful_deployment, CHANGE_COLUMNS, DEPLOYMENT_COLUMNS, INCIDENT_COLUMNS,
};
use crate::schema::open_connection;
use crate::store::{classify, EmbeddedStore};

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
            None => open_connection(&store.inner.path).map_err(classify)?,
        };
        conn.execute_batch("BEGIN").map_err(classify)?;
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
        f(conn).map_err(classify)
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
                "SELECT provider, incident_id, event_id, kind, time, service_name, title, severity
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
           (service, id, opened, acknowledged, resolved, attributed_key, attributed_repo, attributed_environment,
            outage)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        service,
        i.id,
        i.opened,
        i.acknowledged,
        i.resolved,
        a.map(|a| &a.deployment_key),
        a.map(|a| &a.repo),
        a.map(|a| &a.environment),
        i.outage
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
