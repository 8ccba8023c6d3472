//! The PostgreSQL store: schema `hook`, claims with `FOR UPDATE SKIP LOCKED`
//! so that workers of many replicas share one outbox safely. This file
//! connects, migrates and decodes; `dispatch.rs` is the outbound `Store`
//! (its webhooks' SQL in `webhooks.rs`, the activity counts' in
//! `activity.rs`), `ingress.rs` the inbound `IngressStore`, `batch.rs` the
//! group-committed writes, `web.rs` the console's and portal's sessions.

mod activity;
mod batch;
mod dispatch;
mod floor;
mod ingress;
mod pinned;
mod retention;
mod statistics;
mod web;
mod webhooks;

use crate::births::BirthSlot;
use crate::error::Result;
use crate::group_commit::Batcher;
use crate::ingress::{AuditKeySlot, NewInbound, RecordOutcome};
use crate::model::{AttemptResult, Claim, NewEvent, PublishOutcome};
use crate::rows::{Columns, Value};
use chrono::{DateTime, Utc};
use floor::Floor;
use pinned::Pinned;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::Row;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long a claim, a release or a batch of delivery outcomes may run.
const UNSYNCED_TIMEOUT: &str = "60s";

pub struct PgStore {
    pub(crate) pool: PgPool,
    /// The unsynced pool's connections for claims and releases (committed
    /// without waiting for the WAL flush, since losing one only repeats
    /// work; see `connect`), and the pool's for forwarding outcomes
    /// (`pinned.rs`).
    pub(crate) claims: Pinned,
    pub(crate) hot: Pinned,
    /// Inbound events share commits (group commit).
    pub(crate) inbound: Batcher<NewInbound, Result<RecordOutcome>>,
    /// Finished delivery tries share commits too.
    pub(crate) completions: Batcher<AttemptResult, bool>,
    pub(crate) publishes: Batcher<NewEvent, Result<PublishOutcome>>,
    /// The audit chain key appends are linked with (given at start-up).
    pub(crate) audit_key: AuditKeySlot,
    /// Where delivery claims start reading the due index.
    pub(crate) due_floor: Arc<Floor>,
    /// Where forwarding claims start reading theirs.
    pub(crate) job_floor: Arc<Floor>,
    /// The delivery worker first tries are handed to (`births.rs`).
    pub(crate) births: Arc<BirthSlot>,
    /// Analyzes a table whose statistics say it is (nearly) empty while it
    /// is not (`statistics.rs`).
    _statistics: statistics::Guard,
}

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
        //
        // Every statement here (a claim, a release, a batch of delivery
        // outcomes) takes milliseconds; one still running after
        // `UNSYNCED_TIMEOUT` was most likely planned from statistics that
        // lied (`statistics.rs`) and could otherwise run for hours on a large
        // table, holding its replica's claims up after the statistics are
        // mended. Cancelled, it changes nothing, and the next one is planned
        // afresh. A minute, not less: a claim that honestly needs longer
        // (walking a huge backlog of endpoints at capacity) would fail every
        // time instead of succeeding slowly.
        //
        // Named for this store alone, so that the statistics check cancels
        // this replica's claims and outcomes, planned before it mended the
        // statistics, and no one else's (`statistics.rs`).
        let unsynced_name = format!("hookwarden-unsynced-{}", uuid::Uuid::new_v4().simple());
        let unsynced = PgPoolOptions::new()
            .max_connections(6)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(
                opts.options([
                    ("synchronous_commit", "off"),
                    ("statement_timeout", UNSYNCED_TIMEOUT),
                ])
                .application_name(&unsynced_name),
            )
            .await?;
        let job_floor = Arc::new(Floor::new(
            "SELECT min(due_at) FROM hook.processing_jobs WHERE status = 'pending'",
        ));
        // Each kept for the batches' committers and the claims (`pinned.rs`).
        let inbound = Batcher::lingering(
            batch::Inbound(Pinned::new(pool.clone(), 4), Arc::clone(&job_floor)),
            4,
            crate::group_commit::Linger::NONE,
        );
        // Two committers: what waits while one commits forms the next batch.
        let due_floor = Arc::new(Floor::new(
            "SELECT min(due_at) FROM hook.delivery_attempts WHERE status = 'pending'",
        ));
        let completions = Batcher::lingering(
            batch::Completions(Pinned::new(unsynced.clone(), 2), Arc::clone(&due_floor)),
            2,
            crate::group_commit::OUTCOMES_LINGER,
        );
        let births = Arc::new(BirthSlot::default());
        let publishes = Batcher::lingering(
            batch::Publishes(
                Pinned::new(pool.clone(), 2),
                Arc::clone(&due_floor),
                Arc::clone(&births),
            ),
            2,
            crate::group_commit::PUBLISH_LINGER,
        );
        let claims = Pinned::new(unsynced.clone(), 2);
        let hot = Pinned::new(pool.clone(), 4);
        let statistics = statistics::Guard::start(pool.clone(), unsynced_name);
        Ok(Self {
            pool,
            claims,
            hot,
            inbound,
            completions,
            publishes,
            audit_key: Default::default(),
            due_floor,
            job_floor,
            births,
            _statistics: statistics,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Applies pending migrations through `pool` (its sessions' `search_path`
/// is `hook`): what `Store::migrate` does, and what the test databases'
/// template is made with.
pub(crate) async fn migrate(pool: &PgPool) -> Result<()> {
    // The schema must exist before sqlx creates its bookkeeping table in it.
    sqlx::query("CREATE SCHEMA IF NOT EXISTS hook")
        .execute(pool)
        .await?;
    MIGRATOR.run(pool).await?;
    Ok(())
}

/// Times are `timestamptz`; an `INTEGER` is 32 bits.
impl Columns for PgRow {
    fn get<T: Value>(&self, column: &str) -> Result<T> {
        Ok(self.try_get(column)?)
    }
    fn time(&self, column: &str) -> Result<DateTime<Utc>> {
        Ok(self.try_get(column)?)
    }
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>> {
        Ok(self.try_get(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.try_get::<Option<i32>, _>(column)?.map(i64::from))
    }
}

impl PgStore {
    /// A claim function's rows (migrations 0005, 0018): its parameters
    /// bound from `c`, the walk starting at `floor`'s due time.
    async fn claim_rows(&self, sql: &str, c: &Claim<'_>, floor: &Floor) -> Result<Vec<PgRow>> {
        // On the main pool, without the unsynced pool's statement timeout: the
        // floor reads the due index from its oldest entry, and dead entries a
        // long transaction keeps unmarked can honestly make that slow.
        let from = floor.get(&self.pool, c.now).await?;
        let mut conn = self.claims.get().await?;
        let rows = sqlx::query(sql)
            .bind(c.lease_until)
            .bind(c.worker_id)
            .bind(c.now)
            .bind(c.exclude_webhooks)
            .bind(i32::try_from(c.limit).unwrap_or(i32::MAX))
            .bind(from)
            .fetch_all(&mut *conn)
            .await?;
        conn.finished();
        Ok(rows)
    }
}
