//! The single writer connection, kept by the store itself rather than in a
//! one-connection pool. sqlx tests a pooled connection with a round trip
//! each time it is given back (in a task it spawns), whatever the pool's
//! options say; on SQLite each round trip is a hand-off to the connection's
//! thread and back, and the writer is given back several times per event
//! (its publish batch, the claim, the recorded outcome). Kept here, it is
//! handed from one caller to the next by a fair lock, with nothing in
//! between.
//!
//! What the test on release guarded against is handled where it can arise:
//! a transaction dropped unfinished queues its rollback on the connection,
//! ahead of the next caller's commands, and a single statement abandoned
//! half way has either run whole or not at all. Nothing on this connection
//! changes a setting: the relaxed commits (`relaxed.rs`) and the hot
//! batches run on a second connection of the writer's own, driven on a
//! thread of its own (`direct.rs`), only while this lock is held: one
//! writer still, in order.

use super::direct::{Direct, Target};
use crate::error::Result;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// How long a caller waits for the writer before giving up with "database
/// unavailable" (the pool's default, kept).
const WAIT: Duration = Duration::from_secs(30);

pub(crate) struct Writer {
    opts: SqliteConnectOptions,
    target: Target,
    conn: Mutex<SqliteConnection>,
    /// Behind its own lock, taken only while `conn`'s is held.
    direct: std::sync::Mutex<Option<Arc<Direct>>>,
    /// Whether the last holder wrote through the direct connection. A
    /// holder's work can outlast it on either connection (a direct job runs
    /// to its end after its caller went away; a transaction dropped on
    /// sqlx's queues its rollback on that connection's thread), so a holder
    /// on the other connection first waits behind it (`get`, `direct`).
    direct_last: AtomicBool,
}

impl Writer {
    /// Opens the connection now, so a database that cannot be opened is an
    /// error at start-up rather than at the first write.
    pub(crate) async fn open(opts: SqliteConnectOptions, in_memory: bool) -> Result<Self> {
        let conn = SqliteConnection::connect_with(&opts).await?;
        Ok(Self {
            target: Target {
                path: opts.get_filename().to_path_buf(),
                in_memory,
            },
            opts,
            conn: Mutex::new(conn),
            direct: std::sync::Mutex::new(None),
            direct_last: AtomicBool::new(false),
        })
    }

    /// The writer held, with its direct connection (`direct.rs`) for the
    /// hot batches: opened the first time, and again after its thread
    /// ended.
    pub(crate) async fn direct(&self) -> Result<(Held<'_>, Arc<Direct>)> {
        let mut held = self.lock().await?;
        if !self.direct_last.load(Ordering::Relaxed) {
            // Behind anything the last holder left queued on sqlx's
            // connection (its thread takes commands in order). A thread
            // that is gone (a panic in it) has nothing queued: the rare
            // writes get a fresh connection, opened with the options'
            // settings.
            if held.ping().await.is_err() {
                *held = SqliteConnection::connect_with(&self.opts).await?;
            }
            self.direct_last.store(true, Ordering::Relaxed);
        }
        let mut slot = self
            .direct
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let direct = match slot.as_ref() {
            Some(d) if !d.is_finished() => Arc::clone(d),
            _ => {
                let d = Arc::new(Direct::open(&self.target)?);
                *slot = Some(Arc::clone(&d));
                d
            }
        };
        Ok((held, direct))
    }

    /// The connection, once the callers before this one are done with it.
    pub(crate) async fn get(&self) -> Result<Held<'_>> {
        let held = self.lock().await?;
        if self.direct_last.load(Ordering::Relaxed) {
            // Behind any job the last holder left running on the direct
            // connection (its thread takes jobs in order). A connection
            // that is gone has nothing running.
            let current = self
                .direct
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            if let Some(direct) = current {
                let _ = direct.run(|_| Ok(())).await;
            }
            self.direct_last.store(false, Ordering::Relaxed);
        }
        Ok(held)
    }

    async fn lock(&self) -> Result<Held<'_>> {
        Ok(tokio::time::timeout(WAIT, self.conn.lock())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?)
    }

    /// Runs `migrator` while holding the writer, so nothing else writes
    /// meanwhile. On a pool of one connection of its own, closed after:
    /// sqlx's migrator takes a pool or a connection it can borrow for any
    /// lifetime, which a connection behind a lock is not.
    pub(crate) async fn migrate(&self, migrator: &sqlx::migrate::Migrator) -> Result<()> {
        let _held = self.get().await?;
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(self.opts.clone())
            .await?;
        let ran = migrator.run(&pool).await;
        pool.close().await;
        Ok(ran?)
    }
}

/// The writer while one caller uses it, given back as it is dropped.
pub(crate) type Held<'a> = MutexGuard<'a, SqliteConnection>;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};

    /// A writer, as the store's, on a file of its own in a fresh temporary
    /// directory, syncing every commit; returns the directory too, to
    /// remove.
    pub(crate) async fn writer(name: &str) -> (Writer, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "hw_{name}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let _ = std::fs::create_dir_all(&dir);
        let opts = SqliteConnectOptions::new()
            .filename(dir.join("db.sqlite"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let writer = Writer::open(opts, false)
            .await
            .expect("a SQLite file in the temporary directory");
        (writer, dir)
    }
}
