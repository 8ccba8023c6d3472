//! `hookwarden-bench`: starts the release `hookwarden` binary as its own
//! process (so its CPU time and peak RSS can be read from /proc) against
//! SQLite or PostgreSQL, drives it from a load generator on loopback, and
//! prints throughput, latency percentiles, CPU seconds per 1,000 events and
//! peak RSS — beside a bare server on the same framework, in the same run.
//!
//! Usage: `hookwarden-bench [ingress|dispatch|all] [--seconds N] [--concurrency N]`
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

struct Figures {
    name: String,
    count: u64,
    seconds: f64,
    latencies_us: Vec<u64>,
    cpu_seconds: Option<f64>,
    peak_rss_mb: Option<f64>,
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
        println!(
            "{:<34} {:>9.0}/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  {cpu}  {rss}  {ratio}",
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
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .env("HOOKWARDEN_DATABASE_URL", &db.url)
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

/// A bare server on the same framework: no verification, no storage.
async fn start_baseline(
    status: u16,
) -> anyhow::Result<(u16, Arc<AtomicU64>, Arc<Mutex<Vec<u64>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let count = Arc::new(AtomicU64::new(0));
    let lat = Arc::new(Mutex::new(Vec::new()));
    let (c, l) = (count.clone(), lat.clone());
    let app = axum::Router::new().fallback(move |body: axum::body::Bytes| {
        let (c, l) = (c.clone(), l.clone());
        async move {
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
) -> Figures {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap_or_default();
    let before = pid.map(proc_usage);
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
    )
    .await;
    f.print(Some(baseline));
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

async fn dispatch(
    backend: Backend,
    events: u64,
    rate: Option<u64>,
    concurrency: usize,
) -> anyhow::Result<()> {
    let db = TestDb::new(backend).await;
    let (rport, received, latencies) = start_baseline(200).await?;
    let server = start_hookwarden(&db, &[("HOOKWARDEN_POLL_INTERVAL", "50ms".into())]).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let tenant = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": "acct_b", "account_id": "acct_b", "scope": "webhooks:write", "exp": now_us() / 1_000_000 + 3600}),
        &jsonwebtoken::EncodingKey::from_secret(JWT.as_bytes()),
    )?;
    let resp = client
        .post(format!("http://127.0.0.1:{}/v1/webhooks", server.port))
        .bearer_auth(tenant)
        .json(&json!({"url": format!("http://127.0.0.1:{rport}/hook"), "eventTypes": ["*"]}))
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_success(),
        "webhook: {}",
        resp.text().await?
    );
    let token = producer_token();
    let url = format!("http://127.0.0.1:{}/v1/events", server.port);
    let (c0, _) = proc_usage(server.child.id());
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, token, next) = (client.clone(), url.clone(), token.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
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
                let body = json!({"accountId": "acct_b", "eventType": "bench.event", "payload": {"n": n, "sentUs": now_us()}});
                let _ = client.post(&url).bearer_auth(&token).json(&body).send().await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while received.load(Ordering::Relaxed) < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let (c1, rss) = proc_usage(server.child.id());
    let lat = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let name = match rate {
        Some(r) => format!("dispatch {backend:?} at {r}/s (publish→delivery)"),
        None => format!("dispatch {backend:?} flat out (publish→delivery)"),
    };
    Figures {
        name,
        count: received.load(Ordering::Relaxed),
        seconds,
        latencies_us: lat,
        cpu_seconds: Some(c1 - c0),
        peak_rss_mb: Some(rss),
    }
    .print(None);
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
    println!(
        "machine: {} cores; hookwarden and the load generator share them",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    if which == "ingress" || which == "all" {
        let (bport, _, _) = start_baseline(202).await?;
        let baseline = drive_ingress(
            "baseline (bare axum, 202)",
            format!("http://127.0.0.1:{bport}/"),
            seconds,
            concurrency,
            None,
        )
        .await;
        baseline.print(None);
        for backend in [Backend::Sqlite, Backend::Postgres] {
            ingress(backend, seconds, concurrency, &baseline).await?;
        }
    }
    if which == "dispatch" || which == "all" {
        for backend in [Backend::Sqlite, Backend::Postgres] {
            dispatch(backend, events, None, 32).await?;
            dispatch(backend, seconds * 1000, Some(1000), 64).await?;
        }
    }
    Ok(())
}
