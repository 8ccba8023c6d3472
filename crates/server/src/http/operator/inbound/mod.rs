//! Operator routes over the inbound path: integrations and their secrets,
//! inbound events and replays, forwarding tries and backlog.

pub mod events;
pub(crate) mod forwarding;
pub(crate) mod integration_secrets;
pub(crate) mod integrations;
