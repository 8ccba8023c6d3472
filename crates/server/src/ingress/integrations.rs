//! Integrations as the operator configures them: validation, sealing of the
//! provider secrets (several may be active, for rotation) and of the
//! forwarding secret, and the view that never shows either.

use crate::error::ApiError;
use crate::secrets::row_identity;
use crate::state::AppState;
use chrono::{SecondsFormat, Utc};
use hookwarden_core::crypto::Keyring;
use hookwarden_core::destination::{parse_cidrs, AddressPolicy};
use hookwarden_core::inbound::{Scheme, DEFAULT_TOLERANCE_SECS};
use hookwarden_core::secret::WebhookSecret;
use hookwarden_store::ingress::Integration;
use hookwarden_store::sealed::SealedColumn;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The verifier tries no more secrets than this, so no more can be configured.
const MAX_SECRETS: usize = hookwarden_core::inbound::MAX_ACTIVE_SECRETS;
pub const DEFAULT_RATE_LIMIT: i64 = 600;

/// The body of `POST /api/v1/integrations` and `PUT /api/v1/integrations/{name}`.
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

pub fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Forwarding targets are internal by design: any address, http allowed,
/// but still a parsed URL without credentials (and never a redirect).
pub fn forwarding_policy() -> AddressPolicy {
    let all: Vec<IpNet> = parse_cidrs("0.0.0.0/0,::/0").unwrap_or_default();
    AddressPolicy::new(all, true)
}

/// Validates input and builds the stored integration. `existing` keeps the
/// forwarding secret (and the provider secrets when none are given).
pub fn build(
    keyring: &Keyring,
    name: &str,
    input: &IntegrationInput,
    existing: Option<&Integration>,
) -> Result<(Integration, Option<WebhookSecret>), ApiError> {
    let invalid = |m: String| ApiError::Validation(m);
    if !valid_name(name) {
        return Err(invalid(
            "name must be 1-63 characters of a-z, 0-9, '-' or '_'".into(),
        ));
    }
    Scheme::from_config(
        &input.scheme,
        input.signature_header.as_deref(),
        input.encoding.as_deref(),
        input.prefix.as_deref(),
    )
    .map_err(invalid)?;
    let tolerance = input.tolerance_seconds.unwrap_or(DEFAULT_TOLERANCE_SECS);
    if !(1..=3600).contains(&tolerance) {
        return Err(invalid(
            "toleranceSeconds must be between 1 and 3600".into(),
        ));
    }
    let rate = input.rate_limit_per_minute.unwrap_or(DEFAULT_RATE_LIMIT);
    if !(1..=1_000_000).contains(&rate) {
        return Err(invalid(
            "rateLimitPerMinute must be between 1 and 1000000".into(),
        ));
    }
    forwarding_policy()
        .check_url(&input.target_url)
        .map_err(|e| invalid(format!("targetUrl: {e}")))?;
    let cidrs = input.allowed_cidrs.clone().unwrap_or_default();
    parse_cidrs(&cidrs.join(",")).map_err(|e| invalid(format!("allowedCidrs: {e}")))?;
    if let Some(h) = &input.idempotency_header {
        if h.is_empty()
            || h.len() > 100
            || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(invalid("idempotencyHeader must be a header name".into()));
        }
        if super::dedup::signs_own_id(&input.scheme) {
            return Err(invalid(format!(
                "idempotencyHeader is refused for {}: the scheme signs its own delivery id, \
                 and an unsigned header must not replace it",
                input.scheme
            )));
        }
    }
    let secrets: Option<Vec<String>> = match (&input.secret, &input.secrets) {
        (Some(_), Some(_)) => {
            return Err(invalid("give either secret or secrets, not both".into()))
        }
        (Some(s), None) => Some(vec![s.clone()]),
        (None, Some(list)) => Some(list.clone()),
        (None, None) => None,
    };
    let now = Utc::now();
    let sealed_secrets = match (secrets, existing) {
        (Some(list), _) => {
            if list.is_empty()
                || list.len() > MAX_SECRETS
                || list.iter().any(|s| s.is_empty() || s.len() > 512)
            {
                return Err(invalid(format!(
                    "secrets: 1 to {MAX_SECRETS} non-empty secrets of at most 512 characters"
                )));
            }
            if input.scheme == "standard-webhooks"
                && list.iter().any(|s| WebhookSecret::parse(s).is_err())
            {
                return Err(invalid(
                    "secrets: standard-webhooks secrets must be whsec_ secrets".into(),
                ));
            }
            let text = Zeroizing::new(serde_json::to_string(&list).unwrap_or_default());
            keyring.seal(
                row_identity(SealedColumn::IntegrationSecrets, name, ""),
                text.as_bytes(),
            )
        }
        (None, Some(e)) => e.secrets.clone(),
        (None, None) => return Err(invalid("secret is required".into())),
    };
    let (forwarding_secret, new_forwarding) = match existing {
        Some(e) => (e.forwarding_secret.clone(), None),
        None => {
            let s = WebhookSecret::generate();
            (
                keyring.seal(
                    row_identity(SealedColumn::IntegrationForwardingSecret, name, ""),
                    s.expose().as_bytes(),
                ),
                Some(s),
            )
        }
    };
    let integration = Integration {
        name: name.to_owned(),
        scheme: input.scheme.clone(),
        signature_header: input.signature_header.clone(),
        encoding: input.encoding.clone(),
        prefix: input.prefix.clone(),
        tolerance_seconds: tolerance,
        target_url: input.target_url.clone(),
        allowed_cidrs: cidrs,
        rate_limit_per_minute: Some(rate),
        idempotency_header: input
            .idempotency_header
            .clone()
            .map(|h| h.to_ascii_lowercase()),
        secrets: sealed_secrets,
        forwarding_secret,
        created_at: existing.map_or(now, |e| e.created_at),
        updated_at: now,
        forward_raw_body: input.forward_raw_body.unwrap_or(false),
    };
    Ok((integration, new_forwarding))
}

