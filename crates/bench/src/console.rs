//! The console scenario: the operator console's and the tenant portal's
//! pages over a grown database (10⁶ inbound events by default), fetched
//! like a browser does (signed in with a session cookie) one after the
//! other, and the busiest two 8 at once; prints p50/p99/max per page.

use crate::seed::{seed, Db};
use crate::server::{add_webhook, start_hookwarden};
use hookwarden_store::testing::{Backend, TestDb};
use reqwest::header::{CONTENT_TYPE, COOKIE, ORIGIN, SET_COOKIE};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The operator key the bench's hookwarden accepts (`server.rs`).
const OPERATOR_KEY: &str = "bench-key";
/// Accounts with webhooks; the first also has the busy one.
const ACCOUNTS: usize = 4;
/// Clients at once in the concurrent round.
const AT_ONCE: usize = 8;
/// Portal pages an account may ask for per minute (`web::guard`): the
/// portal's round stays under it.
const PORTAL_PAGES: u64 = 280;

/// What the run is asked for.
pub(crate) struct Options {
    pub(crate) repeat: u64,
    pub(crate) rows: u64,
    /// Keep the seeded database, and reuse one kept before.
    pub(crate) keep: bool,
}

/// One page's timings.
struct Timing {
    name: String,
    ms: Vec<f64>,
    /// Answers that were not a 200 with the expected content.
    bad: u64,
    /// Requests per second, for the concurrent round.
    rate: Option<f64>,
}

impl Timing {
    fn pct(&self, p: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        v.get(((v.len().max(1) - 1) as f64 * p).round() as usize)
            .copied()
            .unwrap_or(0.0)
    }

    fn print(&self) {
        let rate = self
            .rate
            .map(|r| format!("  {r:.0} pages/s"))
            .unwrap_or_default();
        let bad = if self.bad > 0 {
            format!("  {} BAD ANSWERS", self.bad)
        } else {
            String::new()
        };
        println!(
            "  {:<40} {:>8.2} {:>8.2} {:>8.2}{rate}{bad}",
            self.name,
            self.pct(0.5),
            self.pct(0.99),
            self.pct(1.0)
        );
    }
}

pub(crate) async fn run(backend: Backend, o: &Options) -> anyhow::Result<()> {
    let db = prepare(backend, o).await?;
    let server = start_hookwarden(&db, &[]).await?;
    let base = format!("http://127.0.0.1:{}", server.port);
    let mut conn = Db::open(backend, &db.url).await?;
    let one = |v: Vec<String>| v.into_iter().next().unwrap_or_default();
    let busy = one(conn
        .texts("SELECT id FROM webhook_configs WHERE url LIKE '%/busy'")
        .await?);
    let busy_account = one(conn
        .texts("SELECT account_id FROM webhook_configs WHERE url LIKE '%/busy'")
        .await?);
    // A middle event with a failed and a dead forwarding try (every 50th),
    // and the cursor the list's "next" link would carry to reach it.
    let mid = ((o.rows / 2) / 50 * 50).max(1);
    let mid_id = one(conn
        .texts(&format!(
            "SELECT id FROM inbound_events WHERE delivery_id = 'dlv_{mid}'"
        ))
        .await?);
    let micros = conn
        .int(&match backend {
            Backend::Sqlite => format!(
                "SELECT received_at * 1000 FROM inbound_events WHERE id = '{mid_id}'"
            ),
            Backend::Postgres => format!(
                "SELECT (extract(epoch FROM received_at) * 1000000)::bigint FROM inbound_events WHERE id = '{mid_id}'"
            ),
        })
        .await?;
    drop(conn);
    let searched = (o.rows / 3).max(1);

    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let console = sign_in(&client, &base).await?;
    let portal = enter_portal(&client, &base, &busy_account).await?;

    println!(
        "console {backend:?}, {} inbound events: ms per page, {} GETs each after one warm-up \
         (p50 / p99 / max)",
        o.rows, o.repeat
    );
    let pages: Vec<(&str, String, String)> = vec![
        ("overview", "/console".into(), "Overview".into()),
        (
            "inbound, first page",
            "/console/inbound".into(),
            "/console/inbound/ie_".into(),
        ),
        (
            "inbound, middle page (cursor)",
            format!("/console/inbound?cursor={micros}%3A{mid_id}"),
            "/console/inbound/ie_".into(),
        ),
        (
            "inbound, search by delivery id",
            format!("/console/inbound?q=dlv_{searched}"),
            format!("dlv_{searched}<"),
        ),
        (
            "inbound, status=dead",
            "/console/inbound?status=dead".into(),
            "/console/inbound/ie_".into(),
        ),
        (
            "one inbound event",
            format!("/console/inbound/{mid_id}"),
            "forwarding-timeline".into(),
        ),
        (
            "dead letters",
            "/console/dead-letters".into(),
            "att_".into(),
        ),
        (
            "busy webhook",
            format!("/console/webhooks/{busy}"),
            "att_".into(),
        ),
        ("audit", "/console/audit".into(), "operator:".into()),
        ("accounts", "/console/accounts".into(), busy.clone()),
    ];
    for (name, path, expect) in &pages {
        let t = sequential(&client, &base, path, &console, expect, o.repeat).await;
        Timing {
            name: name.to_string(),
            ..t
        }
        .print();
    }
    let t = sequential(
        &client,
        &base,
        &format!("/portal/endpoints/{busy}"),
        &portal,
        "att_",
        o.repeat.min(PORTAL_PAGES),
    )
    .await;
    Timing {
        name: "portal endpoint page".into(),
        ..t
    }
    .print();
    for (name, path, expect) in pages.iter().take(2) {
        let t = concurrent(&client, &base, path, &console, expect, o.repeat).await;
        Timing {
            name: format!("{name}, {AT_ONCE} at once"),
            ..t
        }
        .print();
    }
    Ok(())
}

