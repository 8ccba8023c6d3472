//! Integrations as the operator configures them: validation, sealing of the
//! provider secrets (several may be active, for rotation) and of the
//! forwarding secret, and the view that never shows either.

// Re-exported: the type's old path (the fuzz targets use it) keeps working.
pub use crate::config::integrations::IntegrationInput;
use crate::shared::error::ApiError;
use crate::shared::secrets::row_identity;
use crate::shared::state::AppState;
use chrono::{SecondsFormat, Utc};
use hookwarden_core::crypto::Keyring;
use hookwarden_core::destination::{parse_cidrs, AddressPolicy};
use hookwarden_core::inbound::{Scheme, DEFAULT_TOLERANCE_SECS};
use hookwarden_core::secret::WebhookSecret;
use hookwarden_store::ingress::Integration;
use hookwarden_store::sealed::SealedColumn;
use ipnet::IpNet;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

/// The verifier tries no more secrets than this, so no more can be configured.
const MAX_SECRETS: usize = hookwarden_core::inbound::MAX_ACTIVE_SECRETS;
pub use super::ready::DEFAULT_RATE_LIMIT;

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
    // serde_json's error would quote the decrypted text it could not read.
    let list: Vec<String> = serde_json::from_slice(&plain)
        .map_err(|_| anyhow::anyhow!("the stored provider secrets are not a list of strings"))?;
    Ok(list.into_iter().map(Zeroizing::new).collect())
}

pub fn open_forwarding_secret(keyring: &Keyring, i: &Integration) -> anyhow::Result<WebhookSecret> {
    let plain = keyring.open(
        row_identity(SealedColumn::IntegrationForwardingSecret, &i.name, ""),
        &i.forwarding_secret,
    )?;
    Ok(WebhookSecret::from_stored(&plain)?)
}

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
    /// How many provider secrets verify requests (the newest is index 0).
    active_secrets: usize,
    /// Which secret (0 = newest) verified the last request this replica
    /// received since it started; `null` when none did. Once it stays 0,
    /// the older secrets can be retired.
    last_verified_secret: Option<usize>,
    #[schema(format = DateTime)]
    last_verified_at: Option<String>,
    /// Internal services verify forwarded events with it (shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarding_secret: Option<String>,
}

/// The view with the secrets counted and this replica's last verification.
pub fn view(state: &AppState, i: &Integration) -> Result<IntegrationView, ApiError> {
    let active = open_secrets(&state.keyring, i)
        .map_err(|e| ApiError::internal("open integration secrets", e))?
        .len();
    let last = state.integrations.verified.get(&i.name);
    Ok(IntegrationView {
        active_secrets: active,
        last_verified_secret: last.map(|(index, _)| index),
        last_verified_at: last.map(|(_, at)| at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        ..settings_view(i)
    })
}

fn settings_view(i: &Integration) -> IntegrationView {
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
        active_secrets: 0,
        last_verified_secret: None,
        last_verified_at: None,
        forwarding_secret: None,
    }
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The body of `PUT` and `PATCH /api/v1/integrations/{name}`. Each field is
/// absent, `null` (back to its default) or a value. `PATCH` keeps what is
/// absent (RFC 7396 merge); `PUT` replaces the whole configuration and
/// refuses a body that leaves a setting out, so nothing falls back to a
/// default unasked. On both, absent secrets are kept.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IntegrationChange {
    /// Accepted only if it is the integration's name.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^(hmac-sha256|token|standard-webhooks|stripe|github|slack|shopify)$")]
    pub scheme: Option<Option<String>>,
    /// Replaces every provider secret with this one (kept when absent; see
    /// also `rotate-secret`, which keeps the previous ones active).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub secret: Option<Option<String>>,
    /// Replaces the provider secrets with these (newest first).
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub secrets: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub signature_header: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, pattern = "^(hex|base64)$")]
    pub encoding: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub prefix: Option<Option<String>>,
    /// `null`: 300.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub tolerance_seconds: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub target_url: Option<Option<String>>,
    /// `null`: any source.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub allowed_cidrs: Option<Option<Vec<String>>>,
    /// `null`: 600.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub rate_limit_per_minute: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub idempotency_header: Option<Option<String>>,
    /// `null`: false.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<bool>)]
    pub forward_raw_body: Option<Option<bool>>,
}

