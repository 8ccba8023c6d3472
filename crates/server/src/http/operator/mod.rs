//! The operator API (`/api/v1/*` behind `x-internal-api-key`), by direction:
//! `inbound` (integrations, inbound events, forwarding), `outbound`
//! (deliveries, events and webhooks across accounts), and the audit trail.

pub(crate) mod audit_chain;
pub(crate) mod audit_trail;
pub(crate) mod filters;
pub mod inbound;
pub(crate) mod operational;
pub(crate) mod outbound;
pub(crate) mod portal_sessions;
