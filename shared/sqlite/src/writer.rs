//! The [`Store`] port: facts written and read back, the linked rows replaced, and the meta entries.

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

use em_core::domain::Fact;
use em_core::ports::{Cut, FactSources, PortError, RowsReplacement, RowsState, Store, StoredFacts};
use em_core::rows::Linked;

use crate::codec::{self, in_list, push_row, put_commits};
use crate::links;
use crate::store::EmbeddedStore;

fn put_fact(c: &Connection, fact: &Fact) -> rusqlite::Result<()> {
    match fact {
        Fact::Push(p) => {
            let commits = serde_json::to_string(&p.commits)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            c.prepare_cached(
                "INSERT OR IGNORE INTO pushes (repo, before_sha, after_sha, provider, commits, unlisted)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![p.repo, p.before, p.after, p.provider, commits, p.unlisted])?;
            put_commits(c, p)?;
        }
        Fact::Deployment(d) => {
            // The same provider deployment id and outcome reported again: the earliest report stands.
            c.prepare_cached(
                "INSERT INTO deployments
                   (provider, repo, deployment_id, outcome, environment, production, sha, time, rollback,
                    rework)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (provider, repo, deployment_id, outcome) DO UPDATE SET
                   environment = excluded.environment, production = excluded.production,
                   sha = excluded.sha, time = excluded.time, rollback = excluded.rollback,
                   rework = excluded.rework
                 WHERE excluded.time < deployments.time",
            )?
            .execute(params![
                d.provider,
                d.repo,
                d.deployment_id,
                d.outcome.as_str(),
                d.environment,
                d.production,
                d.sha,
                d.time,
                d.rollback,
                d.rework
            ])?;
        }
        Fact::Incident(i) => {
            c.prepare_cached(
                "INSERT OR IGNORE INTO incident_events (provider, event_id, incident_id, kind, time, service_name, title, severity)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                i.provider,
                i.event_id,
                i.incident_id,
                i.kind.as_str(),
                i.time,
                i.service_name,
                i.title,
                i.severity
            ])?;
        }
        Fact::Build(b) => {
            // A finished attempt does not change: its first report stands.
            c.prepare_cached(
                "INSERT OR IGNORE INTO builds
                   (provider, repo, run_id, attempt, name, sha, branch, outcome, started, finished)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                b.provider,
                b.repo,
                b.run_id,
                b.attempt,
                b.name,
                b.sha,
                b.branch,
                b.outcome.as_str(),
                b.started,
                b.finished
            ])?;
        }
        Fact::QualityReport(q) => {
            // A report is one analysis: a re-delivery changes nothing.
            c.prepare_cached(
                "INSERT OR IGNORE INTO quality_reports
                   (provider, repo, analysis_id, sha, branch, time, passed, coverage_bp, new_issues)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                q.provider,
                q.repo,
                q.analysis_id,
                q.sha,
                q.branch,
                q.time,
                q.passed,
                q.coverage_bp,
                q.new_issues.map(|n| n as i64)
            ])?;
        }
        Fact::WorkItem(w) => {
            c.prepare_cached(
                "INSERT INTO work_items (provider, repo, number, action, time, title) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (provider, repo, number, action) DO UPDATE SET time = excluded.time
                 WHERE excluded.time < work_items.time",
            )?
            .execute(params![
                w.provider,
                w.repo,
                w.number as i64,
                w.action.as_str(),
                w.time,
                w.title
            ])?;
        }
        Fact::PullRequest(p) => {
            c.prepare_cached(
                "INSERT INTO pull_requests (provider, repo, number, kind, time, title, sha)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (provider, repo, number, kind) DO UPDATE SET time = excluded.time,
                 sha = excluded.sha WHERE excluded.time < pull_requests.time",
            )?
            .execute(params![
                p.provider,
                p.repo,
                p.number as i64,
                p.kind.as_str(),
                p.time,
                p.title,
                p.sha
            ])?;
        }
    }
    Ok(())
}

impl Store for EmbeddedStore {
    type Links<'a> = links::SqliteLinks<'a>;

    async fn put_facts(&self, facts: Vec<Fact>) -> Result<(), PortError> {
        if facts.is_empty() {
            return Ok(());
        }
        self.write(move |c| facts.iter().try_for_each(|f| put_fact(c, f)))
            .await
    }

