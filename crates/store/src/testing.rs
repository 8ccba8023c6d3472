//! Test databases: a fresh SQLite file or a fresh PostgreSQL database per test,
//! removed when the handle drops, so tests run in parallel and leave nothing.
//!
//! A PostgreSQL test database is a copy of a migrated template
//! (`CREATE DATABASE … TEMPLATE`), which costs a fraction of running every
//! migration per test. The template is named after the migrations it holds
//! (`hookwarden_tpl_<hash>`), made once by whichever test gets there first,
//! and shared by every test process on the server (worktrees, crates).

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgConnection, Row};
use std::str::FromStr;

/// Where the PostgreSQL server for tests lives (the machine's local server).
pub fn postgres_admin_url() -> String {
    std::env::var("HOOKWARDEN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs SQL directly against a test database, behind the store's back (as an
/// attacker with database access would), with `hook` first on PostgreSQL's path.
pub async fn execute_raw(backend: Backend, url: &str, sql: &str) -> Result<u64, String> {
    match backend {
        Backend::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(url)
                .await
                .map_err(|e| e.to_string())?;
            sqlx::raw_sql(sql)
                .execute(&mut c)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| e.to_string())
        }
        Backend::Postgres => {
            let mut c = PgConnection::connect(url)
                .await
                .map_err(|e| e.to_string())?;
            let sql = format!("SET search_path = hook; {sql}");
            sqlx::raw_sql(&sql)
                .execute(&mut c)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| e.to_string())
        }
    }
}

/// A fresh, migrated store on `backend`, with the database it lives in.
pub async fn migrated_store(backend: Backend) -> (TestDb, std::sync::Arc<dyn crate::Store>) {
    let db = TestDb::new(backend).await;
    let store = crate::connect(&db.url)
        .await
        .expect("connect to the test database");
    store.migrate().await.expect("migrate the test database");
    // Appends need a chain key (the server opens the stored one at start-up).
    crate::ingress::IngressStore::set_audit_key(
        &*store,
        hookwarden_core::audit::ChainKey::generate(1),
    );
    (db, store)
}

pub struct TestDb {
    pub url: String,
    cleanup: Cleanup,
}

enum Cleanup {
    File(std::path::PathBuf),
    Database(String),
    /// Left in place for the next run (`TestDb::kept`).
    Keep,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

impl TestDb {
    /// A database hookwarden can start on: on PostgreSQL already migrated
    /// (a copy of the template), on SQLite a fresh path (the store creates
    /// and migrates the file when it opens it).
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A database with nothing in it, for tests of the migrations
    /// themselves and of the deployment's own schema set-up.
    pub async fn empty(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres_from(None).await,
        }
    }

    pub fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(unique("hookwarden_test"));
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let url = format!("sqlite://{}", dir.join("hookwarden.db").display());
        Self {
            url,
            cleanup: Cleanup::File(dir),
        }
    }

    /// A database under a fixed `name` that outlives the handle, for data
    /// worth reusing (the benchmark's seeded rows), and whether it existed
    /// already. `fresh` drops an existing one first. On SQLite a file in the
    /// temporary directory, on PostgreSQL a copy of the migrated template.
    pub async fn kept(backend: Backend, name: &str, fresh: bool) -> (Self, bool) {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(name);
                if fresh {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                std::fs::create_dir_all(&dir)
                    .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
                let file = dir.join("hookwarden.db");
                let existed = file.exists();
                let url = format!("sqlite://{}", file.display());
                (
                    Self {
                        url,
                        cleanup: Cleanup::Keep,
                    },
                    existed,
                )
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                let mut conn = PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin}: {e}"));
                if fresh {
                    conn.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await
                        .expect("drop the kept database");
                }
                let existed: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                )
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .expect("look the kept database up");
                if !existed {
                    template::copy(&mut conn, &template::name(), name).await;
                }
                let _ = conn.close().await;
                (
                    Self {
                        url: database_url(name),
                        cleanup: Cleanup::Keep,
                    },
                    existed,
                )
            }
        }
    }

    /// A migrated PostgreSQL database, copied from the template.
    pub async fn postgres() -> Self {
        Self::postgres_from(Some(&template::name())).await
    }

    async fn postgres_from(template: Option<&str>) -> Self {
        let admin = postgres_admin_url();
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed for this test and is not reachable at {admin}: {e}. \
                 Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
            )
        });
        let name = unique("hw_test");
        match template {
            Some(template) => template::copy(&mut conn, template, &name).await,
            None => {
                conn.execute(format!("CREATE DATABASE {name}").as_str())
                    .await
                    .expect("create test database");
            }
        }
        let _ = conn.close().await;
        Self {
            url: database_url(&name),
            cleanup: Cleanup::Database(name),
        }
    }
}

