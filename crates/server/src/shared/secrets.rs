//! Sealing and opening webhook secrets with the owning row's identity as
//! associated data. Plaintext lives only in the returned values, which zero
//! themselves on drop.

use chrono::{DateTime, Utc};
use hookwarden_core::crypto::{Keyring, RowIdentity, Sealed};
use hookwarden_core::secret::WebhookSecret;
use hookwarden_store::model::Webhook;
use hookwarden_store::sealed::SealedColumn;
use std::collections::BTreeMap;
use zeroize::Zeroizing;

const WEBHOOK_TABLE: &str = "webhook_configs";

fn webhook_row<'a>(account_id: &'a str, webhook_id: &'a str) -> RowIdentity<'a> {
    RowIdentity {
        table: WEBHOOK_TABLE,
        account_id,
        row_id: webhook_id,
    }
}

/// The identity every sealed column is bound to: the one place that knows it,
/// used by sealing, opening and the master key rotation alike.
pub fn row_identity<'a>(column: SealedColumn, id: &'a str, account_id: &'a str) -> RowIdentity<'a> {
    match column {
        // The current and the previous secret of a webhook share the row's identity.
        SealedColumn::WebhookSecret | SealedColumn::WebhookOldSecret => webhook_row(account_id, id),
        SealedColumn::WebhookHeaders => headers_row(account_id, id),
        SealedColumn::IntegrationSecrets => integration_row(id, "integrations.secrets"),
        SealedColumn::IntegrationForwardingSecret => {
            integration_row(id, "integrations.forwarding_secret")
        }
        // The audit chain key is the operator's too, and one row.
        SealedColumn::AuditChainKey => integration_row(id, "audit_chain_key"),
    }
}

/// A webhook's secret headers: the same row, another column named in the
/// identity, so a header blob can never be opened as the signing secret.
fn headers_row<'a>(account_id: &'a str, webhook_id: &'a str) -> RowIdentity<'a> {
    RowIdentity {
        table: "webhook_configs.headers",
        account_id,
        row_id: webhook_id,
    }
}

/// Seals the values of a webhook's secret headers (name → value).
pub fn seal_headers(
    keyring: &Keyring,
    account_id: &str,
    webhook_id: &str,
    values: &BTreeMap<String, String>,
) -> Sealed {
    let plain = Zeroizing::new(serde_json::to_vec(values).unwrap_or_default());
    keyring.seal(headers_row(account_id, webhook_id), &plain)
}

/// Opens the values of a webhook's secret headers.
pub fn open_headers(
    keyring: &Keyring,
    account_id: &str,
    webhook_id: &str,
    sealed: &Sealed,
) -> Result<Vec<(String, Zeroizing<String>)>, OpenError> {
    let err = |reason: String| OpenError {
        webhook_id: webhook_id.to_owned(),
        reason,
    };
    let plain = keyring
        .open(headers_row(account_id, webhook_id), sealed)
        .map_err(|e| err(e.to_string()))?;
    let values: BTreeMap<String, String> = serde_json::from_slice(&plain)
        .map_err(|_| err("the sealed headers are not a JSON object of strings".into()))?;
    Ok(values
        .into_iter()
        .map(|(name, value)| (name, Zeroizing::new(value)))
        .collect())
}

/// Integrations are operator objects, not tenant ones: one key context for all.
/// The column names the identity, so the two sealed columns cannot be swapped.
fn integration_row<'a>(name: &'a str, column: &'static str) -> RowIdentity<'a> {
    RowIdentity {
        table: column,
        account_id: "operator",
        row_id: name,
    }
}

pub fn seal_webhook_secret(
    keyring: &Keyring,
    account_id: &str,
    webhook_id: &str,
    secret: &WebhookSecret,
) -> Sealed {
    keyring.seal(
        webhook_row(account_id, webhook_id),
        secret.expose().as_bytes(),
    )
}

#[derive(Debug, thiserror::Error)]
#[error("stored secret of webhook {webhook_id} cannot be opened: {reason}")]
pub struct OpenError {
    pub webhook_id: String,
    pub reason: String,
}

pub fn open_webhook_secret(
    keyring: &Keyring,
    account_id: &str,
    webhook_id: &str,
    sealed: &Sealed,
) -> Result<WebhookSecret, OpenError> {
    let err = |reason: String| OpenError {
        webhook_id: webhook_id.to_owned(),
        reason,
    };
    let plain = keyring
        .open(webhook_row(account_id, webhook_id), sealed)
        .map_err(|e| err(e.to_string()))?;
    WebhookSecret::from_stored_key(&plain).map_err(|e| err(e.to_string()))
}

/// A webhook's signing secrets as its tenant may read them again: the
/// current one, and the previous one with the end of its grace while that
/// lasts (it still signs beside the current one until then).
pub struct Revealed {
    pub current: WebhookSecret,
    pub previous: Option<(WebhookSecret, DateTime<Utc>)>,
}

pub fn reveal(keyring: &Keyring, w: &Webhook, now: DateTime<Utc>) -> Result<Revealed, OpenError> {
    let current = open_webhook_secret(keyring, &w.account_id, &w.id, &w.secret)?;
    let previous = match &w.old_secret {
        Some((old, until)) if *until > now => Some((
            open_webhook_secret(keyring, &w.account_id, &w.id, old)?,
            *until,
        )),
        _ => None,
    };
    Ok(Revealed { current, previous })
}

/// The custom headers a request to `w` carries, in the order set: the
/// plain ones from the list, the secret ones opened.
pub fn webhook_headers(
    keyring: &Keyring,
    w: &Webhook,
) -> Result<Vec<(String, Zeroizing<String>)>, OpenError> {
    let Some(serde_json::Value::Array(list)) = &w.controls.headers else {
        return Ok(Vec::new());
    };
    let secrets = match &w.controls.secret_headers {
        Some(sealed) => open_headers(keyring, &w.account_id, &w.id, sealed)?,
        None => Vec::new(),
    };
    let mut out = Vec::with_capacity(list.len());
    for h in list {
        // A name refused since it was stored (`traceparent`, say) is not
        // sent: hookwarden's own header of that name goes instead.
        let Some(name) = h["name"]
            .as_str()
            .filter(|n| hookwarden_core::custom_headers::check_name(n).is_ok())
        else {
            continue;
        };
        let value = match h["value"].as_str() {
            Some(v) => Zeroizing::new(v.to_owned()),
            None => match secrets.iter().find(|(n, _)| n == name) {
                Some((_, v)) => v.clone(),
                None => continue,
            },
        };
        out.push((name.to_owned(), value));
    }
    Ok(out)
}
