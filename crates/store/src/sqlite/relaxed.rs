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
//!
//! The switch and the switch back travel with the write, as one command on
//! a `Compound` (`compound.rs`): should the command fail half way, or its
//! future be dropped, the connection is closed rather than given back, so no
//! later write can run without a sync by mistake (the next connection
//! opens with the options' `FULL`, `writer.rs`).

/// Puts before a relaxed write (a statement, or a whole transaction).
pub(crate) const NORMAL: &str = "PRAGMA synchronous = NORMAL; ";
/// Puts after it.
pub(crate) const FULL: &str = "; PRAGMA synchronous = FULL";

/// `sql` committed without a sync of its own.
pub(crate) fn relaxed(sql: &str) -> String {
    format!("{NORMAL}{sql}{FULL}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::compound::{tests::writer, Compound};
    use crate::sqlite::writer::Writer;

    async fn synchronous(db: &Writer) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *db.get().await.expect("writer"))
            .await
            .unwrap_or(-1)
    }

    /// Every write after a relaxed one syncs again, whether the relaxed one
    /// finished or was abandoned half way (an error, a cancelled future):
    /// a publish must never commit without a sync by mistake.
    #[tokio::test]
    async fn the_writer_syncs_again_after_a_relaxed_write_finished_or_abandoned() {
        let (db, dir) = writer("relaxed").await;
        const FULL_LEVEL: i64 = 2;
        const NORMAL_LEVEL: i64 = 1;
        assert_eq!(synchronous(&db).await, FULL_LEVEL);

        // Finished: the level read inside the write, then after it.
        let mut w = Compound::acquire(&db).await.expect("writer");
        let inside: Vec<i64> = sqlx::query_scalar(&relaxed("PRAGMA synchronous"))
            .fetch_all(w.conn())
            .await
            .expect("relaxed read of the level");
        w.committed();
        assert_eq!(inside, vec![NORMAL_LEVEL], "inside a relaxed write");
        assert_eq!(synchronous(&db).await, FULL_LEVEL, "after it");

        // Failed half way: its switch back never ran, and the connection
        // is not reused; the next one opens with the options' FULL.
        let mut w = Compound::acquire(&db).await.expect("writer");
        let failed = sqlx::query(&relaxed("SELECT * FROM no_such_table"))
            .execute(w.conn())
            .await;
        assert!(failed.is_err());
        drop(w);
        assert_eq!(synchronous(&db).await, FULL_LEVEL, "after a failed write");

        // Abandoned after its switch, before any switch back.
        let mut w = Compound::acquire(&db).await.expect("writer");
        sqlx::query(NORMAL.trim_end_matches("; "))
            .execute(w.conn())
            .await
            .expect("switch");
        drop(w);
        assert_eq!(
            synchronous(&db).await,
            FULL_LEVEL,
            "after an abandoned write"
        );
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
