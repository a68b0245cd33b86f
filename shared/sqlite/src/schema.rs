//! The schema of the store's file, how a connection to it is opened, and the migrations that bring a file
//! written by an earlier version up to it.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use em_core::domain::Push;

use crate::codec::{push_row, put_commits};

pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS deliveries (
    provider TEXT NOT NULL, delivery_id TEXT NOT NULL, received_at INTEGER NOT NULL,
    PRIMARY KEY (provider, delivery_id)) WITHOUT ROWID;
-- Bodies live apart from the queue rows, so that a receive (which rewrites visible_at and receive_count)
-- and the dead-letter sweep never touch the body's pages.
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY, provider TEXT NOT NULL, delivery_id TEXT NOT NULL, event TEXT,
    received_at INTEGER NOT NULL,
    visible_at INTEGER NOT NULL DEFAULT 0, receive_count INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS queue_visible ON queue (visible_at, seq);
CREATE INDEX IF NOT EXISTS queue_receives ON queue (receive_count, visible_at);
CREATE INDEX IF NOT EXISTS queue_delivery ON queue (provider, delivery_id);
CREATE TABLE IF NOT EXISTS queue_bodies (seq INTEGER PRIMARY KEY, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY, provider TEXT NOT NULL, delivery_id TEXT NOT NULL, event TEXT,
    received_at INTEGER NOT NULL, body BLOB NOT NULL, receive_count INTEGER NOT NULL,
    reason TEXT NOT NULL, dead_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS dead_letters_delivery ON dead_letters (provider, delivery_id);
CREATE INDEX IF NOT EXISTS dead_letters_age ON dead_letters (dead_at, seq);
CREATE INDEX IF NOT EXISTS deliveries_age ON deliveries (received_at);
-- The body of each accepted delivery, by digest: the same bytes under another delivery id are a duplicate.
CREATE TABLE IF NOT EXISTS bodies (
    provider TEXT NOT NULL, digest TEXT NOT NULL, delivery_id TEXT NOT NULL, received_at INTEGER NOT NULL,
    PRIMARY KEY (provider, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS bodies_age ON bodies (received_at);

CREATE TABLE IF NOT EXISTS pushes (
    repo TEXT NOT NULL COLLATE NOCASE, before_sha TEXT NOT NULL, after_sha TEXT NOT NULL,
    provider TEXT NOT NULL, commits TEXT NOT NULL, unlisted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repo, before_sha, after_sha)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deployments (
    provider TEXT NOT NULL, repo TEXT NOT NULL COLLATE NOCASE, deployment_id TEXT NOT NULL,
    outcome TEXT NOT NULL, environment TEXT NOT NULL, production INTEGER, sha TEXT NOT NULL,
    time INTEGER NOT NULL, rollback INTEGER NOT NULL DEFAULT 0, rework INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (provider, repo, deployment_id, outcome)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deployments_repo ON deployments (repo, outcome);
CREATE TABLE IF NOT EXISTS incident_events (
    provider TEXT NOT NULL, event_id TEXT NOT NULL, incident_id TEXT NOT NULL, kind TEXT NOT NULL,
    time INTEGER NOT NULL, service_name TEXT NOT NULL, title TEXT NOT NULL,
    severity TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (provider, event_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS incident_events_service ON incident_events (service_name);
CREATE TABLE IF NOT EXISTS pull_requests (
    provider TEXT NOT NULL, repo TEXT NOT NULL COLLATE NOCASE, number INTEGER NOT NULL,
    kind TEXT NOT NULL, time INTEGER NOT NULL, title TEXT NOT NULL, sha TEXT,
    PRIMARY KEY (provider, repo, number, kind)) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS builds (
    provider TEXT NOT NULL, repo TEXT NOT NULL COLLATE NOCASE, run_id TEXT NOT NULL, attempt INTEGER NOT NULL,
    name TEXT NOT NULL, sha TEXT NOT NULL, branch TEXT NOT NULL, outcome TEXT NOT NULL, started INTEGER,
    finished INTEGER NOT NULL,
    PRIMARY KEY (provider, repo, run_id, attempt)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS builds_repo ON builds (repo, finished);
CREATE TABLE IF NOT EXISTS work_items (
    provider TEXT NOT NULL, repo TEXT NOT NULL COLLATE NOCASE, number INTEGER NOT NULL, action TEXT NOT NULL,
    time INTEGER NOT NULL, title TEXT NOT NULL,
    PRIMARY KEY (provider, repo, number, action)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS work_items_repo ON work_items (repo, time);
CREATE TABLE IF NOT EXISTS quality_reports (
    provider TEXT NOT NULL, repo TEXT NOT NULL COLLATE NOCASE, analysis_id TEXT NOT NULL, sha TEXT NOT NULL,
    branch TEXT NOT NULL, time INTEGER NOT NULL, passed INTEGER, coverage_bp INTEGER, new_issues INTEGER,
    PRIMARY KEY (provider, repo, analysis_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pull_requests_repo ON pull_requests (repo, time);
-- The delivery metrics read a window's builds, failed attempts and merges across every repository.
CREATE INDEX IF NOT EXISTS builds_finished ON builds (finished);
CREATE INDEX IF NOT EXISTS deployments_outcome_time ON deployments (outcome, time);
CREATE INDEX IF NOT EXISTS pull_requests_kind_time ON pull_requests (kind, time);
CREATE INDEX IF NOT EXISTS deployments_time ON deployments (repo, outcome, time);
CREATE INDEX IF NOT EXISTS incident_events_opened ON incident_events (service_name, kind, time);
CREATE INDEX IF NOT EXISTS incident_events_incident ON incident_events (service_name, incident_id);
-- The commit graph of each repository's default branch: the walk from a deployment reads it one commit at
-- a time. The parent is the one the first push (by before, after) listing the commit gives.
CREATE TABLE IF NOT EXISTS commits (
    repo TEXT NOT NULL COLLATE NOCASE, sha TEXT NOT NULL, parent TEXT NOT NULL, time INTEGER NOT NULL,
    message TEXT NOT NULL, push_before TEXT NOT NULL, push_after TEXT NOT NULL,
    unlisted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (repo, sha)) WITHOUT ROWID;

-- Linked rows (the aggregator's link state) and the day observations the API reads.
DROP TABLE IF EXISTS m_deployments;
DROP TABLE IF EXISTS m_changes;
DROP TABLE IF EXISTS m_incidents;
CREATE TABLE IF NOT EXISTS o_deployments (
    service TEXT NOT NULL, key TEXT NOT NULL, time INTEGER NOT NULL, repo TEXT NOT NULL,
    environment TEXT NOT NULL, sha TEXT NOT NULL, short INTEGER NOT NULL, frontier TEXT, frontier7 TEXT,
    failed INTEGER NOT NULL, rework INTEGER NOT NULL, rollback INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (service, key)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS o_deployments_time ON o_deployments (service, time, key);
CREATE INDEX IF NOT EXISTS o_deployments_sha ON o_deployments (service, sha);
CREATE INDEX IF NOT EXISTS o_deployments_short ON o_deployments (service, short, time);
CREATE INDEX IF NOT EXISTS o_deployments_frontier ON o_deployments (service, frontier7);
CREATE INDEX IF NOT EXISTS o_deployments_repo ON o_deployments (service, repo COLLATE NOCASE, time, key);
CREATE TABLE IF NOT EXISTS o_changes (
    service TEXT NOT NULL, sha TEXT NOT NULL, repo TEXT NOT NULL, environment TEXT NOT NULL,
    deployment_key TEXT NOT NULL, deployment_time INTEGER NOT NULL, commit_time INTEGER NOT NULL,
    unlisted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (service, sha)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS o_changes_time ON o_changes (service, deployment_time);
CREATE TABLE IF NOT EXISTS o_incidents (
    service TEXT NOT NULL, id TEXT NOT NULL, opened INTEGER NOT NULL, acknowledged INTEGER,
    resolved INTEGER, attributed_key TEXT, attributed_repo TEXT, attributed_environment TEXT,
    PRIMARY KEY (service, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS o_incidents_opened ON o_incidents (service, opened);
CREATE INDEX IF NOT EXISTS o_incidents_resolved ON o_incidents (service, resolved, opened);
CREATE TABLE IF NOT EXISTS o_days (
    service TEXT NOT NULL, day INTEGER NOT NULL, rows BLOB NOT NULL,
    PRIMARY KEY (service, day)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS o_days_day ON o_days (day);
CREATE TABLE IF NOT EXISTS o_versions (service TEXT PRIMARY KEY, version INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
-- Once-only sends (digests): a claim is a lease until `until`, final once `sent`.
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY, owner TEXT NOT NULL, until INTEGER NOT NULL, sent INTEGER NOT NULL)
    WITHOUT ROWID;
"#;

pub(crate) fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // WAL: readers never block the writer. synchronous=FULL: a commit is on disk (fsync) before it returns,
    // so an answered delivery survives a crash of the process or of the machine.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -32768;",
    )?;
    Ok(conn)
}

/// Columns added after their tables: a store written before them gets them, with their defaults.
pub(crate) fn add_columns(c: &Connection) -> rusqlite::Result<()> {
    const ADDED: [(&str, &str, &str); 9] = [
        ("deployments", "rework", "INTEGER NOT NULL DEFAULT 0"),
        ("pull_requests", "sha", "TEXT"),
        ("deployments", "rollback", "INTEGER NOT NULL DEFAULT 0"),
        ("pushes", "unlisted", "INTEGER NOT NULL DEFAULT 0"),
        ("commits", "unlisted", "INTEGER NOT NULL DEFAULT 0"),
        ("o_changes", "unlisted", "INTEGER NOT NULL DEFAULT 0"),
        ("o_deployments", "rollback", "INTEGER NOT NULL DEFAULT 0"),
        ("incident_events", "severity", "TEXT NOT NULL DEFAULT ''"),
        ("o_incidents", "outage", "TEXT"),
    ];
    for (table, column, decl) in ADDED {
        let present = c
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
            ))?
            .exists([column])?;
        if !present {
            c.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
        }
    }
    Ok(())
}

/// Stores written before the commit graph existed have pushes but no commits: fill it in once from them, so
/// re-linking after the upgrade still finds every change.
pub(crate) fn backfill_commits(c: &Connection) -> rusqlite::Result<()> {
    let has_commits = c
        .query_row("SELECT 1 FROM commits LIMIT 1", [], |_| Ok(()))
        .optional()?
        .is_some();
    if has_commits {
        return Ok(());
    }
    let pushes: Vec<Push> = c
        .prepare("SELECT provider, repo, before_sha, after_sha, commits, unlisted FROM pushes")?
        .query_map([], push_row)?
        .collect::<rusqlite::Result<_>>()?;
    if pushes.is_empty() {
        return Ok(());
    }
    c.execute_batch("BEGIN")?;
    for p in &pushes {
        if let Err(e) = put_commits(c, p) {
            let _ = c.execute_batch("ROLLBACK");
            return Err(e);
        }
    }
    c.execute_batch("COMMIT")?;
    tracing::info!(
        pushes = pushes.len(),
        "commit graph filled in from stored pushes"
    );
    Ok(())
}
