//! The inbound gateway: integrations (providers), verification before
//! persistence, deduplication, and forwarding to internal services.

pub mod cache;
pub mod dedup;
pub mod forward;
pub mod integrations;
pub mod receive;
pub mod verified;
