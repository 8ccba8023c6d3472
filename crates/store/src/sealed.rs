//! Every column that holds a sealed secret, described once, so that a master
//! key rotation can find and re-encrypt them all on either backend.

use hookwarden_core::crypto::Sealed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedColumn {
    WebhookSecret,
    WebhookOldSecret,
    /// The values of a webhook's secret custom headers (migration 0020).
    WebhookHeaders,
    IntegrationSecrets,
    IntegrationForwardingSecret,
    /// The audit trail's chain key (one row, migration 0009).
    AuditChainKey,
}

impl SealedColumn {
    pub const ALL: [SealedColumn; 6] = [
        Self::WebhookSecret,
        Self::WebhookOldSecret,
        Self::WebhookHeaders,
        Self::IntegrationSecrets,
        Self::IntegrationForwardingSecret,
        Self::AuditChainKey,
    ];

    /// (table, id column, account expression, ciphertext column, key id column)
    pub(crate) fn sql(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        match self {
            Self::WebhookSecret => (
                "webhook_configs",
                "id",
                "account_id",
                "secret_enc",
                "secret_key_id",
            ),
            Self::WebhookOldSecret => (
                "webhook_configs",
                "id",
                "account_id",
                "old_secret_enc",
                "old_secret_key_id",
            ),
            Self::WebhookHeaders => (
                "webhook_configs",
                "id",
                "account_id",
                "headers_enc",
                "headers_key_id",
            ),
            Self::IntegrationSecrets => (
                "integrations",
                "name",
                "''",
                "secrets_enc",
                "secrets_key_id",
            ),
            Self::IntegrationForwardingSecret => (
                "integrations",
                "name",
                "''",
                "forwarding_secret_enc",
                "forwarding_key_id",
            ),
            Self::AuditChainKey => ("audit_chain_key", "id", "''", "key_enc", "key_id"),
        }
    }
}

/// One sealed value and the row that owns it.
#[derive(Debug, Clone)]
pub struct SealedRow {
    pub column: SealedColumn,
    pub id: String,
    pub account_id: String,
    pub sealed: Sealed,
}
