//! Faults under load, with the real binary and real servers: hookwarden
//! SIGKILLed at random points while it receives and sends, PostgreSQL
//! restarted, NATS restarted. In each, every event hookwarden accepted is
//! delivered afterwards (ids counted and compared), none is ever delivered
//! twice at once, and `/ready` says not-ready while a required dependency is
//! down and ready again, by itself, once it is back.

mod common;

use common::*;
use hookwarden_store::on_both;
use hookwarden_store::testing::{Backend, TestDb};
use rand::Rng;
use serde_json::json;
use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

on_both!(repeated_sigkill_under_load_in_both_directions);

const OPERATOR_KEY: &str = "opk-faults-0123456789";
const ACCOUNT: &str = "acct_faults";

/// Settings that make recovery quick enough for a test.
fn fast_recovery() -> Vec<(&'static str, &'static str)> {
    vec![
        ("HOOKWARDEN_DELIVERY_LEASE", "3s"),
        ("HOOKWARDEN_DELIVERY_TIMEOUT", "1s"),
        (
            "HOOKWARDEN_RETRY_SCHEDULE",
            "300ms,300ms,300ms,300ms,1s,1s,1s,2s",
        ),
        ("HOOKWARDEN_MANAGEMENT_API_KEYS", OPERATOR_KEY),
        ("HOOKWARDEN_API_RATE_LIMIT_PER_MINUTE", "1000000"),
    ]
}

