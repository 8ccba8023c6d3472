//! Online master key rotation: re-encrypts every sealed secret still under an
//! older master key with the current one, in small batches, while the service
//! keeps running. Each value is replaced by compare-and-swap, so a concurrent
//! secret rotation through the API is never overwritten, and an interrupted
//! run is finished by running it again.

use crate::shared::secrets::row_identity;
use hookwarden_core::crypto::Keyring;
use hookwarden_store::sealed::SealedColumn;
use hookwarden_store::Store;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RotationReport {
    pub resealed: u64,
    /// Values that changed under us (re-read on the next pass).
    pub raced: u64,
    pub remaining: u64,
}

/// Re-encrypts everything not under the keyring's current master key.
/// `progress(done, total)` is called after every batch.
pub async fn rotate_all(
    store: &dyn Store,
    keyring: &Keyring,
    batch: u32,
    mut progress: impl FnMut(u64, u64),
) -> anyhow::Result<RotationReport> {
    let current = keyring.current_id().to_owned();
    let total = store.count_not_under(&current).await?;
    let mut report = RotationReport::default();
    for column in SealedColumn::ALL {
        loop {
            let rows = store.sealed_not_under(column, &current, batch).await?;
            if rows.is_empty() {
                break;
            }
            let mut progressed = false;
            for row in rows {
                let identity = row_identity(column, &row.id, &row.account_id);
                let plain = keyring.open(identity, &row.sealed).map_err(|e| {
                    anyhow::anyhow!(
                        "{column:?} of {} cannot be opened ({e}); is its master key in HOOKWARDEN_PREVIOUS_MASTER_KEYS?",
                        row.id
                    )
                })?;
                let resealed = keyring.seal(identity, &plain);
                if store
                    .reseal(column, &row.id, &row.sealed, &resealed)
                    .await?
                {
                    report.resealed += 1;
                    progressed = true;
                } else {
                    report.raced += 1;
                }
            }
            progress(report.resealed, total);
            if !progressed {
                // Everything in this batch changed under us; the next pass re-reads it.
                tokio::task::yield_now().await;
            }
        }
    }
    report.remaining = store.count_not_under(&current).await?;
    Ok(report)
}
