//! The rig the delivery scenarios share: a running hookwarden with one
//! webhook to a local receiver, events published to it (over HTTP or NATS
//! JetStream), a backlog written straight into its database, and one
//! measured run until every event is delivered.

use crate::receiver::{now_us, start_baseline, Arrivals};
use crate::report::{embedded_db_cpu, proc_usage, Figures, OtherCpu};
use crate::server::{add_webhook, producer_token, start_hookwarden, Server};
use hookwarden_store::testing::{Backend, TestDb};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `--in-flight N`, when given.
pub(crate) static IN_FLIGHT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// `--unmigrated`: start the server on an empty database, which it migrates
/// itself, so that an older binary (whose migrations are fewer than this
/// bench's template holds, and which refuses a schema newer than itself)
/// can be measured beside today's.
pub(crate) static UNMIGRATED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// A running hookwarden with one webhook to a local receiver, ready for
/// dispatch runs.
pub(crate) struct Rig {
    backend: Backend,
    db: TestDb,
    pub(crate) server: Server,
    client: reqwest::Client,
    received: Arc<AtomicU64>,
    arrivals: Arrivals,
    receiver_port: u16,
    /// The account `run` publishes to, and its webhook.
    account: String,
    webhook_id: String,
    prefilled: u64,
    /// Publish bodies padded to this many bytes (0: as they come).
    pub(crate) body_bytes: usize,
}

