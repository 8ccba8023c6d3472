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
//! The switch and the switch back travel with the write, in one job on the
//! writer's own thread (`direct.rs`), which sets the level back to `FULL`
//! should the job fail half way, and runs to its end even if its caller
//! goes away: no later write can run without a sync by mistake. The other
//! connection of the writer (`writer.rs`) never changes the level.

use super::direct::Cells;
use super::ms;
use super::writer::Writer;
use crate::error::Result;
use crate::model::Claim;

/// A claim's `UPDATE … RETURNING` (of tries or of forwarding jobs), its
/// lease until `?1` for owner `?2` at `?3`, lanes `?4` (JSON) left out and
/// at most `?5` rows, committed relaxed; the rows it leased.
pub(crate) async fn claim(writer: &Writer, sql: String, c: &Claim<'_>) -> Result<Vec<Cells>> {
    let params = (
        ms(c.lease_until),
        c.worker_id.to_owned(),
        ms(c.now),
        serde_json::to_string(c.exclude_webhooks).unwrap_or_default(),
        i64::from(c.limit),
    );
    let (_held, direct) = writer.direct().await?;
    direct.relaxed(sql, params).await
}

#[cfg(test)]
mod tests {
    use crate::sqlite::writer::{tests::writer, Writer};

    const FULL_LEVEL: i64 = 2;
    const NORMAL_LEVEL: i64 = 1;

    async fn synchronous(db: &Writer) -> i64 {
        let (_held, direct) = db.direct().await.expect("writer");
        direct
            .run(|c| c.query_row("PRAGMA synchronous", [], |r| r.get(0)))
            .await
            .unwrap_or(-1)
    }

    /// Every write after a relaxed one syncs again, whether the relaxed one
    /// finished, failed half way (after its switch, inside a transaction) or
    /// its caller went away: a publish must never commit without a sync by
    /// mistake.
    #[tokio::test]
    async fn the_writer_syncs_again_after_a_relaxed_write_finished_failed_or_abandoned() {
        let (db, dir) = writer("relaxed").await;
        assert_eq!(synchronous(&db).await, FULL_LEVEL);

        // Finished: the level read inside the write, then after it.
        let (held, direct) = db.direct().await.expect("writer");
        let inside = direct
            .relaxed("PRAGMA synchronous".into(), [])
            .await
            .expect("relaxed read of the level");
        drop(held);
        let level: i64 = crate::rows::Columns::get(&inside[0], "synchronous").expect("level");
        assert_eq!(level, NORMAL_LEVEL, "inside a relaxed write");
        assert_eq!(synchronous(&db).await, FULL_LEVEL, "after it");

        // Failed half way: after its switch, inside a transaction.
        let (held, direct) = db.direct().await.expect("writer");
        let failed = direct
            .run(|c| {
                c.execute_batch("PRAGMA synchronous = NORMAL; BEGIN; CREATE TABLE t (v)")?;
                c.execute_batch("SELECT * FROM no_such_table")
            })
            .await;
        assert!(failed.is_err());
        drop(held);
        assert_eq!(synchronous(&db).await, FULL_LEVEL, "after a failed write");

        // Abandoned: its caller went away before the answer; the job still
        // ran to its end (here, its switch back), before the next one.
        let (held, direct) = db.direct().await.expect("writer");
        let abandoned = direct.run(|c| {
            c.execute_batch("PRAGMA synchronous = NORMAL")?;
            std::thread::sleep(std::time::Duration::from_millis(50));
            c.execute_batch("PRAGMA synchronous = FULL")
        });
        let _ = tokio::time::timeout(std::time::Duration::from_millis(1), abandoned).await;
        drop(held);
        assert_eq!(
            synchronous(&db).await,
            FULL_LEVEL,
            "after an abandoned write"
        );
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
