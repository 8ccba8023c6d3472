//! Webhooks on SQLite: an account's endpoints, their secrets, and the
//! states that stop deliveries to them (disabled, held, paused).

use super::{ms, time, SqliteStore};
use crate::error::{classify, Result};
use crate::model::{Failure, Page, Slot, Webhook, WebhookUpdate};
use crate::rows::{self, WEBHOOK_COLUMNS};
use chrono::{DateTime, Utc};
use sqlx::types::Json;

pub(super) async fn set_max_per_account(s: &SqliteStore, max: u32) -> Result<()> {
    sqlx::query("UPDATE tenant_limits SET max_webhooks_per_account = ?1 WHERE id = 1")
        .bind(i32::try_from(max.max(1)).unwrap_or(i32::MAX))
        .execute(&mut *s.writer.get().await?)
        .await?;
    Ok(())
}

pub(super) async fn create(s: &SqliteStore, w: &Webhook) -> Result<()> {
    sqlx::query(
        "INSERT INTO webhook_configs (id, account_id, url, description, event_types, secret_enc, \
         secret_key_id, disabled, created_at, updated_at, headers, headers_enc, headers_key_id, \
         payload_filter, rate_limit_per_second, public_key) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,0,?8,?9,?10,?11,?12,?13,?14,?15)",
    )
    .bind(&w.id)
    .bind(&w.account_id)
    .bind(&w.url)
    .bind(&w.description)
    .bind(Json(&w.event_types))
    .bind(&w.secret.ciphertext)
    .bind(&w.secret.key_id)
    .bind(ms(w.created_at))
    .bind(ms(w.updated_at))
    .bind(w.controls.headers.as_ref().map(Json))
    .bind(w.controls.secret_headers.as_ref().map(|s| &s.ciphertext))
    .bind(w.controls.secret_headers.as_ref().map(|s| &s.key_id))
    .bind(w.controls.filter.as_ref().map(Json))
    .bind(w.controls.rate_limit_per_second.map(i64::from))
    .bind(&w.controls.public_key)
    .execute(&mut *s.writer.get().await?)
    .await
    .map_err(classify)?;
    Ok(())
}

pub(super) async fn get(s: &SqliteStore, account_id: &str, id: &str) -> Result<Option<Webhook>> {
    let sql =
        format!("SELECT {WEBHOOK_COLUMNS} FROM webhook_configs WHERE account_id = ?1 AND id = ?2");
    let row = sqlx::query(&sql)
        .bind(account_id)
        .bind(id)
        .fetch_optional(&s.readers)
        .await?;
    row.as_ref().map(rows::webhook).transpose()
}

pub(super) async fn by_ids(s: &SqliteStore, ids: &[String]) -> Result<Vec<Webhook>> {
    let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhook_configs WHERE id IN (SELECT value FROM json_each(?1))");
    let rows = sqlx::query(&sql)
        .bind(Json(ids))
        .fetch_all(&s.readers)
        .await?;
    rows.iter().map(rows::webhook).collect()
}

pub(super) async fn list(
    s: &SqliteStore,
    account_id: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<Page<Webhook>> {
    // Two statements rather than `?1 IS NULL OR …`: each keeps its index.
    let scope = if account_id.is_some() {
        "account_id = ?1"
    } else {
        "?1 IS NULL"
    };
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhook_configs WHERE {scope} AND id > ?2 ORDER BY id LIMIT ?3"
    );
    let rows = sqlx::query(&sql)
        .bind(account_id)
        .bind(after.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&s.readers)
        .await?;
    let items = rows.iter().map(rows::webhook).collect::<Result<Vec<_>>>()?;
    Ok(Page::from_rows(items, limit, |w| w.id.clone()))
}

