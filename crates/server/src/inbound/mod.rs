//! The inbound gateway: integrations (providers), verification before
//! persistence, deduplication, and forwarding to internal services.

pub mod body;
pub(crate) mod cache;
pub(crate) mod dedup;
pub(crate) mod forward;
pub mod integrations;
pub(crate) mod ready;
pub(crate) mod receive;
pub(crate) mod verified;
