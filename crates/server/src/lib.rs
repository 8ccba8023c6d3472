//! hookwarden's server, laid out by data path (ARCHITECTURE.md, "Code map"):
//! `outbound` publishes and delivers events to tenants' endpoints, `inbound`
//! verifies, stores and forwards providers' webhooks, `shared` holds what
//! both use, `http` and `auth` are the thin layer that knows HTTP, `config`
//! the typed settings and `boot` assembles the rest. The pure decisions live
//! in `hookwarden-core`, persistence behind `hookwarden-store`.
//!
//! Dependencies point down that list (http → outbound/inbound → shared), never
//! back; `tests/module_graph.rs` keeps the graph acyclic.

pub mod auth;
pub mod boot;
pub mod config;
pub mod config_check;
pub mod http;
pub mod inbound;
pub mod outbound;
pub mod shared;
pub(crate) mod web;
