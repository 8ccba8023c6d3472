//! Webhooks on PostgreSQL: an account's endpoints, their secrets, and the
//! states that stop deliveries to them (disabled, held, paused).

use super::PgStore;
use crate::error::{classify, Result};
use crate::model::{Failure, Page, Slot, Webhook, WebhookUpdate};
use crate::rows::{self, WEBHOOK_COLUMNS};
use chrono::{DateTime, Utc};
use sqlx::types::Json;

pub(super) async fn set_max_per_account(s: &PgStore, max: u32) -> Result<()> {
    sqlx::query("UPDATE hook.tenant_limits SET max_webhooks_per_account = $1 WHERE id = 1")
        .bind(i32::try_from(max.max(1)).unwrap_or(i32::MAX))
        .execute(&s.pool)
        .await?;
    Ok(())
}

pub(super) async fn create(s: &PgStore, w: &Webhook) -> Result<()> {
    sqlx::query(
        "INSERT INTO hook.webhook_configs (id, account_id, url, description, event_types, secret_enc, \
         secret_key_id, disabled, created_at, updated_at, headers, headers_enc, headers_key_id, \
         payload_filter, rate_limit_per_second, public_key) \
         VALUES ($1,$2,$3,$4,$5,$6,$7,FALSE,$8,$9,$10,$11,$12,$13,$14,$15)",
    )
    .bind(&w.id)
    .bind(&w.account_id)
    .bind(&w.url)
    .bind(&w.description)
    .bind(Json(&w.event_types))
    .bind(&w.secret.ciphertext)
    .bind(&w.secret.key_id)
    .bind(w.created_at)
    .bind(w.updated_at)
    .bind(w.controls.headers.as_ref().map(Json))
    .bind(w.controls.secret_headers.as_ref().map(|s| &s.ciphertext))
    .bind(w.controls.secret_headers.as_ref().map(|s| &s.key_id))
    .bind(w.controls.filter.as_ref().map(Json))
    .bind(w.controls.rate_limit_per_second.map(|n| i32::try_from(n).unwrap_or(i32::MAX)))
    .bind(&w.controls.public_key)
    .execute(&s.pool)
    .await
    .map_err(classify)?;
    Ok(())
}

pub(super) async fn get(s: &PgStore, account_id: &str, id: &str) -> Result<Option<Webhook>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM hook.webhook_configs WHERE account_id = $1 AND id = $2"
    );
    let row = sqlx::query(&sql)
        .bind(account_id)
        .bind(id)
        .fetch_optional(&s.pool)
        .await?;
    row.as_ref().map(rows::webhook).transpose()
}

pub(super) async fn by_ids(s: &PgStore, ids: &[String]) -> Result<Vec<Webhook>> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM hook.webhook_configs WHERE id = ANY($1)");
    let rows = sqlx::query(&sql).bind(ids).fetch_all(&s.pool).await?;
    rows.iter().map(rows::webhook).collect()
}

pub(super) async fn list(
    s: &PgStore,
    account_id: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<Page<Webhook>> {
    // Two statements rather than `$1 IS NULL OR …`: each keeps its index.
    let scope = if account_id.is_some() {
        "account_id = $1"
    } else {
        "$1 IS NULL"
    };
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM hook.webhook_configs WHERE {scope} AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(account_id)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&s.pool)
        .await?;
    let items = rows.iter().map(rows::webhook).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_rows(items, limit, |w| w.id.clone()))
}

