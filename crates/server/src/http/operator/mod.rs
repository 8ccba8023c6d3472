//! The operator API (`/api/v1/*` behind `x-internal-api-key`).

pub mod audit_chain;
pub mod events;
pub mod filters;
pub mod integration_secrets;
pub mod integrations;
pub mod outbound;
pub mod outbound_events;
pub mod outbound_webhooks;
