//! The PostgreSQL store: schema `hook`, claims with `FOR UPDATE SKIP LOCKED`
//! so that workers of many replicas share one outbox safely.

use crate::error::{classify, Result, StoreError};
use crate::model::*;
use crate::{same_event, snapshot, Store};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hookwarden_core::{crypto::Sealed, ids, validate::subscribed};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::Row;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

pub struct PgStore {
    pub(crate) pool: PgPool,
    /// Claims, releases and tries' outcomes: committed without waiting for
    /// the WAL flush, since losing one only repeats work (see `connect`).
    pub(crate) unsynced: PgPool,
    /// Inbound events share commits (group commit).
    pub(crate) inbound:
        crate::group_commit::Batcher<crate::ingress::NewInbound, crate::ingress::RecordOutcome>,
    /// Finished delivery tries share commits too.
    pub(crate) completions: crate::group_commit::Batcher<AttemptResult, bool>,
    pub(crate) publishes: crate::group_commit::Batcher<NewEvent, PublishOutcome>,
    /// The audit chain key appends are linked with (given at start-up).
    pub(crate) audit_key: crate::ingress::AuditKeySlot,
}

const WEBHOOK_COLUMNS: &str = "id, account_id, url, description, event_types, secret_enc, secret_key_id, \
     old_secret_enc, old_secret_key_id, old_secret_expires_at, disabled, disabled_reason, operator_hold, throttled_until, \
     created_at, updated_at";
const ATTEMPT_COLUMNS: &str =
    "id, event_id, webhook_id, account_id, attempt, status, due_at, payload_snapshot, \
     http_status, duration_ms, response_preview, error, created_at, completed_at";