pub(super) async fn update(
    s: &PgStore,
    account_id: &str,
    id: &str,
    u: &WebhookUpdate,
) -> Result<Option<Webhook>> {
    let (new_enc, new_kid, old_until) = match &u.rotate {
        Some((s, until)) => (Some(&s.ciphertext), Some(&s.key_id), Some(*until)),
        None => (None, None, None),
    };
    let (headers, secret_headers) = match &u.controls.headers {
        Some((list, sealed)) => (list.as_ref(), sealed.as_ref()),
        None => (None, None),
    };
    // On rotation the current secret moves to the old_* columns in the same
    // statement (right-hand sides read the row as it was).
    let sql = format!(
        "UPDATE hook.webhook_configs SET \
           url = COALESCE($3, url), description = COALESCE($4, description), \
           event_types = COALESCE($5, event_types), \
           old_secret_enc = CASE WHEN $6::bytea IS NULL THEN old_secret_enc ELSE secret_enc END, \
           old_secret_key_id = CASE WHEN $6::bytea IS NULL THEN old_secret_key_id ELSE secret_key_id END, \
           old_secret_expires_at = CASE WHEN $6::bytea IS NULL THEN old_secret_expires_at ELSE $8 END, \
           secret_enc = COALESCE($6, secret_enc), secret_key_id = COALESCE($7, secret_key_id), \
           disabled = CASE WHEN $9 AND NOT operator_hold THEN FALSE ELSE disabled END, \
           disabled_reason = CASE WHEN $9 AND NOT operator_hold THEN NULL ELSE disabled_reason END, \
           throttled_until = CASE WHEN $9 THEN NULL ELSE throttled_until END, \
           failures_in_a_row = CASE WHEN $9 THEN 0 ELSE failures_in_a_row END, \
           breaker_pauses = CASE WHEN $9 THEN 0 ELSE breaker_pauses END, \
           failing_since = CASE WHEN $9 THEN NULL ELSE failing_since END, \
           headers = CASE WHEN $11 THEN $12 ELSE headers END, \
           headers_enc = CASE WHEN $11 THEN $13 ELSE headers_enc END, \
           headers_key_id = CASE WHEN $11 THEN $14 ELSE headers_key_id END, \
           payload_filter = CASE WHEN $15 THEN $16 ELSE payload_filter END, \
           rate_limit_per_second = CASE WHEN $17 THEN $18 ELSE rate_limit_per_second END, \
           public_key = CASE WHEN $19 THEN $20 ELSE public_key END, \
           updated_at = $10 \
         WHERE account_id = $1 AND id = $2 RETURNING {WEBHOOK_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(account_id)
        .bind(id)
        .bind(&u.url)
        .bind(&u.description)
        .bind(u.event_types.as_ref().map(Json))
        .bind(new_enc)
        .bind(new_kid)
        .bind(old_until)
        .bind(u.enable)
        .bind(u.updated_at)
        .bind(u.controls.headers.is_some())
        .bind(headers.map(Json))
        .bind(secret_headers.map(|s| &s.ciphertext))
        .bind(secret_headers.map(|s| &s.key_id))
        .bind(u.controls.filter.is_some())
        .bind(
            u.controls
                .filter
                .as_ref()
                .and_then(|f| f.as_ref())
                .map(Json),
        )
        .bind(u.controls.rate_limit_per_second.is_some())
        .bind(
            u.controls
                .rate_limit_per_second
                .flatten()
                .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        )
        .bind(u.controls.public_key.is_some())
        .bind(u.controls.public_key.as_ref().and_then(|k| k.as_ref()))
        .fetch_optional(&s.pool)
        .await
        .map_err(classify)?;
    row.as_ref().map(rows::webhook).transpose()
}

pub(super) async fn delete(
    s: &PgStore,
    account_id: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut tx = s.pool.begin().await?;
    let deleted = sqlx::query("DELETE FROM hook.webhook_configs WHERE account_id = $1 AND id = $2")
        .bind(account_id)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted > 0 {
        sqlx::query(
            "UPDATE hook.delivery_attempts SET status = 'dead', error = 'webhook deleted', completed_at = $2, \
             lease_until = NULL WHERE webhook_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(deleted > 0)
}

pub(super) async fn disable(
    s: &PgStore,
    id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    // Never over an operator's hold: its reason stays, and only the
    // operator lifts it.
    let changed = sqlx::query(
        "UPDATE hook.webhook_configs SET disabled = TRUE, disabled_reason = $2, updated_at = $3 \
         WHERE id = $1 AND NOT operator_hold",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(&s.pool)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

pub(super) async fn hold(s: &PgStore, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE hook.webhook_configs SET disabled = TRUE, operator_hold = TRUE, disabled_reason = $2, \
         updated_at = $3 WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(&s.pool)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

pub(super) async fn enable(s: &PgStore, id: &str, now: DateTime<Utc>) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE hook.webhook_configs SET disabled = FALSE, operator_hold = FALSE, disabled_reason = NULL, \
         failures_in_a_row = 0, breaker_pauses = 0, failing_since = NULL, updated_at = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .execute(&s.pool)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

pub(super) async fn throttle(s: &PgStore, id: &str, until: DateTime<Utc>) -> Result<()> {
    // One call: the pause and its pending tries moved (migration 0006).
    sqlx::query("SELECT hook.pause_webhook($1, $2)")
        .bind(id)
        .bind(until)
        .execute(&s.pool)
        .await?;
    Ok(())
}

pub(super) async fn states(s: &PgStore, now: DateTime<Utc>) -> Result<(u64, u64)> {
    let (paused, disabled): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN NOT disabled AND throttled_until > $1 THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN disabled THEN 1 ELSE 0 END), 0) FROM hook.webhook_configs",
    )
    .bind(now)
    .fetch_one(&s.pool)
    .await?;
    Ok((paused.max(0) as u64, disabled.max(0) as u64))
}

pub(super) async fn failed(
    s: &PgStore,
    id: &str,
    now: DateTime<Utc>,
    threshold: u32,
) -> Result<Option<Failure>> {
    // One statement: replicas failing the same endpoint at once each see
    // the count the other left (the row lock orders them).
    let row: Option<(i32, i32, DateTime<Utc>)> = sqlx::query_as(
        "UPDATE hook.webhook_configs SET \
           failures_in_a_row = CASE WHEN failures_in_a_row + 1 >= $3 THEN 0 ELSE failures_in_a_row + 1 END, \
           breaker_pauses = CASE WHEN failures_in_a_row + 1 >= $3 THEN breaker_pauses + 1 ELSE breaker_pauses END, \
           failing_since = COALESCE(failing_since, $2) \
         WHERE id = $1 RETURNING failures_in_a_row, breaker_pauses, failing_since",
    )
    .bind(id)
    .bind(now)
    .bind(i32::try_from(threshold).unwrap_or(i32::MAX))
    .fetch_optional(&s.pool)
    .await?;
    Ok(row.map(|(in_a_row, pauses, since)| Failure {
        opened: in_a_row == 0,
        pauses: pauses.max(0) as u32,
        failing_since: since,
    }))
}

pub(super) async fn succeeded(s: &PgStore, id: &str) -> Result<u32> {
    // The pauses as they were, read under the row's lock by the same
    // statement that clears them.
    let before: Option<i32> = sqlx::query_scalar(
        "UPDATE hook.webhook_configs w SET failures_in_a_row = 0, breaker_pauses = 0, failing_since = NULL \
         FROM (SELECT id, breaker_pauses FROM hook.webhook_configs WHERE id = $1 FOR UPDATE) old \
         WHERE w.id = old.id RETURNING old.breaker_pauses",
    )
    .bind(id)
    .fetch_optional(&s.pool)
    .await?;
    Ok(before.unwrap_or(0).max(0) as u32)
}

pub(super) async fn disable_failing(
    s: &PgStore,
    id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut tx = s.pool.begin().await?;
    let changed = sqlx::query(
        "UPDATE hook.webhook_configs SET disabled = TRUE, disabled_reason = $2, updated_at = $3 \
         WHERE id = $1 AND NOT disabled AND NOT operator_hold",
    )
    .bind(id)
    .bind(reason)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed > 0 {
        sqlx::query(
            "UPDATE hook.delivery_attempts SET status = 'dead', error = $3, completed_at = $2, \
             lease_until = NULL WHERE webhook_id = $1 AND status = 'pending'",
        )
        .bind(id)
        .bind(now)
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(changed > 0)
}

pub(super) async fn hurry_retries(
    s: &PgStore,
    id: &str,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut tx = s.pool.begin().await?;
    sqlx::query(
        "UPDATE hook.webhook_configs SET throttled_until = NULL, failures_in_a_row = 0, \
         breaker_pauses = 0 WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let moved = sqlx::query(
        "UPDATE hook.delivery_attempts SET due_at = $3 \
         WHERE webhook_id = $1 AND status = 'pending' AND attempt > 1 AND created_at >= $2 AND due_at > $3",
    )
    .bind(id)
    .bind(since)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    s.due_floor.wrote([now]);
    Ok(moved)
}

pub(super) async fn reserve_send_slot(
    s: &PgStore,
    id: &str,
    now: DateTime<Utc>,
    interval: chrono::Duration,
    latest: DateTime<Utc>,
) -> Result<Slot> {
    // One statement: the row locked, the slot read and, if it is near
    // enough, taken.
    let row: Option<(DateTime<Utc>, bool)> = sqlx::query_as(
        "WITH cur AS (SELECT id, GREATEST(COALESCE(rate_next_at, $2), $2) AS slot \
                      FROM hook.webhook_configs WHERE id = $1 FOR UPDATE), \
              taken AS (UPDATE hook.webhook_configs w \
                        SET rate_next_at = cur.slot + $3 * INTERVAL '1 microsecond' \
                        FROM cur WHERE w.id = cur.id AND cur.slot <= $4 RETURNING w.id) \
         SELECT cur.slot, EXISTS (SELECT 1 FROM taken) FROM cur",
    )
    .bind(id)
    .bind(now)
    .bind(interval.num_microseconds().unwrap_or(i64::MAX))
    .bind(latest)
    .fetch_optional(&s.pool)
    .await?;
    Ok(match row {
        None => Slot::At(now),
        Some((slot, true)) => Slot::At(slot),
        Some((slot, false)) => Slot::Busy(slot),
    })
}

pub(super) async fn hold_back(s: &PgStore, id: &str, until: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "UPDATE hook.webhook_configs SET throttled_until = GREATEST(COALESCE(throttled_until, $2), $2) \
         WHERE id = $1",
    )
    .bind(id)
    .bind(until)
    .execute(&s.pool)
    .await?;
    Ok(())
}
