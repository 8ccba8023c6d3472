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
    #[error("unsupported database url: {0}")]
    UnsupportedUrl(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// The database could not be reached or did not answer in time, as
    /// opposed to refusing this very operation: worth waiting out, and not
    /// the data's fault.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(
                sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::WorkerCrashed
            )
        )
    }
}

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
