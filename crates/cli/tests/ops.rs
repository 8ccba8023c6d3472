//! `hookwarden ops` as an operator runs it: real `ops` processes against a
//! real `hookwarden serve`, in table and JSON form, with the failures an
//! operator meets (a wrong key, a wrong URL, an unknown id), and the key
//! never printed.

mod common;

use common::*;
use hookwarden_store::testing::TestDb;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The operator key the server under test accepts.
const KEY: &str = "ops-cli-test-operator-key-7f3a9c2e51d84b06";

/// A running instance with its database and data directory.
struct Instance {
    server: Server,
    env: Env,
    _dir: TempDir,
    _db: TestDb,
}

async fn instance(extra: &[(&str, &str)]) -> Instance {
    // The CLI is a client: one backend is enough (the server's own suites cover both).
    let db = TestDb::sqlite();
    let dir = tempdir();
    let mut vars = vec![("HOOKWARDEN_MANAGEMENT_API_KEYS", KEY)];
    vars.extend_from_slice(extra);
    let env = Env::new(&db, &dir, &vars);
    let mut server = env.start();
    server.wait_ready().await;
    Instance {
        server,
        env,
        _dir: dir,
        _db: db,
    }
}

/// What one `hookwarden ops` run printed and how it exited.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    fn failed(&self) -> &str {
        assert_ne!(self.code, 0, "stdout: {}", self.stdout);
        &self.stderr
    }
}

/// Runs `hookwarden ops --url URL ARGS…` with `key` in HOOKWARDEN_OPERATOR_KEY
/// (none when `None`), and checks that the key is printed nowhere.
async fn ops_with(url: &str, key: Option<&str>, args: &[&str]) -> Run {
    ops_env(url, key, &[], args).await
}

/// The proxy variables an HTTP client may read from the environment.
const PROXY_VARS: [&str; 8] = [
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
];

/// As [`ops_with`], with `vars` set in the environment (none of the
/// operator's own settings or proxies otherwise).
async fn ops_env(url: &str, key: Option<&str>, vars: &[(&str, &str)], args: &[&str]) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookwarden"));
    cmd.arg("ops").arg("--url").arg(url).args(args);
    for var in [
        "HOOKWARDEN_OPERATOR_KEY",
        "HOOKWARDEN_OPS_URL",
        "HOOKWARDEN_CONFIG",
    ]
    .into_iter()
    .chain(PROXY_VARS)
    {
        cmd.env_remove(var);
    }
    cmd.envs(vars.iter().copied());
    if let Some(key) = key {
        cmd.env("HOOKWARDEN_OPERATOR_KEY", key);
    }
    let out = cmd.output().await.expect("run hookwarden ops");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for k in [Some(KEY), key].into_iter().flatten() {
        assert!(
            !run.stdout.contains(k) && !run.stderr.contains(k),
            "the key was printed: {} {}",
            run.stdout,
            run.stderr
        );
    }
    run
}

async fn ops(i: &Instance, args: &[&str]) -> Run {
    ops_with(&i.server.url(""), Some(KEY), args).await
}

/// An integration `acme` (token scheme) forwarding to `target`, and one
/// webhook received for it; returns the inbound event id.
async fn receive_one(i: &Instance, target: &str, note: &str) -> String {
    let client = http_client();
    let resp = client
        .post(i.server.url("/api/v1/integrations"))
        .header("x-internal-api-key", KEY)
        .json(
            &json!({"name": "acme", "scheme": "token", "secret": "acme-token-1",
            "signatureHeader": "x-acme-token", "targetUrl": target}),
        )
        .send()
        .await
        .expect("integration");
    assert!(
        matches!(resp.status().as_u16(), 201 | 409),
        "{}",
        resp.status()
    );
    let resp = client
        .post(i.server.url("/api/v1/webhooks/acme"))
        .header("x-acme-token", "acme-token-1")
        .header("content-type", "application/json")
        // Not escaped: a direction override is valid raw in a JSON string.
        .body(format!("{{\"note\":\"{note}\"}}"))
        .send()
        .await
        .expect("inbound");
    let status = resp.status();
    let body: Value = resp.json().await.expect("json");
    assert_eq!(status, 202, "{body}");
    body["eventId"].as_str().expect("eventId").to_owned()
}