impl Rig {
    pub(crate) async fn start(backend: Backend, extra: &[(&str, String)]) -> anyhow::Result<Self> {
        let db = if UNMIGRATED.get().copied().unwrap_or(false) {
            TestDb::empty(backend).await
        } else {
            TestDb::new(backend).await
        };
        let (rport, received, arrivals) = start_baseline(200, Duration::ZERO).await?;
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
            arrivals,
            receiver_port: rport,
            account: "acct_b".into(),
            webhook_id,
            prefilled: 0,
            body_bytes: 0,
        })
    }

    /// Points `run` at a new account with one webhook of its own, as each
    /// scenario of a sustained run gets (same database, same receiver).
    pub(crate) async fn fresh_endpoint(&mut self, account: &str) -> anyhow::Result<()> {
        let url = format!("http://127.0.0.1:{}/hook", self.receiver_port);
        self.webhook_id = add_webhook(&self.server, account, &url).await?;
        self.account = account.to_owned();
        Ok(())
    }

    /// The database's URL, and the account and webhook `run` publishes to:
    /// where the history scenario writes its rows.
    pub(crate) fn history_target(&self) -> (String, String, String) {
        (
            self.db.url.clone(),
            self.account.clone(),
            self.webhook_id.clone(),
        )
    }

    /// Times the first page of each list over the rig's endpoint, read
    /// one after another as a user pages them (30 reads each); prints each
    /// list's p50, p99 and max, and answers the p50s in the order printed.
    pub(crate) async fn time_lists(&self, webhook: &str) -> anyhow::Result<Vec<Duration>> {
        let base = format!("http://127.0.0.1:{}", self.server.port);
        let tenant = crate::server::tenant_token(&self.account)?;
        let lists = [
            (
                "tenant deliveries",
                format!("/v1/webhooks/{webhook}/deliveries?limit=50"),
                true,
            ),
            (
                "tenant dead letters",
                format!("/v1/webhooks/{webhook}/deliveries?status=dead&limit=50"),
                true,
            ),
            (
                "operator deliveries",
                "/api/v1/outbound/deliveries?limit=50".to_string(),
                false,
            ),
            (
                "operator dead letters",
                "/api/v1/outbound/deliveries?status=dead&limit=50".to_string(),
                false,
            ),
            (
                "operator events",
                format!(
                    "/api/v1/outbound/events?accountId={}&limit=50",
                    self.account
                ),
                false,
            ),
        ];
        let mut p50s = Vec::new();
        for (name, path, as_tenant) in lists {
            let mut took = Vec::with_capacity(30);
            for _ in 0..30 {
                let req = self.client.get(format!("{base}{path}"));
                let req = if as_tenant {
                    req.bearer_auth(&tenant)
                } else {
                    req.header("x-internal-api-key", "bench-key")
                };
                let started = Instant::now();
                let resp = req.send().await?;
                let status = resp.status();
                let _ = resp.bytes().await?;
                took.push(started.elapsed());
                anyhow::ensure!(status.is_success(), "{name}: {status}");
            }
            took.sort();
            let at = |p: f64| took[((took.len() - 1) as f64 * p).round() as usize];
            println!(
                "  {name:<22} p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms",
                at(0.5).as_secs_f64() * 1e3,
                at(0.99).as_secs_f64() * 1e3,
                took[took.len() - 1].as_secs_f64() * 1e3
            );
            p50s.push(at(0.5));
        }
        Ok(p50s)
    }

    /// Grows the backlog to `total` pending retries of the rig's webhook,
    /// due in an hour, written straight into the database (10⁶ rows through
    /// the API would take longer than the measurement).
    pub(crate) async fn prefill(&mut self, total: u64) -> anyhow::Result<()> {
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

    /// Publishes `events` to `account` (flat out, or at a steady `rate`);
    /// each publisher answers how long its producer waited for each answer.
    pub(crate) fn publish(
        &self,
        account: &str,
        events: u64,
        rate: Option<u64>,
        concurrency: usize,
    ) -> Vec<tokio::task::JoinHandle<Answered>> {
        let token = producer_token();
        let url = format!("http://127.0.0.1:{}/v1/events", self.server.port);
        let started = Instant::now();
        let next = Arc::new(AtomicU64::new(0));
        let body_bytes = self.body_bytes;
        (0..concurrency)
            .map(|_| {
                let (client, url, token, next, account) = (
                    self.client.clone(),
                    url.clone(),
                    token.clone(),
                    next.clone(),
                    account.to_owned(),
                );
                tokio::spawn(async move {
                    let mut answered = Answered::default();
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
                        let body = publish_body(&account, n, body_bytes);
                        let sent = Instant::now();
                        let answer = client
                            .post(&url)
                            .bearer_auth(&token)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await;
                        let ok = answer.is_ok_and(|a| a.status().is_success());
                        answered.note(sent, ok);
                    }
                    answered
                })
            })
            .collect()
    }

    /// Publishes `events` to the rig's account through JetStream, flat out,
    /// each publisher waiting for the stream's ack as a producer would.
    pub(crate) fn publish_nats(
        &self,
        js: &async_nats::jetstream::Context,
        subject: &str,
        events: u64,
        concurrency: usize,
    ) -> Vec<tokio::task::JoinHandle<Answered>> {
        let next = Arc::new(AtomicU64::new(0));
        (0..concurrency)
            .map(|_| {
                let (js, subject, next) = (js.clone(), subject.to_owned(), next.clone());
                tokio::spawn(async move {
                    let mut answered = Answered::default();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= events {
                            break;
                        }
                        let body = json!({"accountId": "acct_b", "eventType": "bench.event", "payload": {"n": n, "sentUs": now_us()}});
                        let sent = Instant::now();
                        let ok = match js.publish(subject.clone(), body.to_string().into()).await {
                            Ok(ack) => ack.await.is_ok(),
                            Err(_) => false,
                        };
                        answered.note(sent, ok);
                    }
                    answered
                })
            })
            .collect()
    }

    /// One measured run: `events` published to the rig's webhook, until all
    /// are delivered; figures from the receiver and /proc.
    pub(crate) async fn run(
        &self,
        name: String,
        events: u64,
        rate: Option<u64>,
        concurrency: usize,
        alongside: Vec<tokio::task::JoinHandle<Answered>>,
    ) -> Figures {
        self.run_with(
            name,
            events,
            || self.publish(&self.account, events, rate, concurrency),
            alongside,
        )
        .await
    }

    /// One measured run with the given publishers (HTTP or NATS).
    pub(crate) async fn run_with(
        &self,
        name: String,
        events: u64,
        publishers: impl FnOnce() -> Vec<tokio::task::JoinHandle<Answered>>,
        alongside: Vec<tokio::task::JoinHandle<Answered>>,
    ) -> Figures {
        self.arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let start_count = self.received.load(Ordering::Relaxed);
        let (c0, _) = proc_usage(self.server.child.id());
        let db0 = embedded_db_cpu(self.server.child.id());
        let others = OtherCpu::now();
        let started = Instant::now();
        let started_us = now_us();
        let mut answered = Answered::default();
        for t in publishers() {
            if let Ok(a) = t.await {
                answered.add(a);
            }
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
        let db1 = embedded_db_cpu(self.server.child.id());
        let arrivals = self
            .arrivals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut timeline = vec![0u64; seconds.ceil() as usize];
        let mut slowest = vec![0u64; timeline.len()];
        for (at, latency) in &arrivals {
            let second = (at.saturating_sub(started_us) / 1_000_000) as usize;
            if let Some(n) = timeline.get_mut(second) {
                *n += 1;
                slowest[second] = slowest[second].max(*latency);
            }
        }
        Figures {
            name,
            count: self.received.load(Ordering::Relaxed) - start_count,
            seconds,
            latencies_us: arrivals.into_iter().map(|(_, l)| l).collect(),
            cpu_seconds: Some(c1 - c0),
            embedded_db_cpu: Some(db1 - db0),
            peak_rss_mb: Some(rss),
            timeline,
            slowest_us: slowest,
            answers_us: answered.latencies_us,
            unanswered: answered.failed,
            others: OtherCpu::now().since(others),
        }
    }
}

/// What one publisher's producer saw: how long each accepted publish took
/// to answer (the wait a batch's linger adds shows here, apart from
/// delivery), and how many were refused or failed.
#[derive(Default)]
pub(crate) struct Answered {
    latencies_us: Vec<u64>,
    failed: u64,
}

impl Answered {
    fn note(&mut self, sent: Instant, ok: bool) {
        if ok {
            self.latencies_us.push(sent.elapsed().as_micros() as u64);
        } else {
            self.failed += 1;
        }
    }

    fn add(&mut self, other: Answered) {
        self.latencies_us.extend(other.latencies_us);
        self.failed += other.failed;
    }
}

/// The JSON body publishing event `n` to `account`, stamped with its publish
/// time and padded to `bytes` (when larger) as a real producer's would be.
fn publish_body(account: &str, n: u64, bytes: usize) -> String {
    let mut payload = json!({"n": n, "sentUs": now_us()});
    let bare = json!({"accountId": account, "eventType": "bench.event", "payload": payload})
        .to_string()
        .len();
    // `,"pad":""` is 9 bytes; the padding fills the rest.
    if bytes > bare + 9 {
        payload["pad"] = "x".repeat(bytes - bare - 9).into();
    }
    json!({"accountId": account, "eventType": "bench.event", "payload": payload}).to_string()
}