/// The provider secrets, opened for one verification.
pub fn open_secrets(keyring: &Keyring, i: &Integration) -> anyhow::Result<Vec<Zeroizing<String>>> {
    let plain = keyring.open(
        row_identity(SealedColumn::IntegrationSecrets, &i.name, ""),
        &i.secrets,
    )?;
    let list: Vec<String> = serde_json::from_slice(&plain)?;
    Ok(list.into_iter().map(Zeroizing::new).collect())
}

pub fn open_forwarding_secret(keyring: &Keyring, i: &Integration) -> anyhow::Result<WebhookSecret> {
    let plain = keyring.open(
        row_identity(SealedColumn::IntegrationForwardingSecret, &i.name, ""),
        &i.forwarding_secret,
    )?;
    Ok(WebhookSecret::from_stored(&plain)?)
}

pub fn scheme_of(i: &Integration) -> anyhow::Result<Scheme> {
    Scheme::from_config(
        &i.scheme,
        i.signature_header.as_deref(),
        i.encoding.as_deref(),
        i.prefix.as_deref(),
    )
    .map_err(anyhow::Error::msg)
}

/// The operator's view: configuration, never a secret.
/// An integration as the API shows it: never a provider secret.
/// `forwardingSecret` appears only in the answer that created it.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IntegrationView {
    name: String,
    scheme: String,
    signature_header: Option<String>,
    encoding: Option<String>,
    prefix: Option<String>,
    tolerance_seconds: i64,
    target_url: String,
    allowed_cidrs: Vec<String>,
    rate_limit_per_minute: Option<i64>,
    idempotency_header: Option<String>,
    forward_raw_body: bool,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Internal services verify forwarded events with it (shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarding_secret: Option<String>,
}

pub fn view(i: &Integration) -> IntegrationView {
    IntegrationView {
        name: i.name.clone(),
        scheme: i.scheme.clone(),
        signature_header: i.signature_header.clone(),
        encoding: i.encoding.clone(),
        prefix: i.prefix.clone(),
        tolerance_seconds: i.tolerance_seconds,
        target_url: i.target_url.clone(),
        allowed_cidrs: i.allowed_cidrs.clone(),
        rate_limit_per_minute: i.rate_limit_per_minute,
        idempotency_header: i.idempotency_header.clone(),
        forward_raw_body: i.forward_raw_body,
        created_at: i.created_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        updated_at: i.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true),
        forwarding_secret: None,
    }
}

/// Creates or updates the integrations listed in the configuration file at
/// start-up (the file is then the source of their settings).
pub async fn apply_configured(state: &AppState, list: &[IntegrationInput]) -> anyhow::Result<()> {
    for input in list {
        let name = input.name.clone().unwrap_or_default();
        let existing = state.store.get_integration(&name).await?;
        let (integration, _) =
            build(&state.keyring, &name, input, existing.as_ref()).map_err(|e| {
                anyhow::anyhow!("integration {name:?} in the configuration: {}", e.message())
            })?;
        if existing.is_some() {
            state.store.update_integration(&integration).await?;
        } else {
            state.store.create_integration(&integration).await?;
        }
        tracing::info!(integration = %name, "integration from the configuration file applied");
    }
    Ok(())
}

/// Headers that are safe to keep with the event: never one that carries a
/// signature, token or credential.
pub fn keepable_header(name: &str, scheme_header: Option<&str>) -> bool {
    let n = name.to_ascii_lowercase();
    let sensitive = [
        "signature",
        "token",
        "secret",
        "hmac",
        "auth",
        "cookie",
        "api-key",
        "apikey",
        "password",
    ];
    Some(n.as_str()) != scheme_header && !sensitive.iter().any(|s| n.contains(s))
}
