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

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };

    async fn synchronous(pool: &SqlitePool) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(pool)
            .await
            .unwrap_or(-1)
    }

    /// Every write after a relaxed one syncs again, whether the relaxed one
    /// finished or was abandoned half way (an error, a cancelled future):
    /// a publish must never commit without a sync by mistake.
    #[tokio::test]
    async fn the_writer_syncs_again_after_a_relaxed_write_finished_or_abandoned() {
        let dir = std::env::temp_dir().join(format!("hw_relaxed_{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let opts = SqliteConnectOptions::new()
            .filename(dir.join("db.sqlite"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .expect("a SQLite file in the temporary directory");
        const FULL: i64 = 2;
        const NORMAL: i64 = 1;
        assert_eq!(synchronous(&pool).await, FULL);

        let mut w = Relaxed::acquire(&pool).await.expect("relaxed");
        let relaxed: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(w.conn())
            .await
            .expect("pragma");
        assert_eq!(relaxed, NORMAL, "inside a relaxed write");
        w.finish().await.expect("finish");
        assert_eq!(synchronous(&pool).await, FULL, "after finish");

        // Abandoned: the connection is closed, and the pool's next one
        // opens with the options' FULL.
        let abandoned = Relaxed::acquire(&pool).await;
        assert!(abandoned.is_ok());
        drop(abandoned);
        assert_eq!(synchronous(&pool).await, FULL, "after an abandoned write");
        pool.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
