//! hookwarden server integration tests: the real application, real SQLite and
//! PostgreSQL (and NATS where it applies), a real receiver.

mod helpers;
mod logs;

mod hostile;
mod ingress;
mod operator;

mod jwks;
mod replicas;
mod rotation;
mod schemas;

mod api;
mod audit;
mod auth;
mod delivery;
mod errors;
mod nats;
mod nats_permissions;
mod openapi;
mod ops;
mod producers;
mod redis;
mod ssrf;
mod tls;
mod updates;
