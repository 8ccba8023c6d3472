//! Searches over delivery tries and events (the operator's views across
//! accounts, and the tenant's per endpoint) and over the audit trail: the
//! filters, and the one place that turns them into a SQL `WHERE` clause for
//! either dialect, every value bound as text. For tries and events, times
//! become bounds on the time-ordered (UUIDv7) ids, so a time range is a
//! range of the primary key, not a scan of a time column; audit entries are
//! bounded on the creation time they were hashed with.

use crate::ingress::{AuditQuery, EventQuery};
use crate::model::AttemptStatus;
use chrono::{DateTime, SecondsFormat, Utc};

/// Which tries to find; `None` filters nothing.
#[derive(Debug, Clone, Default)]
pub struct AttemptFilter<'a> {
    /// One try by id.
    pub id: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub webhook_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub status: Option<AttemptStatus>,
    /// Created at or after.
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
    /// Only the latest try of each (event, endpoint) pair: with `Dead`, the
    /// dead letters nobody has retried since.
    pub latest_only: bool,
}

/// Which events to find (newest first).
#[derive(Debug, Clone, Default)]
pub struct EventFilter<'a> {
    /// One event by id.
    pub id: Option<&'a str>,
    pub account_id: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// Created at or after (by the id's time: ids made since migration 0008).
    pub from: Option<DateTime<Utc>>,
    /// Created before.
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Dialect {
    Postgres,
    Sqlite,
}

/// A `WHERE` clause and the text values its placeholders stand for, in order.
pub(crate) struct Where {
    dialect: Dialect,
    clauses: Vec<String>,
    pub binds: Vec<String>,
}

impl Where {
    pub(crate) fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            clauses: Vec::new(),
            binds: Vec::new(),
        }
    }

    /// Binds `value` and answers its placeholder.
    fn placeholder(&mut self, value: String) -> String {
        self.binds.push(value);
        let n = self.binds.len();
        match self.dialect {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => format!("?{n}"),
        }
    }

    /// Adds `column op <value>`, the value bound.
    fn bind(&mut self, column: &str, op: &str, value: String) {
        let placeholder = self.placeholder(value);
        self.clauses.push(format!("{column} {op} {placeholder}"));
    }

    /// Adds `column op <value>` for an integer column: bound as text like
    /// every value, and cast back, so that the primary key's order applies.
    fn bind_integer(&mut self, column: &str, op: &str, value: i64) {
        let placeholder = self.placeholder(value.to_string());
        let value = match self.dialect {
            Dialect::Postgres => format!("{placeholder}::bigint"),
            Dialect::Sqlite => format!("CAST({placeholder} AS INTEGER)"),
        };
        self.clauses.push(format!("{column} {op} {value}"));
    }

    /// `column` compared byte by byte, as a prefix range needs: PostgreSQL
    /// under the "C" collation (the one the audit indexes are built with;
    /// a database's default collation may order punctuation otherwise),
    /// SQLite's default (BINARY) already is.
    fn bytewise(&self, column: &str) -> String {
        match self.dialect {
            Dialect::Postgres => format!("{column} COLLATE \"C\""),
            Dialect::Sqlite => column.to_owned(),
        }
    }

    /// A placeholder for a time as the dialect stores it: `timestamptz` on
    /// PostgreSQL, unix milliseconds on SQLite (the store's `ms`).
    fn time(&mut self, t: DateTime<Utc>) -> String {
        match self.dialect {
            Dialect::Postgres => {
                let p = self.placeholder(t.to_rfc3339_opts(SecondsFormat::Micros, true));
                format!("{p}::timestamptz")
            }
            Dialect::Sqlite => {
                let p = self.placeholder(t.timestamp_millis().to_string());
                format!("CAST({p} AS INTEGER)")
            }
        }
    }

    fn raw(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    pub(crate) fn sql(&self) -> String {
        if self.clauses.is_empty() {
            "TRUE".into()
        } else {
            self.clauses.join(" AND ")
        }
    }

    /// Binds the clause's values to `query`, in order.
    pub(crate) fn bind_to<'q, DB: sqlx::Database>(
        &'q self,
        mut query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
    ) -> sqlx::query::Query<'q, DB, DB::Arguments<'q>>
    where
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        for value in &self.binds {
            query = query.bind(value.as_str());
        }
        query
    }

    /// `select` (over a table aliased `a`) narrowed by this clause, newest
    /// id first, `limit + 1` rows (so that a page knows whether another
    /// follows).
    pub(crate) fn page_sql(&self, select: &str, limit: u32) -> String {
        format!(
            "{select} WHERE {} ORDER BY a.id DESC LIMIT {}",
            self.sql(),
            i64::from(limit) + 1
        )
    }
}

