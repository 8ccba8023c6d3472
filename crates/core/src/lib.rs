//! hookwarden's pure core: the parts that decide security outcomes, written as
//! plain functions over bytes so they can be unit-tested and fuzzed without a
//! server, a database or a network.
//!
//! Architecture invariant: nothing here performs I/O (no sockets, files,
//! clocks other than values passed in, or environment reads), and nothing here
//! depends on axum, sqlx, redis or nats.

pub mod audit;
pub mod backoff;
pub mod client_addr;
pub mod crypto;
pub mod custom_headers;
pub mod destination;
pub mod duration;
pub mod ids;
pub mod inbound;
pub mod payload_filter;
pub mod plain_json;
pub mod secret;
pub mod standard_webhooks;
pub mod trace_context;
pub mod validate;
