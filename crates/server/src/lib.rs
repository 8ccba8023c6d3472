//! hookwarden's server: configuration, the HTTP APIs, the delivery worker,
//! NATS intake and start-up. The pure decisions live in `hookwarden-core`,
//! persistence behind `hookwarden-store`.
//!
//! Architecture invariant: handlers and workers reach the database only
//! through the `Store` trait, and plaintext secrets only through `secrets`.

pub mod audit;
pub mod auth;
pub mod backends;
pub mod config;
pub mod config_check;
#[cfg(feature = "dev-certs")]
pub mod devcerts;
pub mod dispatch;
pub mod error;
pub mod http;
pub mod identity;
pub mod ingress;
pub mod intake;
pub mod keys;
pub mod limits;
pub mod metrics;
pub mod nats;
pub mod producers;
pub mod pump;
pub mod ratelimit;
pub mod refusals;
pub mod rotate;
pub mod schemas;
pub mod secrets;
pub mod sink;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod tls;
