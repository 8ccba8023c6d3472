//! The SQLite store (embedded default): WAL, full fsync on commit, one writer
//! connection (SQLite's single writer) beside a pool of readers.

use crate::error::{classify, Result, StoreError};
use crate::model::*;
use crate::{same_event, snapshot, Store};
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use hookwarden_core::{crypto::Sealed, ids, validate::subscribed};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::types::Json;
use sqlx::Row;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub struct SqliteStore {
    /// Exactly one connection: every write goes through it, in order.
    pub(crate) writer: SqlitePool,
    pub(crate) readers: SqlitePool,
    /// Inbound events share commits (group commit) on the writer.
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

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn time(v: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(v)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {v}")))
}

pub(crate) fn opt_time(v: Option<i64>) -> Result<Option<DateTime<Utc>>> {
    v.map(time).transpose()
}

/// Creates the database's directory (0700) and file (0600) when they do
/// not exist yet, so the events, payloads and sealed secrets inside are
/// never readable by other users of the host; SQLite gives its `-wal` and
/// `-shm` files the database file's mode. Existing files keep their mode.
fn prepare_private_file(path: &std::path::Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Ok(());
    }
    if path.exists() {
        #[cfg(unix)]
        if let Ok(m) = std::fs::metadata(path) {
            use std::os::unix::fs::PermissionsExt;
            if m.permissions().mode() & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{:o}", m.permissions().mode() & 0o777), "the database file is readable by group or others: chmod 600 it (hookwarden creates new ones 0600)");
            }
        }
        return Ok(());
    }
    if let Some(dir) = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
        b.create(dir).map_err(sqlx::Error::Io)?;
    }
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(sqlx::Error::Io(e).into()),
    }
}

impl SqliteStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?;
        // Nothing to create for an in-memory or read-only database.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory && !url.contains("mode=ro") {
            prepare_private_file(opts.get_filename())?;
        }
        let opts = opts
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit is on disk before we acknowledge it, even across power loss.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // Checkpoint every 10,000 WAL pages (about 40 MiB), not 1,000: a
            // page rewritten by many commits (the dedup index's, above all) is
            // copied back once per checkpoint, and the commits that pay for
            // checkpoints are ten times fewer. Measured: ingress +25 %.
            .pragma("wal_autocheckpoint", "10000");
        // No ping before each use: a file connection does not go stale, and
        // the ping is one more hand-off to the connection's thread per use.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(opts.read_only(false))
            .await?;
        let inbound = crate::group_commit::Batcher::start(
            crate::sqlite_ingress::SqliteBatch(writer.clone()),
            1,
        );
        let completions = crate::group_commit::Batcher::start(SqliteCompletions(writer.clone()), 1);
        let publishes = crate::group_commit::Batcher::start(SqlitePublishes(writer.clone()), 1);
        Ok(Self {
            writer,
            readers,
            inbound,
            completions,
            publishes,
            audit_key: Default::default(),
        })
    }
}

fn webhook(row: &SqliteRow) -> Result<Webhook> {
    let old = match (
        row.try_get::<Option<Vec<u8>>, _>("old_secret_enc")?,
        row.try_get::<Option<String>, _>("old_secret_key_id")?,
        row.try_get::<Option<i64>, _>("old_secret_expires_at")?,
    ) {
        (Some(ciphertext), Some(key_id), Some(until)) => {
            Some((Sealed { key_id, ciphertext }, time(until)?))
        }
        _ => None,
    };
    Ok(Webhook {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: row.try_get::<Json<Vec<String>>, _>("event_types")?.0,
        secret: Sealed {
            key_id: row.try_get("secret_key_id")?,
            ciphertext: row.try_get("secret_enc")?,
        },
        old_secret: old,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        disabled_reason: row.try_get("disabled_reason")?,
        held_by_operator: row.try_get::<i64, _>("operator_hold")? != 0,
        throttled_until: opt_time(row.try_get("throttled_until")?)?,
        created_at: time(row.try_get("created_at")?)?,
        updated_at: time(row.try_get("updated_at")?)?,
    })
}

fn attempt(row: &SqliteRow) -> Result<Attempt> {
    let status: String = row.try_get("status")?;
    Ok(Attempt {
        id: row.try_get("id")?,
        event_id: row.try_get("event_id")?,
        webhook_id: row.try_get("webhook_id")?,
        account_id: row.try_get("account_id")?,
        attempt: row.try_get("attempt")?,
        status: AttemptStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("attempt status {status}")))?,
        due_at: time(row.try_get("due_at")?)?,
        payload_snapshot: row
            .try_get::<Json<serde_json::Value>, _>("payload_snapshot")?
            .0,
        http_status: row.try_get("http_status")?,
        duration_ms: row.try_get("duration_ms")?,
        response_preview: row.try_get("response_preview")?,
        error: row.try_get("error")?,
        created_at: time(row.try_get("created_at")?)?,
        completed_at: opt_time(row.try_get("completed_at")?)?,
    })
}

