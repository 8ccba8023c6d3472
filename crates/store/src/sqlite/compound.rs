//! A batch's transaction on the single writer in as few hand-offs to the
//! connection's thread as its statements allow: `BEGIN` goes with the first
//! statement and `COMMIT` with the last, as one command each (sqlx runs
//! every statement of a query string in one command, its arguments bound
//! in order across them). Each command wakes that thread, and each of its
//! statements' results (and rows) is sent back on its own, waking a
//! runtime thread that had nothing else to do at a steady rate: fewer
//! commands and fewer statements per event are fewer wake-ups. A published
//! and delivered event took thirteen commands; now two (the publish batch,
//! once the worker takes its tries at birth) and one (the outcome).
//!
//! A command that fails half way leaves its transaction open; so does a
//! future dropped between two commands. Then the connection is closed
//! rather than given back (SQLite rolls back what it had open), and the
//! next caller opens a fresh one with the options' settings
//! (`synchronous = FULL`, `writer.rs`).

use super::writer::{Held, Writer};
use crate::error::Result;
use sqlx::sqlite::SqliteConnection;

/// Opens a transaction: put before the batch's first statement.
pub(crate) const BEGIN: &str = "BEGIN; ";
/// Ends it: put after the batch's last statement.
pub(crate) const COMMIT: &str = "; COMMIT";

/// The writer's connection while a compound transaction may be open.
pub(crate) struct Compound<'a> {
    conn: Held<'a>,
    committed: bool,
}

impl<'a> Compound<'a> {
    pub(crate) async fn acquire(writer: &'a Writer) -> Result<Self> {
        Ok(Self {
            conn: writer.get().await?,
            committed: false,
        })
    }

    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }

    /// The command carrying `COMMIT` (or the switch back of a relaxed write,
    /// `relaxed.rs`) succeeded: nothing is left open or switched.
    pub(crate) fn committed(mut self) {
        self.committed = true;
    }
}

impl Drop for Compound<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.conn.close_on_drop();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};

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
        let writer = Writer::open(opts)
            .await
            .expect("a SQLite file in the temporary directory");
        (writer, dir)
    }

    /// A compound that fails after its `BEGIN` (here, its second statement)
    /// or is abandoned between commands leaves nothing behind: its
    /// connection is closed with the transaction rolled back, and the next
    /// write, on a fresh connection, is not inside it.
    #[tokio::test]
    async fn a_compound_that_fails_or_is_abandoned_leaves_no_transaction_open() {
        let (db, dir) = writer("compound").await;
        sqlx::query("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .execute(&mut *db.get().await.expect("writer"))
            .await
            .expect("table");

        let mut w = Compound::acquire(&db).await.expect("writer");
        let failed = sqlx::query(&format!(
            "{BEGIN}INSERT INTO t VALUES (1); INSERT INTO t VALUES (1){COMMIT}"
        ))
        .execute(w.conn())
        .await;
        assert!(failed.is_err(), "the second insert breaks the key");
        drop(w);

        let mut w = Compound::acquire(&db).await.expect("writer");
        sqlx::query(&format!("{BEGIN}INSERT INTO t VALUES (2)"))
            .execute(w.conn())
            .await
            .expect("first command");
        drop(w); // abandoned before its COMMIT

        let mut w = Compound::acquire(&db).await.expect("writer");
        sqlx::query(&format!("{BEGIN}INSERT INTO t VALUES (3){COMMIT}"))
            .execute(w.conn())
            .await
            .expect("a whole compound");
        w.committed();
        let kept: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&mut *db.get().await.expect("writer"))
            .await
            .expect("read");
        assert_eq!(
            kept,
            vec![3],
            "neither the failed nor the abandoned one stayed"
        );
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
