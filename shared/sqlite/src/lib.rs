//! The embedded adapters of [`Queue`] and [`Store`]: one SQLite file in the data directory.
//!
//! Every write goes through one writer thread that commits whatever is waiting in a single transaction
//! (group commit): each enqueue still waits for its own fsync'd commit, but one fsync serves every request
//! that arrived meanwhile, so durability costs little throughput. Each job runs in its own savepoint, so one
//! failing job does not undo the others. Reads use their own connections (WAL lets them run beside the writer).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, params_from_iter, Connection, OptionalExtension};
use tokio::sync::oneshot;

use em_core::domain::{Commit, Fact, Push};
use em_core::ports::{
    Cut, DeadLetters, DeliveryFacts, EnqueueOutcome, Envelope, FactSources, MetricsReader, Outbox,
    PortError, PortErrorKind, Queue, Received, RowsReplacement, RowsState, Store, StoredFacts,
};
use em_core::rows::{Linked, Observations};

mod delivery;
mod links;
use em_core::time::Millis;

pub const DB_FILE: &str = "em-agent.sqlite3";

#[derive(Debug, Clone)]
pub struct Options {
    /// How long a received message stays hidden before another receive may take it again.
    pub visibility_timeout: Duration,
    /// Receives without acknowledgement after which a message moves to the dead-letter table.
    pub max_receives: u32,
    /// Most jobs committed in one transaction.
    pub max_batch: usize,
    /// How long delivery markers (de-duplication) and dead letters are kept, as DynamoDB's TTL keeps them.
    pub retention: Duration,
    /// What the queue's visibility timeouts and dead letters are timed by (a test's own clock).
    pub clock: em_core::time::Clock,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            visibility_timeout: Duration::from_secs(30),
            max_receives: 5,
            max_batch: 2048,
            retention: Duration::from_secs(30 * 86_400),
            clock: em_core::time::Clock::system(),
        }
    }
}

const SCHEMA: &str = r#"
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

