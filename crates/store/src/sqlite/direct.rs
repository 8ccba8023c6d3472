//! The writer's hot batches (published events, recorded outcomes, inbound
//! events) run whole on a thread of their own, through SQLite's C API
//! (rusqlite), and answer once.
//!
//! Why: through sqlx, each statement's result (and each row) is a message
//! from the connection's thread to the runtime, and at a steady rate, where
//! a batch holds one or two events, each message wakes a runtime thread that
//! had nothing else to do. Those wake-ups, not SQL, were most of the CPU per
//! event (README › Benchmarks › Sustained load). Here a batch is one message
//! each way, whatever its statements.
//!
//! The connection is a second one to the writer's file, used only while the
//! writer's lock is held (`writer.rs`), so the two never write at once. A
//! job runs to its end whatever becomes of its caller: one that fails is
//! rolled back and the sync level set back to `FULL` before the next job
//! runs; a caller that goes away loses only the answer. No transaction
//! spans two jobs: a job that leaves one open fails and is rolled back.
//! A panic ends the thread and closes the connection (SQLite rolls
//! back what was open); the writer opens a fresh one for the next batch.

use crate::error::{Result, StoreError};
use rusqlite::types::Value as Cell;
use rusqlite::{Connection, OpenFlags};
use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// Where the connection opens, as the writer's options say.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) path: PathBuf,
    /// `sqlite::memory:`: a shared in-memory database, named by sqlx.
    pub(crate) in_memory: bool,
}

/// The thread and the way to it.
pub(crate) struct Direct {
    jobs: mpsc::Sender<Job>,
    thread: std::thread::JoinHandle<()>,
    /// A job's answer was lost to a panic: the thread is ending, if not
    /// ended yet.
    dead: std::sync::atomic::AtomicBool,
}

impl Direct {
    pub(crate) fn open(target: &Target) -> Result<Self> {
        let conn = connect(target).map_err(into_store)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let mut conn = conn;
                while let Ok(job) = queue.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
        Ok(Self {
            jobs,
            thread,
            dead: Default::default(),
        })
    }

    /// The thread ended (a job panicked, or could not roll back): this
    /// connection is gone.
    pub(crate) fn is_finished(&self) -> bool {
        self.dead.load(std::sync::atomic::Ordering::Relaxed) || self.thread.is_finished()
    }

    /// Runs `batch` on the thread, its transaction (if it opens one) ended
    /// by its own statements; rolled back and set back to `FULL` if it
    /// fails. A job that leaves its transaction open fails too: no
    /// transaction spans two jobs, so none waits on a caller that may have
    /// gone away.
    pub(crate) async fn run<R: Send + 'static>(
        &self,
        batch: impl FnOnce(&mut Connection) -> rusqlite::Result<R> + Send + 'static,
    ) -> Result<R> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |conn: &mut Connection| {
                let out = batch(conn).and_then(|r| {
                    if conn.is_autocommit() {
                        Ok(r)
                    } else {
                        Err(rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_MISUSE),
                            Some("a batch left its transaction open".into()),
                        ))
                    }
                });
                if out.is_err() && !settle(conn) {
                    // Neither rollback nor reset took: the connection is
                    // not fit for the next job. Ending the thread closes
                    // it, and SQLite rolls back what was open.
                    panic!("the SQLite writer could not roll back a failed batch");
                }
                let _ = answer.send(out);
            }))
            .map_err(|_| self.crashed())?;
        answered
            .await
            .map_err(|_| self.crashed())?
            .map_err(into_store)
    }

    /// One statement committed without a sync of its own (`relaxed.rs`): a
    /// claim's lease or its release. Its rows, if it returns any.
    pub(crate) async fn relaxed(
        &self,
        sql: String,
        params: impl rusqlite::Params + Send + 'static,
    ) -> Result<Vec<Cells>> {
        self.run(move |conn| {
            conn.prepare_cached("PRAGMA synchronous = NORMAL")?
                .execute([])?;
            let rows = Cells::all(conn, &sql, params)?;
            conn.prepare_cached("PRAGMA synchronous = FULL")?
                .execute([])?;
            Ok(rows)
        })
        .await
    }
}

/// Rolls back whatever is open and sets the sync level back; false if the
/// connection would not.
fn settle(conn: &mut Connection) -> bool {
    let rolled = conn.is_autocommit() || conn.execute_batch("ROLLBACK").is_ok();
    rolled && conn.execute_batch("PRAGMA synchronous = FULL").is_ok()
}

