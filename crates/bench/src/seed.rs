//! The console scenario's data, written straight into the database with SQL
//! in big transactions (10⁶ rows through the API would take hours): inbound
//! events with their forwarding jobs, outbound events with their delivery
//! tries to a few accounts' webhooks (one of them busy), and audit entries.

use hookwarden_store::testing::Backend;
use sqlx::{Connection, PgConnection, SqliteConnection};
use std::time::Instant;

/// Rows per transaction: big enough to cost little per row, small enough
/// to show progress.
pub(crate) const CHUNK: u64 = 250_000;
/// The seeded rows span this many days up to now.
const DAYS: u64 = 30;

/// A connection to the scenario's database, on either backend.
pub(crate) enum Db {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl Db {
    pub(crate) async fn open(backend: Backend, url: &str) -> anyhow::Result<Self> {
        Ok(match backend {
            Backend::Sqlite => Self::Sqlite(SqliteConnection::connect(url).await?),
            Backend::Postgres => {
                let mut c = PgConnection::connect(url).await?;
                sqlx::raw_sql("SET search_path = hook")
                    .execute(&mut c)
                    .await?;
                Self::Postgres(c)
            }
        })
    }

    fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    pub(crate) async fn exec(&mut self, sql: &str) -> anyhow::Result<()> {
        match self {
            Self::Sqlite(c) => {
                sqlx::raw_sql(sql).execute(c).await?;
            }
            Self::Postgres(c) => {
                sqlx::raw_sql(sql).execute(c).await?;
            }
        }
        Ok(())
    }

    /// The first column of the first row, as an integer.
    pub(crate) async fn int(&mut self, sql: &str) -> anyhow::Result<i64> {
        Ok(match self {
            Self::Sqlite(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
            Self::Postgres(c) => sqlx::query_scalar(sql).fetch_one(c).await?,
        })
    }

    /// Statistics, and the visibility map index-only scans rely on.
    pub(crate) async fn analyze(&mut self) -> anyhow::Result<()> {
        match self.backend() {
            Backend::Postgres => self.exec("VACUUM ANALYZE").await,
            Backend::Sqlite => self.exec("ANALYZE").await,
        }
    }

    /// The first column of every row, as text.
    pub(crate) async fn texts(&mut self, sql: &str) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Self::Sqlite(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
            Self::Postgres(c) => sqlx::query_scalar(sql).fetch_all(c).await?,
        })
    }
}

/// The SQL that differs between the dialects.
struct Dialect(Backend);

impl Dialect {
    /// `x` from `from` to `to`, as a subquery.
    fn series(&self, from: u64, to: u64) -> String {
        match self.0 {
            Backend::Postgres => format!("SELECT g AS x FROM generate_series({from}::bigint, {to}::bigint) g"),
            Backend::Sqlite => format!(
                "WITH RECURSIVE s(x) AS (SELECT {from} UNION ALL SELECT x + 1 FROM s WHERE x < {to}) SELECT x FROM s"
            ),
        }
    }

    /// An integer as `width` hex digits.
    fn hex(&self, expr: &str, width: usize) -> String {
        match self.0 {
            Backend::Postgres => format!("lpad(to_hex({expr}), {width}, '0')"),
            Backend::Sqlite => format!("printf('%0{width}x', {expr})"),
        }
    }

    /// A time column's value from unix milliseconds.
    fn time(&self, ms: &str) -> String {
        match self.0 {
            Backend::Postgres => format!("to_timestamp(({ms}) / 1000.0)"),
            Backend::Sqlite => format!("({ms})"),
        }
    }

    /// An audit entry's creation time (text, to the millisecond, UTC).
    fn audit_time(&self, ms: &str) -> String {
        match self.0 {
            Backend::Postgres => format!(
                "to_char(to_timestamp(({ms}) / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
            ),
            Backend::Sqlite => format!("strftime('%Y-%m-%dT%H:%M:%fZ', ({ms}) / 1000.0, 'unixepoch')"),
        }
    }

    fn json(&self, text: &str) -> String {
        match self.0 {
            Backend::Postgres => format!("({text})::jsonb"),
            Backend::Sqlite => text.to_owned(),
        }
    }

    fn bytes(&self, text: &str) -> String {
        match self.0 {
            Backend::Postgres => format!("convert_to({text}, 'UTF8')"),
            Backend::Sqlite => format!("CAST({text} AS BLOB)"),
        }
    }
}

/// A time-ordered id like `ids::new_id` makes: the prefix, 12 hex digits
/// of milliseconds and 20 of a sequence number.
fn id(d: &Dialect, prefix: &str, ms: &str, seq: &str) -> String {
    format!(
        "'{prefix}_' || {} || {}",
        d.hex(&format!("({ms})"), 12),
        d.hex(&format!("({seq})"), 20)
    )
}