impl PgStore {
    /// Connects with the URL's options (including `sslmode`), every session
    /// on `search_path = hook` so that sqlx's own bookkeeping stays in our schema.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = PgConnectOptions::from_str(url)?.options([("search_path", "hook")]);
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts.clone())
            .await?;
        // Leases and tries' outcomes are not facts to keep: if the database
        // crashes before the WAL holding one reaches disk, the row is simply
        // claimable again (a lost outcome means the try is made again),
        // which at-least-once delivery allows. Events, inbound records and
        // anything an API answer reports stay durable on the main pool, and
        // any such commit flushes the WAL up to itself, leases and outcomes
        // included. Skipping the flush takes the fsync of every claim and
        // every recorded batch off the hot path (the disk's flushes were the
        // main wait of the dispatch benchmark).
        let unsynced = PgPoolOptions::new()
            .max_connections(6)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts.options([("synchronous_commit", "off")]))
            .await?;
        let inbound =
            crate::group_commit::Batcher::start(crate::postgres_ingress::PgBatch(pool.clone()), 4);
        // Two committers: what waits while one commits forms the next batch.
        let completions = crate::group_commit::Batcher::start(PgCompletions(unsynced.clone()), 2);
        let publishes = crate::group_commit::Batcher::start(PgPublishes(pool.clone()), 4);
        Ok(Self {
            pool,
            unsynced,
            inbound,
            completions,
            publishes,
            audit_key: Default::default(),
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A claim function's call (migration 0005), its parameters bound from `c`.
pub(crate) fn claim_call<'q>(
    sql: &'q str,
    c: &'q Claim<'q>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(c.lease_until)
        .bind(c.worker_id)
        .bind(c.now)
        .bind(c.exclude_webhooks)
        .bind(i32::try_from(c.limit).unwrap_or(i32::MAX))
}

fn webhook(row: &PgRow) -> Result<Webhook> {
    webhook_from(row, "")
}

/// A webhook from columns named with `prefix` (`w_` beside an attempt).
fn webhook_from(row: &PgRow, prefix: &str) -> Result<Webhook> {
    let col = |name: &str| format!("{prefix}{name}");
    let old = match (
        row.try_get::<Option<Vec<u8>>, _>(col("old_secret_enc").as_str())?,
        row.try_get::<Option<String>, _>(col("old_secret_key_id").as_str())?,
        row.try_get::<Option<DateTime<Utc>>, _>(col("old_secret_expires_at").as_str())?,
    ) {
        (Some(ciphertext), Some(key_id), Some(until)) => {
            Some((Sealed { key_id, ciphertext }, until))
        }
        _ => None,
    };
    Ok(Webhook {
        id: row.try_get(col("id").as_str())?,
        account_id: row.try_get(col("account_id").as_str())?,
        url: row.try_get(col("url").as_str())?,
        description: row.try_get(col("description").as_str())?,
        event_types: row
            .try_get::<Json<Vec<String>>, _>(col("event_types").as_str())?
            .0,
        secret: Sealed {
            key_id: row.try_get(col("secret_key_id").as_str())?,
            ciphertext: row.try_get(col("secret_enc").as_str())?,
        },
        old_secret: old,
        disabled: row.try_get(col("disabled").as_str())?,
        disabled_reason: row.try_get(col("disabled_reason").as_str())?,
        held_by_operator: row.try_get(col("operator_hold").as_str())?,
        throttled_until: row.try_get(col("throttled_until").as_str())?,
        created_at: row.try_get(col("created_at").as_str())?,
        updated_at: row.try_get(col("updated_at").as_str())?,
    })
}

fn attempt(row: &PgRow) -> Result<Attempt> {
    let status: String = row.try_get("status")?;
    Ok(Attempt {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        webhook_id: row.try_get("webhook_id")?,
        account_id: row.try_get("account_id")?,
        attempt: row.try_get("attempt")?,
        status: AttemptStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("attempt status {status}")))?,
        due_at: row.try_get("due_at")?,
        payload_snapshot: row
            .try_get::<Json<serde_json::Value>, _>("payload_snapshot")?
            .0,
        http_status: row.try_get("http_status")?,
        duration_ms: row.try_get("duration_ms")?,
        response_preview: row.try_get("response_preview")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}

const EVENT_COLUMNS: &str =
    "a.id, a.client_id, a.account_id, a.event_type, a.payload, a.producer, a.created_at";

fn event(row: &PgRow) -> Result<NewEvent> {
    Ok(NewEvent {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        account_id: row.try_get("account_id")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get::<Json<serde_json::Value>, _>("payload")?.0,
        producer: row.try_get("producer")?,
        created_at: row.try_get("created_at")?,
    })
}

impl PgStore {
    /// `select` (over a table aliased `a`) narrowed by `w`, newest id first,
    /// `limit + 1` rows (so that a page knows whether another follows).
    async fn search(
        &self,
        select: &str,
        w: &crate::search::Where,
        limit: u32,
    ) -> Result<Vec<PgRow>> {
        let sql = format!(
            "{select} WHERE {} ORDER BY a.id DESC LIMIT {}",
            w.sql(),
            i64::from(limit) + 1
        );
        let mut query = sqlx::query(&sql);
        for value in &w.binds {
            query = query.bind(value.as_str());
        }
        Ok(query.fetch_all(&self.pool).await?)
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn migrate(&self) -> Result<()> {
        // The schema must exist before sqlx creates its bookkeeping table in it.
        sqlx::query("CREATE SCHEMA IF NOT EXISTS hook")
            .execute(&self.pool)
            .await?;
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn set_max_webhooks_per_account(&self, max: u32) -> Result<()> {
        sqlx::query("UPDATE hook.tenant_limits SET max_webhooks_per_account = $1 WHERE id = 1")
            .bind(i32::try_from(max.max(1)).unwrap_or(i32::MAX))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn create_webhook(&self, w: &Webhook) -> Result<()> {
        sqlx::query(
            "INSERT INTO hook.webhook_configs (id, account_id, url, description, event_types, secret_enc, \
             secret_key_id, disabled, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,FALSE,$8,$9)",
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
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn get_webhook(&self, account_id: &str, id: &str) -> Result<Option<Webhook>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM hook.webhook_configs WHERE account_id = $1 AND id = $2"
        );
        let row = sqlx::query(&sql)
            .bind(account_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(webhook).transpose()
    }

    async fn webhooks_by_ids(&self, ids: &[String]) -> Result<Vec<Webhook>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM hook.webhook_configs WHERE id = ANY($1)");
        let rows = sqlx::query(&sql).bind(ids).fetch_all(&self.pool).await?;
        rows.iter().map(webhook).collect()
    }

    async fn list_webhooks(
        &self,
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
            .fetch_all(&self.pool)
            .await?;
        let items = rows.iter().map(webhook).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |w| w.id.clone()))
    }

    async fn update_webhook(
        &self,
        account_id: &str,
        id: &str,
        u: &WebhookUpdate,
    ) -> Result<Option<Webhook>> {
        let (new_enc, new_kid, old_until) = match &u.rotate {
            Some((s, until)) => (Some(&s.ciphertext), Some(&s.key_id), Some(*until)),
            None => (None, None, None),
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
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        row.as_ref().map(webhook).transpose()
    }

    async fn delete_webhook(&self, account_id: &str, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let deleted =
            sqlx::query("DELETE FROM hook.webhook_configs WHERE account_id = $1 AND id = $2")
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

    async fn disable_webhook(&self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        // Never over an operator's hold: its reason stays, and only the
        // operator lifts it.
        let changed = sqlx::query("UPDATE hook.webhook_configs SET disabled = TRUE, disabled_reason = $2, updated_at = $3 \
             WHERE id = $1 AND NOT operator_hold")
            .bind(id)
            .bind(reason)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(changed > 0)
    }

    async fn hold_webhook(&self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        let changed = sqlx::query("UPDATE hook.webhook_configs SET disabled = TRUE, operator_hold = TRUE, disabled_reason = $2, \
             updated_at = $3 WHERE id = $1")
            .bind(id)
            .bind(reason)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(changed > 0)
    }

    async fn enable_webhook(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let changed = sqlx::query("UPDATE hook.webhook_configs SET disabled = FALSE, operator_hold = FALSE, disabled_reason = NULL, \
             updated_at = $2 WHERE id = $1")
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(changed > 0)
    }

    async fn throttle_webhook(&self, id: &str, until: DateTime<Utc>) -> Result<()> {
        // One call: the pause and its pending tries moved (migration 0006).
        sqlx::query("SELECT hook.pause_webhook($1, $2)")
            .bind(id)
            .bind(until)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn publish_event(&self, e: &NewEvent) -> Result<PublishOutcome> {
        // Concurrent publishes share one commit (group commit).
        self.publishes.submit(e.clone()).await
    }

    async fn claim_due(&self, c: &Claim<'_>) -> Result<Vec<Attempt>> {
        // A function, so that the claim is always an ordered index scan
        // (migration 0005 says why).
        let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM hook.claim_attempts($1, $2, $3, $4, $5)");
        let rows = claim_call(&sql, c).fetch_all(&self.unsynced).await?;
        rows.iter().map(attempt).collect()
    }

    async fn claim_due_with_webhooks(
        &self,
        c: &Claim<'_>,
    ) -> Result<Vec<(Attempt, Option<Webhook>)>> {
        // The claim and the webhooks in one round trip.
        let webhook_columns = WEBHOOK_COLUMNS
            .split(", ")
            .map(|c| format!("w.{c} AS w_{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let attempt_columns = ATTEMPT_COLUMNS
            .split(", ")
            .map(|c| format!("a.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {attempt_columns}, {webhook_columns} FROM hook.claim_attempts($1, $2, $3, $4, $5) a \
             LEFT JOIN hook.webhook_configs w ON w.id = a.webhook_id"
        );
        let rows = claim_call(&sql, c).fetch_all(&self.unsynced).await?;
        rows.iter()
            .map(|row| {
                let webhook = match row.try_get::<Option<String>, _>("w_id")? {
                    Some(_) => Some(webhook_from(row, "w_")?),
                    None => None,
                };
                Ok((attempt(row)?, webhook))
            })
            .collect()
    }

    async fn release(&self, attempt_ids: &[String], worker_id: &str) -> Result<()> {
        // Row by primary key, whatever the statistics (migration 0005).
        sqlx::query("SELECT hook.release_attempts($1, $2)")
            .bind(attempt_ids)
            .bind(worker_id)
            .execute(&self.unsynced)
            .await?;
        Ok(())
    }

    async fn complete_attempt(&self, r: &AttemptResult) -> Result<bool> {
        // Concurrent tries share one commit (group commit).
        self.completions.submit(r.clone()).await
    }

    async fn search_attempts(
        &self,
        filter: &crate::search::AttemptFilter<'_>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<Attempt>> {
        let table = "hook.delivery_attempts";
        let w = crate::search::attempts(crate::search::Dialect::Postgres, table, filter, before);
        let rows = self
            .search(
                &format!("SELECT {ATTEMPT_COLUMNS} FROM {table} a"),
                &w,
                limit,
            )
            .await?;
        let items = rows.iter().map(attempt).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |a| a.id.clone()))
    }

    async fn search_events(
        &self,
        filter: &crate::search::EventFilter<'_>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Page<NewEvent>> {
        let w = crate::search::events(crate::search::Dialect::Postgres, filter, before);
        let rows = self
            .search(
                &format!("SELECT {EVENT_COLUMNS} FROM hook.events a"),
                &w,
                limit,
            )
            .await?;
        let items = rows.iter().map(event).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, limit, |e| e.id.clone()))
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
        let mut tx = self.pool.begin().await?;
        let Some(orig) = sqlx::query(&format!(
            "SELECT {ATTEMPT_COLUMNS} FROM hook.delivery_attempts WHERE account_id = $1 AND id = $2"
        ))
        .bind(account_id)
        .bind(attempt_id)
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(None);
        };
        let orig = attempt(&orig)?;
        // Serialize retries of one (event, webhook) pair, and make sure the webhook still exists.
        let webhook = sqlx::query(
            "SELECT id FROM hook.webhook_configs WHERE id = $1 AND account_id = $2 FOR UPDATE",
        )
        .bind(&orig.webhook_id)
        .bind(account_id)
        .fetch_optional(&mut *tx)
        .await?;
        if webhook.is_none() {
            return Ok(None);
        }
        if only_if_latest {
            let later = sqlx::query(
                "SELECT 1 FROM hook.delivery_attempts WHERE event_id = $1 AND webhook_id = $2 AND attempt > $3 LIMIT 1",
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
            "UPDATE hook.delivery_attempts SET due_at = $3 WHERE event_id = $1 AND webhook_id = $2 \
             AND status = 'pending' RETURNING {ATTEMPT_COLUMNS}"
        ))
        .bind(&orig.event_id)
        .bind(&orig.webhook_id)
        .bind(due_at)
        .fetch_optional(&mut *tx)
        .await?;
        let row = match pending {
            Some(row) => row,
            None => {
                sqlx::query(&format!(
                    "INSERT INTO hook.delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, \
                     payload_snapshot, created_at) \
                     SELECT $1, $2, $3, $4, COALESCE(MAX(attempt), 0) + 1, 'pending', $7, $6, $5 \
                     FROM hook.delivery_attempts WHERE event_id = $2 AND webhook_id = $3 \
                     RETURNING {ATTEMPT_COLUMNS}"
                ))
                .bind(new_id)
                .bind(&orig.event_id)
                .bind(&orig.webhook_id)
                .bind(account_id)
                .bind(now)
                .bind(Json(&orig.payload_snapshot))
                .bind(due_at)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let result = attempt(&row)?;
        tx.commit().await?;
        Ok(Some(result))
    }

    async fn queue_stats(&self, now: DateTime<Utc>) -> Result<QueueStats> {
        let row = sqlx::query(
            "SELECT count(*) AS pending, count(*) FILTER (WHERE due_at <= $1) AS due, min(due_at) AS oldest \
             FROM hook.delivery_attempts WHERE status = 'pending'",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        let oldest: Option<DateTime<Utc>> = row.try_get("oldest")?;
        Ok(QueueStats {
            pending: row.try_get::<i64, _>("pending")? as u64,
            due: row.try_get::<i64, _>("due")? as u64,
            oldest_due_age_seconds: oldest
                .map(|o| ((now - o).num_milliseconds().max(0) as f64) / 1000.0)
                .unwrap_or(0.0),
        })
    }

    async fn put_event_type(&self, e: &EventType) -> Result<EventType> {
        let row = sqlx::query(
            "INSERT INTO hook.event_types (name, schema, description, created_at, updated_at) VALUES ($1,$2,$3,$4,$5) \
             ON CONFLICT (name) DO UPDATE SET schema = excluded.schema, description = excluded.description, \
             updated_at = excluded.updated_at RETURNING name, schema, description, created_at, updated_at",
        )
        .bind(&e.name)
        .bind(sqlx::types::Json(&e.schema))
        .bind(&e.description)
        .bind(e.created_at)
        .bind(e.updated_at)
        .fetch_one(&self.pool)
        .await?;
        event_type_row(&row)
    }

    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>> {
        let row = sqlx::query("SELECT name, schema, description, created_at, updated_at FROM hook.event_types WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(event_type_row).transpose()
    }

    async fn list_event_types(&self) -> Result<Vec<EventType>> {
        let rows = sqlx::query("SELECT name, schema, description, created_at, updated_at FROM hook.event_types ORDER BY name")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_type_row).collect()
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM hook.event_types WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn sealed_not_under(
        &self,
        column: crate::sealed::SealedColumn,
        key_id: &str,
        limit: u32,
    ) -> Result<Vec<crate::sealed::SealedRow>> {
        let (table, id, account, enc, kid) = column.sql();
        let sql = format!(
            "SELECT {id} AS id, {account} AS account_id, {enc} AS enc, {kid} AS kid FROM hook.{table} \
             WHERE {kid} IS NOT NULL AND {kid} <> $1 ORDER BY {id} LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(key_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(crate::sealed::SealedRow {
                    column,
                    id: r.try_get("id")?,
                    account_id: r.try_get("account_id")?,
                    sealed: hookwarden_core::crypto::Sealed {
                        key_id: r.try_get("kid")?,
                        ciphertext: r.try_get("enc")?,
                    },
                })
            })
            .collect()
    }

    async fn reseal(
        &self,
        column: crate::sealed::SealedColumn,
        id_value: &str,
        old: &hookwarden_core::crypto::Sealed,
        new: &hookwarden_core::crypto::Sealed,
    ) -> Result<bool> {
        let (table, id, _, enc, kid) = column.sql();
        let sql = format!("UPDATE hook.{table} SET {enc} = $1, {kid} = $2 WHERE {id} = $3 AND {kid} = $4 AND {enc} = $5");
        let done = sqlx::query(&sql)
            .bind(&new.ciphertext)
            .bind(&new.key_id)
            .bind(id_value)
            .bind(&old.key_id)
            .bind(&old.ciphertext)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_not_under(&self, key_id: &str) -> Result<u64> {
        let mut total = 0u64;
        for column in crate::sealed::SealedColumn::ALL {
            let (table, _, _, _, kid) = column.sql();
            let sql = format!(
                "SELECT count(*) FROM hook.{table} WHERE {kid} IS NOT NULL AND {kid} <> $1"
            );
            let n: i64 = sqlx::query_scalar(&sql)
                .bind(key_id)
                .fetch_one(&self.pool)
                .await?;
            total += n as u64;
        }
        Ok(total)
    }
}

fn event_type_row(r: &sqlx::postgres::PgRow) -> Result<EventType> {
    Ok(EventType {
        name: r.try_get("name")?,
        schema: r
            .try_get::<sqlx::types::Json<serde_json::Value>, _>("schema")?
            .0,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Finished tries recorded together, in one call per batch (migration 0005):
/// each try's outcome where the worker still holds the lease, and the next
/// try of those that failed with retries left (copying the snapshot inside
/// the database). One round trip instead of two per try is what lets one
/// commit carry a hundred of them.
pub(crate) struct PgCompletions(pub(crate) PgPool);

#[async_trait]
impl crate::group_commit::BatchWriter for PgCompletions {
    type Item = AttemptResult;
    type Outcome = bool;
    const NAME: &'static str = "delivery results";

    async fn commit(&self, items: &[&AttemptResult]) -> Result<Vec<bool>> {
        let column = |f: fn(&AttemptResult) -> Option<String>| -> Vec<Option<String>> {
            items.iter().map(|r| f(r)).collect()
        };
        let recorded: Vec<String> = sqlx::query_scalar(
            "SELECT * FROM hook.complete_attempts($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(column(|r| Some(r.attempt_id.clone())))
        .bind(column(|r| Some(r.worker_id.clone())))
        .bind(column(|r| Some(r.status.as_str().to_owned())))
        .bind(items.iter().map(|r| r.http_status).collect::<Vec<_>>())
        .bind(items.iter().map(|r| r.duration_ms).collect::<Vec<_>>())
        .bind(column(|r| r.response_preview.clone()))
        .bind(column(|r| r.error.clone()))
        .bind(items.iter().map(|r| r.completed_at).collect::<Vec<_>>())
        .bind(column(|r| r.next.as_ref().map(|(id, _)| id.clone())))
        .bind(
            items
                .iter()
                .map(|r| r.next.as_ref().map(|(_, due)| *due))
                .collect::<Vec<_>>(),
        )
        .fetch_all(&self.0)
        .await?;
        // The same try twice in one batch (never in practice): the first
        // one recorded it; the other answers false, as it would alone.
        let mut recorded: std::collections::HashSet<String> = recorded.into_iter().collect();
        Ok(items
            .iter()
            .map(|r| recorded.remove(&r.attempt_id))
            .collect())
    }
}

/// Published events stored together: one transaction per batch, in three
/// statements whatever its size (the events, the subscribed webhooks of
/// their accounts, the first tries), where one per event and per try cost
/// the database more than anything else on the publish path.
pub(crate) struct PgPublishes(pub(crate) PgPool);

#[async_trait]
impl crate::group_commit::BatchWriter for PgPublishes {
    type Item = NewEvent;
    type Outcome = PublishOutcome;
    const NAME: &'static str = "publish";

    async fn commit(&self, items: &[&NewEvent]) -> Result<Vec<PublishOutcome>> {
        let mut tx = self.0.begin().await?;
        let texts =
            |f: fn(&NewEvent) -> String| -> Vec<String> { items.iter().map(|e| f(e)).collect() };
        // Any conflict (the internal id, or the producer's client id for the
        // account) leaves the row out of RETURNING: answered below.
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO hook.events (id, client_id, account_id, event_type, payload, producer, created_at) \
             SELECT id, client_id, account_id, event_type, payload::jsonb, producer, created_at \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                         $7::timestamptz[]) \
               AS e(id, client_id, account_id, event_type, payload, producer, created_at) \
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(texts(|e| e.id.clone()))
        .bind(items.iter().map(|e| e.client_id.clone()).collect::<Vec<_>>())
        .bind(texts(|e| e.account_id.clone()))
        .bind(texts(|e| e.event_type.clone()))
        .bind(texts(|e| e.payload.to_string()))
        .bind(texts(|e| e.producer.clone()))
        .bind(items.iter().map(|e| e.created_at).collect::<Vec<_>>())
        .fetch_all(&mut *tx)
        .await?;
        // The rows are inserted in order, so of one key twice in a batch the
        // first is new and the second meets it, as if they came one by one.
        let mut new: std::collections::HashSet<String> = inserted.into_iter().collect();
        let fresh: Vec<bool> = items.iter().map(|e| new.remove(&e.id)).collect();

        let mut accounts: Vec<String> = items
            .iter()
            .zip(&fresh)
            .filter(|(_, f)| **f)
            .map(|(e, _)| e.account_id.clone())
            .collect();
        accounts.sort();
        accounts.dedup();
        let webhooks = if accounts.is_empty() {
            Vec::new()
        } else {
            sqlx::query(
                "SELECT id, account_id, event_types, throttled_until FROM hook.webhook_configs \
                 WHERE account_id = ANY($1) AND NOT disabled",
            )
            .bind(&accounts)
            .fetch_all(&mut *tx)
            .await?
        };
        let webhooks = webhooks
            .iter()
            .map(|r| {
                Ok(Subscriber {
                    id: r.try_get("id")?,
                    account_id: r.try_get("account_id")?,
                    event_types: r.try_get::<Json<Vec<String>>, _>("event_types")?.0,
                    paused_until: r.try_get("throttled_until")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;

        let mut tries = FirstTries::default();
        let mut outcomes = Vec::with_capacity(items.len());
        for (e, fresh) in items.iter().zip(&fresh) {
            if !fresh {
                // Answered below, once this batch's tries are in.
                outcomes.push(PublishOutcome::Conflict);
                continue;
            }
            let body = snapshot(e).to_string();
            let mut lanes = Vec::new();
            let subscribers = webhooks.iter().filter(|w| {
                w.account_id == e.account_id && subscribed(&w.event_types, &e.event_type)
            });
            for w in subscribers {
                tries.push(e, w, &body);
                lanes.push(w.id.clone());
            }
            outcomes.push(PublishOutcome::Created { webhooks: lanes });
        }
        if !tries.ids.is_empty() {
            sqlx::query(
                "INSERT INTO hook.delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, \
                 due_at, payload_snapshot, created_at) \
                 SELECT id, event_id, webhook_id, account_id, 1, 'pending', due, snapshot::jsonb, at \
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], \
                             $7::timestamptz[]) \
                   AS t(id, event_id, webhook_id, account_id, at, snapshot, due)",
            )
            .bind(&tries.ids)
            .bind(&tries.event_ids)
            .bind(&tries.webhook_ids)
            .bind(&tries.account_ids)
            .bind(&tries.at)
            .bind(&tries.snapshots)
            .bind(&tries.due)
            .execute(&mut *tx)
            .await?;
        }
        for ((e, fresh), outcome) in items.iter().zip(fresh).zip(&mut outcomes) {
            if !fresh {
                *outcome = existing(&mut tx, e).await?;
            }
        }
        tx.commit().await?;
        Ok(outcomes)
    }
}

/// The first tries of a batch of events, column by column for `unnest`.
#[derive(Default)]
struct FirstTries {
    ids: Vec<String>,
    event_ids: Vec<String>,
    webhook_ids: Vec<String>,
    account_ids: Vec<String>,
    at: Vec<DateTime<Utc>>,
    due: Vec<DateTime<Utc>>,
    snapshots: Vec<String>,
}

/// A webhook an event of its account may fan out to.
struct Subscriber {
    id: String,
    account_id: String,
    event_types: Vec<String>,
    paused_until: Option<DateTime<Utc>>,
}

impl FirstTries {
    fn push(&mut self, e: &NewEvent, w: &Subscriber, snapshot: &str) {
        self.ids.push(ids::attempt_id());
        self.event_ids.push(e.id.clone());
        self.webhook_ids.push(w.id.clone());
        self.account_ids.push(e.account_id.clone());
        self.at.push(e.created_at);
        self.due
            .push(crate::first_due(e.created_at, w.paused_until));
        self.snapshots.push(snapshot.to_owned());
    }
}

/// A client id this producer published before for this account (or, for an
/// event without one, its internal id): the same event again, or a conflict.
async fn existing(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    e: &NewEvent,
) -> Result<PublishOutcome> {
    // Two statements, not one with a CASE: each must use its index.
    let key = if e.client_id.is_some() {
        "ev.producer = $3 AND ev.account_id = $4 AND ev.client_id = $2"
    } else {
        "ev.id = $1"
    };
    let row = sqlx::query(&format!(
        "SELECT id, client_id, account_id, event_type, payload, producer, created_at, \
         (SELECT count(DISTINCT a.webhook_id) FROM hook.delivery_attempts a WHERE a.event_id = ev.id) \
           AS deliveries \
         FROM hook.events ev WHERE {key}"
    ))
    .bind(&e.id)
    .bind(&e.client_id)
    .bind(&e.producer)
    .bind(&e.account_id)
    .fetch_one(&mut **tx)
    .await?;
    let stored = NewEvent {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        account_id: row.try_get("account_id")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get::<Json<serde_json::Value>, _>("payload")?.0,
        producer: row.try_get("producer")?,
        created_at: row.try_get("created_at")?,
    };
    let deliveries: i64 = row.try_get("deliveries")?;
    Ok(if same_event(&stored, e) {
        PublishOutcome::Existing {
            event_id: stored.id,
            deliveries: deliveries as u64,
        }
    } else {
        PublishOutcome::Conflict
    })
}
