//! The [`Queue`] and [`DeadLetters`] ports: enqueue with de-duplication, receive with a visibility timeout,
//! acknowledge, dead-letter and redrive.

use rusqlite::{params, Connection, OptionalExtension};

use em_core::ports::{DeadLetters, EnqueueOutcome, Envelope, PortError, Queue, Received};
use em_core::time::Millis;

use crate::store::EmbeddedStore;

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
