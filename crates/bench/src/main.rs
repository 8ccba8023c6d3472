//! `hookwarden-bench`: starts the release `hookwarden` binary as its own
//! process (so its CPU time and peak RSS can be read from /proc) against
//! SQLite or PostgreSQL, drives it from a load generator on loopback, and
//! prints throughput, latency percentiles, CPU seconds per 1,000 events and
//! peak RSS — beside a bare server on the same framework, in the same run.
//!
//! Usage: `hookwarden-bench [ingress|dispatch|backlog|isolation|memory|all]
//! [--seconds N] [--events N] [--concurrency N] [--in-flight N]`; `--in-flight`
//! sets the delivery budget and lets one endpoint use all of it (defaults:
//! 20 in flight, 5 per endpoint).
//! (build first: `cargo build --release -p hookwarden -p hookwarden-bench`).

use anyhow::Context;
use hmac::{Hmac, Mac};
use hookwarden_store::testing::{Backend, TestDb};
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECRET: &str = "bench-provider-secret";
const JWT: &str = "bench-jwt-secret";
/// `--in-flight N`, when given.
static IN_FLIGHT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// Whether hookwarden reaches PostgreSQL over TLS (`--pg-tls`).
static PG_TLS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

struct Figures {
    name: String,
    count: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
    cpu_seconds: Option<f64>,
    peak_rss_mb: Option<f64>,
    /// CPU seconds of everything else on the machine in the run: PostgreSQL's
    /// processes, and this program (load generator, receiver, baseline).
    others: OtherCpu,
}

/// Where the rest of the machine's CPU went during a run, so a figure can
/// be read against the two cores it shares.
#[derive(Clone, Copy, Default)]
struct OtherCpu {
    database: f64,
    bench: f64,
}

impl OtherCpu {
    fn now() -> Self {
        Self {
            database: postgres_cpu(),
            bench: proc_usage(std::process::id()).0,
        }
    }

    fn since(self, before: Self) -> Self {
        Self {
            database: self.database - before.database,
            bench: self.bench - before.bench,
        }
    }
}

/// CPU seconds used so far by every PostgreSQL process on the machine
/// (the bench's database is the only busy one while it runs).
fn postgres_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .map(|pid| proc_usage(pid).0)
        .sum()
}

impl Figures {
    fn rate(&self) -> f64 {
        self.count as f64 / self.seconds
    }

    fn pct(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let mut v = self.latencies_us.clone();
        v.sort_unstable();
        let i = ((v.len() as f64 - 1.0) * p).round() as usize;
        v[i] as f64 / 1000.0
    }

    fn print(&self, baseline: Option<&Figures>) {
        let ratio = baseline
            .map(|b| format!("{:.0} % of baseline", 100.0 * self.rate() / b.rate()))
            .unwrap_or_default();
        let cpu = self
            .cpu_seconds
            .map(|c| format!("{:.2} CPU s/1k", 1000.0 * c / self.count.max(1) as f64))
            .unwrap_or_else(|| "-".into());
        let rss = self
            .peak_rss_mb
            .map(|r| format!("{r:.0} MB peak RSS"))
            .unwrap_or_else(|| "-".into());
        // A PostgreSQL process that ended during the run took its CPU time
        // with it (the backlog's prefill connection): then nothing is shown.
        let per_1k = |c: f64| {
            if c >= 0.0 {
                format!("{:.2}", 1000.0 * c / self.count.max(1) as f64)
            } else {
                "-".into()
            }
        };
        let others = format!(
            "(per 1k also: PostgreSQL {}, bench {} CPU s)",
            per_1k(self.others.database),
            per_1k(self.others.bench)
        );
        println!(
            "{:<34} {:>9.0}/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  {cpu}  {rss}  {ratio} {others}",
            self.name,
            self.rate(),
            self.pct(0.50),
            self.pct(0.90),
            self.pct(0.99),
            self.pct(1.0)
        );
    }
}

/// CPU seconds (user + system) and peak RSS in MB of a process.
fn proc_usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let cpu = (ticks(11) + ticks(12)) / 100.0; // utime, stime in clock ticks (100 Hz)
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm_kb / 1024.0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .map(|l| l.local_addr().map(|a| a.port()).unwrap_or(0))
        .unwrap_or(0)
}