impl IntegrationChange {
    /// The settings a full replacement (`PUT`) leaves out, in API names.
    pub fn missing_settings(&self) -> Vec<&'static str> {
        let fields = [
            ("scheme", self.scheme.is_some()),
            ("targetUrl", self.target_url.is_some()),
            ("signatureHeader", self.signature_header.is_some()),
            ("encoding", self.encoding.is_some()),
            ("prefix", self.prefix.is_some()),
            ("toleranceSeconds", self.tolerance_seconds.is_some()),
            ("allowedCidrs", self.allowed_cidrs.is_some()),
            ("rateLimitPerMinute", self.rate_limit_per_minute.is_some()),
            ("idempotencyHeader", self.idempotency_header.is_some()),
            ("forwardRawBody", self.forward_raw_body.is_some()),
        ];
        fields
            .iter()
            .filter(|(_, given)| !given)
            .map(|(name, _)| *name)
            .collect()
    }

    /// The configuration this change describes over `existing`: absent keeps,
    /// `null` takes the default. The provider secrets stay sealed unless given.
    pub fn merged(&self, existing: &Integration) -> Result<IntegrationInput, ApiError> {
        fn keep<T: Clone>(change: &Option<Option<T>>, old: Option<T>) -> Option<T> {
            match change {
                None => old,
                Some(new) => new.clone(),
            }
        }
        let required = |field: &str| ApiError::Validation(format!("{field} cannot be null"));
        if matches!(self.secret, Some(None)) || matches!(self.secrets, Some(None)) {
            return Err(ApiError::Validation(
                "secrets cannot be null: use rotate-secret or secrets/retire".into(),
            ));
        }
        Ok(IntegrationInput {
            name: Some(existing.name.clone()),
            scheme: keep(&self.scheme, Some(existing.scheme.clone()))
                .ok_or_else(|| required("scheme"))?,
            secret: self.secret.clone().flatten(),
            secrets: self.secrets.clone().flatten(),
            signature_header: keep(&self.signature_header, existing.signature_header.clone()),
            encoding: keep(&self.encoding, existing.encoding.clone()),
            prefix: keep(&self.prefix, existing.prefix.clone()),
            tolerance_seconds: keep(&self.tolerance_seconds, Some(existing.tolerance_seconds)),
            target_url: keep(&self.target_url, Some(existing.target_url.clone()))
                .ok_or_else(|| required("targetUrl"))?,
            allowed_cidrs: keep(&self.allowed_cidrs, Some(existing.allowed_cidrs.clone())),
            rate_limit_per_minute: keep(
                &self.rate_limit_per_minute,
                existing.rate_limit_per_minute,
            ),
            idempotency_header: keep(
                &self.idempotency_header,
                existing.idempotency_header.clone(),
            ),
            forward_raw_body: keep(&self.forward_raw_body, Some(existing.forward_raw_body)),
        })
    }
}

/// The settings an operator may see, for the audit trail: never a secret,
/// and the target URL with its query (which may carry a token) shown as `?…`.
fn audited_settings(i: &Integration) -> Map<String, Value> {
    let target = url::Url::parse(&i.target_url)
        .map(|mut u| {
            let query = u.query().is_some();
            u.set_query(None);
            u.set_fragment(None);
            if query {
                format!("{u}?…")
            } else {
                u.to_string()
            }
        })
        .unwrap_or_default();
    let v = json!({
        "scheme": i.scheme,
        "signatureHeader": i.signature_header,
        "encoding": i.encoding,
        "prefix": i.prefix,
        "toleranceSeconds": i.tolerance_seconds,
        "targetUrl": target,
        "allowedCidrs": i.allowed_cidrs,
        "rateLimitPerMinute": i.rate_limit_per_minute,
        "idempotencyHeader": i.idempotency_header,
        "forwardRawBody": i.forward_raw_body,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// The settings that differ, each as `[old, new]`.
pub fn changed_settings(old: &Integration, new: &Integration) -> Map<String, Value> {
    let before = audited_settings(old);
    audited_settings(new)
        .into_iter()
        .filter_map(|(k, after)| {
            let was = before.get(&k).cloned().unwrap_or(Value::Null);
            (was != after).then(|| (k, json!([was, after])))
        })
        .collect()
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

/// Words that mark a header as carrying a signature, token or credential.
const SENSITIVE: [&[u8]; 9] = [
    b"signature",
    b"token",
    b"secret",
    b"hmac",
    b"auth",
    b"cookie",
    b"api-key",
    b"apikey",
    b"password",
];

/// Which bytes start a word of `SENSITIVE` (lower case), made from the list
/// itself so a word added there is never skipped.
const STARTS_A_WORD: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < SENSITIVE.len() {
        table[SENSITIVE[i][0] as usize] = true;
        i += 1;
    }
    table
};

/// Headers that are safe to keep with the event: never one that carries a
/// signature, token or credential, nor the scheme's own header.
/// Runs on every header of every accepted request, so it neither allocates
/// nor builds a substring searcher per word (names are short, the words
/// shorter): one pass over the name, the words compared only where one of
/// their first letters stands.
pub fn keepable_header(name: &str, scheme_header: Option<&str>) -> bool {
    let n = name.as_bytes();
    let sensitive = (0..n.len()).any(|i| {
        let first = n[i].to_ascii_lowercase();
        STARTS_A_WORD[first as usize]
            && SENSITIVE.iter().any(|w| {
                w[0] == first && n.len() - i >= w.len() && n[i..i + w.len()].eq_ignore_ascii_case(w)
            })
    });
    !sensitive && !scheme_header.is_some_and(|h| h.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::keepable_header;

    #[test]
    fn credentials_and_the_schemes_header_are_never_kept() {
        for kept in [
            "content-type",
            "user-agent",
            "x-github-event",
            "x-request-id",
            "x-correlation-id",
        ] {
            assert!(keepable_header(kept, Some("x-sig")), "{kept}");
        }
        for dropped in [
            "x-hub-signature-256",
            "Stripe-Signature",
            "authorization",
            "proxy-authorization",
            "x-api-key",
            "X-Shopify-Hmac-Sha256",
            "cookie",
            "x-auth-token",
            "x-apikey",
            "x-webhook-secret",
            "x-password",
            "x-sig",
            "X-Sig",
        ] {
            assert!(!keepable_header(dropped, Some("x-sig")), "{dropped}");
        }
        assert!(keepable_header("x-sig", None));
        assert!(!keepable_header("x-sig", Some("X-SIG")));
        // Every word, anywhere in the name, in either case.
        for word in [
            "signature",
            "token",
            "secret",
            "hmac",
            "auth",
            "cookie",
            "api-key",
            "apikey",
            "password",
        ] {
            for name in [
                word.to_owned(),
                format!("x-{word}"),
                format!("{word}-x"),
                format!("x-{word}-y"),
                format!("X-{}-Y", word.to_ascii_uppercase()),
            ] {
                assert!(!keepable_header(&name, None), "{name}");
            }
        }
    }
}
