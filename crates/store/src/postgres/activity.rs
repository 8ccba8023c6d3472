//! Activity on PostgreSQL: per-minute counts added by each replica's flusher
//! (one upsert that sums), read back for the console's charts, pruned by age.

use super::PgStore;
use crate::error::Result;
use crate::model::ActivityDelta;
use chrono::{DateTime, Utc};
use sqlx::Row;

pub(super) async fn add(s: &PgStore, deltas: &[ActivityDelta]) -> Result<Vec<ActivityDelta>> {
    // Merged, so a row appears once in the statement and rows are locked
    // in the same order by every replica.
    let deltas = ActivityDelta::merged(deltas);
    if deltas.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "INSERT INTO hook.activity (minute, series, value) \
         SELECT minute, series, value FROM unnest($1::timestamptz[], $2::text[], $3::bigint[]) \
           AS d(minute, series, value) \
         ORDER BY minute, series \
         ON CONFLICT (minute, series) DO UPDATE SET value = hook.activity.value + EXCLUDED.value \
         RETURNING minute, series, value",
    )
    .bind(deltas.iter().map(|d| d.minute).collect::<Vec<_>>())
    .bind(deltas.iter().map(|d| d.series.as_str()).collect::<Vec<_>>())
    .bind(deltas.iter().map(|d| d.value).collect::<Vec<_>>())
    .fetch_all(&s.pool)
    .await?;
    rows.iter().map(row).collect()
}

fn row(r: &sqlx::postgres::PgRow) -> Result<ActivityDelta> {
    Ok(ActivityDelta {
        minute: r.try_get("minute")?,
        series: r.try_get("series")?,
        value: r.try_get("value")?,
    })
}

pub(super) async fn since(s: &PgStore, since: DateTime<Utc>) -> Result<Vec<ActivityDelta>> {
    let rows = sqlx::query(
        "SELECT minute, series, value FROM hook.activity WHERE minute >= $1 \
         ORDER BY minute, series",
    )
    .bind(since)
    .fetch_all(&s.pool)
    .await?;
    rows.iter().map(row).collect()
}

pub(super) async fn prune(s: &PgStore, before: DateTime<Utc>) -> Result<u64> {
    let done = sqlx::query("DELETE FROM hook.activity WHERE minute < $1")
        .bind(before)
        .execute(&s.pool)
        .await?;
    Ok(done.rows_affected())
}