struct Server {
    child: Child,
    port: u16,
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

async fn start_hookwarden(db: &TestDb, extra: &[(&str, String)]) -> anyhow::Result<Server> {
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
        .env(
            "HOOKWARDEN_OPS_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env(
            "HOOKWARDEN_MASTER_KEY",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [7u8; 32]),
        )
        .env("HOOKWARDEN_JWT_HS256_SECRET", JWT)
        .env("HOOKWARDEN_MANAGEMENT_API_KEYS", "bench-key")
        .env("HOOKWARDEN_ALLOWED_DESTINATIONS", "127.0.0.1/32")
        .env("HOOKWARDEN_PUBLISH_RATE_LIMIT_PER_MINUTE", "100000000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
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
        _dir: dir,
    })
}

/// A bare server on the same framework: no verification, no storage. It
/// also serves as the receiver of deliveries (answering after `delay`).
async fn start_baseline(
    status: u16,
    delay: Duration,
) -> anyhow::Result<(u16, Arc<AtomicU64>, Arc<Mutex<Vec<u64>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let (c, l) = (count.clone(), lat.clone());
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let (c, l) = (c.clone(), l.clone());
        async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            c.fetch_add(1, Ordering::Relaxed);
            // Dispatch payloads carry their publish time: publish-to-delivery latency.
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                if let Some(sent) = v["data"]["sentUs"].as_u64() {
                    l.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(now_us().saturating_sub(sent));
                }
            }
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK)
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((port, count, lat))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn sign(body: &[u8]) -> String {
    let mut m = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes())
        .unwrap_or_else(|_| unreachable!());
    m.update(body);
    hex::encode(m.finalize().into_bytes())
}

/// `concurrency` loops posting signed 1 KiB bodies (unique, so none is a duplicate) for `seconds`.
async fn drive_ingress(
    name: &str,
    url: String,
    seconds: u64,
    concurrency: usize,
    pid: Option<u32>,
    rate: Option<f64>,
) -> Figures {
    // At a set rate, each connection sends on its own schedule.
    let interval = rate.map(|r| Duration::from_secs_f64(concurrency as f64 / r.max(1.0)));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap_or_default();
    let before = pid.map(proc_usage);
    let others = OtherCpu::now();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut n = 0u64;
            let filler = "x".repeat(960);
            while Instant::now() < deadline {
                if let Some(every) = interval {
                    // Staggered, so the connections do not send in bursts.
                    let offset = every * worker as u32 / concurrency as u32;
                    tokio::time::sleep_until((started + offset + every * n as u32).into()).await;
                }
                let body = format!("{{\"w\":{worker},\"n\":{n},\"pad\":\"{filler}\"}}");
                let sig = sign(body.as_bytes());
                let t = Instant::now();
                let ok = client
                    .post(&url)
                    .header("x-signature", sig)
                    .body(body)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if ok {
                    lat.push(t.elapsed().as_micros() as u64);
                }
                n += 1;
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap_or_default());
    }
    let seconds = started.elapsed().as_secs_f64();
    let (cpu, rss) = match (pid, before) {
        (Some(p), Some((c0, _))) => {
            let (c1, r) = proc_usage(p);
            (Some(c1 - c0), Some(r))
        }
        _ => (None, None),
    };
    Figures {
        name: name.into(),
        count: latencies.len() as u64,
        seconds,
        latencies_us: latencies,
        cpu_seconds: cpu,
        peak_rss_mb: rss,
        others: OtherCpu::now().since(others),
    }
}

