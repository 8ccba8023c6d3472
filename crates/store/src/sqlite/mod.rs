//! The SQLite store (embedded default): WAL, full fsync on commit, one writer
//! connection (SQLite's single writer) beside a pool of readers. This file
//! opens, migrates and decodes (times are unix milliseconds, JSON is text);
//! `dispatch.rs` is the outbound `Store` (its webhooks' SQL in
//! `webhooks.rs`, the activity counts' in `activity.rs`), `ingress.rs` the
//! inbound `IngressStore`, `batch.rs` the group-committed writes, `web.rs`
//! the console's and portal's sessions, `checkpoint.rs` the WAL's
//! checkpoints beside the writer, `relaxed.rs` the commits that need no sync.

mod activity;
mod batch;
mod checkpoint;
mod direct;
mod dispatch;
mod ingress;
mod relaxed;
mod retention;
mod web;
mod webhooks;
mod writer;

pub(crate) use direct::FromCell;

use crate::births::BirthSlot;
use crate::error::{Result, StoreError};
use crate::group_commit::Batcher;
use crate::ingress::{AuditKeySlot, NewInbound, RecordOutcome};
use crate::model::{AttemptResult, NewEvent, PublishOutcome};
use crate::rows::{Columns, Value};
use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::Row;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

pub struct SqliteStore {
    /// Exactly one connection: every write goes through it, in order.
    pub(crate) writer: std::sync::Arc<writer::Writer>,
    pub(crate) readers: SqlitePool,
    /// Inbound events share commits (group commit) on the writer.
    pub(crate) inbound: Batcher<NewInbound, RecordOutcome>,
    /// Finished delivery tries share commits too.
    pub(crate) completions: Batcher<AttemptResult, bool>,
    pub(crate) publishes: Batcher<NewEvent, PublishOutcome>,
    /// The audit chain key appends are linked with (given at start-up).
    pub(crate) audit_key: AuditKeySlot,
    /// The delivery worker first tries are handed to (`births.rs`).
    pub(crate) births: std::sync::Arc<BirthSlot>,
    /// The background checkpointer runs while this lives.
    _checkpoints: std::sync::Arc<()>,
}

/// A time as SQLite stores it: unix milliseconds.
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(v: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_millis_opt(v)
        .single()
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {v}")))
}

/// Times are unix milliseconds; an `INTEGER` is 64 bits.
impl Columns for SqliteRow {
    fn get<T: Value>(&self, column: &str) -> Result<T> {
        Ok(self.try_get(column)?)
    }
    fn time(&self, column: &str) -> Result<DateTime<Utc>> {
        time(self.try_get(column)?)
    }
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>> {
        self.try_get::<Option<i64>, _>(column)?
            .map(time)
            .transpose()
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        Ok(self.try_get(column)?)
    }
}

/// The same, for rows read on the writer's own thread (`direct.rs`).
impl Columns for direct::Cells {
    fn get<T: Value>(&self, column: &str) -> Result<T> {
        T::from_cell(self.cell(column)?)
            .ok_or_else(|| StoreError::Corrupt(format!("column {column}: unexpected type")))
    }
    fn time(&self, column: &str) -> Result<DateTime<Utc>> {
        time(self.get(column)?)
    }
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>> {
        self.get::<Option<i64>>(column)?.map(time).transpose()
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>> {
        self.get(column)
    }
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
            // The copying is done beside the writer (`checkpoint.rs`); the
            // writer's own checkpoint, at 10,000 WAL pages (about 40 MiB),
            // only bounds the log when the other cannot finish (a long read,
            // say), and then finds little left to copy.
            .pragma("wal_autocheckpoint", "10000");
        // No ping before each use: a file connection does not go stale, and
        // the ping is one more hand-off to the connection's thread per use.
        let writer = std::sync::Arc::new(writer::Writer::open(opts.clone(), in_memory).await?);
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .test_before_acquire(false)
            .connect_with(opts.clone().read_only(false))
            .await?;
        // The log is checkpointed beside the writer (`checkpoint.rs`).
        let checkpoints = std::sync::Arc::new(());
        if !in_memory {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .test_before_acquire(false)
                .connect_with(opts.clone())
                .await?;
            checkpoint::start(pool, std::sync::Arc::downgrade(&checkpoints));
        }
        // One committer each: SQLite has one writer.
        let inbound = Batcher::lingering(
            batch::Inbound(writer.clone()),
            1,
            crate::group_commit::INBOUND_LINGER,
        );
        let completions = Batcher::lingering(
            batch::Completions(writer.clone()),
            1,
            crate::group_commit::OUTCOMES_LINGER,
        );
        let births = std::sync::Arc::new(BirthSlot::default());
        let publishes = Batcher::lingering(
            batch::Publishes {
                writer: writer.clone(),
                births: std::sync::Arc::clone(&births),
            },
            1,
            crate::group_commit::PUBLISH_LINGER,
        );
        Ok(Self {
            writer,
            readers,
            inbound,
            completions,
            publishes,
            audit_key: Default::default(),
            births,
            _checkpoints: checkpoints,
        })
    }
}
