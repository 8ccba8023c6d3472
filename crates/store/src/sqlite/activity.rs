//! Activity on SQLite: per-minute counts added by each replica's flusher
//! (upserts that sum), read back for the console's charts, pruned by age.

use super::{ms, time, SqliteStore};
use crate::error::Result;
use crate::model::ActivityDelta;
use chrono::{DateTime, Utc};
use sqlx::Row;

/// Rows per statement: three bound values each, far below SQLite's limit.
const ROWS_PER_STATEMENT: usize = 300;

pub(super) async fn add(s: &SqliteStore, deltas: &[ActivityDelta]) -> Result<Vec<ActivityDelta>> {
    let deltas = ActivityDelta::merged(deltas);
    if deltas.is_empty() {
        return Ok(Vec::new());
    }
    let mut sums = Vec::with_capacity(deltas.len());
    let mut held = s.writer.get().await?;
    let mut tx = sqlx::Connection::begin(&mut *held).await?;
    for chunk in deltas.chunks(ROWS_PER_STATEMENT) {
        let rows = vec!["(?,?,?)"; chunk.len()].join(",");
        let sql = format!(
            "INSERT INTO activity (minute, series, value) VALUES {rows} \
             ON CONFLICT (minute, series) DO UPDATE SET value = value + excluded.value \
             RETURNING minute, series, value"
        );
        let mut q = sqlx::query(&sql);
        for d in chunk {
            q = q.bind(ms(d.minute)).bind(&d.series).bind(d.value);
        }
        for r in q.fetch_all(&mut *tx).await? {
            sums.push(row(&r)?);
        }
    }
    tx.commit().await?;
    Ok(sums)
}

fn row(r: &sqlx::sqlite::SqliteRow) -> Result<ActivityDelta> {
    Ok(ActivityDelta {
        minute: time(r.try_get("minute")?)?,
        series: r.try_get("series")?,
        value: r.try_get("value")?,
    })
}

pub(super) async fn since(s: &SqliteStore, since: DateTime<Utc>) -> Result<Vec<ActivityDelta>> {
    let rows = sqlx::query(
        "SELECT minute, series, value FROM activity WHERE minute >= ?1 ORDER BY minute, series",
    )
    .bind(ms(since))
    .fetch_all(&s.readers)
    .await?;
    rows.iter().map(row).collect()
}

pub(super) async fn prune(s: &SqliteStore, before: DateTime<Utc>) -> Result<u64> {
    let done = sqlx::query("DELETE FROM activity WHERE minute < ?1")
        .bind(ms(before))
        .execute(&mut *s.writer.get().await?)
        .await?;
    Ok(done.rows_affected())
}