async fn ingress(
    backend: Backend,
    seconds: u64,
    concurrency: usize,
    baseline: &Figures,
) -> anyhow::Result<()> {
    let db = TestDb::new(backend).await;
    let server = start_hookwarden(&db, &[("HOOKWARDEN_INGRESS_WORKER", "false".into())]).await?;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://127.0.0.1:{}/api/v1/integrations", server.port))
        .header("x-internal-api-key", "bench-key")
        .json(&json!({"name": "bench", "scheme": "hmac-sha256", "secret": SECRET, "signatureHeader": "x-signature",
            "rateLimitPerMinute": 1000000, "targetUrl": "http://127.0.0.1:9/"}))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "integration: {}",
        resp.text().await?
    );
    let url = format!("http://127.0.0.1:{}/api/v1/webhooks/bench", server.port);
    let f = drive_ingress(
        &format!("ingress {backend:?} (verify+dedup+commit)"),
        url,
        seconds,
        concurrency,
        Some(server.child.id()),
        None,
    )
    .await;
    f.print(Some(baseline));
    // The latency target is set at half the rate reached flat out.
    let half = drive_ingress(
        &format!("ingress {backend:?} at half that rate"),
        format!("http://127.0.0.1:{}/api/v1/webhooks/bench", server.port),
        seconds,
        concurrency,
        Some(server.child.id()),
        Some(f.rate() / 2.0),
    )
    .await;
    half.print(None);
    Ok(())
}

fn producer_token() -> String {
    let claims =
        json!({"sub": "bench", "scope": "events:publish", "exp": now_us() / 1_000_000 + 3600});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT.as_bytes()),
    )
    .unwrap_or_default()
}

/// A running hookwarden with one webhook to a local receiver, ready for
/// dispatch runs.
struct Rig {
    backend: Backend,
    db: TestDb,
    server: Server,
    client: reqwest::Client,
    received: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<u64>>>,
    webhook_id: String,
    prefilled: u64,
}

fn tenant_token(account: &str) -> anyhow::Result<String> {
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": account, "account_id": account, "scope": "webhooks:write", "exp": now_us() / 1_000_000 + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(JWT.as_bytes()),
    )?)
}