pub(super) async fn update(
    s: &SqliteStore,
    account_id: &str,
    id: &str,
    u: &WebhookUpdate,
) -> Result<Option<Webhook>> {
    let (new_enc, new_kid, old_until) = match &u.rotate {
        Some((s, until)) => (Some(&s.ciphertext), Some(&s.key_id), Some(ms(*until))),
        None => (None, None, None),
    };
    let (headers, secret_headers) = match &u.controls.headers {
        Some((list, sealed)) => (list.as_ref(), sealed.as_ref()),
        None => (None, None),
    };
    // SQLite, like PostgreSQL, evaluates every right-hand side against the
    // row as it was, so the current secret moves to old_* in one statement.
    let sql = format!(
        "UPDATE webhook_configs SET \
           url = COALESCE(?3, url), description = COALESCE(?4, description), \
           event_types = COALESCE(?5, event_types), \
           old_secret_enc = CASE WHEN ?6 IS NULL THEN old_secret_enc ELSE secret_enc END, \
           old_secret_key_id = CASE WHEN ?6 IS NULL THEN old_secret_key_id ELSE secret_key_id END, \
           old_secret_expires_at = CASE WHEN ?6 IS NULL THEN old_secret_expires_at ELSE ?8 END, \
           secret_enc = COALESCE(?6, secret_enc), secret_key_id = COALESCE(?7, secret_key_id), \
           disabled = CASE WHEN ?9 AND NOT operator_hold THEN 0 ELSE disabled END, \
           disabled_reason = CASE WHEN ?9 AND NOT operator_hold THEN NULL ELSE disabled_reason END, \
           throttled_until = CASE WHEN ?9 THEN NULL ELSE throttled_until END, \
           failures_in_a_row = CASE WHEN ?9 THEN 0 ELSE failures_in_a_row END, \
           breaker_pauses = CASE WHEN ?9 THEN 0 ELSE breaker_pauses END, \
           failing_since = CASE WHEN ?9 THEN NULL ELSE failing_since END, \
           headers = CASE WHEN ?11 THEN ?12 ELSE headers END, \
           headers_enc = CASE WHEN ?11 THEN ?13 ELSE headers_enc END, \
           headers_key_id = CASE WHEN ?11 THEN ?14 ELSE headers_key_id END, \
           payload_filter = CASE WHEN ?15 THEN ?16 ELSE payload_filter END, \
           rate_limit_per_second = CASE WHEN ?17 THEN ?18 ELSE rate_limit_per_second END, \
           public_key = CASE WHEN ?19 THEN ?20 ELSE public_key END, \
           updated_at = ?10 \
         WHERE account_id = ?1 AND id = ?2 RETURNING {WEBHOOK_COLUMNS}"
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
        .bind(ms(u.updated_at))
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
        .bind(u.controls.rate_limit_per_second.flatten().map(i64::from))
        .bind(u.controls.public_key.is_some())
        .bind(u.controls.public_key.as_ref().and_then(|k| k.as_ref()))
        .fetch_optional(&mut *s.writer.get().await?)
        .await
        .map_err(classify)?;
    row.as_ref().map(rows::webhook).transpose()
}

pub(super) async fn delete(
    s: &SqliteStore,
    account_id: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut held = s.writer.get().await?;
    let mut tx = sqlx::Connection::begin(&mut *held).await?;
    let deleted = sqlx::query("DELETE FROM webhook_configs WHERE account_id = ?1 AND id = ?2")
        .bind(account_id)
        .bind(id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted > 0 {
        sqlx::query(
            "UPDATE delivery_attempts SET status = 'dead', error = 'webhook deleted', completed_at = ?2, \
             lease_until = NULL WHERE webhook_id = ?1 AND status = 'pending'",
        )
        .bind(id)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(deleted > 0)
}

pub(super) async fn disable(
    s: &SqliteStore,
    id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    // Never over an operator's hold: its reason stays, and only the
    // operator lifts it.
    let changed = sqlx::query(
        "UPDATE webhook_configs SET disabled = 1, disabled_reason = ?2, updated_at = ?3 \
         WHERE id = ?1 AND NOT operator_hold",
    )
    .bind(id)
    .bind(reason)
    .bind(ms(now))
    .execute(&mut *s.writer.get().await?)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

pub(super) async fn hold(
    s: &SqliteStore,
    id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE webhook_configs SET disabled = 1, operator_hold = 1, disabled_reason = ?2, \
         updated_at = ?3 WHERE id = ?1",
    )
    .bind(id)
    .bind(reason)
    .bind(ms(now))
    .execute(&mut *s.writer.get().await?)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

pub(super) async fn enable(s: &SqliteStore, id: &str, now: DateTime<Utc>) -> Result<bool> {
    let changed = sqlx::query(
        "UPDATE webhook_configs SET disabled = 0, operator_hold = 0, disabled_reason = NULL, \
         failures_in_a_row = 0, breaker_pauses = 0, failing_since = NULL, updated_at = ?2 WHERE id = ?1",
    )
    .bind(id)
    .bind(ms(now))
    .execute(&mut *s.writer.get().await?)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

pub(super) async fn throttle(s: &SqliteStore, id: &str, until: DateTime<Utc>) -> Result<()> {
    let mut held = s.writer.get().await?;
    let mut tx = sqlx::Connection::begin(&mut *held).await?;
    sqlx::query("UPDATE webhook_configs SET throttled_until = MAX(COALESCE(throttled_until, ?2), ?2) WHERE id = ?1")
        .bind(id)
        .bind(ms(until))
        .execute(&mut *tx)
        .await?;
    // Through the due index (it holds webhook_id): the due rows, not
    // the endpoint's whole history.
    sqlx::query(
        "UPDATE delivery_attempts SET due_at = ?2 \
         WHERE status = 'pending' AND due_at < ?2 AND webhook_id = ?1",
    )
    .bind(id)
    .bind(ms(until))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub(super) async fn states(s: &SqliteStore, now: DateTime<Utc>) -> Result<(u64, u64)> {
    let (paused, disabled): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN NOT disabled AND throttled_until > ?1 THEN 1 ELSE 0 END), 0), \
         COALESCE(SUM(CASE WHEN disabled THEN 1 ELSE 0 END), 0) FROM webhook_configs",
    )
    .bind(ms(now))
    .fetch_one(&s.readers)
    .await?;
    Ok((paused.max(0) as u64, disabled.max(0) as u64))
}

pub(super) async fn failed(
    s: &SqliteStore,
    id: &str,
    now: DateTime<Utc>,
    threshold: u32,
) -> Result<Option<Failure>> {
    // One statement on the one writer: failures are counted in order.
    let row: Option<(i64, i64, i64)> = sqlx::query_as(
        "UPDATE webhook_configs SET \
           failures_in_a_row = CASE WHEN failures_in_a_row + 1 >= ?3 THEN 0 ELSE failures_in_a_row + 1 END, \
           breaker_pauses = CASE WHEN failures_in_a_row + 1 >= ?3 THEN breaker_pauses + 1 ELSE breaker_pauses END, \
           failing_since = COALESCE(failing_since, ?2) \
         WHERE id = ?1 RETURNING failures_in_a_row, breaker_pauses, failing_since",
    )
    .bind(id)
    .bind(ms(now))
    .bind(i64::from(threshold))
    .fetch_optional(&mut *s.writer.get().await?)
    .await?;
    row.map(|(in_a_row, pauses, since)| {
        Ok(Failure {
            opened: in_a_row == 0,
            pauses: pauses.clamp(0, i64::from(u32::MAX)) as u32,
            failing_since: time(since)?,
        })
    })
    .transpose()
}

pub(super) async fn succeeded(s: &SqliteStore, id: &str) -> Result<u32> {
    let mut held = s.writer.get().await?;
    let mut tx = sqlx::Connection::begin(&mut *held).await?;
    let before: Option<i64> =
        sqlx::query_scalar("SELECT breaker_pauses FROM webhook_configs WHERE id = ?1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    sqlx::query(
        "UPDATE webhook_configs SET failures_in_a_row = 0, breaker_pauses = 0, failing_since = NULL \
         WHERE id = ?1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(before.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32)
}

pub(super) async fn disable_failing(
    s: &SqliteStore,
    id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let mut held = s.writer.get().await?;
    let mut tx = sqlx::Connection::begin(&mut *held).await?;
    let changed = sqlx::query(
        "UPDATE webhook_configs SET disabled = 1, disabled_reason = ?2, updated_at = ?3 \
         WHERE id = ?1 AND NOT disabled AND NOT operator_hold",
    )
    .bind(id)
    .bind(reason)
    .bind(ms(now))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if changed > 0 {
        sqlx::query(
            "UPDATE delivery_attempts SET status = 'dead', error = ?3, completed_at = ?2, \
             lease_until = NULL WHERE webhook_id = ?1 AND status = 'pending'",
        )
        .bind(id)
        .bind(ms(now))
        .bind(reason)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(changed > 0)
}

pub(super) async fn hurry_retries(
    s: &SqliteStore,
    id: &str,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut held = s.writer.get().await?;
    let mut tx = sqlx::Connection::begin(&mut *held).await?;
    sqlx::query(
        "UPDATE webhook_configs SET throttled_until = NULL, failures_in_a_row = 0, \
         breaker_pauses = 0 WHERE id = ?1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let moved = sqlx::query(
        "UPDATE delivery_attempts SET due_at = ?3 \
         WHERE webhook_id = ?1 AND status = 'pending' AND attempt > 1 AND created_at >= ?2 AND due_at > ?3",
    )
    .bind(id)
    .bind(ms(since))
    .bind(ms(now))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(moved)
}

pub(super) async fn reserve_send_slot(
    s: &SqliteStore,
    id: &str,
    now: DateTime<Utc>,
    interval: chrono::Duration,
    latest: DateTime<Utc>,
) -> Result<Slot> {
    // On the one writer: read and take in one transaction.
    let mut held = s.writer.get().await?;
    let mut tx = sqlx::Connection::begin(&mut *held).await?;
    let row: Option<(Option<i64>,)> =
        sqlx::query_as("SELECT rate_next_at FROM webhook_configs WHERE id = ?1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((next,)) = row else {
        return Ok(Slot::At(now));
    };
    let slot = next.map_or(Ok(now), time)?.max(now);
    if slot > latest {
        return Ok(Slot::Busy(slot));
    }
    sqlx::query("UPDATE webhook_configs SET rate_next_at = ?2 WHERE id = ?1")
        .bind(id)
        .bind(ms(slot + interval))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Slot::At(slot))
}

pub(super) async fn hold_back(s: &SqliteStore, id: &str, until: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "UPDATE webhook_configs SET throttled_until = MAX(COALESCE(throttled_until, ?2), ?2) WHERE id = ?1",
    )
    .bind(id)
    .bind(ms(until))
    .execute(&mut *s.writer.get().await?)
    .await?;
    Ok(())
}