/// The connection with the writer's settings (`mod.rs`): the file is in
/// WAL mode already (the sqlx connection opened it first). Its temporary
/// storage is memory: a multi-row insert inside a transaction keeps a
/// statement journal (the pages it changed, to undo that statement alone),
/// and past 64 KiB SQLite spilled it to a fresh file in /var/tmp, created,
/// written, unlinked and closed at nearly every batch (a tenth of the
/// writer thread's CPU). What a statement holds in memory is bounded: its
/// journal and `RETURNING` rows are at most about twice its rows, and a
/// statement carries at most 128 rows, inbound bodies at most 4 MiB in all
/// (`batch.rs`), published payloads at most 256 KiB each.
fn connect(target: &Target) -> rusqlite::Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if target.in_memory {
        flags |= OpenFlags::SQLITE_OPEN_MEMORY | OpenFlags::SQLITE_OPEN_SHARED_CACHE;
    }
    let conn = Connection::open_with_flags(&target.path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 10000; \
         PRAGMA temp_store = MEMORY",
    )?;
    conn.set_prepared_statement_cache_capacity(96);
    Ok(conn)
}

impl Direct {
    /// The thread is gone or going: the writer opens a fresh one for the
    /// next batch.
    fn crashed(&self) -> StoreError {
        self.dead.store(true, std::sync::atomic::Ordering::Relaxed);
        StoreError::Unavailable(sqlx::Error::WorkerCrashed)
    }
}

/// As sqlx's errors would say it: busy, locked, I/O, full disk or an
/// unopenable file is the database unavailable; the rest is a refused
/// statement.
fn into_store(err: rusqlite::Error) -> StoreError {
    let boxed = Box::new(Failure(err));
    if boxed.unavailable() {
        StoreError::Unavailable(sqlx::Error::Database(boxed))
    } else {
        StoreError::Database(sqlx::Error::Database(boxed))
    }
}

/// A rusqlite error in sqlx's clothes, so callers see one error type.
#[derive(Debug)]
struct Failure(rusqlite::Error);

impl Failure {
    fn unavailable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        matches!(
            self.0.sqlite_error_code(),
            Some(
                C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::SystemIoFailure
                    | C::DiskFull
                    | C::CannotOpen
                    | C::ReadOnly
            )
        )
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Failure {}

impl sqlx::error::DatabaseError for Failure {
    fn message(&self) -> &str {
        match &self.0 {
            rusqlite::Error::SqliteFailure(_, Some(m)) => m,
            _ => "SQLite error",
        }
    }
    fn code(&self) -> Option<Cow<'_, str>> {
        match &self.0 {
            rusqlite::Error::SqliteFailure(e, _) => Some(Cow::Owned(e.extended_code.to_string())),
            _ => None,
        }
    }
    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }
    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }
    fn kind(&self) -> sqlx::error::ErrorKind {
        use rusqlite::ffi;
        match &self.0 {
            rusqlite::Error::SqliteFailure(e, _) => match e.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    sqlx::error::ErrorKind::UniqueViolation
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => sqlx::error::ErrorKind::ForeignKeyViolation,
                ffi::SQLITE_CONSTRAINT_NOTNULL => sqlx::error::ErrorKind::NotNullViolation,
                ffi::SQLITE_CONSTRAINT_CHECK => sqlx::error::ErrorKind::CheckViolation,
                _ => sqlx::error::ErrorKind::Other,
            },
            _ => sqlx::error::ErrorKind::Other,
        }
    }
}

/// A result row read on the thread: its columns' names (shared by the rows
/// of one statement) and values, decoded by `Columns` like sqlx's rows.
pub(crate) struct Cells {
    names: Arc<[String]>,
    values: Vec<Cell>,
}

impl Cells {
    /// Every row `sql` returns for `params`.
    pub(crate) fn all(
        conn: &Connection,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> rusqlite::Result<Vec<Cells>> {
        let mut stmt = conn.prepare_cached(sql)?;
        let names: Arc<[String]> = stmt.column_names().iter().map(|n| n.to_string()).collect();
        let width = names.len();
        let mut rows = stmt.query(params)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let values = (0..width)
                .map(|i| owned(row.get_ref(i)?, i))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            out.push(Cells {
                names: Arc::clone(&names),
                values,
            });
        }
        Ok(out)
    }

    pub(crate) fn cell(&self, column: &str) -> Result<&Cell> {
        self.names
            .iter()
            .position(|n| n == column)
            .and_then(|i| self.values.get(i))
            .ok_or_else(|| StoreError::Corrupt(format!("no column {column}")))
    }
}

/// A value read, owned; text that is not UTF-8 is an error (rusqlite's own
/// conversion would panic, ending the writer's thread).
fn owned(v: rusqlite::types::ValueRef<'_>, column: usize) -> rusqlite::Result<Cell> {
    use rusqlite::types::ValueRef;
    Ok(match v {
        ValueRef::Null => Cell::Null,
        ValueRef::Integer(n) => Cell::Integer(n),
        ValueRef::Real(f) => Cell::Real(f),
        ValueRef::Text(t) => Cell::Text(
            std::str::from_utf8(t)
                .map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(
                        column,
                        rusqlite::types::Type::Text,
                        Box::new(e),
                    )
                })?
                .to_owned(),
        ),
        ValueRef::Blob(b) => Cell::Blob(b.to_vec()),
    })
}

