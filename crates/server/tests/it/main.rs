//! hookwarden server integration tests: the real application, real SQLite and
//! PostgreSQL (and NATS where it applies), a real receiver.

mod helpers;
mod logs;

mod hostile;
mod ingress;
mod operator;

mod jwks;
mod replicas;
mod retention;
mod rotation;
mod schemas;
mod slow_clients;

mod activity;
mod api;
mod audit;
mod auth;
mod console;
mod delivery;
mod docs;
mod endpoint_controls;
mod endpoint_health;
mod errors;
mod failures;
mod nats;
mod nats_permissions;
mod odd_bytes;
mod openapi;
mod operational;
mod ops;
mod outages;
mod outbound_ops;
mod producers;
mod redis;
mod ssrf;
mod tls;
mod traces;
mod updates;
mod webhook_tools;