/// Registers a webhook of `account` to `url`; returns its id.
async fn add_webhook(server: &Server, account: &str, url: &str) -> anyhow::Result<String> {
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

impl Rig {
    async fn start(backend: Backend, extra: &[(&str, String)]) -> anyhow::Result<Self> {
        let db = TestDb::new(backend).await;
        let (rport, received, latencies) = start_baseline(200, Duration::ZERO).await?;
        let mut env = vec![("HOOKWARDEN_POLL_INTERVAL", "50ms".to_string())];
        if let Some(n) = IN_FLIGHT.get() {
            // The budget, all of it usable by one endpoint: capacity, not fairness.
            env.push(("HOOKWARDEN_MAX_IN_FLIGHT", n.clone()));
            env.push(("HOOKWARDEN_MAX_IN_FLIGHT_PER_ENDPOINT", n.clone()));
        }
        env.extend(extra.iter().cloned());
        let server = start_hookwarden(&db, &env).await?;
        let webhook_id =
            add_webhook(&server, "acct_b", &format!("http://127.0.0.1:{rport}/hook")).await?;
        Ok(Self {
            backend,
            db,
            server,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(64)
                .build()?,
            received,
            latencies,
            webhook_id,
            prefilled: 0,
        })
    }

    /// Grows the backlog to `total` pending retries of the rig's webhook,
    /// due in an hour, written straight into the database (10⁶ rows through
    /// the API would take longer than the measurement).
    async fn prefill(&mut self, total: u64) -> anyhow::Result<()> {
        if total <= self.prefilled {
            return Ok(());
        }
        let (from, to) = (self.prefilled + 1, total);
        let (series, now, later, payload) = match self.backend {
            Backend::Postgres => (
                format!("SELECT g AS x FROM generate_series({from}, {to}) g"),
                "now()".to_string(),
                "now() + interval '1 hour'".to_string(),
                "'{}'::jsonb",
            ),
            Backend::Sqlite => {
                let ms = now_us() / 1000;
                (
                    format!("WITH RECURSIVE s(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM s WHERE x < {to}) SELECT x FROM s"),
                    ms.to_string(),
                    (ms + 3_600_000).to_string(),
                    "'{}'",
                )
            }
        };
        let wh = &self.webhook_id;
        let sql = format!(
            "INSERT INTO events (id, account_id, event_type, payload, producer, created_at) \
               SELECT 'evt_backlog_' || x, 'acct_b', 'bench.backlog', {payload}, 'bench', {now} FROM ({series}) q; \
             INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, payload_snapshot, created_at) \
               SELECT 'att_backlog_' || x, 'evt_backlog_' || x, '{wh}', 'acct_b', 2, 'pending', {later}, {payload}, {now} FROM ({series}) q; \
             ANALYZE;"
        );
        let started = Instant::now();
        hookwarden_store::testing::execute_raw(self.backend, &self.db.url, &sql)
            .await
            .map_err(|e| anyhow::anyhow!("prefill: {e}"))?;
        eprintln!(
            "  (backlog grown to {total} pending retries in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
        self.prefilled = total;
        Ok(())
    }

    /// Publishes `events` to `account` (flat out, or at a steady `rate`).
    fn publish(
        &self,
        account: &'static str,
        events: u64,
        rate: Option<u64>,
        concurrency: usize,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let token = producer_token();
        let url = format!("http://127.0.0.1:{}/v1/events", self.server.port);
        let started = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        (0..concurrency)
            .map(|_| {
                let (client, url, token, next) =
                    (self.client.clone(), url.clone(), token.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= events {
                            break;
                        }
                        if let Some(r) = rate {
                            // A steady rate: event n is due at n / r seconds.
                            let due = started + Duration::from_secs_f64(n as f64 / r as f64);
                            tokio::time::sleep_until(due.into()).await;
                        }
                        let body = json!({"accountId": account, "eventType": "bench.event", "payload": {"n": n, "sentUs": now_us()}});
                        let _ = client.post(&url).bearer_auth(&token).json(&body).send().await;
                    }
                })
            })
            .collect()
    }

    /// Publishes `events` to the rig's account through JetStream, flat out,
    /// each publisher waiting for the stream's ack as a producer would.
    fn publish_nats(
        &self,
        js: &async_nats::jetstream::Context,
        subject: &str,
        events: u64,
        concurrency: usize,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let next = Arc::new(AtomicU64::new(0));
        (0..concurrency)
            .map(|_| {
                let (js, subject, next) = (js.clone(), subject.to_owned(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= events {
                            break;
                        }
                        let body = json!({"accountId": "acct_b", "eventType": "bench.event", "payload": {"n": n, "sentUs": now_us()}});
                        if let Ok(ack) = js.publish(subject.clone(), body.to_string().into()).await {
                            let _ = ack.await;
                        }
                    }
                })
            })
            .collect()
    }

    /// One measured run: `events` published to the rig's webhook, until all
    /// are delivered; figures from the receiver and /proc.
    async fn run(
        &self,
        name: String,
        events: u64,
        rate: Option<u64>,
        concurrency: usize,
        alongside: Vec<tokio::task::JoinHandle<()>>,
    ) -> Figures {
        self.run_with(
            name,
            events,
            || self.publish("acct_b", events, rate, concurrency),
            alongside,
        )
        .await
    }

    /// One measured run with the given publishers (HTTP or NATS).
    async fn run_with(
        &self,
        name: String,
        events: u64,
        publishers: impl FnOnce() -> Vec<tokio::task::JoinHandle<()>>,
        alongside: Vec<tokio::task::JoinHandle<()>>,
    ) -> Figures {
        self.latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let start_count = self.received.load(Ordering::Relaxed);
        let (c0, _) = proc_usage(self.server.child.id());
        let others = OtherCpu::now();
        let started = Instant::now();
        for t in publishers() {
            let _ = t.await;
        }
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.received.load(Ordering::Relaxed) < start_count + events
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seconds = started.elapsed().as_secs_f64();
        for t in alongside {
            t.abort();
        }
        let (c1, rss) = proc_usage(self.server.child.id());
        Figures {
            name,
            count: self.received.load(Ordering::Relaxed) - start_count,
            seconds,
            latencies_us: self
                .latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            cpu_seconds: Some(c1 - c0),
            peak_rss_mb: Some(rss),
            others: OtherCpu::now().since(others),
        }
    }
}