/// The run's database: seeded now, or (`--keep`) one seeded before with as
/// many rows.
async fn prepare(backend: Backend, o: &Options) -> anyhow::Result<TestDb> {
    if !o.keep {
        let db = TestDb::new(backend).await;
        fill(backend, &db, o.rows).await?;
        return Ok(db);
    }
    let name = format!("hw_bench_console_{}", o.rows);
    let (db, existed) = TestDb::kept(backend, &name, false).await;
    if existed && seeded(backend, &db.url, o.rows).await {
        eprintln!("  (reusing the database seeded before: {name})");
        return Ok(db);
    }
    let (db, _) = TestDb::kept(backend, &name, true).await;
    fill(backend, &db, o.rows).await?;
    eprintln!("  (kept for the next run with --keep: {name})");
    Ok(db)
}

/// Whether a kept database holds a finished seeding of `rows` events.
async fn seeded(backend: Backend, url: &str, rows: u64) -> bool {
    let Ok(mut db) = Db::open(backend, url).await else {
        return false;
    };
    let events = db.int("SELECT count(*) FROM inbound_events").await;
    let audit = db
        .int(&format!(
            "SELECT count(*) FROM audit_entries WHERE request_id = 'req_audit_{}'",
            (rows / 10).max(1)
        ))
        .await;
    matches!((events, audit), (Ok(e), Ok(1)) if e == rows as i64)
}

/// Webhooks made through the API (their secrets sealed by hookwarden), on
/// a hookwarden stopped before the rows go in; then the rows.
async fn fill(backend: Backend, db: &TestDb, rows: u64) -> anyhow::Result<()> {
    let mut webhooks = Vec::new();
    {
        let server = start_hookwarden(db, &[]).await?;
        // Nothing listens there: no try is left pending to be sent.
        let busy = add_webhook(&server, "acct_bench_0", "http://127.0.0.1:9/busy").await?;
        webhooks.push((busy, "acct_bench_0".to_string()));
        for a in 0..ACCOUNTS {
            let account = format!("acct_bench_{a}");
            for i in 0..2 {
                let url = format!("http://127.0.0.1:9/{account}/{i}");
                webhooks.push((add_webhook(&server, &account, &url).await?, account.clone()));
            }
        }
    }
    eprintln!("  (seeding {backend:?} with {rows} inbound events)");
    let mut conn = Db::open(backend, &db.url).await?;
    seed(&mut conn, rows, &webhooks).await
}

/// Signs in to the console as a browser does: the sign-in page (and its
/// CSRF token, were there one), the operator key posted from this origin;
/// answers the session cookie.
async fn sign_in(client: &Client, base: &str) -> anyhow::Result<String> {
    let page = client
        .get(format!("{base}/console/sign-in"))
        .send()
        .await?
        .text()
        .await?;
    let mut form = format!("key={OPERATOR_KEY}");
    if let Some(csrf) = hidden(&page, "_csrf") {
        form.push_str(&format!("&_csrf={csrf}"));
    }
    post_form(client, base, "/console/sign-in", form, "hw_console").await
}

