//! `Store` on SQLite: webhooks, events, delivery tries, event types,
//! sealed values, web sessions and activity, in the order the trait declares them.

use super::{activity, ms, retention, web, webhooks, SqliteStore};
use crate::error::Result;
use crate::model::*;
use crate::rows::{self, Columns, ATTEMPT_COLUMNS, EVENT_COLUMNS, EVENT_TYPE_COLUMNS};
use crate::sealed::{SealedColumn, SealedRow};
use crate::search::{self, AttemptFilter, Dialect, EventFilter};
use crate::Store;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookwarden_core::crypto::Sealed;
use hookwarden_core::ids;
use sqlx::types::Json;
use sqlx::Row;

#[async_trait]
impl Store for SqliteStore {
    // The store itself.

    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        self.writer.migrate(&super::MIGRATOR).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    // Webhooks (webhooks.rs).

    async fn set_max_webhooks_per_account(&self, max: u32) -> Result<()> {
        webhooks::set_max_per_account(self, max).await
    }

    async fn create_webhook(&self, w: &Webhook) -> Result<()> {
        webhooks::create(self, w).await
    }

    async fn get_webhook(&self, account_id: &str, id: &str) -> Result<Option<Webhook>> {
        webhooks::get(self, account_id, id).await
    }

    async fn webhooks_by_ids(&self, ids: &[String]) -> Result<Vec<Webhook>> {
        webhooks::by_ids(self, ids).await
    }