/// Registers the outbound webhook and the inbound integration, both
/// pointing at the tallying receiver.
async fn configure(env: &Env, server: &Server, rport: u16) {
    let client = http_client();
    let (status, body) = post(
        &client,
        server.url("/v1/webhooks"),
        &env.token(Some(ACCOUNT), "webhooks:write webhooks:read"),
        json!({"url": format!("http://127.0.0.1:{rport}/hook"), "eventTypes": ["*"]}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let resp = client
        .post(server.url("/api/v1/integrations"))
        .header("x-internal-api-key", OPERATOR_KEY)
        .json(
            &json!({"name": "acme", "scheme": "token", "secret": "acme-token",
            "signatureHeader": "x-acme-token", "rateLimitPerMinute": 1000000,
            "targetUrl": format!("http://127.0.0.1:{rport}/fwd")}),
        )
        .send()
        .await
        .expect("integration");
    assert_eq!(resp.status(), 201);
}

/// Requests in both directions, one after another on each task, for as long
/// as `running` holds. An id counts as accepted only when hookwarden
/// answered 202 for it; refused or cut requests are simply tried anew.
struct Load {
    running: Arc<AtomicBool>,
    accepted: Arc<Mutex<HashSet<String>>>,
    refused: Arc<Mutex<usize>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(env: &Env, port: u16, tasks: usize) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let accepted: Arc<Mutex<HashSet<String>>> = Arc::default();
        let refused: Arc<Mutex<usize>> = Arc::default();
        let producer = env.token(None, "events:publish");
        let handles = (0..tasks)
            .map(|t| {
                let (running, accepted, refused, producer) = (
                    running.clone(),
                    accepted.clone(),
                    refused.clone(),
                    producer.clone(),
                );
                tokio::spawn(async move {
                    let client = reqwest::Client::builder()
                        .no_proxy()
                        .timeout(Duration::from_secs(3))
                        .build()
                        .expect("client");
                    let mut n = 0u64;
                    while running.load(Ordering::Relaxed) {
                        n += 1;
                        let base = format!("http://127.0.0.1:{port}");
                        let sent = if n.is_multiple_of(2) {
                            client
                                .post(format!("{base}/api/v1/webhooks/acme"))
                                .header("x-acme-token", "acme-token")
                                .header("content-type", "application/json")
                                .body(json!({"task": t, "n": n}).to_string())
                                .send()
                                .await
                        } else {
                            client
                                .post(format!("{base}/v1/events"))
                                .bearer_auth(&producer)
                                .json(&json!({"accountId": ACCOUNT, "eventType": "fault.test", "payload": {"task": t, "n": n}}))
                                .send()
                                .await
                        };
                        let id = match sent {
                            Ok(resp) if resp.status() == 202 => resp
                                .json::<serde_json::Value>()
                                .await
                                .ok()
                                .and_then(|b| b["eventId"].as_str().map(str::to_owned)),
                            _ => None,
                        };
                        match id {
                            Some(id) => {
                                accepted.lock().expect("lock").insert(id);
                            }
                            None => {
                                *refused.lock().expect("lock") += 1;
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                })
            })
            .collect();
        Self {
            running,
            accepted,
            refused,
            tasks: handles,
        }
    }

    fn count(&self) -> usize {
        self.accepted.lock().expect("lock").len()
    }

    /// Waits until `n` more requests are accepted than now.
    async fn accepts_more(&self, n: usize, within: Duration, what: &str) {
        let target = self.count() + n;
        let deadline = Instant::now() + within;
        while self.count() < target {
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {n} more accepted",
                n + self.count() - target
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the load; returns the accepted ids and how many requests were refused.
    async fn stop(self) -> (HashSet<String>, usize) {
        self.running.store(false, Ordering::Relaxed);
        for t in self.tasks {
            let _ = t.await;
        }
        let accepted = self.accepted.lock().expect("lock").clone();
        let refused = *self.refused.lock().expect("lock");
        (accepted, refused)
    }
}

/// Waits until every accepted id has reached the receiver; then checks that
/// none was ever in flight twice at once. Returns how many were repeated.
async fn all_delivered(
    accepted: &HashSet<String>,
    tally: &Arc<Mutex<Tally>>,
    within: Duration,
    logs: impl Fn() -> String,
) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let missing: Vec<String> = {
            let t = tally.lock().expect("lock");
            accepted
                .iter()
                .filter(|id| !t.received.contains_key(*id))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} accepted events never delivered (e.g. {:?}); last logs:\n{}",
            missing.len(),
            accepted.len(),
            &missing[..missing.len().min(5)],
            logs().lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let t = tally.lock().expect("lock");
    assert_eq!(
        t.max_in_flight_one_id, 1,
        "an event was being delivered twice at once: {:?}",
        t.overlaps
    );
    t.received.values().map(|n| n - 1).sum()
}

/// `/ready` on the ops listener: its status and body, or None while unreachable.
async fn ready(env: &Env) -> Option<(u16, serde_json::Value)> {
    let ops = env.var("HOOKWARDEN_OPS_LISTEN").expect("ops listen");
    let resp = http_client()
        .get(format!("http://{ops}/ready"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.json().await.unwrap_or_default()))
}

async fn ready_status(env: &Env) -> Option<u16> {
    ready(env).await.map(|(status, _)| status)
}

/// Polls `/ready` until it answers `want`.
async fn wait_ready_status(env: &Env, want: u16, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let got = ready_status(env).await;
        if got == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/ready answered {got:?}, not {want}, {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn repeated_sigkill_under_load_in_both_directions(backend: Backend) {
    let db = TestDb::new(backend).await;
    let dir = tempdir();
    let env = Env::new(&db, &dir, &fast_recovery());
    let (rport, tally) = tallying_receiver(Duration::from_millis(20)).await;
    let mut server = env.start();
    server.wait_ready().await;
    configure(&env, &server, rport).await;
    let load = Load::start(&env, env.port, 6);
    // Random moments, once some work is accepted and under way.
    // Seeded, and the seed printed, so a failing run can be replayed with
    // HOOKWARDEN_FAULT_SEED=<seed>.
    let seed = fault_seed();
    eprintln!("kill moments seeded with HOOKWARDEN_FAULT_SEED={seed}");
    let moments: Vec<(u64, u64)> = {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..3)
            .map(|_| (rng.gen_range(400..1500), rng.gen_range(0..300)))
            .collect()
    };
    for (round, (kill_after, down_for)) in moments.into_iter().enumerate() {
        let wait = Duration::from_millis(kill_after);
        tokio::time::sleep(wait).await;
        let accepted_before = load.count();
        server.kill9();
        eprintln!(
            "round {round}: SIGKILL after {wait:?}, {accepted_before} accepted so far, {} delivered",
            tally.lock().expect("lock").received.len()
        );
        tokio::time::sleep(Duration::from_millis(down_for)).await;
        server = env.start();
        server.wait_ready().await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (accepted, refused) = load.stop().await;
    assert!(
        accepted.len() > 100,
        "enough load to mean something: {}",
        accepted.len()
    );
    let repeats = all_delivered(&accepted, &tally, Duration::from_secs(90), || server.logs()).await;
    eprintln!(
        "{backend:?}: {} accepted ({refused} refused while down), all delivered, {repeats} repeated after kills",
        accepted.len()
    );
    server.terminate();
}

/// A PostgreSQL server of the test's own (initdb in a temporary directory, a
/// free port), so it can be restarted without disturbing other tests.
struct PrivatePostgres {
    dir: std::path::PathBuf,
    port: u16,
}

fn pg_bin(name: &str) -> std::path::PathBuf {
    let root = std::path::Path::new("/usr/lib/postgresql");
    let version = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("PostgreSQL server binaries are needed in {root:?}: {e}"))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("bin").join(name).exists())
        .max()
        .unwrap_or_else(|| panic!("no {name} under {root:?}"));
    version.join("bin").join(name)
}

/// PostgreSQL refuses to run as root: run its tools as `postgres` then.
fn as_postgres(program: &std::path::Path) -> Command {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl PrivatePostgres {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("hw_pg_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let _ = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status();
        let out = as_postgres(&pg_bin("initdb"))
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(dir.join("data"))
            .output()
            .expect("initdb");
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pg = Self {
            dir,
            port: free_port(),
        };
        pg.ctl(&["start"]);
        pg
    }

    fn ctl(&self, action: &[&str]) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let out = as_postgres(&pg_bin("pg_ctl"))
            .args(action)
            .args(["-w", "-t", "30", "-D"])
            .arg(self.dir.join("data"))
            .args(["-l"])
            .arg(self.dir.join("log"))
            .args(["-o", &opts])
            .output()
            .expect("pg_ctl");
        assert!(
            out.status.success(),
            "pg_ctl {action:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops at once, as a crash would (recovery replays the WAL at start).
    fn stop_immediately(&self) {
        let out = as_postgres(&pg_bin("pg_ctl"))
            .args(["stop", "-m", "immediate", "-w", "-D"])
            .arg(self.dir.join("data"))
            .output()
            .expect("pg_ctl stop");
        assert!(out.status.success(), "pg_ctl stop");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&pg_bin("pg_ctl"))
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_load() {
    let pg = PrivatePostgres::start();
    let dir = tempdir();
    let env = Env::with_database(&pg.url(), &dir, &fast_recovery());
    let (rport, tally) = tallying_receiver(Duration::from_millis(10)).await;
    let mut server = env.start();
    server.wait_ready().await;
    configure(&env, &server, rport).await;
    wait_ready_status(&env, 200, Duration::from_secs(10), "before the outage").await;
    let load = Load::start(&env, env.port, 4);
    load.accepts_more(100, Duration::from_secs(30), "before the outage")
        .await;
    pg.stop_immediately();
    let at_stop = load.count();
    wait_ready_status(&env, 503, Duration::from_secs(10), "with PostgreSQL down").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = load.count() - at_stop;
    pg.ctl(&["start"]);
    wait_ready_status(
        &env,
        200,
        Duration::from_secs(30),
        "after PostgreSQL came back",
    )
    .await;
    // Accepting again, by itself.
    load.accepts_more(100, Duration::from_secs(30), "after the restart")
        .await;
    let (accepted, refused) = load.stop().await;
    let repeats = all_delivered(&accepted, &tally, Duration::from_secs(90), || server.logs()).await;
    eprintln!(
        "PostgreSQL restart: {} accepted ({during} answered while it stopped, {refused} refused), all delivered, {repeats} repeated",
        accepted.len()
    );
    server.terminate();
}

/// A NATS server of the test's own, with JetStream on disk, restartable.
struct PrivateNats {
    dir: std::path::PathBuf,
    port: u16,
    child: Option<std::process::Child>,
}

impl PrivateNats {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("hw_nats_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut n = Self {
            dir,
            port: free_port(),
            child: None,
        };
        n.run();
        n
    }

    fn binary() -> String {
        std::env::var("HOOKWARDEN_TEST_NATS_SERVER").unwrap_or_else(|_| {
            ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
                .into_iter()
                .find(|p| std::path::Path::new(p).exists())
                .unwrap_or("nats-server")
                .to_owned()
        })
    }

    fn run(&mut self) {
        let child = Command::new(Self::binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("nats-server is needed ({}): {e}", Self::binary()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restarted_under_load() {
    let mut nats = PrivateNats::start();
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempdir();
    let nats_url = nats.url();
    let mut vars = fast_recovery();
    vars.extend([
        ("HOOKWARDEN_NATS_URL", nats_url.as_str()),
        ("HOOKWARDEN_NATS_SUBJECT_PREFIX", "hwf.webhook"),
        ("HOOKWARDEN_NATS_STREAM", "HWF_WEBHOOK"),
        ("HOOKWARDEN_NATS_ACK_WAIT", "3s"),
    ]);
    let env = Env::new(&db, &dir, &vars);
    let (rport, tally) = tallying_receiver(Duration::from_millis(10)).await;
    let mut server = env.start();
    server.wait_ready().await;
    configure(&env, &server, rport).await;
    wait_ready_status(&env, 200, Duration::from_secs(10), "before the outage").await;

    // Producers on NATS too: an id is accepted once JetStream acknowledged it.
    let nats_accepted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let running = Arc::new(AtomicBool::new(true));
    let publisher = {
        let (url, accepted, running) = (nats_url.clone(), nats_accepted.clone(), running.clone());
        tokio::spawn(async move {
            let client = async_nats::ConnectOptions::new()
                .retry_on_initial_connect()
                .connect(url)
                .await
                .expect("connect");
            let js = async_nats::jetstream::new(client);
            let mut n = 0;
            while running.load(Ordering::Relaxed) {
                n += 1;
                let id = format!("evt_nats_{n}");
                let msg = json!({"accountId": ACCOUNT, "eventType": "fault.nats", "payload": {"n": n, "ref": id}, "id": id});
                let ack = match js
                    .publish("hwf.webhook.dispatch", msg.to_string().into())
                    .await
                {
                    Ok(f) => tokio::time::timeout(Duration::from_secs(2), f).await,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if let Ok(Ok(_)) = ack {
                    accepted.lock().expect("lock").insert(id);
                } else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        })
    };
    let load = Load::start(&env, env.port, 2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while nats_accepted.lock().expect("lock").len() < 100 {
        assert!(Instant::now() < deadline, "no NATS publish accepted");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nats.kill();
    wait_ready_status(&env, 503, Duration::from_secs(10), "with NATS down").await;
    // HTTP keeps accepting while NATS is down: the database is the source of truth.
    load.accepts_more(20, Duration::from_secs(10), "HTTP without NATS")
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    nats.run();
    wait_ready_status(&env, 200, Duration::from_secs(30), "after NATS came back").await;
    let after = nats_accepted.lock().expect("lock").len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while nats_accepted.lock().expect("lock").len() < after + 100 {
        assert!(
            Instant::now() < deadline,
            "no NATS publish accepted after the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running.store(false, Ordering::Relaxed);
    let _ = publisher.await;
    let (mut accepted, _) = load.stop().await;
    let from_nats = nats_accepted.lock().expect("lock").clone();
    let n_nats = from_nats.len();
    accepted.extend(from_nats);
    let repeats = all_delivered(&accepted, &tally, Duration::from_secs(90), || server.logs()).await;
    eprintln!(
        "NATS restart: {} accepted ({n_nats} over NATS), all delivered, {repeats} repeated",
        accepted.len()
    );
    server.terminate();
}

/// A TCP proxy to the real Redis that the test can cut and restore on the
/// same address, like a network outage.
struct CuttableProxy {
    addr: std::net::SocketAddr,
    upstream: String,
    accept: Option<tokio::task::JoinHandle<()>>,
    links: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableProxy {
    async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let mut p = Self {
            addr: listener.local_addr().expect("addr"),
            upstream: upstream.to_owned(),
            accept: None,
            links: Arc::default(),
        };
        p.serve(listener);
        p
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let (upstream, links) = (self.upstream.clone(), self.links.clone());
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                links.lock().expect("lock").push(tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                }));
            }
        }));
    }

    /// Closes the listener and every proxied connection.
    fn cut(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        for l in self.links.lock().expect("lock").drain(..) {
            l.abort();
        }
    }

    async fn restore(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match tokio::net::TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    assert!(Instant::now() < deadline, "rebind {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        self.serve(listener);
    }
}

async fn ready_body(env: &Env) -> serde_json::Value {
    ready(env).await.expect("ready").1
}

/// Redis is an accelerator (dedup markers, locks, shared limits), not the
/// source of truth: while it is unreachable hookwarden stays ready and says
/// Redis is degraded, keeps accepting on the database alone, loses nothing,
/// and goes back to using Redis once it answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_under_load() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempdir();
    let redis_url = std::env::var("HOOKWARDEN_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut proxy = CuttableProxy::start(
        redis_url
            .trim_start_matches("redis://")
            .trim_end_matches('/'),
    )
    .await;
    let prefix = format!("hwfault:{}:", uuid::Uuid::new_v4().simple());
    let _cleanup = SharedBackends {
        nats_url: String::new(),
        stream: String::new(),
        redis_url: redis_url.clone(),
        redis_prefix: prefix.clone(),
    };
    let proxied = format!("redis://{}", proxy.addr);
    let mut vars = fast_recovery();
    vars.extend([
        ("HOOKWARDEN_REDIS_URL", proxied.as_str()),
        ("HOOKWARDEN_REDIS_PREFIX", prefix.as_str()),
    ]);
    let env = Env::new(&db, &dir, &vars);
    let (rport, tally) = tallying_receiver(Duration::from_millis(10)).await;
    let mut server = env.start();
    server.wait_ready().await;
    configure(&env, &server, rport).await;
    assert_eq!(ready_body(&env).await["checks"]["redis"], "ok");
    let load = Load::start(&env, env.port, 4);
    load.accepts_more(100, Duration::from_secs(30), "before the outage")
        .await;
    proxy.cut();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = ready_body(&env).await;
        if ready["checks"]["redis"] == "degraded" {
            assert_eq!(ready["status"], "ready", "Redis is not required: {ready}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis outage not reported: {ready}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_cut = load.count();
    load.accepts_more(100, Duration::from_secs(20), "without Redis")
        .await;
    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while ready_body(&env).await["checks"]["redis"] != "ok" {
        assert!(Instant::now() < deadline, "Redis use not resumed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_restore = load.count();
    load.accepts_more(100, Duration::from_secs(20), "after Redis came back")
        .await;
    let (accepted, refused) = load.stop().await;
    let repeats = all_delivered(&accepted, &tally, Duration::from_secs(90), || server.logs()).await;
    eprintln!(
        "Redis outage: {} accepted ({} while it was cut, {refused} refused), all delivered, {repeats} repeated",
        accepted.len(),
        at_restore - at_cut
    );
    server.terminate();
}

/// Redis configured but unreachable when `serve` starts (it used to exit):
/// hookwarden starts ready and degraded, accepts on the database alone, and
/// uses Redis once it answers, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_at_start_up() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dir = tempdir();
    let redis_url = std::env::var("HOOKWARDEN_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut proxy = CuttableProxy::start(
        redis_url
            .trim_start_matches("redis://")
            .trim_end_matches('/'),
    )
    .await;
    proxy.cut();
    let prefix = format!("hwfault:{}:", uuid::Uuid::new_v4().simple());
    let _cleanup = SharedBackends {
        nats_url: String::new(),
        stream: String::new(),
        redis_url: redis_url.clone(),
        redis_prefix: prefix.clone(),
    };
    let proxied = format!("redis://{}", proxy.addr);
    let mut vars = fast_recovery();
    vars.extend([
        ("HOOKWARDEN_REDIS_URL", proxied.as_str()),
        ("HOOKWARDEN_REDIS_PREFIX", prefix.as_str()),
    ]);
    let env = Env::new(&db, &dir, &vars);
    let (rport, tally) = tallying_receiver(Duration::from_millis(10)).await;
    let mut server = env.start();
    server.wait_ready().await;
    let (status, body) = ready(&env).await.expect("ready");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["redis"], "degraded", "{body}");
    configure(&env, &server, rport).await;
    let load = Load::start(&env, env.port, 2);
    load.accepts_more(50, Duration::from_secs(30), "without Redis")
        .await;
    proxy.restore().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = ready(&env).await.expect("ready");
        assert_eq!(status, 200, "{body}");
        if body["checks"]["redis"] == "ok" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Redis not used once reachable: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    load.accepts_more(50, Duration::from_secs(30), "with Redis")
        .await;
    let (accepted, _) = load.stop().await;
    all_delivered(&accepted, &tally, Duration::from_secs(60), || server.logs()).await;
    assert!(
        server.child.try_wait().expect("status").is_none(),
        "hookwarden is still running"
    );
    server.terminate();
}

/// Receivers that misbehave on purpose, one behaviour per path.
async fn hostile_receiver() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Read the request head and whatever body it declares.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    // A TLS ClientHello: answer in plain HTTP, so the handshake fails.
                    if buf[0] == 0x16 {
                        let _ = sock
                            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                            .await;
                        return;
                    }
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .and_then(|v| v.trim().parse().ok())
                    })
                    .unwrap_or(0);
                while buf.len() < head_end + length {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                match path.as_str() {
                    // Headers one byte at a time, never finished.
                    "/slowloris" => {
                        let _ = sock.write_all(b"HTTP/1.1 200 OK\r\n").await;
                        loop {
                            if sock.write_all(b"X").await.is_err() {
                                return;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    // A chunked error body that never ends. (A 2xx with an
                    // endless body is a success: only the status and a 2 KiB
                    // preview are ever read.)
                    "/endless" => {
                        let _ = sock
                            .write_all(b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n")
                            .await;
                        let data = format!("4000\r\n{}\r\n", "y".repeat(0x4000));
                        while sock.write_all(data.as_bytes()).await.is_ok() {}
                    }
                    // 10 MB, declared.
                    "/huge" => {
                        let size = 10 * 1024 * 1024;
                        let _ = sock
                            .write_all(
                                format!("HTTP/1.1 500 Internal Server Error\r\ncontent-length: {size}\r\n\r\n")
                                    .as_bytes(),
                            )
                            .await;
                        let block = vec![b'z'; 64 * 1024];
                        for _ in 0..size / block.len() {
                            if sock.write_all(&block).await.is_err() {
                                return;
                            }
                        }
                    }
                    // Half a status line, then a TCP reset.
                    "/reset" => {
                        let _ = sock.write_all(b"HTTP/1.1 20").await;
                        // Closing with a zero linger sends RST, not FIN.
                        let _ = sock.set_zero_linger();
                        drop(sock);
                    }
                    // Redirects to itself, forever. It closes the connection
                    // after answering, so it says so: a client reusing a
                    // connection closed unannounced fails the next try
                    // with a "connection closed" of its own (a race of
                    // the receiver's making, not the redirect under test).
                    "/loop" => {
                        let _ = sock
                            .write_all(format!("HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{port}/loop\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").as_bytes())
                            .await;
                    }
                    _ => {
                        let _ = sock
                            .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    port
}

/// Peak resident memory of a process, from /proc (Linux).
fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// Slow-loris answers, never-ending bodies, 10 MB bodies, resets, redirect
/// loops and TLS errors: each is one failed try with a reason, and memory
/// stays bounded while many are in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_receivers_are_failed_tries_in_bounded_memory() {
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempdir();
    let env = Env::new(
        &db,
        &dir,
        &[
            ("HOOKWARDEN_DELIVERY_TIMEOUT", "1s"),
            ("HOOKWARDEN_DELIVERY_LEASE", "5s"),
            ("HOOKWARDEN_RETRY_SCHEDULE", "1h"),
            ("HOOKWARDEN_MAX_IN_FLIGHT", "24"),
            ("HOOKWARDEN_MAX_IN_FLIGHT_PER_ENDPOINT", "4"),
        ],
    );
    let port = hostile_receiver().await;
    let mut server = env.start();
    server.wait_ready().await;
    let client = http_client();
    let tenant = env.token(Some(ACCOUNT), "webhooks:write webhooks:read");
    let mut hooks = Vec::new();
    for (name, url) in [
        ("slowloris", format!("http://127.0.0.1:{port}/slowloris")),
        ("endless", format!("http://127.0.0.1:{port}/endless")),
        ("huge", format!("http://127.0.0.1:{port}/huge")),
        ("reset", format!("http://127.0.0.1:{port}/reset")),
        ("loop", format!("http://127.0.0.1:{port}/loop")),
        ("tls", format!("https://127.0.0.1:{port}/tls")),
    ] {
        let (status, body) = post(
            &client,
            server.url("/v1/webhooks"),
            &tenant,
            json!({"url": url, "eventTypes": ["*"]}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        hooks.push((name, body["id"].as_str().expect("id").to_owned()));
    }
    let producer = env.token(None, "events:publish");
    let events = 20;
    for n in 0..events {
        let (status, body) = post(
            &client,
            server.url("/v1/events"),
            &producer,
            json!({"accountId": ACCOUNT, "eventType": "t", "payload": {"n": n}}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    for (name, id) in &hooks {
        loop {
            let resp = client
                .get(server.url(&format!("/v1/webhooks/{id}/deliveries?limit=100")))
                .bearer_auth(&tenant)
                .send()
                .await
                .expect("list");
            let body: serde_json::Value = resp.json().await.expect("json");
            let items = body["items"].as_array().cloned().unwrap_or_default();
            let failed: Vec<&serde_json::Value> =
                items.iter().filter(|i| i["status"] == "failed").collect();
            if failed.len() == events {
                assert!(
                    items.iter().all(|i| i["status"] != "succeeded"),
                    "{name}: nothing succeeded"
                );
                let sample = failed[0];
                match *name {
                    "huge" | "endless" => assert_eq!(sample["httpStatus"], 500, "{sample}"),
                    "loop" => assert_eq!(sample["httpStatus"], 302, "{sample}"),
                    "tls" => assert!(
                        sample["error"]
                            .as_str()
                            .is_some_and(|e| e.starts_with("TLS handshake failed")),
                        "{sample}"
                    ),
                    _ => assert!(
                        sample["error"].as_str().is_some_and(|e| !e.is_empty()),
                        "{name}: a reason is recorded: {sample}"
                    ),
                }
                if let Some(p) = sample["responsePreview"].as_str() {
                    assert!(p.chars().count() <= 512, "{name}: preview bounded");
                }
                eprintln!(
                    "{name}: {} failed tries, e.g. {} {}",
                    failed.len(),
                    sample["httpStatus"],
                    sample["error"]
                );
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{name}: {} of {events} failed tries recorded ({} tries in all)",
                failed.len(),
                items.len()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let peak = peak_rss_mb(server.child.id());
    eprintln!("peak RSS while serving hostile receivers: {peak:.1} MB");
    assert!(peak < 150.0, "memory bounded: peak RSS {peak:.1} MB");
    server.terminate();
}

/// The seed of the random kill moments: `HOOKWARDEN_FAULT_SEED` when set (to
/// replay a failure), else a fresh one.
fn fault_seed() -> u64 {
    match std::env::var("HOOKWARDEN_FAULT_SEED") {
        Ok(v) => v
            .trim()
            .parse()
            .expect("HOOKWARDEN_FAULT_SEED must be an unsigned integer"),
        Err(_) => rand::random(),
    }
}