const EVENT_COLUMNS: &str =
    "a.id, a.client_id, a.account_id, a.event_type, a.payload, a.producer, a.created_at";

fn event(row: &SqliteRow) -> Result<NewEvent> {
    Ok(NewEvent {
        id: row.try_get("id")?,
        client_id: row.try_get("client_id")?,
        account_id: row.try_get("account_id")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get::<Json<serde_json::Value>, _>("payload")?.0,
        producer: row.try_get("producer")?,
        created_at: time(row.try_get("created_at")?)?,
    })
}

impl SqliteStore {
    /// `select` (over a table aliased `a`) narrowed by `w`, newest id first,
    /// `limit + 1` rows (so that a page knows whether another follows).
    async fn search(
        &self,
        select: &str,
        w: &crate::search::Where,
        limit: u32,
    ) -> Result<Vec<SqliteRow>> {
        let sql = format!(
            "{select} WHERE {} ORDER BY a.id DESC LIMIT {}",
            w.sql(),
            i64::from(limit) + 1
        );
        let mut query = sqlx::query(&sql);
        for value in &w.binds {
            query = query.bind(value.as_str());
        }
        Ok(query.fetch_all(&self.readers).await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.writer).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    async fn set_max_webhooks_per_account(&self, max: u32) -> Result<()> {
        sqlx::query("UPDATE tenant_limits SET max_webhooks_per_account = ?1 WHERE id = 1")
            .bind(i32::try_from(max.max(1)).unwrap_or(i32::MAX))
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn create_webhook(&self, w: &Webhook) -> Result<()> {
        sqlx::query(
            "INSERT INTO webhook_configs (id, account_id, url, description, event_types, secret_enc, \
             secret_key_id, disabled, created_at, updated_at) VALUES (?1,?2,?3,?4,?5,?6,?7,0,?8,?9)",
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
        .execute(&self.writer)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn get_webhook(&self, account_id: &str, id: &str) -> Result<Option<Webhook>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhook_configs WHERE account_id = ?1 AND id = ?2"
        );
        let row = sqlx::query(&sql)
            .bind(account_id)
            .bind(id)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(webhook).transpose()
    }

    async fn webhooks_by_ids(&self, ids: &[String]) -> Result<Vec<Webhook>> {
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhook_configs WHERE id IN (SELECT value FROM json_each(?1))");
        let rows = sqlx::query(&sql)
            .bind(Json(ids))
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(webhook).collect()
    }

    async fn list_webhooks(
        &self,
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
            .fetch_all(&self.readers)
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
            Some((s, until)) => (Some(&s.ciphertext), Some(&s.key_id), Some(ms(*until))),
            None => (None, None, None),
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
            .fetch_optional(&self.writer)
            .await
            .map_err(classify)?;
        row.as_ref().map(webhook).transpose()
    }

    async fn delete_webhook(&self, account_id: &str, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let mut tx = self.writer.begin().await?;
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

    async fn disable_webhook(&self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        // Never over an operator's hold: its reason stays, and only the
        // operator lifts it.
        let changed = sqlx::query(
            "UPDATE webhook_configs SET disabled = 1, disabled_reason = ?2, updated_at = ?3 \
             WHERE id = ?1 AND NOT operator_hold",
        )
        .bind(id)
        .bind(reason)
        .bind(ms(now))
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    async fn hold_webhook(&self, id: &str, reason: &str, now: DateTime<Utc>) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE webhook_configs SET disabled = 1, operator_hold = 1, disabled_reason = ?2, \
             updated_at = ?3 WHERE id = ?1",
        )
        .bind(id)
        .bind(reason)
        .bind(ms(now))
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    async fn enable_webhook(&self, id: &str, now: DateTime<Utc>) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE webhook_configs SET disabled = 0, operator_hold = 0, disabled_reason = NULL, \
             updated_at = ?2 WHERE id = ?1",
        )
        .bind(id)
        .bind(ms(now))
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok(changed > 0)
    }

    async fn throttle_webhook(&self, id: &str, until: DateTime<Utc>) -> Result<()> {
        let mut tx = self.writer.begin().await?;
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

    async fn publish_event(&self, e: &NewEvent) -> Result<PublishOutcome> {
        // Concurrent publishes share one commit (group commit).
        self.publishes.submit(e.clone()).await
    }

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
        let rows = sqlx::query(&sql)
            .bind(ms(c.lease_until))
            .bind(c.worker_id)
            .bind(ms(c.now))
            .bind(Json(c.exclude_webhooks))
            .bind(i64::from(c.limit))
            .fetch_all(&self.writer)
            .await?;
        rows.iter().map(attempt).collect()
    }

    async fn release(&self, attempt_ids: &[String], worker_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE delivery_attempts SET lease_until = NULL, claimed_by = NULL \
             WHERE id IN (SELECT value FROM json_each(?1)) AND claimed_by = ?2 AND status = 'pending'",
        )
        .bind(Json(attempt_ids))
        .bind(worker_id)
        .execute(&self.writer)
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
        let table = "delivery_attempts";
        let w = crate::search::attempts(crate::search::Dialect::Sqlite, table, filter, before);
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
        let w = crate::search::events(crate::search::Dialect::Sqlite, filter, before);
        let rows = self
            .search(&format!("SELECT {EVENT_COLUMNS} FROM events a"), &w, limit)
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
        let mut tx = self.writer.begin().await?;
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
        let orig = attempt(&orig)?;
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
                     payload_snapshot, created_at) \
                     SELECT ?1, ?2, ?3, ?4, COALESCE(MAX(attempt), 0) + 1, 'pending', ?7, ?6, ?5 \
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
            "SELECT count(*) AS pending, coalesce(sum(due_at <= ?1), 0) AS due, min(due_at) AS oldest \
             FROM delivery_attempts WHERE status = 'pending'",
        )
        .bind(ms(now))
        .fetch_one(&self.readers)
        .await?;
        let oldest: Option<i64> = row.try_get("oldest")?;
        Ok(QueueStats {
            pending: row.try_get::<i64, _>("pending")? as u64,
            due: row.try_get::<i64, _>("due")? as u64,
            oldest_due_age_seconds: oldest
                .map(|o| ((ms(now) - o).max(0) as f64) / 1000.0)
                .unwrap_or(0.0),
        })
    }

    async fn put_event_type(&self, e: &EventType) -> Result<EventType> {
        let row = sqlx::query(
            "INSERT INTO event_types (name, schema, description, created_at, updated_at) VALUES (?1,?2,?3,?4,?5) \
             ON CONFLICT (name) DO UPDATE SET schema = excluded.schema, description = excluded.description, \
             updated_at = excluded.updated_at RETURNING name, schema, description, created_at, updated_at",
        )
        .bind(&e.name)
        .bind(sqlx::types::Json(&e.schema))
        .bind(&e.description)
        .bind(crate::sqlite::ms(e.created_at))
        .bind(crate::sqlite::ms(e.updated_at))
        .fetch_one(&self.writer)
        .await?;
        event_type_row(&row)
    }

    async fn get_event_type(&self, name: &str) -> Result<Option<EventType>> {
        let row = sqlx::query("SELECT name, schema, description, created_at, updated_at FROM event_types WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        row.as_ref().map(event_type_row).transpose()
    }

    async fn list_event_types(&self) -> Result<Vec<EventType>> {
        let rows = sqlx::query("SELECT name, schema, description, created_at, updated_at FROM event_types ORDER BY name")
            .fetch_all(&self.readers)
            .await?;
        rows.iter().map(event_type_row).collect()
    }

    async fn delete_event_type(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM event_types WHERE name = ?1")
            .bind(name)
            .execute(&self.writer)
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
            "SELECT {id} AS id, {account} AS account_id, {enc} AS enc, {kid} AS kid FROM {table} \
             WHERE {kid} IS NOT NULL AND {kid} <> ?1 ORDER BY {id} LIMIT ?2"
        );
        let rows = sqlx::query(&sql)
            .bind(key_id)
            .bind(i64::from(limit))
            .fetch_all(&self.readers)
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
        let sql = format!("UPDATE {table} SET {enc} = ?1, {kid} = ?2 WHERE {id} = ?3 AND {kid} = ?4 AND {enc} = ?5");
        let done = sqlx::query(&sql)
            .bind(&new.ciphertext)
            .bind(&new.key_id)
            .bind(id_value)
            .bind(&old.key_id)
            .bind(&old.ciphertext)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_not_under(&self, key_id: &str) -> Result<u64> {
        let mut total = 0u64;
        for column in crate::sealed::SealedColumn::ALL {
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
}

fn event_type_row(r: &sqlx::sqlite::SqliteRow) -> Result<EventType> {
    Ok(EventType {
        name: r.try_get("name")?,
        schema: r
            .try_get::<sqlx::types::Json<serde_json::Value>, _>("schema")?
            .0,
        description: r.try_get("description")?,
        created_at: crate::sqlite::time(r.try_get("created_at")?)?,
        updated_at: crate::sqlite::time(r.try_get("updated_at")?)?,
    })
}

/// Records one finished try (and schedules the next) inside `tx`.
async fn complete_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    r: &AttemptResult,
) -> Result<bool> {
    let row = sqlx::query(
        "UPDATE delivery_attempts SET status = ?3, http_status = ?4, duration_ms = ?5, \
         response_preview = ?6, error = ?7, completed_at = ?8, lease_until = NULL \
         WHERE id = ?1 AND claimed_by = ?2 AND status = 'pending' \
         RETURNING event_id, webhook_id, account_id, attempt, payload_snapshot",
    )
    .bind(&r.attempt_id)
    .bind(&r.worker_id)
    .bind(r.status.as_str())
    .bind(r.http_status)
    .bind(r.duration_ms)
    .bind(&r.response_preview)
    .bind(&r.error)
    .bind(ms(r.completed_at))
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    if let Some((next_id, due)) = &r.next {
        sqlx::query(
            "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, \
             payload_snapshot, created_at) VALUES (?1,?2,?3,?4,?5,'pending',?6,?7,?8) \
             ON CONFLICT (event_id, webhook_id, attempt) DO NOTHING",
        )
        .bind(next_id)
        .bind(row.try_get::<String, _>("event_id")?)
        .bind(row.try_get::<String, _>("webhook_id")?)
        .bind(row.try_get::<String, _>("account_id")?)
        .bind(row.try_get::<i32, _>("attempt")? + 1)
        .bind(ms(*due))
        .bind(row.try_get::<String, _>("payload_snapshot")?)
        .bind(ms(r.completed_at))
        .execute(&mut **tx)
        .await?;
    }
    Ok(true)
}

// Finished tries recorded together: one transaction per batch.
crate::group_commit::transactional_writer!(
    SqliteCompletions,
    SqlitePool,
    AttemptResult,
    bool,
    "delivery results",
    complete_one
);

/// Stores one published event and its first tries inside `tx`.
async fn publish_one(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    e: &NewEvent,
) -> Result<PublishOutcome> {
    // Any conflict (the internal id, or the producer's client id for the
    // account) inserts nothing: the stored event answers.
    let inserted = sqlx::query(
        "INSERT INTO events (id, client_id, account_id, event_type, payload, producer, created_at) \
         VALUES (?1,?2,?3,?4,?5,?6,?7) ON CONFLICT DO NOTHING",
    )
    .bind(&e.id)
    .bind(&e.client_id)
    .bind(&e.account_id)
    .bind(&e.event_type)
    .bind(Json(&e.payload))
    .bind(&e.producer)
    .bind(ms(e.created_at))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        // By the producer's client id for the account, or (an event without
        // one) by its internal id.
        // Two statements, not one with a CASE: each must use its index.
        let key = if e.client_id.is_some() {
            "ev.producer = ?3 AND ev.account_id = ?4 AND ev.client_id = ?2"
        } else {
            "ev.id = ?1"
        };
        let row = sqlx::query(&format!(
            "SELECT id, client_id, account_id, event_type, payload, producer, created_at, \
             (SELECT count(DISTINCT a.webhook_id) FROM delivery_attempts a WHERE a.event_id = ev.id) \
               AS deliveries \
             FROM events ev WHERE {key}"
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
            created_at: time(row.try_get("created_at")?)?,
        };
        let deliveries: i64 = row.try_get("deliveries")?;
        return Ok(if same_event(&stored, e) {
            PublishOutcome::Existing {
                event_id: stored.id,
                deliveries: deliveries as u64,
            }
        } else {
            PublishOutcome::Conflict
        });
    }
    let rows = sqlx::query(
        "SELECT id, event_types, throttled_until FROM webhook_configs WHERE account_id = ?1 AND disabled = 0",
    )
    .bind(&e.account_id)
    .fetch_all(&mut **tx)
    .await?;
    let body = snapshot(e);
    let mut webhooks = Vec::new();
    for row in rows {
        let types = row.try_get::<Json<Vec<String>>, _>("event_types")?.0;
        if !subscribed(&types, &e.event_type) {
            continue;
        }
        let webhook_id: String = row.try_get("id")?;
        let paused_until = opt_time(row.try_get("throttled_until")?)?;
        sqlx::query(
            "INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, \
             payload_snapshot, created_at) VALUES (?1,?2,?3,?4,1,'pending',?7,?6,?5)",
        )
        .bind(ids::attempt_id())
        .bind(&e.id)
        .bind(&webhook_id)
        .bind(&e.account_id)
        .bind(ms(e.created_at))
        .bind(Json(&body))
        .bind(ms(crate::first_due(e.created_at, paused_until)))
        .execute(&mut **tx)
        .await?;
        webhooks.push(webhook_id);
    }
    Ok(PublishOutcome::Created { webhooks })
}

// Published events stored together: one transaction per batch.
crate::group_commit::transactional_writer!(
    SqlitePublishes,
    SqlitePool,
    NewEvent,
    PublishOutcome,
    "publish",
    publish_one
);
