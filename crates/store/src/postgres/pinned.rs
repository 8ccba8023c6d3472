//! Connections kept by the hot paths (publish, inbound and outcome batches,
//! claims and releases, forwarding outcomes) between uses, outside the
//! pool. sqlx tests a pooled connection with a round trip before handing it
//! out and again, in a task it spawns, when it is given back: each
//! statement run on the pool was three round trips, each waking
//! PostgreSQL's backend. The test on release is there for a connection left
//! half way by a cancelled or failed call; a connection here goes back only
//! after a call that finished, and is closed otherwise. One idle for a
//! while is tested before its next use (the server may have gone away
//! meanwhile), and a failure empties the idle list: after a restart of the
//! server every kept connection is dead, and each would fail a call.
//!
//! Taken out of its pool, a connection no longer counts against the pool's
//! limit: each kind has a bound of its own, and docs/PRODUCTION.md counts
//! them in the connections a replica may open.

use crate::error::Result;
use sqlx::postgres::{PgConnection, PgPool};
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Idle longer than this, a connection is tested (a round trip) before its
/// next use; under load they are reused within milliseconds.
const FRESH: Duration = Duration::from_secs(1);

/// Connections of one kind (those of `pool`, with its session settings),
/// opened from the pool and then kept apart from it: at most `max` of them,
/// in use or idle. A connection taken out of a pool no longer counts
/// against the pool's own limit, so without this bound every concurrent
/// caller would open one more.
pub(crate) struct Pinned {
    pool: PgPool,
    idle: Mutex<Vec<(PgConnection, Instant)>>,
    out: Semaphore,
}

impl Pinned {
    pub(crate) fn new(pool: PgPool, max: usize) -> Self {
        Self {
            pool,
            idle: Mutex::new(Vec::new()),
            out: Semaphore::new(max),
        }
    }

    /// The pool the connections come from, for the paths that stay on it.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// An idle connection, or a new one taken out of the pool.
    pub(crate) async fn get(&self) -> Result<Held<'_>> {
        let permit = self
            .out
            .acquire()
            .await
            .unwrap_or_else(|_| unreachable!("never closed"));
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let tested = match idle {
            Some((conn, since)) if since.elapsed() < FRESH => Some(conn),
            Some((mut conn, _)) => match sqlx::Connection::ping(&mut conn).await {
                Ok(()) => Some(conn),
                // Dead: closed as it is dropped here.
                Err(_) => None,
            },
            None => None,
        };
        let conn = match tested {
            Some(conn) => conn,
            // The pool opens or tests its own.
            None => self.pool.acquire().await?.detach(),
        };
        Ok(Held {
            conn: Some(conn),
            home: self,
            finished: false,
            _permit: permit,
        })
    }
}

/// A connection in use. Given back by `finished`; dropped without it (an
/// error, a cancelled future), it is closed: it may be half way through a
/// statement.
pub(crate) struct Held<'a> {
    conn: Option<PgConnection>,
    home: &'a Pinned,
    finished: bool,
    _permit: SemaphorePermit<'a>,
}

impl Held<'_> {
    /// The call finished: the connection may serve the next one.
    pub(crate) fn finished(mut self) {
        self.finished = true;
    }
}

impl Deref for Held<'_> {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.conn
            .as_ref()
            .unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_mut()
            .unwrap_or_else(|| unreachable!("taken only on drop"))
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.finished {
            // Never more idle than may be out: each was out with a permit.
            let mut idle = self.home.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.push((conn, Instant::now()));
            return;
        }
        // Dropping a connection closes its socket: the server ends the
        // session and rolls back whatever it had open. The others kept may
        // be dead for the same reason (the server restarted): not reused.
        drop(conn);
        self.home
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The machine's PostgreSQL (tests run against the real server).
    async fn test_pool() -> PgPool {
        let url = std::env::var("HOOKWARDEN_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        PgPool::connect(&url).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed for this test and is not reachable at {url}: {e}. \
                 Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
            )
        })
    }

    async fn backend_pid(conn: &mut PgConnection) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(conn)
            .await
            .expect("pid")
    }

    /// A connection given back after a finished call serves the next one
    /// (no test on release, no new session); one dropped half way (an
    /// error, a cancelled future) is closed, never handed out again.
    #[tokio::test]
    async fn a_finished_connection_is_kept_and_an_unfinished_one_closed() {
        let pool = test_pool().await;
        let pinned = Pinned::new(pool, 2);
        let mut c = pinned.get().await.expect("connection");
        let first = backend_pid(&mut c).await;
        c.finished();
        let mut c = pinned.get().await.expect("connection");
        assert_eq!(backend_pid(&mut c).await, first, "kept and reused");
        // In a transaction, then dropped without finishing.
        sqlx::query("BEGIN").execute(&mut *c).await.expect("begin");
        drop(c);
        let mut c = pinned.get().await.expect("connection");
        let next = backend_pid(&mut c).await;
        assert_ne!(
            next, first,
            "the unfinished one was closed: its open transaction went with it"
        );
        c.finished();
    }

    /// Callers beyond the bound wait for a connection rather than open
    /// one more each (taken out of its pool, a connection no longer counts
    /// against the pool's limit).
    #[tokio::test]
    async fn no_more_connections_than_the_bound_are_open_at_once() {
        let pool = test_pool().await;
        let pinned = Pinned::new(pool, 2);
        let a = pinned.get().await.expect("first");
        let b = pinned.get().await.expect("second");
        let third = tokio::time::timeout(Duration::from_millis(200), pinned.get()).await;
        assert!(third.is_err(), "a third waits while two are out");
        a.finished();
        let c = tokio::time::timeout(Duration::from_secs(5), pinned.get())
            .await
            .expect("one came back")
            .expect("connection");
        c.finished();
        b.finished();
        assert_eq!(pinned.idle.lock().expect("idle").len(), 2);
    }
}
