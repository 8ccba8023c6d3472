//! Sealing and opening webhook secrets with the owning row's identity as
//! associated data. Plaintext lives only in the returned values, which zero
//! themselves on drop.

use hookwarden_core::crypto::{Keyring, RowIdentity, Sealed};
use hookwarden_core::secret::WebhookSecret;

const WEBHOOK_TABLE: &str = "webhook_configs";

fn webhook_row<'a>(account_id: &'a str, webhook_id: &'a str) -> RowIdentity<'a> {
    RowIdentity {
        table: WEBHOOK_TABLE,
        account_id,
        row_id: webhook_id,
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
    WebhookSecret::from_stored(&plain).map_err(|e| err(e.to_string()))
}
