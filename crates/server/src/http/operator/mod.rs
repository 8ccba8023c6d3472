//! The operator API (`/api/v1/*` behind `x-internal-api-key`).

pub mod events;
pub mod integration_secrets;
pub mod integrations;