/// Polls `ops … --json` until `done` holds for its answer.
async fn until(i: &Instance, args: &[&str], what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = ops(i, args).await.json();
        if done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_events_are_listed_inspected_and_replayed() {
    let i = instance(&[]).await;
    assert_eq!(ops(&i, &["inbound", "events"]).await.ok(), "(none)\n");

    let (rport, seen) = receiver(Duration::ZERO).await;
    let target = format!("http://127.0.0.1:{rport}/internal");
    let first = receive_one(&i, &target, "first \u{202E}txt.exe").await;
    let second = receive_one(&i, &target, "second").await;

    // A table: a header row, one aligned row per event, no escape sequence.
    let table = ops(&i, &["inbound", "events"]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert!(
        lines[0].starts_with("ID ") && lines[0].contains("PROVIDER"),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with(&first) && lines[1].contains("acme"),
        "{lines:?}"
    );
    assert!(lines[2].starts_with(&second), "{lines:?}");
    assert_eq!(
        lines[1].find("acme"),
        lines[0].find("PROVIDER"),
        "aligned: {lines:?}"
    );

    // JSON: the server's page as it answered.
    let page = ops(&i, &["--json", "inbound", "events", "--newest-first"])
        .await
        .json();
    assert_eq!(page["items"][0]["id"], second.as_str());
    assert_eq!(page["items"][1]["id"], first.as_str());

    // Paging: the cursor printed under a page gives the next one.
    let one = ops(&i, &["inbound", "events", "--limit", "1"]).await;
    let cursor = one
        .ok()
        .lines()
        .find_map(|l| l.strip_prefix("next page: --cursor "))
        .expect("a cursor")
        .to_owned();
    let next = ops(
        &i,
        &["inbound", "events", "--limit", "1", "--cursor", &cursor],
    )
    .await;
    assert!(
        next.ok().contains(&second) && !next.ok().contains(&first),
        "{}",
        next.stdout
    );

    // One event: fields, body (cleaned), forwarding jobs.
    until(
        &i,
        &["--json", "inbound", "jobs", "--event", &first],
        "forwarded",
        |v| v["items"][0]["status"] == "succeeded",
    )
    .await;
    let detail = ops(&i, &["inbound", "event", &first]).await;
    let text = detail.ok();
    assert!(text.contains("provider        acme"), "{text}");
    assert!(
        text.contains("first \u{FFFD}txt.exe") && !text.contains('\u{202E}'),
        "{text}"
    );
    assert!(
        text.contains("forwarding jobs:") && text.contains("succeeded"),
        "{text}"
    );
    // As JSON too, the override is escaped: same value, no raw character.
    let json = ops(&i, &["--json", "inbound", "event", &first]).await;
    assert!(
        !json.ok().contains('\u{202E}') && json.ok().contains("\\u202e"),
        "{}",
        json.stdout
    );
    assert!(json.json().to_string().contains("first \u{202E}txt.exe"));

    // A replay with a reason: a new job, forwarded, and audited.
    let replay = ops(
        &i,
        &[
            "inbound",
            "replay",
            &first,
            "--reason",
            "receiver lost it",
            "--requested-by",
            "alice",
        ],
    )
    .await;
    assert!(
        replay.ok().contains("replay") && replay.ok().contains(&first),
        "{}",
        replay.stdout
    );
    until(
        &i,
        &["--json", "inbound", "jobs", "--event", &first],
        "replayed",
        |v| {
            let items = v["items"].as_array().cloned().unwrap_or_default();
            items.len() == 2 && items.iter().all(|j| j["status"] == "succeeded")
        },
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().expect("lock").len() < 3 {
        assert!(Instant::now() < deadline, "the replay was forwarded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let jobs = ops(
        &i,
        &[
            "inbound",
            "jobs",
            "--event",
            &first,
            "--status",
            "succeeded",
        ],
    )
    .await;
    assert!(
        jobs.ok().contains("replay") && jobs.ok().contains("received"),
        "{}",
        jobs.stdout
    );
    let audit = ops(&i, &["--json", "audit", "entries"]).await.json();
    let entry = audit["items"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["action"] == "event.replay_requested"))
        .expect("the replay is audited")
        .clone();
    assert_eq!(entry["details"]["reason"], "receiver lost it");
    assert_eq!(entry["details"]["requestedBy"], "alice");
    let audit = ops(&i, &["audit", "entries"]).await;
    assert!(
        audit.ok().contains("event.replay_requested"),
        "{}",
        audit.stdout
    );

    // Status: jobs by status (the second event's job is recorded after its receiver answered).
    until(&i, &["--json", "status"], "three jobs succeeded", |v| {
        v["jobs"]["succeeded"] == 3
    })
    .await;
    let status = ops(&i, &["status"]).await;
    assert!(
        status
            .ok()
            .lines()
            .any(|l| l.split_whitespace().eq(["succeeded", "3"])),
        "{}",
        status.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_clear_and_never_show_the_key() {
    let i = instance(&[]).await;
    let url = i.server.url("");

    // A wrong key: the server's error, its request id, a non-zero exit.
    let run = ops_with(&url, Some("not-the-operator-key"), &["inbound", "events"]).await;
    let err = run.failed();
    assert!(
        err.starts_with("error: UNAUTHORIZED: invalid x-internal-api-key (request id "),
        "{err}"
    );
    assert!(run.stdout.is_empty());

    // No key at all, and a key on the command line: refused before any request.
    let err = ops_with(&url, None, &["status"]).await.failed().to_owned();
    assert!(
        err.contains("no operator key: set HOOKWARDEN_OPERATOR_KEY or give --key-file"),
        "{err}"
    );
    let run = ops_with(&url, None, &["status", "--key", "argv-key-value"]).await;
    assert!(run.failed().contains("--key is refused"), "{}", run.stderr);
    assert!(!run.stderr.contains("argv-key-value"));

    // The key from a file works.
    let dir = tempdir();
    let file = dir.join("operator.key");
    std::fs::write(&file, format!("{KEY}\n")).expect("key file");
    set_mode(&file, 0o600);
    let run = ops_with(&url, None, &["--key-file", path(&file), "--json", "status"]).await;
    assert_eq!(run.json()["jobs"]["pending"], 0);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    // One that other users may read still works, with a warning.
    set_mode(&file, 0o644);
    let run = ops_with(&url, None, &["--key-file", path(&file), "status"]).await;
    run.ok();
    assert!(
        run.stderr.starts_with("warning: ") && run.stderr.contains("chmod 600"),
        "{}",
        run.stderr
    );

    // An unknown id and a bad filter: the server's words.
    let err = ops(&i, &["inbound", "event", "evt_missing"])
        .await
        .failed()
        .to_owned();
    assert!(err.starts_with("error: NOT_FOUND: "), "{err}");
    assert!(err.contains("(request id "), "{err}");
    let err = ops(&i, &["inbound", "events", "--provider", "Not A Name"])
        .await
        .failed()
        .to_owned();
    assert!(
        err.starts_with("error: VALIDATION_ERROR: provider"),
        "{err}"
    );
    // Refused locally, before any request.
    let err = ops(&i, &["inbound", "events", "--from", "yesterday"])
        .await
        .failed()
        .to_owned();
    assert!(
        err.contains("neither an RFC 3339 time nor a duration"),
        "{err}"
    );
    let err = ops(&i, &["inbound", "replay", "evt_x", "--reason", ""])
        .await
        .failed()
        .to_owned();
    assert!(err.starts_with("error: VALIDATION_ERROR: reason"), "{err}");

    // Nothing listening: which URL could not be reached.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let err = ops_with(&nowhere, Some(KEY), &["status"])
        .await
        .failed()
        .to_owned();
    assert!(
        err.starts_with(&format!(
            "error: cannot reach {nowhere}/api/v1/processing-status: "
        )),
        "{err}"
    );

    // Something that is not hookwarden (here: the ops listener's fallback is
    // fine JSON, so use a plain receiver answering "ok").
    let (rport, _) = receiver(Duration::ZERO).await;
    let other = format!("http://127.0.0.1:{rport}");
    let err = ops_with(&other, Some(KEY), &["status"])
        .await
        .failed()
        .to_owned();
    assert!(err.contains("with a body that is not JSON"), "{err}");

    // The key reached no log line either.
    assert!(!i.server.logs().contains(KEY));
    let _ = &i.env;
}

/// A listener standing in for a proxy: records the first line of each
/// request it is sent, and answers 502 with no body.
async fn recording_proxy() -> (u16, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = conn.read(&mut buf).await.unwrap_or(0);
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            s.lock()
                .expect("lock")
                .push(text.lines().next().unwrap_or("").to_owned());
            let _ = conn
                .write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await;
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxies_in_the_environment_never_see_the_key_and_only_proxy_is_used() {
    let i = instance(&[]).await;
    let url = i.server.url("");
    let (pport, seen) = recording_proxy().await;
    let proxy = format!("http://127.0.0.1:{pport}");
    let vars: Vec<(&str, &str)> = PROXY_VARS
        .iter()
        .filter(|v| !v.eq_ignore_ascii_case("no_proxy"))
        .map(|v| (*v, proxy.as_str()))
        .collect();

    // Every proxy variable set: the CLI still goes straight to the server.
    let run = ops_env(&url, Some(KEY), &vars, &["--json", "status"]).await;
    assert_eq!(run.json()["jobs"]["pending"], 0);
    assert!(run.stderr.is_empty(), "{}", run.stderr);
    assert!(
        seen.lock().expect("lock").is_empty(),
        "the proxy was used: {:?}",
        seen.lock().expect("lock")
    );

    // `--proxy URL` is the one way through a proxy; over http:// it warns
    // that the proxy reads the key.
    let run = ops_env(&url, Some(KEY), &[], &["--proxy", &proxy, "status"]).await;
    assert!(run.failed().contains("HTTP 502"), "{}", run.stderr);
    assert!(
        run.stderr.starts_with("warning: ") && run.stderr.contains("through the proxy"),
        "{}",
        run.stderr
    );
    let lines = seen.lock().expect("lock").clone();
    assert_eq!(
        lines,
        [format!("GET {url}/api/v1/processing-status HTTP/1.1")],
        "{lines:?}"
    );
    // A proxy URL that is not one is refused without echoing it.
    let run = ops_env(
        &url,
        Some(KEY),
        &[],
        &["--proxy", "ftp://u:pw-secret@h", "status"],
    )
    .await;
    assert!(run.failed().contains("--proxy"), "{}", run.stderr);
    assert!(!run.stderr.contains("pw-secret"), "{}", run.stderr);
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A receiver answering 500 until `healthy` is set, then 200; counts the 200s.
async fn flaky_receiver() -> (u16, Arc<AtomicBool>, Arc<AtomicUsize>) {
    let healthy = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (h, d) = (healthy.clone(), delivered.clone());
    let app = axum::Router::new().fallback(move || {
        let (h, d) = (h.clone(), d.clone());
        async move {
            if h.load(Ordering::SeqCst) {
                d.fetch_add(1, Ordering::SeqCst);
                (axum::http::StatusCode::OK, "ok")
            } else {
                (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "down")
            }
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, healthy, delivered)
}

fn ids(page: &Value, field: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_dead_letters_are_found_retried_and_endpoints_disabled_and_enabled() {
    // Two tries per event, so two events stay under the breaker's five failures in a row.
    let i = instance(&[("HOOKWARDEN_RETRY_SCHEDULE", "100ms")]).await;
    let (rport, healthy, delivered) = flaky_receiver().await;
    let client = http_client();
    let (status, hook) = post(
        &client,
        i.server.url("/v1/webhooks"),
        &i.env.token(Some("acct_o"), "webhooks:write webhooks:read"),
        json!({"url": format!("http://127.0.0.1:{rport}/hook"), "eventTypes": ["*"]}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let webhook = hook["id"].as_str().expect("id").to_owned();
    let producer = i.env.token(None, "events:publish");
    let mut events = Vec::new();
    for n in 0..2 {
        let (status, body) = post(
            &client,
            i.server.url("/v1/events"),
            &producer,
            json!({"accountId": "acct_o", "eventType": "invoice.paid", "payload": {"n": n}}),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        events.push(body["eventId"].as_str().expect("eventId").to_owned());
    }
    let dead = until(
        &i,
        &[
            "--json",
            "outbound",
            "deliveries",
            "--account",
            "acct_o",
            "--status",
            "dead",
        ],
        "two dead letters",
        |v| ids(v, "id").len() == 2,
    )
    .await;

    // Deliveries: a table of the tries, one try in full.
    let table = ops(&i, &["outbound", "deliveries", "--webhook", &webhook]).await;
    let lines: Vec<&str> = table.ok().lines().collect();
    assert!(
        lines[0].starts_with("ID ") && lines[0].contains("HTTP"),
        "{lines:?}"
    );
    assert_eq!(lines.len(), 5, "four tries: {lines:?}");
    assert!(lines[1..].iter().all(|l| l.contains(" 500 ")), "{lines:?}");
    let dead_of_first = dead["items"]
        .as_array()
        .and_then(|a| a.iter().find(|t| t["eventId"] == events[0].as_str()))
        .and_then(|t| t["id"].as_str())
        .expect("the first event's dead letter")
        .to_owned();
    let one = ops(&i, &["outbound", "delivery", &dead_of_first]).await;
    assert!(one.ok().contains("http status  500"), "{}", one.stdout);
    assert!(one.ok().contains("status       dead"), "{}", one.stdout);

    // Events and one event's fan-out.
    let listed = ops(
        &i,
        &[
            "--json",
            "outbound",
            "events",
            "--account",
            "acct_o",
            "--type",
            "invoice.paid",
        ],
    )
    .await
    .json();
    assert_eq!(ids(&listed, "id").len(), 2);
    let fan_out = ops(&i, &["outbound", "event", &events[0]]).await;
    let text = fan_out.ok();
    assert!(text.contains("fan-out: 1 endpoint(s)"), "{text}");
    assert!(
        text.contains(&format!(
            "webhook {webhook}  http://127.0.0.1:{rport}/hook\n"
        )),
        "{text}"
    );
    assert!(text.contains("\"n\": 0"), "{text}");
    assert_eq!(text.matches(" dead ").count(), 1, "{text}");

    // Endpoints: listed, disabled with a reason (a retry then waits), enabled.
    let hooks = ops(&i, &["outbound", "webhooks", "--account", "acct_o"]).await;
    assert!(hooks.ok().contains(&webhook), "{}", hooks.stdout);
    let off = ops(
        &i,
        &[
            "outbound",
            "disable",
            &webhook,
            "--reason",
            "receiver is down",
        ],
    )
    .await;
    assert!(off.ok().contains("disabled         true"), "{}", off.stdout);
    healthy.store(true, Ordering::SeqCst);
    let retried = ops(
        &i,
        &[
            "--json",
            "outbound",
            "retry",
            &dead_of_first,
            "--reason",
            "fixed",
        ],
    )
    .await
    .json();
    assert_eq!(retried["status"], "pending");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(delivered.load(Ordering::SeqCst), 0, "no try while disabled");
    let shown = ops(&i, &["outbound", "webhook", &webhook]).await;
    assert!(
        shown.ok().contains("disabled         true"),
        "{}",
        shown.stdout
    );
    let on = ops(
        &i,
        &[
            "outbound",
            "enable",
            &webhook,
            "--reason",
            "receiver is back",
        ],
    )
    .await;
    assert!(on.ok().contains("disabled         false"), "{}", on.stdout);
    until(
        &i,
        &[
            "--json",
            "outbound",
            "delivery",
            retried["id"].as_str().expect("id"),
        ],
        "retried",
        |v| v["status"] == "succeeded",
    )
    .await;

    // Bulk: only the dead letter still the latest try of its pair; once.
    let bulk = ops(
        &i,
        &[
            "outbound",
            "retry-dead",
            "--account",
            "acct_o",
            "--per-second",
            "50",
            "--reason",
            "outage over",
        ],
    )
    .await;
    assert!(
        bulk.ok().starts_with("matched 1, queued 1, skipped 0"),
        "{}",
        bulk.stdout
    );
    until(
        &i,
        &[
            "--json",
            "outbound",
            "deliveries",
            "--event",
            &events[1],
            "--status",
            "succeeded",
        ],
        "bulk retried",
        |v| ids(v, "id").len() == 1,
    )
    .await;
    assert_eq!(delivered.load(Ordering::SeqCst), 2);
    let again = ops(
        &i,
        &[
            "--json",
            "outbound",
            "retry-dead",
            "--account",
            "acct_o",
            "--reason",
            "again",
        ],
    )
    .await
    .json();
    assert_eq!(
        (again["matched"].as_u64(), again["more"].as_bool()),
        (Some(0), Some(false))
    );

    // Every action is in the audit trail, and the chain holds.
    let audit = ops(&i, &["audit", "entries", "--limit", "100"]).await;
    for action in [
        "webhook.disabled",
        "delivery.retry_requested",
        "webhook.enabled",
        "delivery.bulk_retry_requested",
    ] {
        assert!(audit.ok().contains(action), "{action}: {}", audit.stdout);
    }
    let verified = ops(&i, &["audit", "verify"]).await;
    assert!(
        verified.ok().starts_with("audit trail intact: "),
        "{}",
        verified.stdout
    );
    let head = verified.ok().lines().last().expect("head").to_owned();
    let (seq, hash) = head.split_once(':').expect("SEQ:HASH");
    assert!(seq.parse::<u64>().is_ok() && hash.len() == 64, "{head}");
    ops(&i, &["audit", "verify", "--head", &head]).await.ok();
    let report = ops(&i, &["--json", "audit", "verify", "--head", &head])
        .await
        .json();
    assert_eq!(report["valid"], true);
    let forged = format!("{seq}:{}", "0".repeat(64));
    let broken = ops(&i, &["audit", "verify", "--head", &forged]).await;
    broken.failed();
    assert!(
        broken.stdout.starts_with("audit trail broken: "),
        "{}",
        broken.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_with_a_private_ca_and_the_operator_client_certificate() {
    let certs = tempdir();
    let made = tokio::process::Command::new(env!("CARGO_BIN_EXE_hookwarden"))
        .args(["certs", "dev", "--out", path(&certs)])
        .output()
        .await
        .expect("certs dev");
    assert!(made.status.success(), "{made:?}");
    let file = |name: &str| certs.join(name).display().to_string();
    let (cert, key, ca) = (file("server.pem"), file("server-key.pem"), file("ca.pem"));
    let db = TestDb::sqlite();
    let dir = tempdir();
    let env = Env::new(
        &db,
        &dir,
        &[
            ("HOOKWARDEN_MANAGEMENT_API_KEYS", KEY),
            ("HOOKWARDEN_TLS_CERT_FILE", &cert),
            ("HOOKWARDEN_TLS_KEY_FILE", &key),
            ("HOOKWARDEN_TLS_CLIENT_CA_FILE", &ca),
            ("HOOKWARDEN_TLS_CLIENT_AUTH", "optional"),
            (
                "HOOKWARDEN_OPERATOR_CLIENT_IDENTITY",
                "hookwarden-dev-client",
            ),
        ],
    );
    let server = env.start();
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "no TLS listener: {}",
            server.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let url = format!("https://localhost:{}", env.port);
    let (client_cert, client_key) = (file("client.pem"), file("client-key.pem"));

    // The private CA and the client certificate: answered.
    let run = ops_with(
        &url,
        Some(KEY),
        &[
            "--ca-file",
            &ca,
            "--client-cert",
            &client_cert,
            "--client-key",
            &client_key,
            "--json",
            "status",
        ],
    )
    .await;
    assert_eq!(run.json()["jobs"]["dead"], 0);
    // Without the client certificate: the key alone is not enough.
    let err = ops_with(&url, Some(KEY), &["--ca-file", &ca, "status"])
        .await
        .failed()
        .to_owned();
    assert!(
        err.starts_with("error: UNAUTHORIZED: the operator API requires its client certificate"),
        "{err}"
    );
    // Without the CA: the server is not trusted, and the message says where and why.
    let err = ops_with(&url, Some(KEY), &["status"])
        .await
        .failed()
        .to_owned();
    assert!(
        err.starts_with(&format!(
            "error: cannot reach {url}/api/v1/processing-status: "
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // A key file without its certificate is refused before any request.
    let err = ops_with(&url, Some(KEY), &["--client-key", &client_key, "status"])
        .await
        .failed()
        .to_owned();
    assert!(err.contains("--client-cert"), "{err}");
}