type Completion = Box<dyn FnOnce(Result<(), String>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

struct Inner {
    /// Idle connections for linking (one per concurrent view): its lookups run inline, one short query each.
    linkers: Mutex<Vec<Connection>>,
    jobs: Mutex<mpsc::Sender<Job>>,
    readers: Vec<Mutex<Connection>>,
    options: Options,
    path: PathBuf,
    /// When expired markers and dead letters were last pruned (at most hourly, from `receive`).
    pruned_at: std::sync::atomic::AtomicI64,
    /// The writer thread: every write waits on it, so a dead one makes the store useless.
    writer: std::thread::JoinHandle<()>,
}

/// The embedded queue and store. Cheap to clone: clones share the writer thread and connections.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

/// A failure of the store's own machinery (its writer thread, a lock): the process may recover.
fn err(e: impl std::fmt::Display) -> PortError {
    PortError::transient(e)
}

/// The one place a SQLite error gets its kind: a busy or locked database, a full disk, an I/O error or
/// memory running out may clear (503, and the provider retries); anything else (a read-only or corrupt
/// file, a constraint, a row that does not decode) fails the same way again, and an operator has to look.
pub(crate) fn classify(e: rusqlite::Error) -> PortError {
    use rusqlite::ErrorCode::*;
    let transient = match &e {
        rusqlite::Error::SqliteFailure(f, _) => matches!(
            f.code,
            DatabaseBusy
                | DatabaseLocked
                | DiskFull
                | SystemIoFailure
                | OutOfMemory
                | CannotOpen
                | FileLockingProtocolFailed
                | OperationInterrupted
        ),
        _ => false,
    };
    let kind = if transient {
        PortErrorKind::Transient
    } else {
        tracing::error!(error = %e, "the embedded store refused a request: not retried");
        PortErrorKind::Invalid
    };
    PortError::of(kind, format!("sqlite: {e}")).with_source(e)
}

fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
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

impl EmbeddedStore {
    /// Opens (creating) `dir/em-agent.sqlite3` and starts the writer thread.
    pub fn open(dir: &Path, options: Options) -> Result<Self, PortError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("cannot create data dir {}: {e}", dir.display())))?;
        let path = dir.join(DB_FILE);
        let writer = open_connection(&path).map_err(classify)?;
        writer.execute_batch(SCHEMA).map_err(classify)?;
        add_columns(&writer).map_err(classify)?;
        backfill_commits(&writer).map_err(classify)?;
        let readers = (0..2)
            .map(|_| open_connection(&path).map(Mutex::new))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(classify)?;
        // The writer checkpoints the WAL itself (SQLite's default, every 1000 pages): a checkpointer on
        // another connection can never catch up with a busy writer, and the WAL then grows without bound.
        // The size limit truncates the file after each checkpoint.
        writer
            .execute_batch("PRAGMA journal_size_limit = 67108864;")
            .map_err(classify)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let max_batch = options.max_batch.max(1);
        let writer = std::thread::Builder::new()
            .name("em-agent-sqlite-writer".into())
            .spawn(move || writer_loop(writer, rx, max_batch))
            .map_err(err)?;
        let linkers = Mutex::new(vec![open_connection(&path).map_err(classify)?]);
        let inner = Arc::new(Inner {
            linkers,
            jobs: Mutex::new(tx),
            readers,
            options,
            path,
            pruned_at: std::sync::atomic::AtomicI64::new(0),
            writer,
        });
        Ok(EmbeddedStore { inner })
    }

    /// Deletes the delivery markers and dead letters older than the retention at `now` (a marker whose
    /// message is still queued stays); returns how many of each went. A provider redelivering an expired
    /// delivery is processed again, and the facts' idempotency still counts it once.
    pub async fn prune_expired(&self, now: Millis) -> Result<(usize, usize), PortError> {
        let before = now.saturating_sub(self.inner.options.retention.as_millis() as i64);
        self.inner
            .pruned_at
            .store(now, std::sync::atomic::Ordering::Relaxed);
        self.write(move |c| {
            let markers = c
                .prepare_cached(
                    "DELETE FROM deliveries WHERE received_at < ?1 AND NOT EXISTS (
                       SELECT 1 FROM queue q
                       WHERE q.provider = deliveries.provider AND q.delivery_id = deliveries.delivery_id)",
                )?
                .execute([before])?;
            let dead = c
                .prepare_cached("DELETE FROM dead_letters WHERE dead_at < ?1")?
                .execute([before])?;
            c.prepare_cached("DELETE FROM bodies WHERE received_at < ?1")?
                .execute([before])?;
            Ok((markers, dead))
        })
        .await
    }

    /// Whether the writer thread still runs (for health checks).
    pub fn writer_alive(&self) -> bool {
        !self.inner.writer.is_finished()
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` in the writer's next transaction and resolves once that transaction is committed.
    async fn write<T, F>(&self, f: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |commit: Result<(), String>| {
                let _ = tx.send(
                    commit
                        .map_err(PortError::transient)
                        .and_then(|()| result.map_err(classify)),
                );
            })
        });
        self.inner
            .jobs
            .lock()
            .map_err(|_| err("writer lock poisoned"))?
            .send(job)
            .map_err(|_| err("the database writer has stopped"))?;
        rx.await
            .map_err(|_| err("the database writer dropped a job"))?
    }

    async fn read<T, F>(&self, f: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // Take whichever reader is free, else wait for the first.
            let guard = inner
                .readers
                .iter()
                .find_map(|m| m.try_lock().ok())
                .map(Ok)
                .unwrap_or_else(|| inner.readers[0].lock())
                .map_err(|_| err("reader lock poisoned"))?;
            f(&guard).map_err(classify)
        })
        .await
        .map_err(err)?
    }

    /// Counts for operators and tests: accepted deliveries, waiting and dead-lettered messages.
    pub async fn stats(&self) -> Result<Stats, PortError> {
        self.read(|c| {
            let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0));
            Ok(Stats {
                deliveries: count("SELECT count(*) FROM deliveries")? as u64,
                queued: count("SELECT count(*) FROM queue")? as u64,
                dead_letters: count("SELECT count(*) FROM dead_letters")? as u64,
            })
        })
        .await
    }

    /// Where an accepted delivery is: `queued`, `dead_letter`, `processed`, or `None` if never accepted.
    pub async fn delivery_state(
        &self,
        provider: String,
        delivery_id: String,
    ) -> Result<Option<&'static str>, PortError> {
        self.read(move |c| {
            let known = c
                .query_row(
                    "SELECT 1 FROM deliveries WHERE provider = ?1 AND delivery_id = ?2",
                    params![provider, delivery_id],
                    |_| Ok(()),
                )
                .optional()?;
            if known.is_none() {
                return Ok(None);
            }
            let exists = |sql: &str| {
                c.query_row(sql, params![provider, delivery_id], |_| Ok(()))
                    .optional()
                    .map(|o| o.is_some())
            };
            if exists("SELECT 1 FROM queue WHERE provider = ?1 AND delivery_id = ?2")? {
                Ok(Some("queued"))
            } else if exists("SELECT 1 FROM dead_letters WHERE provider = ?1 AND delivery_id = ?2")?
            {
                Ok(Some("dead_letter"))
            } else {
                Ok(Some("processed"))
            }
        })
        .await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub deliveries: u64,
    pub queued: u64,
    pub dead_letters: u64,
}

fn in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    conn.execute_batch("SAVEPOINT job")?;
    match f(conn) {
        Ok(v) => {
            conn.execute_batch("RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            Err(e)
        }
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<Job>, max_batch: usize) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let msg = format!("cannot begin a transaction: {e}");
            tracing::error!(error = %msg, "sqlite writer");
            // Dropping the jobs unrun fails every waiting caller, who answers 503.
            drop(batch);
            continue;
        }
        let completions: Vec<Completion> = batch.into_iter().map(|job| job(&conn)).collect();
        let commit = conn.execute_batch("COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            format!("commit failed: {e}")
        });
        if let Err(e) = &commit {
            tracing::error!(error = %e, "sqlite writer");
        }
        for c in completions {
            c(commit.clone());
        }
    }
}

impl Queue for EmbeddedStore {
    async fn enqueue(&self, e: Envelope) -> Result<EnqueueOutcome, PortError> {
        let digest = e.body_digest();
        self.write(move |c| {
            // The same bytes accepted before under another delivery id: a replay, not a new delivery.
            let first: Option<String> = c
                .prepare_cached("SELECT delivery_id FROM bodies WHERE provider = ?1 AND digest = ?2")?
                .query_row(params![e.provider, digest], |r| r.get(0))
                .optional()?;
            if first.is_some_and(|id| id != e.delivery_id) {
                return Ok(EnqueueOutcome::Duplicate);
            }
            c.prepare_cached(
                "INSERT OR IGNORE INTO bodies (provider, digest, delivery_id, received_at)
                 VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![e.provider, digest, e.delivery_id, e.received_at])?;
            let fresh = c
                .prepare_cached(
                    "INSERT OR IGNORE INTO deliveries (provider, delivery_id, received_at) VALUES (?1, ?2, ?3)",
                )?
                .execute(params![e.provider, e.delivery_id, e.received_at])?;
            if fresh == 0 {
                return Ok(EnqueueOutcome::Duplicate);
            }
            c.prepare_cached(
                "INSERT INTO queue (provider, delivery_id, event, received_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![e.provider, e.delivery_id, e.event, e.received_at])?;
            c.prepare_cached("INSERT INTO queue_bodies (seq, body) VALUES (?1, ?2)")?
                .execute(params![c.last_insert_rowid(), &e.body[..]])?;
            Ok(EnqueueOutcome::Accepted)
        })
        .await
    }

    async fn receive(&self, max: usize) -> Result<Vec<Received>, PortError> {
        // Retention, as DynamoDB's TTL and S3's lifecycle keep it on AWS: pruned at most hourly.
        let clock = self.inner.options.clock.clone();
        let now = clock.now();
        let last = self
            .inner
            .pruned_at
            .load(std::sync::atomic::Ordering::Relaxed);
        if now - last >= 3_600_000 {
            match self.prune_expired(now).await {
                Ok((0, 0)) => {}
                Ok((markers, dead)) => {
                    tracing::info!(
                        markers,
                        dead,
                        "expired delivery markers and dead letters pruned"
                    )
                }
                Err(e) => tracing::warn!(error = %e, "pruning expired deliveries failed"),
            }
        }
        let vt = self.inner.options.visibility_timeout.as_millis() as i64;
        let max_receives = self.inner.options.max_receives as i64;
        self.write(move |c| {
            let now = clock.now();
            // Messages that timed out too often are poison: keep them aside for a replay.
            let poison: Vec<i64> = c
                .prepare_cached(
                    "SELECT seq FROM queue WHERE receive_count >= ?1 AND visible_at <= ?2",
                )?
                .query_map(params![max_receives, now], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for seq in poison {
                move_to_dead_letters(c, seq, None, now)?;
            }
            let mut stmt = c.prepare_cached(
                "UPDATE queue SET visible_at = ?1 + ?2, receive_count = receive_count + 1
                 WHERE seq IN (SELECT seq FROM queue WHERE visible_at <= ?1 ORDER BY seq LIMIT ?3)
                 RETURNING seq, provider, delivery_id, event, received_at, receive_count",
            )?;
            let rows = stmt.query_map(params![now, vt, max as i64], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    Envelope {
                        provider: r.get(1)?,
                        delivery_id: r.get(2)?,
                        event: r.get(3)?,
                        received_at: r.get(4)?,
                        body: bytes::Bytes::new(),
                    },
                    r.get::<_, i64>(5)? as u32,
                ))
            })?;
            let mut out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            out.sort_by_key(|m| m.0);
            let mut body = c.prepare_cached("SELECT body FROM queue_bodies WHERE seq = ?1")?;
            out.into_iter()
                .map(|(seq, mut envelope, receive_count)| {
                    envelope.body =
                        bytes::Bytes::from(body.query_row([seq], |r| r.get::<_, Vec<u8>>(0))?);
                    Ok(Received {
                        receipt: seq.to_string(),
                        receive_count,
                        envelope,
                    })
                })
                .collect()
        })
        .await
    }

    async fn ack(&self, receipts: Vec<String>) -> Result<(), PortError> {
        if receipts.is_empty() {
            return Ok(());
        }
        self.write(move |c| {
            let mut row = c.prepare_cached("DELETE FROM queue WHERE seq = ?1")?;
            let mut body = c.prepare_cached("DELETE FROM queue_bodies WHERE seq = ?1")?;
            for r in &receipts {
                if let Ok(seq) = r.parse::<i64>() {
                    row.execute([seq])?;
                    body.execute([seq])?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn dead_letter(&self, receipt: String, reason: String) -> Result<(), PortError> {
        let clock = self.inner.options.clock.clone();
        self.write(move |c| {
            let seq: i64 = receipt.parse().unwrap_or(-1);
            move_to_dead_letters(c, seq, Some(&reason), clock.now())
        })
        .await
    }
}

/// Moves a queued message, body and all, to the dead-letter table. Without a reason, it is one that was
/// received too often without being acknowledged.
fn move_to_dead_letters(
    c: &Connection,
    seq: i64,
    reason: Option<&str>,
    now: Millis,
) -> rusqlite::Result<()> {
    // The dead letter gets a seq of its own: queue seqs are reused once the queue empties, so keeping the
    // queue's would let a later dead letter replace an earlier one.
    c.prepare_cached(
        "INSERT INTO dead_letters
           (provider, delivery_id, event, received_at, body, receive_count, reason, dead_at)
         SELECT q.provider, q.delivery_id, q.event, q.received_at, b.body, q.receive_count,
                coalesce(?2, 'not acknowledged after ' || q.receive_count || ' receives'), ?3
         FROM queue q JOIN queue_bodies b ON b.seq = q.seq WHERE q.seq = ?1",
    )?
    .execute(params![seq, reason, now])?;
    c.prepare_cached("DELETE FROM queue WHERE seq = ?1")?
        .execute([seq])?;
    c.prepare_cached("DELETE FROM queue_bodies WHERE seq = ?1")?
        .execute([seq])?;
    Ok(())
}

impl DeadLetters for EmbeddedStore {
    async fn dead_letter_count(&self) -> Result<u64, PortError> {
        self.read(|c| {
            c.query_row("SELECT count(*) FROM dead_letters", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .await
        .map(|n| n.max(0) as u64)
    }

    /// Oldest dead letter first. Each goes back as a fresh message (visible now, never received) with its
    /// body; the delivery stays known, so a re-delivery by the provider is still a duplicate.
    async fn redrive(&self, max: usize) -> Result<usize, PortError> {
        if max == 0 {
            return Ok(0);
        }
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        self.write(move |c| {
            let seqs: Vec<i64> = c
                .prepare_cached("SELECT seq FROM dead_letters ORDER BY dead_at, seq LIMIT ?1")?
                .query_map([limit], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            for &seq in &seqs {
                c.prepare_cached(
                    "INSERT INTO queue (provider, delivery_id, event, received_at)
                     SELECT provider, delivery_id, event, received_at FROM dead_letters WHERE seq = ?1",
                )?
                .execute([seq])?;
                c.prepare_cached(
                    "INSERT INTO queue_bodies (seq, body) SELECT ?1, body FROM dead_letters WHERE seq = ?2",
                )?
                .execute(params![c.last_insert_rowid(), seq])?;
                c.prepare_cached("DELETE FROM dead_letters WHERE seq = ?1")?
                    .execute([seq])?;
            }
            Ok(seqs.len())
        })
        .await
    }
}

/// A push's commits into the commit graph: the parent of a commit listed by several pushes is the one the
/// first of them (by `before`, `after`) gives.
fn put_commits(c: &Connection, p: &Push) -> rusqlite::Result<()> {
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

/// Columns added after their tables: a store written before them gets them, with their defaults.
fn add_columns(c: &Connection) -> rusqlite::Result<()> {
    const ADDED: [(&str, &str, &str); 7] = [
        ("deployments", "rework", "INTEGER NOT NULL DEFAULT 0"),
        ("pull_requests", "sha", "TEXT"),
        ("deployments", "rollback", "INTEGER NOT NULL DEFAULT 0"),
        ("pushes", "unlisted", "INTEGER NOT NULL DEFAULT 0"),
        ("commits", "unlisted", "INTEGER NOT NULL DEFAULT 0"),
        ("o_changes", "unlisted", "INTEGER NOT NULL DEFAULT 0"),
        ("o_deployments", "rollback", "INTEGER NOT NULL DEFAULT 0"),
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
fn backfill_commits(c: &Connection) -> rusqlite::Result<()> {
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

/// A row of `provider, repo, before_sha, after_sha, commits, unlisted`.
fn push_row(r: &rusqlite::Row) -> rusqlite::Result<Push> {
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
                "INSERT OR IGNORE INTO incident_events (provider, event_id, incident_id, kind, time, service_name, title)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                i.provider,
                i.event_id,
                i.incident_id,
                i.kind.as_str(),
                i.time,
                i.service_name,
                i.title
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

fn in_list(column: &str, n: usize) -> String {
    let marks = vec!["?"; n].join(", ");
    format!("{column} IN ({marks})")
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
                let rows = s.query_map([repo], links::successful_deployment)?;
                for d in rows {
                    out.deployments.push(d?);
                }
                links::other_facts(c, repo, &mut out)?;
            }
            for name in &incident_services {
                let mut s = c.prepare_cached(
                    "SELECT provider, incident_id, event_id, kind, time, service_name, title
                     FROM incident_events WHERE service_name = ?1",
                )?;
                let rows = s.query_map([name], links::incident_event)?;
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

impl Outbox for EmbeddedStore {
    async fn claim(
        &self,
        key: String,
        owner: String,
        now: Millis,
        until: Millis,
    ) -> Result<bool, PortError> {
        self.write(move |c| {
            let changed = c
                .prepare_cached(
                    "INSERT INTO outbox (key, owner, until, sent) VALUES (?1, ?2, ?3, 0)
                     ON CONFLICT (key) DO UPDATE SET owner = excluded.owner, until = excluded.until
                     WHERE outbox.sent = 0 AND outbox.until <= ?4",
                )?
                .execute(params![key, owner, until, now])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn settle(&self, key: String, owner: String, sent: bool) -> Result<(), PortError> {
        self.write(move |c| {
            let sql = if sent {
                "UPDATE outbox SET sent = 1 WHERE key = ?1 AND owner = ?2"
            } else {
                "DELETE FROM outbox WHERE key = ?1 AND owner = ?2 AND sent = 0"
            };
            c.prepare_cached(sql)?.execute(params![key, owner])?;
            Ok(())
        })
        .await
    }
}

impl MetricsReader for EmbeddedStore {
    async fn sources(&self) -> Result<FactSources, PortError> {
        Store::fact_sources(self).await
    }

    async fn observations(
        &self,
        services: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<Observations, PortError> {
        self.read(move |c| links::observations(c, services.as_deref(), from, to))
            .await
    }

    async fn read_meta(&self, key: String) -> Result<Option<String>, PortError> {
        Store::get_meta(self, key).await
    }

    async fn rows(
        &self,
        services: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<Vec<(String, Linked)>, PortError> {
        self.read(move |c| {
            let services = match services {
                Some(s) => s,
                None => c
                    .prepare_cached(
                        "SELECT service FROM o_deployments UNION SELECT service FROM o_incidents",
                    )?
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?,
            };
            services
                .into_iter()
                .map(|s| Ok((s.clone(), links::rows_between(c, &s, from, to)?)))
                .collect()
        })
        .await
    }

    async fn delivery(
        &self,
        repos: Option<Vec<String>>,
        from: Millis,
        to: Millis,
    ) -> Result<DeliveryFacts, PortError> {
        self.read(move |c| delivery::delivery(c, repos.as_deref(), from, to))
            .await
    }

    async fn shipped(
        &self,
        service: String,
        shas: Vec<String>,
    ) -> Result<Vec<(String, Millis)>, PortError> {
        self.read(move |c| delivery::shipped(c, &service, &shas))
            .await
    }
}

#[cfg(test)]
mod classify_tests {
    use super::*;
    use rusqlite::ffi;

    #[test]
    fn a_full_disk_or_a_busy_file_may_clear_a_read_only_or_corrupt_one_does_not() {
        let failure = |code| rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
        for (code, kind) in [
            (ffi::SQLITE_FULL, PortErrorKind::Transient),
            (ffi::SQLITE_BUSY, PortErrorKind::Transient),
            (ffi::SQLITE_IOERR, PortErrorKind::Transient),
            (ffi::SQLITE_READONLY, PortErrorKind::Invalid),
            (ffi::SQLITE_CORRUPT, PortErrorKind::Invalid),
            (ffi::SQLITE_CONSTRAINT, PortErrorKind::Invalid),
        ] {
            let e = classify(failure(code));
            assert_eq!(e.kind, kind, "{code}: {e}");
            assert!(std::error::Error::source(&e).is_some());
        }
        assert!(classify(rusqlite::Error::QueryReturnedNoRows).is_permanent());
    }
}
