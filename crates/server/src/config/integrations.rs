//! The plain input describing an integration, as the operator API's body and
//! as an entry of the configuration file. Only data and serde here: the
//! configuration depends on it, so it must not reach the state or handlers.

use serde::Deserialize;

/// The body of `POST /api/v1/integrations` (and an entry of the configuration
/// file): fields left out take their defaults. Updates (`PUT` and `PATCH`)
/// take the body `IntegrationChange`.
#[derive(Deserialize, Clone, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IntegrationInput {
    /// Lower-case letters, digits, `-` and `_`; required on create, fixed after.
    #[serde(default)]
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,62}$")]
    pub name: Option<String>,
    /// hmac-sha256, token, standard-webhooks, stripe, github, slack or shopify.
    #[schema(pattern = "^(hmac-sha256|token|standard-webhooks|stripe|github|slack|shopify)$")]
    pub scheme: String,
    /// One secret, or `secrets` for several active at once (rotation).
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secrets: Option<Vec<String>>,
    #[serde(default)]
    pub signature_header: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^(hex|base64)$")]
    pub encoding: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub tolerance_seconds: Option<i64>,
    /// The internal service that receives verified events.
    pub target_url: String,
    /// Only requests from these source ranges are accepted.
    #[serde(default)]
    pub allowed_cidrs: Option<Vec<String>>,
    #[serde(default)]
    pub rate_limit_per_minute: Option<i64>,
    /// The header carrying the provider's delivery id, kept as the event's
    /// `deliveryId` (refused for schemes that sign an id of their own).
    #[serde(default)]
    pub idempotency_header: Option<String>,
    /// Forward the exact verified bytes (signed by hookwarden as they are)
    /// instead of the normalized JSON envelope.
    #[serde(default)]
    pub forward_raw_body: Option<bool>,
}

impl std::fmt::Debug for IntegrationInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets: this sits inside `Settings`, which is logged.
        f.debug_struct("IntegrationInput")
            .field("name", &self.name)
            .field("scheme", &self.scheme)
            .field("targetUrl", &self.target_url)
            .field("secrets", &"<redacted>")
            .finish_non_exhaustive()
    }
}
