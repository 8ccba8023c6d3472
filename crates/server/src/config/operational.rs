//! The plain input describing an operational webhook in the configuration
//! file (`[[operational_webhooks]]`). Only data and serde here: the
//! configuration depends on it, so it must not reach the state or handlers.

use serde::Deserialize;

/// An operational webhook the file declares: created at start, or brought
/// to this secret and these event types if one with this URL exists.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OperationalWebhookInput {
    /// The platform's endpoint.
    pub url: String,
    /// Its `whsec_` secret: the file holds it, so the platform knows it.
    pub secret: String,
    /// Operational event types (default `*`).
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    pub description: Option<String>,
}