/// Posts a form of this site as the browser would (same origin) and
/// answers the session cookie `name` its redirect sets.
async fn post_form(
    client: &Client,
    base: &str,
    path: &str,
    form: String,
    name: &str,
) -> anyhow::Result<String> {
    let resp = client
        .post(format!("{base}{path}"))
        .header(ORIGIN, base)
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await?;
    anyhow::ensure!(
        resp.status() == StatusCode::SEE_OTHER,
        "{path}: {}",
        resp.status()
    );
    cookie(&resp, name).ok_or_else(|| anyhow::anyhow!("{path}: no {name} cookie"))
}

/// Opens the portal for `account` as its user would: a link minted with
/// the operator key, its page, its form posted; answers the session cookie.
async fn enter_portal(client: &Client, base: &str, account: &str) -> anyhow::Result<String> {
    let link: Value = client
        .post(format!("{base}/api/v1/portal-sessions"))
        .header("x-internal-api-key", OPERATOR_KEY)
        .json(&json!({ "accountId": account }))
        .send()
        .await?
        .json()
        .await?;
    let url = link["url"].as_str().unwrap_or_default();
    let path = url
        .find("/portal/enter")
        .map(|i| &url[i..])
        .ok_or_else(|| anyhow::anyhow!("portal link: {link}"))?;
    let page = client
        .get(format!("{base}{path}"))
        .send()
        .await?
        .text()
        .await?;
    let token =
        hidden(&page, "token").ok_or_else(|| anyhow::anyhow!("no token in the link's page"))?;
    post_form(
        client,
        base,
        "/portal/enter",
        format!("token={token}"),
        "hw_portal",
    )
    .await
}

/// The value of the form field `name` in `html` (tokens: no escaping).
fn hidden(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = &html[at..];
    let tag_end = rest.find('>')?;
    let value = rest[..tag_end].find("value=\"")? + "value=\"".len();
    let len = rest[value..].find('"')?;
    Some(rest[value..value + len].to_owned())
}

/// `name=value` of the cookie `name` the answer sets.
fn cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// One GET of `path`: its time in ms, and whether it answered 200 with
/// `expect` in the page.
async fn fetch(client: &Client, url: &str, cookie: &str, expect: &str) -> (f64, bool) {
    let started = Instant::now();
    let ok = match client.get(url).header(COOKIE, cookie).send().await {
        Ok(resp) => {
            let status = resp.status();
            let body = resp.text().await.unwrap_or_default();
            status == StatusCode::OK && body.contains(expect)
        }
        Err(_) => false,
    };
    (started.elapsed().as_secs_f64() * 1000.0, ok)
}

/// `repeat` GETs of `path`, one after the other, after one not counted.
async fn sequential(
    client: &Client,
    base: &str,
    path: &str,
    cookie: &str,
    expect: &str,
    repeat: u64,
) -> Timing {
    let url = format!("{base}{path}");
    let (_, ok) = fetch(client, &url, cookie, expect).await;
    if !ok {
        eprintln!("  ({path}: the warm-up answer was not the page expected)");
    }
    let mut t = Timing {
        name: String::new(),
        ms: Vec::new(),
        bad: 0,
        rate: None,
    };
    for _ in 0..repeat {
        let (ms, ok) = fetch(client, &url, cookie, expect).await;
        t.ms.push(ms);
        t.bad += u64::from(!ok);
    }
    t
}

/// `repeat` GETs of `path` by `AT_ONCE` clients at once.
async fn concurrent(
    client: &Client,
    base: &str,
    path: &str,
    cookie: &str,
    expect: &str,
    repeat: u64,
) -> Timing {
    let url = Arc::new(format!("{base}{path}"));
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let (client, url, next) = (client.clone(), url.clone(), next.clone());
            let (cookie, expect) = (cookie.to_owned(), expect.to_owned());
            tokio::spawn(async move {
                let mut got = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < repeat {
                    got.push(fetch(&client, &url, &cookie, &expect).await);
                }
                got
            })
        })
        .collect();
    let mut t = Timing {
        name: String::new(),
        ms: Vec::new(),
        bad: 0,
        rate: None,
    };
    for task in tasks {
        for (ms, ok) in task.await.unwrap_or_default() {
            t.ms.push(ms);
            t.bad += u64::from(!ok);
        }
    }
    t.rate = Some(t.ms.len() as f64 / started.elapsed().as_secs_f64());
    t
}