/// A column's value out of a `Cells` row, as sqlx would decode it from
/// SQLite: text, bytes, 64-bit integers, booleans as integers, JSON as
/// text.
pub(crate) trait FromCell: Sized {
    fn from_cell(cell: &Cell) -> Option<Self>;
}

impl FromCell for String {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Text(s) => Some(s.clone()),
            _ => None,
        }
    }
}

impl FromCell for Vec<u8> {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Blob(b) => Some(b.clone()),
            Cell::Text(s) => Some(s.as_bytes().to_vec()),
            _ => None,
        }
    }
}

impl FromCell for i64 {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Integer(n) => Some(*n),
            _ => None,
        }
    }
}

impl FromCell for i32 {
    fn from_cell(cell: &Cell) -> Option<Self> {
        i64::from_cell(cell).and_then(|n| i32::try_from(n).ok())
    }
}

impl FromCell for bool {
    fn from_cell(cell: &Cell) -> Option<Self> {
        i64::from_cell(cell).map(|n| n != 0)
    }
}

impl<T: FromCell> FromCell for Option<T> {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Null => Some(None),
            other => T::from_cell(other).map(Some),
        }
    }
}

impl<T: serde::de::DeserializeOwned> FromCell for sqlx::types::Json<T> {
    fn from_cell(cell: &Cell) -> Option<Self> {
        match cell {
            Cell::Text(s) => serde_json::from_str(s).ok().map(sqlx::types::Json),
            Cell::Blob(b) => serde_json::from_slice(b).ok().map(sqlx::types::Json),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::sqlite::writer::tests::writer;
    use crate::sqlite::writer::Writer;

    /// The hot batches' statement journals stay in memory: a temporary
    /// file per large batch was a tenth of the writer thread's CPU.
    #[tokio::test]
    async fn the_writer_keeps_its_temporary_storage_in_memory() {
        let (db, dir) = writer("temp-store").await;
        let (held, direct) = db.direct().await.expect("writer");
        let level: i64 = direct
            .run(|c| c.query_row("PRAGMA temp_store", [], |r| r.get(0)))
            .await
            .expect("pragma");
        drop(held);
        let _ = std::fs::remove_dir_all(dir);
        assert_eq!(level, 2, "temp_store = MEMORY");
    }

    /// The embedded SQLite is built without its memory statistics
    /// (`.cargo/config.toml`): with them, every allocation inside SQLite
    /// took a process-wide mutex, about 4 % of the writer's time.
    #[test]
    fn sqlite_is_built_without_memory_statistics() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        let mut stmt = conn.prepare("PRAGMA compile_options").expect("prepare");
        let options: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("options");
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "LIBSQLITE3_FLAGS from .cargo/config.toml did not reach the build: {options:?}"
        );
    }

    /// A job that leaves its transaction open fails and is rolled back
    /// before the next job runs; and a job that panics ends only its
    /// connection: the next batch gets a fresh one, and what the panicking
    /// job had open is gone.
    #[tokio::test]
    async fn an_unended_or_panicking_batch_leaves_nothing_open() {
        let (db, dir) = writer("direct").await;
        sqlx::query("CREATE TABLE t (v INTEGER PRIMARY KEY)")
            .execute(&mut *db.get().await.expect("writer"))
            .await
            .expect("table");
        async fn count(db: &Writer) -> i64 {
            sqlx::query_scalar("SELECT count(*) FROM t")
                .fetch_one(&mut *db.get().await.expect("writer"))
                .await
                .expect("count")
        }

        // Its transaction left open.
        let (held, direct) = db.direct().await.expect("writer");
        let unended = direct
            .run(|c| c.execute_batch("BEGIN; INSERT INTO t VALUES (1)"))
            .await;
        assert!(unended.is_err(), "a job may not leave its transaction open");
        let autocommit = direct
            .run(|c| Ok(c.is_autocommit()))
            .await
            .expect("next job");
        drop(held);
        assert!(autocommit, "no transaction left open");
        assert_eq!(count(&db).await, 0, "the unended insert rolled back");

        // Panicking half way through its transaction.
        let (held, direct) = db.direct().await.expect("writer");
        let crashed = direct
            .run(|c| -> rusqlite::Result<()> {
                c.execute_batch("BEGIN; INSERT INTO t VALUES (2)")?;
                panic!("a bug in a batch")
            })
            .await;
        assert!(
            crashed.as_ref().is_err_and(|e| e.is_unavailable()),
            "said as the database unavailable: {crashed:?}"
        );
        drop(held);
        // The thread's end is seen by the next caller.
        while !direct.is_finished() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let (held, fresh) = db.direct().await.expect("writer");
        fresh
            .run(|c| c.execute_batch("INSERT INTO t VALUES (3)"))
            .await
            .expect("a fresh connection writes");
        drop(held);
        let kept: Vec<i64> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&mut *db.get().await.expect("writer"))
            .await
            .expect("read");
        assert_eq!(
            kept,
            vec![3],
            "neither the abandoned nor the panicked one stayed"
        );
        drop(db);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
