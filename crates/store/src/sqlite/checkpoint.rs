//! Checkpoints the write-ahead log from a connection of its own, a few times
//! a second, so the single writer seldom copies pages back into the database
//! file while commits wait behind it.
//!
//! Why: SQLite's automatic checkpoint runs on the connection that commits,
//! after its commit, and holds the writer for as long as it takes to copy
//! every page changed since the last one and sync the file — seconds once
//! the WAL holds 40 MiB over a database of 10⁵ events, during which no
//! publish, claim or outcome is written (deliveries halved for six seconds
//! at 1,000 events/s). A PASSIVE checkpoint on another connection runs
//! beside the writer (it copies only frames committed before it began and
//! never waits for a lock), so the writer's own automatic checkpoint, kept
//! as the bound on the WAL's size, finds almost nothing left to copy.

use sqlx::SqlitePool;
use std::sync::Weak;
use std::time::Duration;

/// How often the log is checkpointed: short enough that each checkpoint
/// copies little, long enough that a page rewritten by many commits (an
/// index's hot page) is copied once per interval rather than per commit.
const INTERVAL: Duration = Duration::from_millis(250);

/// Runs until `alive` (held by the store) is dropped.
pub(crate) fn start(pool: SqlitePool, alive: Weak<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.upgrade().is_none() {
                break;
            }
            // A failure (the file busy, say) is retried at the next tick; the
            // writer's automatic checkpoint still bounds the log meanwhile.
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::debug!(error = %e, "background checkpoint");
            }
        }
        pool.close().await;
    });
}
