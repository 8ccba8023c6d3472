//! Test databases: a fresh SQLite file or a fresh PostgreSQL database per test,
//! removed when the handle drops, so tests run in parallel and leave nothing.

use sqlx::{Connection, Executor, PgConnection};

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
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
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

    pub async fn postgres() -> Self {
        let admin = postgres_admin_url();
        let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed for this test and is not reachable at {admin}: {e}. \
                 Start it with: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
            )
        });
        let name = unique("hw_test");
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create test database");
        let mut url = url::Url::parse(&admin).expect("admin url");
        url.set_path(&format!("/{name}"));
        Self {
            url: url.to_string(),
            cleanup: Cleanup::Database(name),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &self.cleanup {
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