async fn dispatch(backend: Backend, events: u64, seconds: u64) -> anyhow::Result<()> {
    dispatch_http(backend, events, seconds).await?;
    dispatch_nats(backend, events).await
}

/// Events published on NATS JetStream (a stream and subject prefix of the
/// run's own, deleted afterwards) → delivered.
async fn dispatch_nats(backend: Backend, events: u64) -> anyhow::Result<()> {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (prefix, stream) = (format!("hwbench_{tag}"), format!("HWBENCH_{tag}"));
    let client = async_nats::connect("127.0.0.1:4222")
        .await
        .context("NATS at 127.0.0.1:4222 (the NATS dispatch run needs it)")?;
    let js = async_nats::jetstream::new(client);
    let rig = Rig::start(
        backend,
        &[
            ("HOOKWARDEN_NATS_URL", "nats://127.0.0.1:4222".into()),
            ("HOOKWARDEN_NATS_SUBJECT_PREFIX", prefix.clone()),
            ("HOOKWARDEN_NATS_STREAM", stream.clone()),
        ],
    )
    .await?;
    let subject = format!("{prefix}.dispatch.bench");
    rig.run_with(
        format!("dispatch {backend:?} via NATS flat out"),
        events,
        || rig.publish_nats(&js, &subject, events, 32),
        vec![],
    )
    .await
    .print(None);
    drop(rig);
    let _ = js.delete_stream(&stream).await;
    Ok(())
}

async fn dispatch_http(backend: Backend, events: u64, seconds: u64) -> anyhow::Result<()> {
    let rig = Rig::start(backend, &[]).await?;
    rig.run(
        format!("dispatch {backend:?} flat out (publish→delivery)"),
        events,
        None,
        32,
        vec![],
    )
    .await
    .print(None);
    rig.run(
        format!("dispatch {backend:?} at 1000/s (publish→delivery)"),
        seconds * 1000,
        Some(1000),
        64,
        vec![],
    )
    .await
    .print(None);
    Ok(())
}

/// Cost per delivery with 10⁴, 10⁵ and 10⁶ pending retries in the database:
/// claims are an index range scan, so it should stay flat.
async fn backlog(backend: Backend, events: u64) -> anyhow::Result<()> {
    let mut rig = Rig::start(backend, &[]).await?;
    let mut first: Option<Figures> = None;
    for total in [10_000u64, 100_000, 1_000_000] {
        rig.prefill(total).await?;
        let f = rig
            .run(
                format!("backlog {backend:?} {total} pending"),
                events,
                None,
                32,
                vec![],
            )
            .await;
        f.print(None);
        match &first {
            None => first = Some(f),
            Some(base) => {
                let per = |f: &Figures| f.cpu_seconds.unwrap_or(0.0) / f.count.max(1) as f64;
                println!(
                    "  vs 10000 pending: {:+.0} % CPU per delivery, {:+.0} % deliveries/s",
                    100.0 * (per(&f) / per(base) - 1.0),
                    100.0 * (f.rate() / base.rate() - 1.0)
                );
            }
        }
    }
    Ok(())
}

/// One endpoint that times out on every request, beside a healthy one: the
/// healthy endpoint's throughput and p99, with and without it.
async fn isolation(backend: Backend, seconds: u64) -> anyhow::Result<()> {
    let rate = 500;
    let rig = Rig::start(backend, &[]).await?;
    let alone = rig
        .run(
            format!("isolation {backend:?} healthy alone at {rate}/s"),
            seconds * rate,
            Some(rate),
            32,
            vec![],
        )
        .await;
    alone.print(None);
    // The same again while another endpoint never answers (5 s timeout).
    let (slow_port, slow_count, _) = start_baseline(200, Duration::from_secs(30)).await?;
    let beside = beside_another(
        &rig,
        format!("isolation {backend:?} beside a timing-out one"),
        &format!("http://127.0.0.1:{slow_port}/slow"),
        seconds,
        rate,
    )
    .await?;
    beside.print(None);
    println!(
        "  healthy endpoint: {:+.0} % deliveries/s, {:+.0} % p99 (timing-out endpoint answered {} times)",
        100.0 * (beside.rate() / alone.rate() - 1.0),
        100.0 * (beside.pct(0.99) / alone.pct(0.99) - 1.0),
        slow_count.load(Ordering::Relaxed)
    );
    drop(rig);
    // Control: the same extra traffic to an endpoint that answers at once,
    // on a fresh instance, tells the cost of the traffic from the cost of
    // the failures.
    let rig = Rig::start(backend, &[]).await?;
    let (ok_port, _, _) = start_baseline(200, Duration::ZERO).await?;
    let control = beside_another(
        &rig,
        format!("isolation {backend:?} beside a healthy one (control)"),
        &format!("http://127.0.0.1:{ok_port}/ok"),
        seconds,
        rate,
    )
    .await?;
    control.print(None);
    println!(
        "  healthy endpoint beside the timing-out one vs beside a healthy one: {:+.0} % deliveries/s, {:+.0} % p99",
        100.0 * (beside.rate() / control.rate() - 1.0),
        100.0 * (beside.pct(0.99) / control.pct(0.99) - 1.0),
    );
    Ok(())
}