/// The smallest id of `prefix` made at `t` (UUIDv7: 48 bits of Unix
/// milliseconds first, hex, as `ids::new_id` writes them).
pub fn id_floor(prefix: &str, t: DateTime<Utc>) -> String {
    let ms = t.timestamp_millis().clamp(0, 0xffff_ffff_ffff);
    format!("{prefix}_{ms:012x}{}", "0".repeat(20))
}

fn time_bounds(
    w: &mut Where,
    prefix: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) {
    if let Some(from) = from {
        w.bind("a.id", ">=", id_floor(prefix, from));
    }
    if let Some(to) = to {
        w.bind("a.id", "<", id_floor(prefix, to));
    }
}

/// Tries of `table` (aliased `a`) that `f` selects and that come before the
/// cursor `before`.
pub(crate) fn attempts(
    dialect: Dialect,
    table: &str,
    f: &AttemptFilter<'_>,
    before: Option<&str>,
) -> Where {
    let mut w = Where::new(dialect);
    if let Some(v) = f.id {
        w.bind("a.id", "=", v.to_owned());
    }
    if let Some(v) = f.account_id {
        w.bind("a.account_id", "=", v.to_owned());
    }
    if let Some(v) = f.webhook_id {
        w.bind("a.webhook_id", "=", v.to_owned());
    }
    if let Some(v) = f.event_id {
        w.bind("a.event_id", "=", v.to_owned());
    }
    if let Some(v) = f.status {
        // Written into the SQL, not bound: one of four fixed words (never
        // the caller's text), and only a literal lets a plan use the
        // partial dead-letter indexes (`status = 'dead'`) — a generic
        // plan for `status = $n` cannot, and walked every try of the
        // endpoint or the database to find a page of rare dead letters.
        w.raw(format!("a.status = '{}'", v.as_str()));
    }
    time_bounds(&mut w, "att", f.from, f.to);
    if let Some(v) = before {
        w.bind("a.id", "<", v.to_owned());
    }
    if f.latest_only {
        // Served by the unique (event_id, webhook_id, attempt) index.
        w.raw(format!(
            "NOT EXISTS (SELECT 1 FROM {table} later WHERE later.event_id = a.event_id \
             AND later.webhook_id = a.webhook_id AND later.attempt > a.attempt)"
        ));
    }
    w
}

/// Events (aliased `a`) that `f` selects, before the cursor `before`.
pub(crate) fn events(dialect: Dialect, f: &EventFilter<'_>, before: Option<&str>) -> Where {
    let mut w = Where::new(dialect);
    if let Some(v) = f.id {
        w.bind("a.id", "=", v.to_owned());
    }
    if let Some(v) = f.account_id {
        w.bind("a.account_id", "=", v.to_owned());
    }
    if let Some(v) = f.event_type {
        w.bind("a.event_type", "=", v.to_owned());
    }
    time_bounds(&mut w, "evt", f.from, f.to);
    if let Some(v) = before {
        w.bind("a.id", "<", v.to_owned());
    }
    w
}

/// The page of inbound events `q` asks for: `columns` (over `table`
/// aliased `e`, with the latest job's `status`) and the values to bind.
///
/// Only the filters given are named. A clause that tests its parameter
/// for NULL, `(? IS NULL OR e.provider = ?)`, hides the index the value
/// would use from a plan made before the value is known: SQLite then
/// walked the whole table for a page past the first, and PostgreSQL's
/// generic plan did the same once the statement was cached.
pub(crate) fn inbound_page(
    dialect: Dialect,
    columns: &str,
    table: &str,
    q: &EventQuery,
) -> (String, Where) {
    let (cmp, order) = if q.descending {
        ("<", "DESC")
    } else {
        (">", "ASC")
    };
    let mut w = Where::new(dialect);
    if let Some(v) = &q.provider {
        w.bind("e.provider", "=", v.clone());
    }
    if let Some(v) = &q.delivery_id {
        w.bind("e.delivery_id", "=", v.clone());
    }
    if let Some(t) = q.from {
        let t = w.time(t);
        w.raw(format!("e.received_at >= {t}"));
    }
    if let Some(t) = q.to {
        let t = w.time(t);
        w.raw(format!("e.received_at < {t}"));
    }
    if let Some((t, id)) = &q.after {
        let t = w.time(*t);
        let id = w.placeholder(id.clone());
        // A row comparison: one range of the (received_at, id) index.
        w.raw(format!("(e.received_at, e.id) {cmp} ({t}, {id})"));
    }
    let inner = w.sql();
    // The status is the latest job's, computed per event: filtered outside.
    let outer = match q.status {
        Some(s) => format!("WHERE x.status = {}", w.placeholder(s.as_str().to_owned())),
        None => String::new(),
    };
    let sql = format!(
        "SELECT * FROM (SELECT {columns} FROM {table} e WHERE {inner}) x {outer} \
         ORDER BY x.received_at {order}, x.id {order} LIMIT {}",
        i64::from(q.limit) + 1
    );
    (sql, w)
}

