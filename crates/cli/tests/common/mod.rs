//! What the process tests share: the real `hookwarden` binary started with
//! its own ports, database and data directory; receivers that record what
//! they are sent; and cleanup of every shared backend a test touches.
#![allow(dead_code)] // each test file uses its own subset

use axum::body::Bytes;
use axum::http::HeaderMap;
use base64::Engine;
use hookwarden_server::shared::jwt::{mint_hs256, Claims};
use hookwarden_store::testing::TestDb;
use secrecy::SecretString;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A running `hookwarden serve` whose output is collected.
pub struct Server {
    pub child: Child,
    pub logs: Arc<Mutex<String>>,
    pub port: u16,
}

pub struct Env {
    pub vars: Vec<(String, String)>,
    pub port: u16,
    pub jwt: SecretString,
}

impl Env {
    pub fn new(db: &TestDb, data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Self {
        Self::with_database(&db.url, data_dir, extra)
    }

    /// The value of one of the environment variables the server gets.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn with_database(url: &str, data_dir: &std::path::Path, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let jwt = format!("jwt-{}", uuid::Uuid::new_v4());
        let mut vars: Vec<(String, String)> = vec![
            ("HOOKWARDEN_DATABASE_URL".into(), url.to_owned()),
            ("HOOKWARDEN_DATA_DIR".into(), data_dir.display().to_string()),
            ("HOOKWARDEN_LISTEN".into(), format!("127.0.0.1:{port}")),
            (
                "HOOKWARDEN_OPS_LISTEN".into(),
                format!("127.0.0.1:{}", free_port()),
            ),
            (
                "HOOKWARDEN_MASTER_KEY".into(),
                base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
            ),
            ("HOOKWARDEN_JWT_HS256_SECRET".into(), jwt.clone()),
            (
                "HOOKWARDEN_ALLOWED_DESTINATIONS".into(),
                "127.0.0.1/32".into(),
            ),
            ("HOOKWARDEN_POLL_INTERVAL".into(), "100ms".into()),
        ];
        vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        Self {
            vars,
            port,
            jwt: SecretString::from(jwt),
        }
    }

    /// `hookwarden serve` with this environment, its output piped.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hookwarden"));
        cmd.arg("serve")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        for (k, v) in &self.vars {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn start(&self) -> Server {
        let mut child = self.command().spawn().expect("start hookwarden");
        let logs = Arc::new(Mutex::new(String::new()));
        for pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|p| Box::new(p) as _),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut l = logs.lock().expect("lock");
                    l.push_str(&line);
                    l.push('\n');
                }
            });
        }
        Server {
            child,
            logs,
            port: self.port,
        }
    }

    pub fn token(&self, account: Option<&str>, scope: &str) -> String {
        let now = chrono_now();
        let claims = Claims {
            sub: account.unwrap_or("producer").into(),
            account_id: account.map(str::to_owned),
            scope: scope.into(),
            exp: now + 600,
            nbf: None,
            iat: None,
            iss: None,
            aud: None,
        };
        mint_hs256(&self.jwt, &claims).expect("token")
    }
}

