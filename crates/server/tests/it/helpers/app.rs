//! `TestApp`: the real application on port 0 against a fresh database (or
//! one shared with another replica), the settings tests turn, and stepping
//! its workers and its clock by hand.

use base64::Engine;
use chrono::{DateTime, Utc};
use hookwarden_server::boot::Application;
use hookwarden_server::config::{RawConfig, Settings};
use hookwarden_server::outbound::dispatch::worker::Dispatcher;
use hookwarden_server::shared::client::{Lookup, SystemLookup};
use hookwarden_server::shared::clock::{Clock, ClockHand};
use hookwarden_server::shared::state::AppState;
use hookwarden_store::model::AttemptStatus;
use hookwarden_store::search::AttemptFilter;
use hookwarden_store::testing::{Backend, TestDb};
use secrecy::SecretString;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub addr: SocketAddr,
    pub ops: SocketAddr,
    /// The private operator listener, when the test configured one.
    pub operator: Option<SocketAddr>,
    pub http: reqwest::Client,
    pub dispatcher: Arc<Dispatcher>,
    pub forwarder: Arc<hookwarden_server::boot::Forwarder>,
    pub state: AppState,
    /// Moves the application's clock ahead (see `advance`).
    pub clock: ClockHand,
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

/// Options for an app behind a trusted proxy on loopback (so a test names
/// its client in `X-Forwarded-For`), with this failed-authentication limit.
pub fn behind_proxy(limit: Option<u32>) -> Options {
    Options {
        customize: Some(Box::new(move |raw| {
            raw.set("trusted_proxies", "127.0.0.1/32");
            raw.set("failed_auth_limit_per_minute", limit);
        })),
        ..Default::default()
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
        let (clock, hand) = Clock::by_hand();
        let lookup = o.lookup.unwrap_or_else(|| Arc::new(SystemLookup));
        let app = Application::build_with(settings, lookup, clock)
            .await
            .expect("application builds");
        let operator = app.operator_addr();
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
            operator,
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
            dispatcher,
            forwarder,
            state,
            clock: hand,
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

    /// Steps the delivery worker until `done` holds or `within` passes. A
    /// step that finds nothing due moves the clock to the next pending
    /// try's due time (a retry, the end of a pause) instead of waiting for
    /// it, as long as the clock moves at most `within` in all; otherwise
    /// (nothing scheduled: the work is still on its way) it waits a moment.
    pub async fn deliver_until(&self, within: Duration, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        let mut budget = within;
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not reached within {within:?}"
            );
            if self.dispatcher.run_once().await.expect("worker step") == 0 {
                let moved = self.advance_to_next_delivery(budget).await;
                budget -= moved;
                if moved.is_zero() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Steps the forwarding worker until `done` holds, as `deliver_until`.
    pub async fn forward_until(&self, within: Duration, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + within;
        let mut budget = within;
        while !done() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "condition not reached within {within:?}"
            );
            if self.forwarder.run_once().await.expect("forwarder step") == 0 {
                let moved = self.advance_to_next_forwarding(budget).await;
                budget -= moved;
                if moved.is_zero() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// The application's time now.
    pub fn now(&self) -> DateTime<Utc> {
        self.state.clock.now()
    }

    /// Moves the clock just past the due time of the next pending delivery
    /// try that is still ahead, if it is at most `at_most` ahead: how far it
    /// moved (zero if it did not).
    pub async fn advance_to_next_delivery(&self, at_most: Duration) -> Duration {
        let due = self.next_delivery().await;
        self.advance_to(due, at_most)
    }

    /// As `advance_to_next_delivery`, for forwarding jobs.
    pub async fn advance_to_next_forwarding(&self, at_most: Duration) -> Duration {
        let due = self.next_forwarding().await;
        self.advance_to(due, at_most)
    }

    /// The earliest due time of a pending delivery try that is still ahead.
    async fn next_delivery(&self) -> Option<DateTime<Utc>> {
        let pending = AttemptFilter {
            status: Some(AttemptStatus::Pending),
            ..Default::default()
        };
        let page = self
            .state
            .store
            .search_attempts(&pending, None, 100)
            .await
            .expect("pending tries");
        let now = self.now();
        page.items
            .iter()
            .map(|a| a.due_at)
            .filter(|d| *d > now)
            .min()
    }

    /// The earliest due time of a pending forwarding job that is still ahead.
    async fn next_forwarding(&self) -> Option<DateTime<Utc>> {
        let page = self
            .state
            .store
            .list_jobs(None, Some(AttemptStatus::Pending), None, 100)
            .await
            .expect("pending jobs");
        let now = self.now();
        page.items
            .iter()
            .map(|j| j.due_at)
            .filter(|d| *d > now)
            .min()
    }

    /// Moves the clock just past `due` if that is at most `at_most` ahead.
    fn advance_to(&self, due: Option<DateTime<Utc>>, at_most: Duration) -> Duration {
        let Some(due) = due else {
            return Duration::ZERO;
        };
        // Stored times keep milliseconds: one more makes the time surely due.
        let by = (due - self.now()).to_std().unwrap_or_default() + Duration::from_millis(1);
        if by > at_most {
            return Duration::ZERO;
        }
        self.clock.advance(by);
        by
    }

    /// A second replica of this app with default options: the same
    /// database and master key.
    pub async fn replica(&self, backend: Backend) -> Self {
        Self::with(
            backend,
            Options {
                shared: Some((self.database_url.clone(), self.master_key.clone())),
                ..Default::default()
            },
        )
        .await
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
