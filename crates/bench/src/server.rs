//! The hookwarden under test: the binary started as a process of its own
//! against the run's database, the tokens it accepts, and registering a
//! webhook through its API.

use anyhow::Context;
use hookwarden_store::testing::TestDb;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::receiver::now_us;

const JWT: &str = "bench-jwt-secret";
/// Whether hookwarden reaches PostgreSQL over TLS (`--pg-tls`).
pub(crate) static PG_TLS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .map(|l| l.local_addr().map(|a| a.port()).unwrap_or(0))
        .unwrap_or(0)
}

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) port: u16,
    /// The ops listener (`/metrics`).
    pub(crate) ops_port: u16,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) async fn start_hookwarden(
    db: &TestDb,
    extra: &[(&str, String)],
) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?
        .parent()
        .context("target dir")?
        .join("hookwarden");
    anyhow::ensure!(
        exe.exists(),
        "build the binary first: cargo build --release -p hookwarden"
    );
    let dir = TempDir(std::env::temp_dir().join(format!(
        "hookwarden_bench_{}",
        uuid::Uuid::new_v4().simple()
    )));
    std::fs::create_dir_all(&dir.0)?;
    let port = free_port();
    let ops_port = free_port();
    // PostgreSQL on loopback without TLS, as a same-host deployment (or a
    // Unix socket) would run it; `--pg-tls` keeps the driver's default
    // (TLS when the server offers it) to measure that cost too.
    let url = if db.url.starts_with("postgres") && !PG_TLS.get().copied().unwrap_or(false) {
        format!("{}?sslmode=disable", db.url)
    } else {
        db.url.clone()
    };
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .env("HOOKWARDEN_DATABASE_URL", &url)
        .env("HOOKWARDEN_DATA_DIR", &dir.0)
        .env("HOOKWARDEN_LISTEN", format!("127.0.0.1:{port}"))
        .env("HOOKWARDEN_OPS_LISTEN", format!("127.0.0.1:{ops_port}"))
        .env(
            "HOOKWARDEN_MASTER_KEY",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]),
        )
        .env("HOOKWARDEN_JWT_HS256_SECRET", JWT)
        .env("HOOKWARDEN_MANAGEMENT_API_KEYS", "bench-key")
        .env("HOOKWARDEN_ALLOWED_DESTINATIONS", "127.0.0.1/32")
        .env("HOOKWARDEN_PUBLISH_RATE_LIMIT_PER_MINUTE", "100000000")
        .env("HOOKWARDEN_API_RATE_LIMIT_PER_MINUTE", "100000000")
        .env("RUST_LOG", "warn");
    // The server's warnings are dropped unless asked for (a stall to explain:
    // what the server said while it happened).
    match std::env::var_os("HOOKWARDEN_BENCH_SERVER_LOG") {
        Some(path) => {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            cmd.stdout(log.try_clone()?).stderr(log);
        }
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
    }
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let child = cmd.spawn()?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("http://127.0.0.1:{port}/api/v1/health"))
        .send()
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "hookwarden did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(Server {
        child,
        port,
        ops_port,
        _dir: dir,
    })
}
pub(crate) fn producer_token() -> String {
    let claims =
        json!({"sub": "bench", "scope": "events:publish", "exp": now_us() / 1_000_000 + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT.as_bytes()),
    )
    .unwrap_or_default()
}
pub(crate) fn tenant_token(account: &str) -> anyhow::Result<String> {
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": account, "account_id": account, "scope": "webhooks:read webhooks:write", "exp": now_us() / 1_000_000 + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(JWT.as_bytes()),
    )?)
}

/// Registers a webhook of `account` to `url`; returns its id.
pub(crate) async fn add_webhook(
    server: &Server,
    account: &str,
    url: &str,
) -> anyhow::Result<String> {
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/v1/webhooks", server.port))
        .bearer_auth(tenant_token(account)?)
        .json(&json!({"url": url, "eventTypes": ["*"]}))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "webhook: {}",
        resp.text().await?
    );
    let body: Value = resp.json().await?;
    Ok(body["id"].as_str().context("webhook id")?.to_owned())
}
