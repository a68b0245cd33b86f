//! The [`Outbox`] port: once-only sends, claimed as a lease and settled as sent or released.

use rusqlite::params;

use em_core::ports::{Outbox, PortError};
use em_core::time::Millis;

use crate::store::EmbeddedStore;

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
