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
//! ahead of the next caller's commands; a single statement abandoned half
//! way has either run whole or not at all; and a multi-statement command
//! that may leave a transaction or a setting behind (`compound.rs`) closes
//! the connection unless it finished, and the next caller opens a fresh one
//! with the options' settings (`synchronous = FULL`).

use crate::error::Result;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::Connection;
use std::ops::{Deref, DerefMut};
use std::time::Duration;
use tokio::sync::{Mutex, MutexGuard};

/// How long a caller waits for the writer before giving up with "database
/// unavailable" (the pool's default, kept).
const WAIT: Duration = Duration::from_secs(30);

pub(crate) struct Writer {
    opts: SqliteConnectOptions,
    conn: Mutex<Option<SqliteConnection>>,
}

impl Writer {
    /// Opens the connection now, so a database that cannot be opened is an
    /// error at start-up rather than at the first write.
    pub(crate) async fn open(opts: SqliteConnectOptions) -> Result<Self> {
        let conn = SqliteConnection::connect_with(&opts).await?;
        Ok(Self {
            opts,
            conn: Mutex::new(Some(conn)),
        })
    }

    /// The connection, once the callers before this one are done with it;
    /// reopened if the last one closed it.
    pub(crate) async fn get(&self) -> Result<Held<'_>> {
        let mut slot = tokio::time::timeout(WAIT, self.conn.lock())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?;
        if slot.is_none() {
            *slot = Some(SqliteConnection::connect_with(&self.opts).await?);
        }
        Ok(Held { slot, close: false })
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

/// The writer while one caller uses it. Given back as it is dropped, unless
/// `close_on_drop` was called.
pub(crate) struct Held<'a> {
    slot: MutexGuard<'a, Option<SqliteConnection>>,
    close: bool,
}

impl Held<'_> {
    /// Closes the connection as this is dropped: it may hold a transaction
    /// or a setting half way. Closing it ends its thread, and SQLite rolls
    /// back whatever was open; the next caller opens a fresh one.
    pub(crate) fn close_on_drop(&mut self) {
        self.close = true;
    }
}

impl Deref for Held<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        self.slot
            .as_ref()
            .unwrap_or_else(|| unreachable!("opened in get, taken only on drop"))
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.slot
            .as_mut()
            .unwrap_or_else(|| unreachable!("opened in get, taken only on drop"))
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.close {
            // Dropping the connection ends its thread after the commands
            // already sent to it, and SQLite closes the file.
            self.slot.take();
        }
    }
}