pub fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn wait_ready(&mut self) {
        let client = http_client();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "hookwarden exited with {status}: {}",
                    self.logs.lock().expect("lock")
                );
            }
            if client.get(self.url("/v1/none")).send().await.is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "hookwarden did not start: {}",
                self.logs.lock().expect("lock")
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix: no cleanup, no drain
        let _ = self.child.wait();
    }

    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill9();
    }

    pub fn logs(&self) -> String {
        self.logs.lock().expect("lock").clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Records the `webhook-id` of each delivery; answers slowly so work piles up.
pub async fn receiver(delay: Duration) -> (u16, Arc<Mutex<Vec<(String, String)>>>) {
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let s = s.clone();
        async move {
            tokio::time::sleep(delay).await;
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            s.lock()
                .expect("lock")
                .push((id, String::from_utf8_lossy(&body).into_owned()));
            "ok"
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, seen)
}

pub async fn post(client: &reqwest::Client, url: String, token: &str, body: Value) -> (u16, Value) {
    let resp = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// Starts the server, waits until it answers, and registers one webhook of
/// `account` pointing at the receiver on `rport`.
pub async fn start_with_webhook(env: &Env, account: &str, url: &str) -> (Server, reqwest::Client) {
    let mut server = env.start();
    server.wait_ready().await;
    let client = http_client();
    let (status, body) = post(
        &client,
        server.url("/v1/webhooks"),
        &env.token(Some(account), "webhooks:write webhooks:read"),
        json!({"url": url, "eventTypes": ["*"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (server, client)
}

/// A client for the server under test (never through an environment proxy).
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Creates token-scheme integrations through the operator API.
pub async fn create_integrations(server: &Server, key: &str, names: &[&str]) {
    for name in names {
        let resp = http_client()
            .post(server.url("/api/v1/integrations"))
            .header("x-internal-api-key", key)
            .json(&json!({"name": name, "scheme": "token", "secret": "t", "signatureHeader": "x-t", "targetUrl": "http://127.0.0.1:9/"}))
            .send()
            .await
            .expect("create integration");
        assert_eq!(resp.status(), 201);
    }
}

/// A temporary data directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn tempdir() -> TempDir {
    let dir =
        std::env::temp_dir().join(format!("hookwarden_proc_{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    TempDir(dir)
}

/// A test's own NATS stream and Redis keys, removed on drop (also when the test fails).
pub struct SharedBackends {
    pub nats_url: String,
    pub stream: String,
    pub redis_url: String,
    pub redis_prefix: String,
}

impl Drop for SharedBackends {
    fn drop(&mut self) {
        let (url, stream) = (self.nats_url.clone(), self.stream.clone());
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    if let Ok(client) = async_nats::connect(url).await {
                        let _ = async_nats::jetstream::new(client)
                            .delete_stream(&stream)
                            .await;
                    }
                });
            }
        })
        .join();
        if let Ok(mut c) =
            redis::Client::open(self.redis_url.as_str()).and_then(|c| c.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.redis_prefix))
                .query(&mut c)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
        }
    }
}

/// Counts deliveries per `webhook-id` and the most ever in flight for one id.
#[derive(Default)]
pub struct Tally {
    pub received: std::collections::HashMap<String, usize>,
    pub in_flight: std::collections::HashMap<String, usize>,
    pub max_in_flight_one_id: usize,
    /// Ids that were being received twice at once, and at what time, to
    /// find them in the server's logs when the assertion fails.
    pub overlaps: Vec<(String, chrono::DateTime<chrono::Utc>)>,
}

/// Ends one request's "in flight" mark even when the request is cancelled
/// (a sender killed mid-request drops the handler).
pub struct InFlight {
    pub tally: Arc<Mutex<Tally>>,
    pub id: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut g = self.tally.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = g.in_flight.get_mut(&self.id) {
            *n = n.saturating_sub(1);
        }
    }
}

pub async fn tallying_receiver(delay: Duration) -> (u16, Arc<Mutex<Tally>>) {
    let tally: Arc<Mutex<Tally>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let t = tally.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
        let t = t.clone();
        async move {
            // The producer's own reference when the payload carries one (a
            // NATS publisher learns no eventId: it knows its events by the
            // id it gave, and receivers see hookwarden's own `webhook-id`),
            // else the `webhook-id`.
            let reference = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["data"]["ref"].as_str().map(str::to_owned));
            let id = reference.unwrap_or_else(|| {
                headers
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned()
            });
            {
                let mut g = t.lock().expect("lock");
                let n = g.in_flight.entry(id.clone()).or_default();
                *n += 1;
                let now = *n;
                g.max_in_flight_one_id = g.max_in_flight_one_id.max(now);
                if now > 1 {
                    g.overlaps.push((id.clone(), chrono::Utc::now()));
                }
            }
            let _mark = InFlight {
                tally: t.clone(),
                id: id.clone(),
            };
            tokio::time::sleep(delay).await;
            *t.lock().expect("lock").received.entry(id).or_default() += 1;
            "ok"
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, tally)
}
