//! The store itself: its options, opening it, the writer thread every write goes through, the reader
//! connections, and the one place a SQLite error gets its kind.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::oneshot;

use em_core::ports::{PortError, PortErrorKind};
use em_core::time::Millis;

use crate::schema::{add_columns, backfill_commits, open_connection, SCHEMA};

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

/// What a job hears of its transaction's commit: the commit's error, classified, is every job's.
type Completion = Box<dyn FnOnce(Result<(), PortError>) + Send>;
type Job = Box<dyn FnOnce(&Connection) -> Completion + Send>;

pub(crate) struct Inner {
    /// Idle connections for linking (one per concurrent view): its lookups run inline, one short query each.
    pub(crate) linkers: Mutex<Vec<Connection>>,
    jobs: Mutex<mpsc::Sender<Job>>,
    readers: Vec<Mutex<Connection>>,
    pub(crate) options: Options,
    pub(crate) path: PathBuf,
    /// When expired markers and dead letters were last pruned (at most hourly, from `receive`).
    pub(crate) pruned_at: std::sync::atomic::AtomicI64,
    /// The writer thread: every write waits on it, so a dead one makes the store useless.
    writer: std::thread::JoinHandle<()>,
}

/// The embedded queue and store. Cheap to clone: clones share the writer thread and connections.
#[derive(Clone)]
pub struct EmbeddedStore {
    pub(crate) inner: Arc<Inner>,
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
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, PortError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |commit: Result<(), PortError>| {
                let _ = tx.send(commit.and_then(|()| result.map_err(classify)));
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

    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, PortError>
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
            tracing::error!(error = %e, "sqlite writer: commit failed");
            classify(e)
        });
        for c in completions {
            c(commit.clone());
        }
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
