//! Storage errors: the few outcomes callers must tell apart, and the rest.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused an 11th webhook for an account (the limit trigger).
    #[error("webhook limit reached for this account")]
    WebhookLimit,
    /// The database refused a second webhook of an account with the same URL
    /// and the same event types (the same trigger).
    #[error("a webhook with this url and these event types exists in this account")]
    WebhookDuplicate,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("invalid stored data: {0}")]
    Corrupt(String),
    #[error("no audit chain key is loaded: nothing can be appended to the audit trail")]
    AuditKeyMissing,
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
    /// The caller's own bound on a read ran out.
    #[error("the database did not answer in time ({0})")]
    TimedOut(&'static str),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Maps a database error raised by the webhook limit trigger (both backends
/// put these markers in the message) to `WebhookLimit` or `WebhookDuplicate`.
pub(crate) fn classify(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.message().contains("webhook_limit_exceeded") {
            return StoreError::WebhookLimit;
        }
        if db.message().contains("webhook_duplicate") {
            return StoreError::WebhookDuplicate;
        }
    }
    StoreError::Database(err)
}