/// Forwarding jobs (of `table` aliased `a`) of one event and/or in one
/// status, before the cursor `before` (newest id first with `page_sql`).
/// Only the filters given are named (see `inbound_page`): an event's jobs
/// are then a range of the (event_id, attempt) index, not a walk of every
/// job backwards from the newest.
pub(crate) fn jobs(
    dialect: Dialect,
    event_id: Option<&str>,
    status: Option<AttemptStatus>,
    before: Option<&str>,
) -> Where {
    let mut w = Where::new(dialect);
    if let Some(v) = event_id {
        w.bind("a.event_id", "=", v.to_owned());
    }
    if let Some(v) = status {
        w.bind("a.status", "=", v.as_str().to_owned());
    }
    if let Some(v) = before {
        w.bind("a.id", "<", v.to_owned());
    }
    w
}

/// Audit entries (aliased `a`) that `q` selects, past its cursor in its
/// order. The text filters are exact; the action prefix is a range in byte
/// order; every one of them is served by an index (migration 0017).
pub(crate) fn audit(dialect: Dialect, q: &AuditQuery) -> Where {
    let mut w = Where::new(dialect);
    if let Some(v) = &q.actor {
        w.bind("a.actor", "=", v.clone());
    }
    let action = w.bytewise("a.action");
    if let Some(v) = &q.action {
        w.bind(&action, "=", v.clone());
    }
    if let Some(p) = &q.action_prefix {
        w.bind(&action, ">=", p.clone());
        if let Some(end) = prefix_end(p) {
            w.bind(&action, "<", end);
        }
    }
    if let Some(v) = &q.target {
        w.bind("a.target", "=", v.clone());
    }
    let created = w.bytewise("a.created_at");
    if let Some(t) = q.from {
        w.bind(&created, ">=", audit_time(t));
    }
    if let Some(t) = q.to {
        w.bind(&created, "<", audit_time(t));
    }
    if let Some(seq) = q.after_seq {
        w.bind_integer("a.seq", if q.descending { "<" } else { ">" }, seq);
    }
    w
}