/// The admin URL with its database replaced by `name`.
fn database_url(name: &str) -> String {
    let mut url = url::Url::parse(&postgres_admin_url()).expect("admin url");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The migrated template PostgreSQL test databases are copied from.
///
/// Race-free across processes through one advisory lock: copies hold it
/// shared, so that any number run at once; making or dropping a template
/// holds it exclusively, so that no copy starts from a template half made
/// or being dropped. A template is ready once it is marked `IS_TEMPLATE`
/// (the last step of making it): one left unmarked by a process that died
/// is made again. It allows no connections, so none can stop a copy.
mod template {
    use super::*;

    /// The advisory lock's key (the bytes of "hooktpls"). Advisory locks
    /// are per database: every test process takes it in the admin database.
    const LOCK: i64 = 0x686f_6f6b_7470_6c73;
    const PREFIX: &str = "hookwarden_tpl_";
    /// Templates of other migrations made longer ago than this are dropped
    /// when a new one is made: old enough to be left over, while a
    /// worktree on other migrations that is testing right now keeps its own.
    const STALE_AFTER_SECS: i64 = 3600;

    /// `hookwarden_tpl_` and a hash of every PostgreSQL migration's
    /// version and checksum (FNV-1a: stable across builds and toolchains).
    pub(super) fn name() -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for m in crate::postgres::MIGRATOR.iter() {
            for byte in m.version.to_le_bytes().iter().chain(m.checksum.iter()) {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{PREFIX}{hash:016x}")
    }

    /// Creates database `name` as a copy of `template`, making the template
    /// first if it is not ready.
    pub(super) async fn copy(conn: &mut PgConnection, template: &str, name: &str) {
        loop {
            lock(conn, "pg_advisory_lock_shared").await;
            let copied = if ready(conn, template).await {
                conn.execute(format!("CREATE DATABASE {name} TEMPLATE {template}").as_str())
                    .await
                    .expect("copy the template database");
                true
            } else {
                false
            };
            lock(conn, "pg_advisory_unlock_shared").await;
            if copied {
                return;
            }
            lock(conn, "pg_advisory_lock").await;
            if !ready(conn, template).await {
                make(conn, template).await;
                drop_stale(conn, template).await;
            }
            lock(conn, "pg_advisory_unlock").await;
        }
    }

    async fn lock(conn: &mut PgConnection, function: &str) {
        sqlx::query(&format!("SELECT {function}($1)"))
            .bind(LOCK)
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("{function}: {e}"));
    }

    async fn ready(conn: &mut PgConnection, template: &str) -> bool {
        sqlx::query_scalar::<_, bool>("SELECT datistemplate FROM pg_database WHERE datname = $1")
            .bind(template)
            .fetch_optional(&mut *conn)
            .await
            .expect("look the template up")
            .unwrap_or(false)
    }

    /// Makes the template from nothing, under the exclusive lock.
    async fn make(conn: &mut PgConnection, template: &str) {
        let started = std::time::Instant::now();
        for sql in [
            format!("DROP DATABASE IF EXISTS {template} WITH (FORCE)"),
            format!("CREATE DATABASE {template}"),
        ] {
            conn.execute(sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        let opts = PgConnectOptions::from_str(&database_url(template))
            .expect("template url")
            .options([("search_path", "hook")]);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .expect("connect to the template");
        crate::postgres::migrate(&pool)
            .await
            .expect("migrate the template");
        // Every connection closed, or copies would be refused.
        pool.close().await;
        let made = chrono::Utc::now().timestamp();
        for sql in [
            format!("COMMENT ON DATABASE {template} IS 'hookwarden test template, made {made}'"),
            format!("ALTER DATABASE {template} WITH ALLOW_CONNECTIONS false"),
            // Last: from here on the template is ready.
            format!("ALTER DATABASE {template} WITH IS_TEMPLATE true"),
        ] {
            conn.execute(sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
        eprintln!(
            "made the PostgreSQL test template {template} in {:?}",
            started.elapsed()
        );
    }

    /// Drops the templates of other migrations made long enough ago (or
    /// whose making never finished), under the exclusive lock.
    async fn drop_stale(conn: &mut PgConnection, keep: &str) {
        let rows = sqlx::query(
            "SELECT datname, datistemplate, shobj_description(oid, 'pg_database') AS note \
             FROM pg_database WHERE starts_with(datname, $1) AND datname <> $2",
        )
        .bind(PREFIX)
        .bind(keep)
        .fetch_all(&mut *conn)
        .await
        .expect("list the templates");
        let now = chrono::Utc::now().timestamp();
        for row in rows {
            let name: String = row.get("datname");
            let made = row
                .get::<Option<String>, _>("note")
                .and_then(|note| note.rsplit(' ').next()?.parse::<i64>().ok());
            let ready: bool = row.get("datistemplate");
            if ready && made.is_some_and(|made| now - made < STALE_AFTER_SECS) {
                continue;
            }
            for sql in [
                format!("ALTER DATABASE {name} WITH IS_TEMPLATE false"),
                format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            ] {
                if let Err(e) = conn.execute(sql.as_str()).await {
                    eprintln!("{sql}: {e}");
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Keep => {}
            Cleanup::File(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Database(name) => {
                // Drop may run inside or outside a runtime: use a thread with its own.
                let name = name.clone();
                let handle = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build();
                    if let Ok(rt) = rt {
                        rt.block_on(async move {
                            if let Ok(mut conn) = PgConnection::connect(&postgres_admin_url()).await
                            {
                                let _ = conn
                                    .execute(
                                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                                            .as_str(),
                                    )
                                    .await;
                            }
                        });
                    }
                });
                let _ = handle.join();
            }
        }
    }
}

/// Runs one async test body, `async fn name(backend: Backend)`, on both
/// backends: `on_both!(name, other_name);` makes `name::sqlite` and
/// `name::postgres`. Every suite of the workspace uses it, so a test written
/// once is a test on both databases.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name($crate::testing::Backend::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name($crate::testing::Backend::Postgres).await }
        }
    )*};
}