/// The milliseconds expression of row `x` of `n`, spread over the last
/// `DAYS` days up to `now_ms`.
fn at(now_ms: u64, n: u64) -> String {
    let span = DAYS * 86_400_000;
    let step = (span / n.max(1)).max(1);
    format!("({} + x * {step})", now_ms - span)
}

/// Seeds `rows` inbound events, numbered from 1 (event `x` has the
/// provider delivery id `dlv_x`), and what goes with them, for `webhooks`
/// (id and account; the first one busy: half the outbound tries are its),
/// then refreshes the planner's statistics.
pub(crate) async fn seed(
    db: &mut Db,
    rows: u64,
    webhooks: &[(String, String)],
) -> anyhow::Result<()> {
    let d = Dialect(db.backend());
    let now_ms = crate::receiver::now_us() / 1000;
    let started = Instant::now();
    let chunks =
        |n: u64| (0..n.div_ceil(CHUNK)).map(move |i| (i * CHUNK + 1, ((i + 1) * CHUNK).min(n)));

    // Inbound events, each with its first forwarding job: most succeeded,
    // one in 50 failed then dead on its second try, one in 1,000 pending
    // (due tomorrow, so nothing forwards it during the run).
    let t = at(now_ms, rows);
    let tomorrow = now_ms + 86_400_000;
    for (from, to) in chunks(rows) {
        let sql = format!(
            "BEGIN; \
             INSERT INTO inbound_events (id, provider, dedup_key, delivery_id, body_sha256, raw_body, headers, source_ip, correlation_id, received_at) \
               SELECT {id}, CASE x % 3 WHEN 0 THEN 'stripe' WHEN 1 THEN 'github' ELSE 'shopify' END, \
                 'id:dlv_' || x, 'dlv_' || x, {sha}, \
                 {body}, {headers}, '203.0.113.' || (x % 250), 'req_bench_' || x, {received} \
               FROM ({series}) q; \
             INSERT INTO processing_jobs (id, event_id, provider, attempt, status, trigger, due_at, http_status, duration_ms, error, created_at, completed_at) \
               SELECT {job1}, {id}, CASE x % 3 WHEN 0 THEN 'stripe' WHEN 1 THEN 'github' ELSE 'shopify' END, 1, \
                 CASE WHEN x % 50 = 0 THEN 'failed' WHEN x % 1000 = 1 THEN 'pending' ELSE 'succeeded' END, 'received', \
                 CASE WHEN x % 1000 = 1 THEN {tomorrow_t} ELSE {received} END, \
                 CASE WHEN x % 50 = 0 THEN 500 WHEN x % 1000 = 1 THEN NULL ELSE 200 END, \
                 CASE WHEN x % 1000 = 1 THEN NULL ELSE 42 END, \
                 CASE WHEN x % 50 = 0 THEN 'HTTP 500 from the target' END, {received}, \
                 CASE WHEN x % 1000 = 1 THEN NULL ELSE {received_later} END \
               FROM ({series}) q; \
             INSERT INTO processing_jobs (id, event_id, provider, attempt, status, trigger, due_at, http_status, duration_ms, error, created_at, completed_at) \
               SELECT {job2}, {id}, CASE x % 3 WHEN 0 THEN 'stripe' WHEN 1 THEN 'github' ELSE 'shopify' END, 2, \
                 'dead', 'retry', {retry_t}, 500, 42, 'HTTP 500 from the target', {received_later}, {retry_t} \
               FROM ({series}) q WHERE x % 50 = 0; \
             COMMIT;",
            id = id(&d, "ie", &t, "x"),
            sha = d.hex("x", 64),
            body = d.bytes("'{\"id\":\"dlv_' || x || '\",\"type\":\"order.created\",\"data\":{\"n\":' || x || '}}'"),
            headers = d.json("'{\"content-type\":\"application/json\",\"user-agent\":\"bench\"}'"),
            received = d.time(&t),
            received_later = d.time(&format!("{t} + 200")),
            retry_t = d.time(&format!("{t} + 60000")),
            tomorrow_t = d.time(&tomorrow.to_string()),
            job1 = id(&d, "job", &t, "2 * x"),
            job2 = id(&d, "job", &t, "2 * x + 1"),
            series = d.series(from, to),
        );
        db.exec(&sql).await?;
        eprintln!(
            "  ({to} inbound events, {:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }

    // Outbound: half as many events, each tried once; one in 100 failed,
    // then dead on its second try (a dead letter). Every other event goes to
    // the busy webhook, the rest round the others.
    let events = (rows / 2).max(1);
    let (busy, others) = webhooks
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no webhook"))?;
    let pick = |col: usize| {
        let name = |w: &(String, String)| if col == 0 { w.0.clone() } else { w.1.clone() };
        let mut case = format!("CASE WHEN x % 2 = 0 THEN '{}'", name(busy));
        for (i, w) in others.iter().enumerate() {
            case.push_str(&format!(
                " WHEN (x / 2) % {} = {i} THEN '{}'",
                others.len(),
                name(w)
            ));
        }
        case.push_str(" END");
        case
    };
    let (webhook, account) = (pick(0), pick(1));
    for (from, to) in chunks(events) {
        outbound(db, (from, to), events, now_ms, &webhook, &account).await?;
        eprintln!(
            "  ({to} outbound events, {:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    audit_and_analyze(db, rows, now_ms, started).await
}

/// Outbound events `from..=to` of `n` spread over the last `DAYS` days up
/// to `now_ms`, each tried once (one in 100 failed, then dead on its
/// second try: a dead letter), to the webhook and account the SQL
/// expressions `webhook` and `account` name (over the row number `x`).
pub(crate) async fn outbound(
    db: &mut Db,
    (from, to): (u64, u64),
    n: u64,
    now_ms: u64,
    webhook: &str,
    account: &str,
) -> anyhow::Result<()> {
    let d = Dialect(db.backend());
    let t = at(now_ms, n);
    let sql = format!(
            "BEGIN; \
             INSERT INTO events (id, account_id, event_type, payload, producer, created_at) \
               SELECT {id}, {account}, CASE x % 2 WHEN 0 THEN 'order.created' ELSE 'order.paid' END, \
                 {payload}, 'bench', {created} FROM ({series}) q; \
             INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, payload_snapshot, http_status, duration_ms, error, created_at, completed_at) \
               SELECT {att1}, {id}, {webhook}, {account}, 1, CASE WHEN x % 100 = 0 THEN 'failed' ELSE 'succeeded' END, \
                 {created}, {payload}, CASE WHEN x % 100 = 0 THEN 503 ELSE 200 END, 35, \
                 CASE WHEN x % 100 = 0 THEN 'HTTP 503' END, {created}, {done} FROM ({series}) q; \
             INSERT INTO delivery_attempts (id, event_id, webhook_id, account_id, attempt, status, due_at, payload_snapshot, http_status, duration_ms, error, created_at, completed_at) \
               SELECT {att2}, {id}, {webhook}, {account}, 2, 'dead', {retry_t}, {payload}, 503, 35, 'HTTP 503', {done}, {retry_t} \
               FROM ({series}) q WHERE x % 100 = 0; \
             COMMIT;",
            id = id(&d, "evt", &t, "x"),
            payload = d.json("'{\"n\":' || x || '}'"),
            created = d.time(&t),
            done = d.time(&format!("{t} + 150")),
            retry_t = d.time(&format!("{t} + 60000")),
            att1 = id(&d, "att", &t, "2 * x"),
            att2 = id(&d, "att", &t, "2 * x + 1"),
            series = d.series(from, to),
        );
    db.exec(&sql).await
}

/// Audit entries after those already written, then the planner's
/// statistics refreshed.
async fn audit_and_analyze(
    db: &mut Db,
    rows: u64,
    now_ms: u64,
    started: Instant,
) -> anyhow::Result<()> {
    let d = Dialect(db.backend());
    let chunks =
        |n: u64| (0..n.div_ceil(CHUNK)).map(move |i| (i * CHUNK + 1, ((i + 1) * CHUNK).min(n)));
    // Audit entries after those already written (their hashes are not a
    // chain: the pages list entries, only an asked-for check verifies).
    let entries = (rows / 10).max(1);
    let t = at(now_ms, entries);
    let first = db
        .int("SELECT COALESCE(MAX(seq), 0) FROM audit_entries")
        .await?;
    for (from, to) in chunks(entries) {
        let sql = format!(
            "BEGIN; \
             INSERT INTO audit_entries (seq, id, actor, action, target, request_id, details, created_at, prev_hash, hash) \
               SELECT {first} + x, {id}, \
                 CASE x % 3 WHEN 0 THEN 'operator:bench/console' WHEN 1 THEN 'operator:ci' ELSE 'tenant:acct_bench_1' END, \
                 CASE x % 4 WHEN 0 THEN 'webhook.created' WHEN 1 THEN 'integration.updated' WHEN 2 THEN 'event.replayed' ELSE 'console.sign_in' END, \
                 'bench:' || (x % 1000), 'req_audit_' || x, '{{}}', {created}, {zeros}, {zeros} FROM ({series}) q; \
             COMMIT;",
            id = id(&d, "aud", &t, "x"),
            created = d.audit_time(&t),
            zeros = format_args!("'{}'", "0".repeat(64)),
            series = d.series(from, to),
        );
        db.exec(&sql).await?;
    }
    eprintln!(
        "  ({entries} audit entries, {:.0} s); analyzing",
        started.elapsed().as_secs_f64()
    );
    db.analyze().await?;
    eprintln!("  (seeded in {:.0} s)", started.elapsed().as_secs_f64());
    Ok(())
}
