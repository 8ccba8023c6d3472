//! `TestApp`: the real application on port 0 against a fresh database, with
//! typed request helpers; `Receiver`: a real HTTP server that records what it
//! is sent and answers as told; and the bridge to the reference verifier.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine;
use hookwarden_server::boot::Application;
use hookwarden_server::config::{RawConfig, Settings};
use hookwarden_server::outbound::dispatch::worker::Dispatcher;
use hookwarden_server::shared::client::Lookup;
use hookwarden_server::shared::jwt::{mint_hs256, Claims};
use hookwarden_server::shared::state::AppState;
pub use hookwarden_store::testing::Backend;
use hookwarden_store::testing::TestDb;
use secrecy::SecretString;
use serde_json::Value;
use std::collections::VecDeque;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub addr: SocketAddr,
    pub ops: SocketAddr,
    pub http: reqwest::Client,
    pub dispatcher: Arc<Dispatcher>,
    pub forwarder: Arc<hookwarden_server::boot::Forwarder>,
    pub state: AppState,
    pub jwt_secret: SecretString,
    pub database_url: String,
    pub master_key: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _db: Option<TestDb>,
    _dir: TempDir,
}

/// A last change to the settings a test makes.
pub type Customize = Box<dyn FnOnce(&mut RawConfig) + Send>;

/// Knobs tests turn; everything else is the product's default.
pub struct Options {
    pub allow_loopback: bool,
    pub retry_schedule: &'static str,
    pub delivery_timeout: &'static str,
    pub rate_limit: u32,
    /// Run the background worker (otherwise tests step `dispatcher.run_once`).
    pub worker: bool,
    pub lookup: Option<Arc<dyn Lookup>>,
    pub max_in_flight: usize,
    pub max_in_flight_per_endpoint: Option<usize>,
    pub nats: Option<(String, String)>,
    pub rotation_grace: &'static str,
    /// Verify tokens with this JWKS file (and no HS256 secret unless `hs256`).
    pub jwks_file: Option<std::path::PathBuf>,
    pub hs256: bool,
    pub issuer: Option<&'static str>,
    pub audience: Option<&'static str>,
    /// Share a database (and master key) with another app: a second replica.
    pub shared: Option<(String, String)>,
    /// Use Redis (at this URL) with this key prefix.
    pub redis: Option<(String, String)>,
    pub production: bool,
    /// Older master keys still readable (rotation).
    pub previous_keys: Option<String>,
    /// Any other setting, applied last.
    pub customize: Option<Customize>,
}

/// Operator keys every test app accepts (two: rotation).
pub const OPERATOR_KEY: &str = "op-key-current-0123456789abcdef0123456789";
pub const OPERATOR_KEY_OLD: &str = "op-key-previous-9876543210fedcba9876543210";

pub fn redis_url() -> String {
    std::env::var("HOOKWARDEN_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Redis key prefix of its own for one test, with its keys removed afterwards.
pub struct RedisPrefix(pub String);

impl RedisPrefix {
    pub fn new() -> Self {
        let url = redis_url();
        let reachable = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)));
        if let Err(e) = reachable {
            panic!(
                "Redis is needed for this test and is not reachable at {url}: {e}. Start it with: redis-server --daemonize yes \
                 --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log"
            );
        }
        Self(format!("hwtest:{}:", uuid::Uuid::new_v4().simple()))
    }

    pub fn options(&self) -> Option<(String, String)> {
        Some((redis_url(), self.0.clone()))
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        if let Ok(mut c) =
            redis::Client::open(redis_url().as_str()).and_then(|c| c.get_connection())
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}*", self.0))
                .query(&mut c)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query(&mut c);
            }
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            allow_loopback: true,
            retry_schedule: "200ms,400ms",
            delivery_timeout: "2s",
            rate_limit: 1000,
            worker: false,
            lookup: None,
            max_in_flight: 20,
            max_in_flight_per_endpoint: None,
            nats: None,
            rotation_grace: "24h",
            jwks_file: None,
            hs256: true,
            issuer: None,
            audience: None,
            shared: None,
            redis: None,
            production: false,
            previous_keys: None,
            customize: None,
        }
    }
}

pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("hookwarden_it_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::with(backend, Options::default()).await
    }

    pub async fn with(backend: Backend, o: Options) -> Self {
        let (db, database_url, master) = match o.shared {
            Some((url, key)) => (None, url, key),
            None => {
                let db = TestDb::new(backend).await;
                let url = db.url.clone();
                (
                    Some(db),
                    url,
                    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>()),
                )
            }
        };
        let dir = TempDir::new();
        let jwt = format!("test-{}", uuid::Uuid::new_v4());
        let (nats_url, nats_prefix) = match o.nats {
            Some((url, prefix)) => (Some(url), Some(prefix)),
            None => (None, None),
        };
        let mut raw = RawConfig::default();
        raw.set("data_dir", &dir.0)
            .set("database_url", &database_url)
            .set("listen", "127.0.0.1:0")
            .set("ops_listen", "127.0.0.1:0")
            .set("master_key", &master)
            .set("jwt_hs256_secret", o.hs256.then_some(&jwt))
            .set("jwt_jwks_file", &o.jwks_file)
            .set("jwt_issuer", o.issuer)
            .set("jwt_audience", o.audience)
            .set(
                "allowed_destinations",
                o.allow_loopback.then_some("127.0.0.0/8,::1"),
            )
            .set("retry_schedule", o.retry_schedule)
            .set("delivery_timeout", o.delivery_timeout)
            .set("api_rate_limit_per_minute", o.rate_limit)
            .set("delivery_worker", o.worker)
            .set("max_in_flight", o.max_in_flight)
            .set("max_in_flight_per_endpoint", o.max_in_flight_per_endpoint)
            .set(
                "nats_stream",
                nats_prefix
                    .as_ref()
                    .map(|p| p.replace('.', "_").to_uppercase()),
            )
            .set("nats_subject_prefix", &nats_prefix)
            .set("nats_url", &nats_url)
            .set("rotation_grace", o.rotation_grace)
            .set("poll_interval", "50ms")
            .set(
                "management_api_keys",
                format!("{OPERATOR_KEY},{OPERATOR_KEY_OLD}"),
            )
            .set("redis_url", o.redis.as_ref().map(|(url, _)| url))
            .set("redis_prefix", o.redis.as_ref().map(|(_, p)| p))
            .set("ingress_worker", o.worker)
            .set("previous_master_keys", &o.previous_keys)
            .set("env", o.production.then_some("production"))
            .set("allow_http_destinations", o.production.then_some(false));
        if let Some(customize) = o.customize {
            customize(&mut raw);
        }
        let settings = Settings::from_raw(raw).expect("test settings");
        let app = match o.lookup {
            Some(l) => Application::build_with(settings, l).await,
            None => Application::build(settings).await,
        }
        .expect("application builds");
        let (addr, ops, state, dispatcher, forwarder) = (
            app.public_addr(),
            app.ops_addr(),
            app.state(),
            app.dispatcher(),
            app.forwarder(),
        );
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        Self {
            addr,
            ops,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            dispatcher,
            forwarder,
            state,
            jwt_secret: SecretString::from(jwt),
            database_url,
            master_key: master,
            shutdown,
            task: Some(task),
            _db: db,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn claims(&self, account: Option<&str>, scope: &str) -> Claims {
        let now = chrono::Utc::now().timestamp();
        Claims {
            sub: account.unwrap_or("producer-test").to_owned(),
            account_id: account.map(str::to_owned),
            scope: scope.to_owned(),
            exp: now + 600,
            nbf: Some(now),
            iat: Some(now),
            iss: None,
            aud: None,
        }
    }

    pub fn sign(&self, claims: &Claims) -> String {
        mint_hs256(&self.jwt_secret, claims).expect("token")
    }

    /// A tenant token with read and write scopes.
    pub fn tenant(&self, account: &str) -> String {
        self.sign(&self.claims(Some(account), "webhooks:read webhooks:write"))
    }

    pub fn producer(&self) -> String {
        self.sign(&self.claims(None, "events:publish"))
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json, headers)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value, HeaderMap) {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    pub async fn post(
        &self,
        path: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value, HeaderMap) {
        self.call(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }

    pub async fn put(
        &self,
        path: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value, HeaderMap) {
        self.call(reqwest::Method::PUT, path, Some(token), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str, token: &str) -> (StatusCode, Value, HeaderMap) {
        self.call(reqwest::Method::DELETE, path, Some(token), None)
            .await
    }

    /// Creates a webhook and returns (id, secret).
    pub async fn create_webhook(
        &self,
        account: &str,
        url: &str,
        types: &[&str],
    ) -> (String, String) {
        let (status, body, _) = self
            .post(
                "/v1/webhooks",
                &self.tenant(account),
                serde_json::json!({"url": url, "eventTypes": types}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["id"].as_str().expect("id").to_owned(),
            body["secret"].as_str().expect("secret").to_owned(),
        )
    }

    pub async fn publish(&self, account: &str, event_type: &str, payload: Value) -> String {
        let (status, body, _) = self
            .post("/v1/events", &self.producer(), serde_json::json!({"accountId": account, "eventType": event_type, "payload": payload}))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["eventId"].as_str().expect("eventId").to_owned()
    }

    pub async fn deliveries(&self, account: &str, webhook_id: &str) -> Vec<Value> {
        let (status, body, _) = self
            .get(
                &format!("/v1/webhooks/{webhook_id}/deliveries?limit=100"),
                &self.tenant(account),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().expect("items").clone()
    }

    /// Steps the worker until `done` holds or `within` passes.
    pub async fn deliver_until(&self, within: Duration, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not reached within {within:?}"
            );
            let n = self.dispatcher.run_once().await.expect("worker step");
            if n == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// A request to the operator API with the operator key.
    pub async fn operator(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value, HeaderMap) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("x-internal-api-key", OPERATOR_KEY);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            headers,
        )
    }

    /// Creates an integration; returns its forwarding secret.
    pub async fn integration(&self, body: Value) -> String {
        let (status, created, _) = self
            .operator(reqwest::Method::POST, "/api/v1/integrations", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created["forwardingSecret"]
            .as_str()
            .expect("forwardingSecret")
            .to_owned()
    }

    /// Sends a raw inbound webhook with the given headers.
    pub async fn inbound(
        &self,
        provider: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(self.url(&format!("/api/v1/webhooks/{provider}")))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("request");
        let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
        let text = resp.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Posts a body over a limit and returns the status. The server answers
    /// 413 from the declared length without reading the body, and may close
    /// the connection while the client is still sending it; then the client
    /// can lose the answer, so a connection-level failure is tried again.
    pub async fn post_oversize(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (StatusCode, Value) {
        let mut last = None;
        for _ in 0..5 {
            let mut req = self
                .http
                .post(self.url(path))
                .header("content-type", "application/json")
                .body(body.to_vec());
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            match req.send().await {
                Ok(resp) => {
                    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
                    if status == StatusCode::PAYLOAD_TOO_LARGE {
                        // The refused body was never read: the connection must not be reused.
                        assert_eq!(
                            resp.headers()
                                .get("connection")
                                .and_then(|v| v.to_str().ok()),
                            Some("close")
                        );
                    }
                    let text = resp.text().await.unwrap_or_default();
                    return (
                        status,
                        serde_json::from_str(&text).unwrap_or(Value::String(text)),
                    );
                }
                Err(e) => last = Some(e),
            }
        }
        panic!("every oversize request lost its answer: {last:?}");
    }

    /// Steps the forwarding worker until `done` holds.
    pub async fn forward_until(&self, within: Duration, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not reached within {within:?}"
            );
            if self.forwarder.run_once().await.expect("forwarder step") == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// How the receiver answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    Status(u16),
    Full {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    Slow {
        delay: Duration,
        status: u16,
    },
    /// A body of this many bytes, streamed.
    Huge(usize),
}

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub path: String,
}

#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    replies: Arc<Mutex<VecDeque<Reply>>>,
    default: Arc<Mutex<Reply>>,
    /// Requests being answered now, and the most ever at once.
    concurrent: Arc<Mutex<(usize, usize)>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = listener.local_addr().expect("addr");
        let this = Self {
            addr,
            received: Arc::default(),
            replies: Arc::default(),
            default: Arc::new(Mutex::new(Reply::Status(200))),
            concurrent: Arc::default(),
        };
        let state = this.clone();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { state.answer(uri.path().to_owned(), headers, body).await }
            },
        );
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        this
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn push(&self, reply: Reply) {
        self.replies.lock().expect("lock").push_back(reply);
    }

    pub fn set_default(&self, reply: Reply) {
        *self.default.lock().expect("lock") = reply;
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    pub fn count(&self) -> usize {
        self.received.lock().expect("lock").len()
    }

    /// The most requests this receiver was ever answering at once.
    pub fn max_concurrent(&self) -> usize {
        self.concurrent.lock().expect("lock").1
    }

    async fn answer(&self, path: String, headers: HeaderMap, body: Bytes) -> Response {
        {
            let mut c = self.concurrent.lock().expect("lock");
            c.0 += 1;
            c.1 = c.1.max(c.0);
        }
        let resp = self.reply(path, headers, body).await;
        self.concurrent.lock().expect("lock").0 -= 1;
        resp
    }

    async fn reply(&self, path: String, headers: HeaderMap, body: Bytes) -> Response {
        self.received.lock().expect("lock").push(Received {
            headers,
            body,
            path,
        });
        let reply = self
            .replies
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or_else(|| self.default.lock().expect("lock").clone());
        let build = |status: u16, body: Body| {
            Response::builder()
                .status(status)
                .body(body)
                .expect("response")
        };
        match reply {
            Reply::Status(s) => build(s, Body::from("ok")),
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut r = build(status, Body::from(body));
                for (k, v) in headers {
                    r.headers_mut().insert(k, v.parse().expect("header value"));
                }
                r
            }
            Reply::Slow { delay, status } => {
                tokio::time::sleep(delay).await;
                build(status, Body::from("late"))
            }
            Reply::Huge(n) => {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let stream = futures_util::stream::iter(
                    (0..n / chunk.len()).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                build(200, Body::from_stream(stream))
            }
        }
    }
}

/// Verifies deliveries with the reference Standard Webhooks library (Python).
/// Returns one verdict per delivery: "ok" or "fail: …".
pub fn reference_verify(secret: &str, deliveries: &[Received]) -> Vec<String> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/verify_standard_webhooks.py"
    );
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 must be installed for the reference verifier");
    {
        let stdin = child.stdin.as_mut().expect("stdin");
        for d in deliveries {
            let headers: serde_json::Map<String, Value> =
                ["webhook-id", "webhook-timestamp", "webhook-signature"]
                    .iter()
                    .map(|h| {
                        (
                            h.to_string(),
                            Value::String(
                                d.headers
                                    .get(*h)
                                    .and_then(|v| v.to_str().ok())
                                    .unwrap_or("")
                                    .to_owned(),
                            ),
                        )
                    })
                    .collect();
            let line = serde_json::json!({"secret": secret, "headers": headers, "body": String::from_utf8_lossy(&d.body)});
            writeln!(stdin, "{line}").expect("write");
        }
    }
    let out = child.wait_with_output().expect("python ran");
    assert!(
        out.status.success(),
        "reference verifier failed (is `standardwebhooks` installed? pip install standardwebhooks): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

pub fn nats_url() -> String {
    std::env::var("HOOKWARDEN_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A NATS subject prefix and stream of one test's own, deleted on drop (also
/// when the test fails).
pub struct NatsTest {
    pub prefix: String,
    pub stream: String,
    pub client: async_nats::Client,
}

impl NatsTest {
    pub async fn new() -> Self {
        let url = nats_url();
        let client = async_nats::connect(&url).await.unwrap_or_else(|e| {
            panic!(
                "NATS with JetStream is needed for this test and is not reachable at {url}: {e}. Start it with: \
                 start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server"
            )
        });
        let prefix = format!("hwt{}.webhook", uuid::Uuid::new_v4().simple());
        let stream = prefix.replace('.', "_").to_uppercase();
        Self {
            prefix,
            stream,
            client,
        }
    }

    pub fn options(&self) -> Option<(String, String)> {
        Some((nats_url(), self.prefix.clone()))
    }
}

impl Drop for NatsTest {
    fn drop(&mut self) {
        // Drop may run inside a runtime: delete from a thread with its own.
        let stream = self.stream.clone();
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async move {
                    if let Ok(client) = async_nats::connect(nats_url()).await {
                        let _ = async_nats::jetstream::new(client)
                            .delete_stream(&stream)
                            .await;
                    }
                });
            }
        })
        .join();
    }
}