/// The least text above every text that starts with `prefix`, in byte
/// (UTF-8, so code point) order: its last character that can be is
/// incremented and what follows dropped. `None` when nothing is above.
fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // The next code point that is a character (surrogates are not).
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A time bound as the audit trail's text compares with it: entries hold
/// their creation time to the millisecond, as `ingress::chain_audit` writes
/// it (`2024-05-01T12:00:00.123Z`, one width, so text order is time order).
/// A bound between two milliseconds is rounded up, which keeps both
/// `created_at >= from` and `created_at < to` exact. The year stays at four
/// digits (no entry is that late).
fn audit_time(t: DateTime<Utc>) -> String {
    let mut ms = t.timestamp_millis();
    if !t.timestamp_subsec_nanos().is_multiple_of(1_000_000) {
        ms += 1;
    }
    let latest = DateTime::parse_from_rfc3339("9999-12-31T23:59:59.999Z")
        .map(|t| t.timestamp_millis())
        .unwrap_or(i64::MAX);
    DateTime::<Utc>::from_timestamp_millis(ms.min(latest))
        .unwrap_or(t)
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn id_floor_orders_with_ids_made_at_that_time() {
        let before = hookwarden_core::ids::attempt_id();
        let floor = id_floor("att", Utc::now() + chrono::Duration::milliseconds(5));
        std::thread::sleep(std::time::Duration::from_millis(10));
        let after = hookwarden_core::ids::attempt_id();
        assert!(before < floor && floor < after, "{before} {floor} {after}");
        assert_eq!(
            id_floor("evt", Utc.timestamp_millis_opt(0).single().expect("epoch")),
            format!("evt_{}", "0".repeat(32))
        );
    }

    #[test]
    fn placeholders_follow_the_dialect_and_the_binds() {
        let f = AttemptFilter {
            account_id: Some("acct"),
            status: Some(AttemptStatus::Dead),
            latest_only: true,
            ..Default::default()
        };
        let w = attempts(
            Dialect::Postgres,
            "hook.delivery_attempts",
            &f,
            Some("att_x"),
        );
        assert!(w
            .sql()
            .starts_with("a.account_id = $1 AND a.status = 'dead' AND a.id < $2 AND NOT EXISTS"));
        assert_eq!(w.binds, ["acct", "att_x"]);
        let w = events(Dialect::Sqlite, &EventFilter::default(), None);
        assert_eq!(w.sql(), "TRUE");
    }

    #[test]
    fn only_the_filters_given_are_named() {
        let q = EventQuery {
            descending: true,
            limit: 50,
            ..Default::default()
        };
        let (sql, w) = inbound_page(Dialect::Sqlite, "e.id", "inbound_events", &q);
        assert!(!sql.contains("IS NULL"), "{sql}");
        assert!(sql.contains("WHERE TRUE) x  ORDER BY x.received_at DESC, x.id DESC LIMIT 51"));
        assert!(w.binds.is_empty());
        let t = Utc
            .timestamp_millis_opt(1_700_000_000_123)
            .single()
            .expect("t");
        let q = EventQuery {
            provider: Some("stripe".into()),
            status: Some(AttemptStatus::Dead),
            after: Some((t, "ie_x".into())),
            descending: true,
            limit: 10,
            ..Default::default()
        };
        let (sql, w) = inbound_page(Dialect::Postgres, "e.id", "hook.inbound_events", &q);
        assert!(
            sql.contains("WHERE e.provider = $1 AND (e.received_at, e.id) < ($2::timestamptz, $3)) x WHERE x.status = $4"),
            "{sql}"
        );
        assert_eq!(
            w.binds,
            ["stripe", "2023-11-14T22:13:20.123000Z", "ie_x", "dead"]
        );
        let (sql, _) = inbound_page(Dialect::Sqlite, "e.id", "inbound_events", &q);
        assert!(
            sql.contains("(e.received_at, e.id) < (CAST(?2 AS INTEGER), ?3)"),
            "{sql}"
        );
        let w = jobs(Dialect::Sqlite, Some("ie_x"), None, None);
        assert_eq!(w.sql(), "a.event_id = ?1");
    }

    #[test]
    fn audit_filters_compare_bytewise_and_page_in_their_order() {
        let q = AuditQuery {
            actor: Some("operator:ab12cd34/console".into()),
            action_prefix: Some("integration.".into()),
            from: Some(
                Utc.timestamp_millis_opt(1_700_000_000_000)
                    .single()
                    .expect("t"),
            ),
            after_seq: Some(40),
            descending: true,
            limit: 10,
            ..Default::default()
        };
        let w = audit(Dialect::Postgres, &q);
        assert_eq!(
            w.sql(),
            "a.actor = $1 AND a.action COLLATE \"C\" >= $2 AND a.action COLLATE \"C\" < $3 \
             AND a.created_at COLLATE \"C\" >= $4 AND a.seq < $5::bigint"
        );
        assert_eq!(
            w.binds,
            [
                "operator:ab12cd34/console",
                "integration.",
                "integration/",
                "2023-11-14T22:13:20.000Z",
                "40"
            ]
        );
        let w = audit(
            Dialect::Sqlite,
            &AuditQuery {
                after_seq: Some(7),
                ..Default::default()
            },
        );
        assert_eq!(w.sql(), "a.seq > CAST(?1 AS INTEGER)");
    }

    #[test]
    fn a_prefix_ends_below_the_next_text_in_byte_order() {
        assert_eq!(prefix_end("integration.").as_deref(), Some("integration/"));
        assert_eq!(prefix_end("a\u{d7ff}").as_deref(), Some("a\u{e000}"));
        assert_eq!(prefix_end("a\u{10ffff}").as_deref(), Some("b"));
        assert_eq!(prefix_end(""), None);
    }

    #[test]
    fn audit_time_bounds_round_up_to_the_millisecond() {
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect(s)
                .with_timezone(&Utc)
        };
        assert_eq!(
            audit_time(at("2024-05-01T12:00:00.123Z")),
            "2024-05-01T12:00:00.123Z"
        );
        assert_eq!(
            audit_time(at("2024-05-01T14:00:00.1231+02:00")),
            "2024-05-01T12:00:00.124Z"
        );
        assert_eq!(
            audit_time(at("9999-12-31T23:59:59.9999Z")),
            "9999-12-31T23:59:59.999Z"
        );
    }
}