/// The healthy endpoint at `rate` while another account's endpoint at
/// `url` gets a tenth of that: enough to keep every slot it may hold busy
/// when each try takes the full 5 s timeout, without the publishing itself
/// competing for the CPU with what is measured.
async fn beside_another(
    rig: &Rig,
    name: String,
    url: &str,
    seconds: u64,
    rate: u64,
) -> anyhow::Result<Figures> {
    add_webhook(&rig.server, "acct_slow", url).await?;
    let noise = rig.publish("acct_slow", seconds * rate / 10, Some(rate / 10), 8);
    Ok(rig.run(name, seconds * rate, Some(rate), 32, noise).await)
}

/// Peak RSS at a steady 1,000 events/s with 10⁵ pending retries.
async fn memory(backend: Backend, seconds: u64) -> anyhow::Result<()> {
    let mut rig = Rig::start(backend, &[]).await?;
    rig.prefill(100_000).await?;
    let f = rig
        .run(
            format!("memory {backend:?} 1000/s, 10^5 pending"),
            seconds * 1000,
            Some(1000),
            64,
            vec![],
        )
        .await;
    f.print(None);
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(String::as_str).unwrap_or("all");
    let flag = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = flag("--seconds", 10);
    let concurrency = flag("--concurrency", 64) as usize;
    let events = flag("--events", 5000);
    let _ = PG_TLS.set(args.iter().any(|a| a == "--pg-tls"));
    if let Some(n) = args
        .iter()
        .position(|a| a == "--in-flight")
        .and_then(|i| args.get(i + 1))
    {
        let _ = IN_FLIGHT.set(n.clone());
    }
    println!(
        "machine: {} cores; hookwarden and the load generator share them",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let only = args
        .iter()
        .position(|a| a == "--backend")
        .and_then(|i| args.get(i + 1))
        .map(String::as_str);
    let backends: Vec<Backend> = [Backend::Sqlite, Backend::Postgres]
        .into_iter()
        .filter(|b| only.is_none_or(|o| format!("{b:?}").eq_ignore_ascii_case(o)))
        .collect();
    if which == "ingress" || which == "all" {
        let (bport, _, _) = start_baseline(202, Duration::ZERO).await?;
        let baseline = drive_ingress(
            "baseline (bare axum, 202)",
            format!("http://127.0.0.1:{bport}/"),
            seconds,
            concurrency,
            None,
            None,
        )
        .await;
        baseline.print(None);
        for &backend in &backends {
            ingress(backend, seconds, concurrency, &baseline).await?;
        }
    }
    if which == "dispatch" || which == "all" {
        for &backend in &backends {
            dispatch(backend, events, seconds).await?;
        }
    }
    if which == "backlog" || which == "all" {
        for &backend in &backends {
            backlog(backend, events).await?;
        }
    }
    if which == "isolation" || which == "all" {
        for &backend in &backends {
            isolation(backend, seconds).await?;
        }
    }
    if which == "memory" || which == "all" {
        for &backend in &backends {
            memory(backend, seconds).await?;
        }
    }
    Ok(())
}
