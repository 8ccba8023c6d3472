//! Writes on the single writer that commit without waiting for the disk
//! (`synchronous = NORMAL` for their transaction only): a claim's lease, its
//! release, and a try's recorded outcome. Losing one of them in a power cut
//! (never in a crash of the process: the log is written before the commit
//! returns) repeats a delivery, which at-least-once delivery allows; it
//! never loses an event, since every publish and inbound event still
//! commits with a sync of the log, and that sync carries every relaxed
//! commit before it. The background checkpoint syncs the log too, so a
//! relaxed commit is on disk within a quarter of a second at most.
//!
//! Why: each of these was a sync of the log of its own, and at 1,000 events
//! a second the writer spent most of its time waiting for them.

use crate::error::Result;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool};

/// The writer's connection while it commits without syncing. Dropped
/// without `finish` (an error, a cancelled future), the connection is closed
/// rather than given back: no later write may run without a sync by mistake.
pub(crate) struct Relaxed {
    conn: PoolConnection<Sqlite>,
    restored: bool,
}

impl Relaxed {
    pub(crate) async fn acquire(pool: &SqlitePool) -> Result<Self> {
        let mut conn = pool.acquire().await?;
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        Ok(Self {
            conn,
            restored: false,
        })
    }

    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// Gives the connection back syncing every commit again.
    pub(crate) async fn finish(mut self) -> Result<()> {
        sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *self.conn)
            .await?;
        self.restored = true;
        Ok(())
    }
}

impl Drop for Relaxed {
    fn drop(&mut self) {
        if !self.restored {
            // Closed, not pooled; the pool opens a fresh one (FULL).
            self.conn.close_on_drop();
        }
    }
}