    async fn list_webhooks(
        &self,
        account_id: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Page<Webhook>> {
        webhooks::list(self, account_id, after, limit).await
    }

    async fn update_webhook(
        &self,
        account_id: &str,
        id: &str,
        u: &WebhookUpdate,
    ) -> Result<Option<Webhook>> {
        webhooks::update(self, account_id, id, u).await
    }

    async fn delete_webhook(&self, account_id: &str, id: &str, now: DateTime<Utc>) -> Result<bool> {
        webhooks::delete(self, account_id, id, now).await
    }

    async fn disable_webhook(&self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        webhooks::disable(self, id, reason, now).await
    }

    async fn hold_webhook(&self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        webhooks::hold(self, id, reason, now).await
    }

    async fn enable_webhook(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        webhooks::enable(self, id, now).await
    }

    async fn webhook_states(&self, now: DateTime<Utc>) -> Result<(u64, u64)> {
        webhooks::states(self, now).await
    }

    async fn throttle_webhook(&self, id: &str, until: DateTime<Utc>) -> Result<()> {
        webhooks::throttle(self, id, until).await
    }

    async fn webhook_failed(
        &self,
        id: &str,
        now: DateTime<Utc>,
        threshold: u32,
    ) -> Result<Option<Failure>> {
        webhooks::failed(self, id, now, threshold).await
    }

    async fn webhook_succeeded(&self, id: &str) -> Result<u32> {
        webhooks::succeeded(self, id).await
    }

    async fn disable_failing_webhook(
        &self,
        id: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        webhooks::disable_failing(self, id, reason, now).await
    }

    async fn hold_back_webhook(&self, id: &str, until: DateTime<Utc>) -> Result<()> {
        webhooks::hold_back(self, id, until).await
    }

    async fn reserve_send_slot(
        &self,
        id: &str,
        now: DateTime<Utc>,
        interval: chrono::Duration,
        latest: DateTime<Utc>,
    ) -> Result<Slot> {
        webhooks::reserve_send_slot(self, id, now, interval, latest).await
    }

    async fn hurry_retries(
        &self,
        id: &str,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        webhooks::hurry_retries(self, id, since, now).await
    }

    // Events.

    async fn publish_event(&self, e: &NewEvent) -> Result<PublishOutcome> {
        // Concurrent publishes share one commit (group commit).
        self.publishes.submit(e.clone()).await
    }

    fn hand_births_to(&self, births: Option<std::sync::Arc<dyn crate::births::Births>>) {
        self.births.set(births);
    }

    async fn publish_to_webhook(&self, e: &NewEvent, webhook_id: &str) -> Result<DirectOutcome> {
        // On the single writer, so the webhook read and the inserts are one
        // step: a concurrent disable or delete comes before or after all of it.
        let mut held = self.writer.get().await?;
        let mut tx = sqlx::Connection::begin(&mut *held).await?;
        let Some(w) = sqlx::query(
            "SELECT disabled, throttled_until FROM webhook_configs WHERE id = ?1 AND account_id = ?2",
        )
        .bind(webhook_id)
        .bind(&e.account_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(DirectOutcome::NoWebhook);
        };
        if w.try_get::<bool, _>("disabled")? {
            return Ok(DirectOutcome::Disabled);
        }
        let paused_until = w.opt_time("throttled_until")?;
        sqlx::query(
            "INSERT INTO events (id, client_id, account_id, event_type, payload, producer, created_at, \
             trace_parent) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
        )
        .bind(&e.id)
        .bind(&e.client_id)
        .bind(&e.account_id)
        .bind(&e.event_type)
        .bind(Json(&e.payload))
        .bind(&e.producer)
        .bind(ms(e.created_at))
        .bind(&e.trace_parent)
        .execute(&mut *tx)
        .await?;
        let attempt_id = ids::attempt_id();
        sqlx::query(
            "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, \
             payload_snapshot, created_at, trace_parent) VALUES (?1,?2,?3,?4,1,'pending',?7,?6,?5,?8)",
        )
        .bind(&attempt_id)
        .bind(&e.id)
        .bind(webhook_id)
        .bind(&e.account_id)
        .bind(ms(e.created_at))
        .bind(Json(crate::snapshot(e)))
        .bind(ms(crate::answers::first_due(e.created_at, paused_until)))
        .bind(&e.trace_parent)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(DirectOutcome::Queued { attempt_id })
    }

    async fn search_events(
        &self,
        filter: &EventFilter<'_>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<NewEvent>> {
        let w = search::events(Dialect::Sqlite, filter, before);
        let sql = w.page_sql(&format!("SELECT {EVENT_COLUMNS} FROM events a"), limit);
        let rows = w
            .bind_to(sqlx::query(&sql))
            .fetch_all(&self.readers)
            .await?;
        let items = rows.iter().map(rows::event).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |e| e.id.clone()))
    }

    // Delivery tries.

    async fn claim_due(&self, c: &Claim<'_>) -> Result<Vec<Attempt>> {
        // One statement: SQLite applies it atomically under its write lock, so
        // two workers (even in two processes) never claim the same row.
        let sql = format!(
            "UPDATE delivery_attempts SET lease_until = ?1, claimed_by = ?2 WHERE id IN ( \
               SELECT a.id FROM delivery_attempts a JOIN webhook_configs w ON w.id = a.webhook_id \
               WHERE a.status = 'pending' AND a.due_at <= ?3 AND (a.lease_until IS NULL OR a.lease_until < ?3) \
                 AND w.disabled = 0 AND (w.throttled_until IS NULL OR w.throttled_until <= ?3) \
                 AND a.webhook_id NOT IN (SELECT value FROM json_each(?4)) \
               ORDER BY a.due_at LIMIT ?5) \
             RETURNING {ATTEMPT_COLUMNS}"
        );
        // A lease lost in a power cut only repeats a try (`relaxed.rs`).
        let rows = super::relaxed::claim(&self.writer, sql, c).await?;
        Ok(rows::claimed_attempts(&rows))
    }

    async fn release(&self, attempt_ids: &[String], worker_id: &str) -> Result<()> {
        let params = (
            serde_json::to_string(attempt_ids).unwrap_or_default(),
            worker_id.to_owned(),
        );
        let (_held, direct) = self.writer.direct().await?;
        let sql = "UPDATE delivery_attempts SET lease_until = NULL, claimed_by = NULL \
                   WHERE id IN (SELECT value FROM json_each(?1)) AND claimed_by = ?2 \
                     AND status = 'pending'";
        direct.relaxed(sql.to_owned(), params).await?;
        Ok(())
    }

    async fn complete_attempt(&self, r: &AttemptResult) -> Result<bool> {
        // Concurrent tries share one commit (group commit).
        self.completions.submit(r.clone()).await
    }

    async fn search_attempts(
        &self,
        filter: &AttemptFilter<'_>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<Attempt>> {
        let table = "delivery_attempts";
        let w = search::attempts(Dialect::Sqlite, table, filter, before);
        let sql = w.page_sql(&format!("SELECT {ATTEMPT_COLUMNS} FROM {table} a"), limit);
        let rows = w
            .bind_to(sqlx::query(&sql))
            .fetch_all(&self.readers)
            .await?;
        let items = rows.iter().map(rows::attempt).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |a| a.id.clone()))
    }

    async fn retry_now(
        &self,
        account_id: &str,
        attempt_id: &str,
        new_id: &str,
        now: DateTime<Utc>,
        due_at: DateTime<Utc>,
        only_if_latest: bool,
    ) -> Result<Option<Attempt>> {
        let mut held = self.writer.get().await?;
        let mut tx = sqlx::Connection::begin(&mut *held).await?;
        let Some(orig) = sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE account_id = ?1 AND id = ?2"
        ))
        .bind(account_id)
        .bind(attempt_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let orig = rows::attempt(&orig)?;
        let webhook =
            sqlx::query("SELECT id FROM webhook_configs WHERE id = ?1 AND account_id = ?2")
                .bind(&orig.webhook_id)
                .bind(account_id)
                .fetch_optional(&mut *tx)
                .await?;
        if webhook.is_none() {
            return Ok(None);
        }
        if only_if_latest {
            let later = sqlx::query(
                "SELECT 1 FROM delivery_attempts WHERE event_id = ?1 AND webhook_id = ?2 AND attempt > ?3 LIMIT 1",
            )
            .bind(&orig.event_id)
            .bind(&orig.webhook_id)
            .bind(orig.attempt)
            .fetch_optional(&mut *tx)
            .await?;
            if later.is_some() {
                return Ok(None);
            }
        }
        let pending = sqlx::query(&format!(
            "UPDATE delivery_attempts SET due_at = ?3 WHERE event_id = ?1 AND webhook_id = ?2 \
             AND status = 'pending' RETURNING {ATTEMPT_COLUMNS}"
        ))
        .bind(&orig.event_id)
        .bind(&orig.webhook_id)
        .bind(ms(due_at))
        .fetch_optional(&mut *tx)
        .await?;
        let row = match pending {
            Some(row) => row,
            None => {
                sqlx::query(&format!(
                    "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, \
                     payload_snapshot, created_at, trace_parent) \
                     SELECT ?1, ?2, ?3, ?4, COALESCE(MAX(attempt), 0) + 1, 'pending', ?7, ?6, ?5, ?8 \
                     FROM delivery_attempts WHERE event_id = ?2 AND webhook_id = ?3 \
                     RETURNING {ATTEMPT_COLUMNS}"
                ))
                .bind(new_id)
                .bind(&orig.event_id)
                .bind(&orig.webhook_id)
                .bind(account_id)
                .bind(ms(now))
                .bind(Json(&orig.payload_snapshot))
                .bind(ms(due_at))
                .bind(&orig.trace_parent)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let result = rows::attempt(&row)?;
        tx.commit().await?;
        Ok(Some(result))
    }

    async fn queue_stats(&self, now: DateTime<Utc>) -> Result<QueueStats> {
        let row = sqlx::query(
            "SELECT count(*) AS pending, coalesce(sum(due_at <= ?1), 0) AS due, min(due_at) AS oldest \
             FROM delivery_attempts WHERE status = 'pending'",
        )
        .bind(ms(now))
        .fetch_one(&self.readers)
        .await?;
        Ok(QueueStats {
            pending: row.try_get::<i64, _>("pending")? as u64,
            due: row.try_get::<i64, _>("due")? as u64,
            oldest_due_age_seconds: rows::age_seconds(now, row.opt_time("oldest")?),
        })
    }

    // Event types.

    async fn put_event_type(&self, e: &EventType) -> Result<EventType> {
        let row = sqlx::query(&format!(
            "INSERT INTO event_types ({EVENT_TYPE_COLUMNS}) VALUES (?1,?2,?3,?4,?5) \
             ON CONFLICT (name) DO UPDATE SET schema = excluded.schema, description = excluded.description, \
             updated_at = excluded.updated_at RETURNING {EVENT_TYPE_COLUMNS}"
        ))
        .bind(&e.name)
        .bind(Json(&e.schema))
        .bind(&e.description)
        .bind(ms(e.created_at))
        .bind(ms(e.updated_at))
        .fetch_one(&mut *self.writer.get().await?)
        .await?;
        rows::event_type(&row)
    }

    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>> {
        let sql = format!("SELECT {EVENT_TYPE_COLUMNS} FROM event_types WHERE name = ?1");
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(rows::event_type).transpose()
    }

    async fn list_event_types(&self) -> Result<Vec<EventType>> {
        let sql = format!("SELECT {EVENT_TYPE_COLUMNS} FROM event_types ORDER BY name");
        let rows = sqlx::query(&sql).fetch_all(&self.readers).await?;
        rows.iter().map(rows::event_type).collect()
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM event_types WHERE name = ?1")
            .bind(name)
            .execute(&mut *self.writer.get().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    // Sealed values.

    async fn sealed_not_under(
        &self,
        column: SealedColumn,
        key_id: &str,
        limit: u32,
    ) -> Result<Vec<SealedRow>> {
        let (table, id, account, enc, kid) = column.sql();
        let sql = format!(
            "SELECT {id} AS id, {account} AS account_id, {enc} AS enc, {kid} AS kid FROM {table} \
             WHERE {kid} IS NOT NULL AND {kid} <> ?1 ORDER BY {id} LIMIT ?2"
        );
        let rows = sqlx::query(&sql)
            .bind(key_id)
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(|r| rows::sealed(r, column)).collect()
    }

    async fn reseal(
        &self,
        column: SealedColumn,
        id_value: &str,
        old: &Sealed,
        new: &Sealed,
    ) -> Result<bool> {
        let (table, id, _, enc, kid) = column.sql();
        let sql = format!("UPDATE {table} SET {enc} = ?1, {kid} = ?2 WHERE {id} = ?3 AND {kid} = ?4 AND {enc} = ?5");
        let done = sqlx::query(&sql)
            .bind(&new.ciphertext)
            .bind(&new.key_id)
            .bind(id_value)
            .bind(&old.key_id)
            .bind(&old.ciphertext)
            .execute(&mut *self.writer.get().await?)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_not_under(&self, key_id: &str) -> Result<u64> {
        let mut total = 0u64;
        for column in SealedColumn::ALL {
            let (table, _, _, _, kid) = column.sql();
            let sql =
                format!("SELECT count(*) FROM {table} WHERE {kid} IS NOT NULL AND {kid} <> ?1");
            let n: i64 = sqlx::query_scalar(&sql)
                .bind(key_id)
                .fetch_one(&self.readers)
                .await?;
            total += n as u64;
        }
        Ok(total)
    }

    // Web sessions (web.rs).

    async fn create_web_session(&self, w: &WebSession) -> Result<()> {
        web::create_session(self, w).await
    }

    async fn get_web_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<WebSession>> {
        web::get_session(self, id_hash, now).await
    }

    async fn revoke_web_session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<bool> {
        web::revoke_session(self, id_hash, now).await
    }

    async fn revoke_web_sessions(
        &self,
        kind: SessionKind,
        account_id: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        web::revoke_sessions(self, kind, account_id, now).await
    }

    async fn list_web_sessions(
        &self,
        kind: Option<SessionKind>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<WebSession>> {
        web::list_sessions(self, kind, now, limit).await
    }

    async fn create_portal_link(&self, l: &PortalLink) -> Result<()> {
        web::create_link(self, l).await
    }

    async fn redeem_portal_link(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<PortalLink>> {
        web::redeem_link(self, token_hash, now).await
    }

    async fn open_portal_link(
        &self,
        token_hash: &str,
        id_hash: &str,
        csrf: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<WebSession>> {
        web::open_link(self, token_hash, id_hash, csrf, now).await
    }

    async fn prune_web_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        web::prune(self, now).await
    }

    // Activity (activity.rs).

    async fn add_activity(&self, deltas: &[ActivityDelta]) -> Result<Vec<ActivityDelta>> {
        activity::add(self, deltas).await
    }

    async fn activity_since(&self, since: DateTime<Utc>) -> Result<Vec<ActivityDelta>> {
        activity::since(self, since).await
    }

    async fn prune_activity(&self, before: DateTime<Utc>) -> Result<u64> {
        activity::prune(self, before).await
    }

    async fn prune_events(
        &self,
        before: DateTime<Utc>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Pruned> {
        retention::prune_events(self, before, after, limit).await
    }

    async fn prune_inbound(&self, before: DateTime<Utc>, limit: u32) -> Result<(u64, u64)> {
        retention::prune_inbound(self, before, limit).await
    }

    async fn oldest_kept(&self) -> Result<(Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
        retention::oldest_kept(self).await
    }
}
