//! Storage errors: the few outcomes callers must tell apart, and the rest.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused an 11th webhook for an account (the limit trigger).
    #[error("webhook limit reached for this account")]
    WebhookLimit,
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
/// put this marker in the message) to `WebhookLimit`.
pub(crate) fn classify(err: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &err {
        if db.message().contains("webhook_limit_exceeded") {
            return StoreError::WebhookLimit;
        }
    }
    StoreError::Database(err)
}
