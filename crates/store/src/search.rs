//! Searches over delivery tries and events (the operator's views across
//! accounts, and the tenant's per endpoint): the filters, and the one place
//! that turns them into a SQL `WHERE` clause for either dialect, every value
//! bound as text. Times become bounds on the time-ordered (UUIDv7) ids, so a
//! time range is a range of the primary key, not a scan of a time column.

use crate::model::AttemptStatus;
use chrono::{DateTime, Utc};

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

    /// Adds `column op <value>`, the value bound.
    fn bind(&mut self, column: &str, op: &str, value: String) {
        self.binds.push(value);
        let n = self.binds.len();
        let placeholder = match self.dialect {
            Dialect::Postgres => format!("${n}"),
            Dialect::Sqlite => format!("?{n}"),
        };
        self.clauses.push(format!("{column} {op} {placeholder}"));
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
        w.bind("a.status", "=", v.as_str().to_owned());
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
            .starts_with("a.account_id = $1 AND a.status = $2 AND a.id < $3 AND NOT EXISTS"));
        assert_eq!(w.binds, ["acct", "dead", "att_x"]);
        let w = events(Dialect::Sqlite, &EventFilter::default(), None);
        assert_eq!(w.sql(), "TRUE");
    }
}