    async fn load_facts(
        &self,
        repositories: Vec<String>,
        incident_services: Vec<String>,
    ) -> Result<StoredFacts, PortError> {
        self.read(move |c| {
            let mut out = StoredFacts::default();
            for repo in &repositories {
                let mut s = c.prepare_cached(
                    "SELECT provider, repo, before_sha, after_sha, commits, unlisted FROM pushes WHERE repo = ?1",
                )?;
                let rows = s.query_map([repo], push_row)?;
                for p in rows {
                    out.pushes.push(p?);
                }
                let mut s = c.prepare_cached(
                    "SELECT provider, repo, deployment_id, environment, production, sha, time, rollback, rework
                     FROM deployments WHERE repo = ?1 AND outcome = 'success'",
                )?;
                let rows = s.query_map([repo], codec::successful_deployment)?;
                for d in rows {
                    out.deployments.push(d?);
                }
                codec::other_facts(c, repo, &mut out)?;
            }
            for name in &incident_services {
                let mut s = c.prepare_cached(
                    "SELECT provider, incident_id, event_id, kind, time, service_name, title, severity
                     FROM incident_events WHERE service_name = ?1",
                )?;
                let rows = s.query_map([name], codec::incident_event)?;
                for e in rows {
                    out.incident_events.push(e?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn fact_sources(&self) -> Result<FactSources, PortError> {
        self.read(|c| {
            let list = |sql: &str| -> rusqlite::Result<Vec<String>> {
                let mut s = c.prepare(sql)?;
                let rows = s.query_map([], |r| r.get(0))?;
                rows.collect()
            };
            Ok(FactSources {
                repositories: list(
                    "SELECT repo FROM pushes UNION SELECT repo FROM deployments ORDER BY 1",
                )?,
                incident_services: list(
                    "SELECT DISTINCT service_name FROM incident_events ORDER BY 1",
                )?,
            })
        })
        .await
    }

    async fn links(
        &self,
        _repositories: Vec<String>,
        _incident_services: Vec<String>,
    ) -> Result<Self::Links<'_>, PortError> {
        links::SqliteLinks::new(self)
    }

    /// One writer, so no row is ever left half-written: nothing is unsettled.
    async fn rows_state(&self, service: String) -> Result<RowsState, PortError> {
        let version = self.read(move |c| links::version(c, &service)).await?;
        Ok(RowsState {
            version,
            unsettled: None,
        })
    }

    async fn replace_rows(
        &self,
        service: String,
        cut: Cut,
        rows: Linked,
        expected: u64,
    ) -> Result<bool, PortError> {
        self.write(move |c| links::replace_rows(c, &service, cut, rows, expected))
            .await
    }

    /// One transaction (and one fsync) for every service of a batch.
    async fn replace_rows_batch(
        &self,
        batch: Vec<RowsReplacement>,
    ) -> Vec<Result<bool, PortError>> {
        let n = batch.len();
        let written = self
            .write(move |c| {
                batch
                    .into_iter()
                    .map(|r| links::replace_rows(c, &r.service, r.cut, r.rows, r.expected))
                    .collect::<rusqlite::Result<Vec<bool>>>()
            })
            .await;
        match written {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e); n],
        }
    }

    async fn retain_rows(&self, keep: Vec<String>) -> Result<(), PortError> {
        self.write(move |c| {
            for t in [
                "o_deployments",
                "o_changes",
                "o_incidents",
                "o_days",
                "o_versions",
            ] {
                let sql = if keep.is_empty() {
                    format!("DELETE FROM {t}")
                } else {
                    format!(
                        "DELETE FROM {t} WHERE NOT {}",
                        in_list("service", keep.len())
                    )
                };
                c.execute(&sql, params_from_iter(keep.iter()))?;
            }
            Ok(())
        })
        .await
    }

    async fn get_meta(&self, key: String) -> Result<Option<String>, PortError> {
        self.read(move |c| {
            c.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
        })
        .await
    }

    async fn set_meta(&self, key: String, value: String) -> Result<(), PortError> {
        self.write(move |c| {
            c.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
                .execute(params![key, value])?;
            Ok(())
        })
        .await
    }
}
