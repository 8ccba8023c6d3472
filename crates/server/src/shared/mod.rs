//! What both directions use: the application state and its clock, the work
//! pump, the SSRF-safe outgoing client and retry arithmetic, audit, secrets,
//! rate limits and refusals, activity counts (the console's charts), Redis,
//! tokens (verifying JWTs, minting identity tokens), errors and metrics.

pub mod activity;
pub mod audit;
pub mod backlog;
pub mod client;
pub(crate) mod client_identity;
pub mod clock;
pub mod error;
pub(crate) mod identity;
pub mod jwt;
pub(crate) mod limits;
pub(crate) mod metrics;
pub mod operational;
pub mod pump;
pub(crate) mod ratelimit;
pub(crate) mod redis;
pub(crate) mod refusals;
pub mod retention;
pub(crate) mod retry;
pub mod rotate;
pub(crate) mod secrets;
pub(crate) mod sink;
pub mod state;
pub(crate) mod tokens;
pub mod traces;

/// Times in answers and records: RFC 3339, UTC, milliseconds.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
