//! Integrations as the receive path reads them: every integration held in
//! memory, so a request naming no integration (a cheap way to load the
//! database) costs no query at all. The copy is reloaded when the database's
//! integration generation (bumped by a trigger on every change, migration
//! 0010) moves; that one-row read is made at most every `CHECK_EVERY`, by
//! one request at a time, so a change made on any replica (a provider secret
//! rotated out, an integration deleted) applies on every replica within
//! `CHECK_EVERY` plus one query. A change made through this replica applies
//! at once (`invalidate`). Each integration is held ready (`ready.rs`): its
//! scheme and source ranges parsed when the copy is loaded, not per request.
//!
//! The checked copy is one entry of a `moka` cache living `CHECK_EVERY`:
//! requests arriving while it is being refreshed wait for that one refresh
//! instead of each reading the database.
//!
//! Polling a counter was chosen over PostgreSQL `LISTEN/NOTIFY`: it works the
//! same on both backends, and a dropped listening connection cannot make a
//! replica miss a revocation silently.

use super::ready::Ready;
use hookwarden_store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How stale this replica's copy may be.
pub const CHECK_EVERY: Duration = Duration::from_millis(250);
/// While the database cannot be read, the last copy is served this long
/// (one failed read then answers for `CHECK_EVERY`: waiters do not pile up
/// behind it), then requests fail.
pub const SERVE_STALE_FOR: Duration = Duration::from_secs(5);
/// Longest wait for the generation or the list.
const READ_TIMEOUT: Duration = Duration::from_secs(1);

struct Snapshot {
    generation: i64,
    by_name: Arc<HashMap<String, Arc<Ready>>>,
}

pub struct IntegrationCache {
    /// The copy checked against the database within `CHECK_EVERY` (one key).
    checked: moka::future::Cache<(), Arc<Snapshot>>,
    /// The last copy read and when its generation was last confirmed: reused
    /// while the generation stands, and served while the database cannot be
    /// read (for `SERVE_STALE_FOR`).
    last: RwLock<Option<(Arc<Snapshot>, Instant)>>,
    /// Set after this replica changed an integration: reload at the next read.
    stale: AtomicBool,
    /// Which provider secret last verified a request (this replica).
    pub verified: super::verified::LastVerified,
}

impl Default for IntegrationCache {
    fn default() -> Self {
        Self {
            checked: moka::future::Cache::builder()
                .max_capacity(1)
                .time_to_live(CHECK_EVERY)
                .build(),
            last: RwLock::new(None),
            stale: AtomicBool::new(false),
            verified: Default::default(),
        }
    }
}

impl IntegrationCache {
    /// The integration named `name`, ready to receive; `None` when there is none.
    pub async fn get(&self, store: &dyn Store, name: &str) -> anyhow::Result<Option<Arc<Ready>>> {
        if self.stale.load(Ordering::SeqCst) {
            self.checked.invalidate(&()).await;
        }
        let snapshot = self
            .checked
            .try_get_with((), self.refresh(store))
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(snapshot.by_name.get(name).cloned())
    }

    /// Forgets what this replica holds (after it changed an integration).
    pub fn invalidate(&self, _name: &str) {
        self.stale.store(true, Ordering::SeqCst);
        self.checked.invalidate_all();
    }

    async fn refresh(&self, store: &dyn Store) -> hookwarden_store::Result<Arc<Snapshot>> {
        match self.reload(store).await {
            Ok(s) => Ok(s),
            Err(e) => {
                tracing::warn!(error.message = %e, "reading the integrations failed; serving the last copy while it is recent");
                // Served as this check's answer: the next read is tried in
                // `CHECK_EVERY`, however many requests arrive meanwhile.
                self.usable_while_failing().ok_or(e)
            }
        }
    }

    /// The last copy, if it is recent enough to answer while the database
    /// cannot be read (never after this replica changed an integration).
    fn usable_while_failing(&self) -> Option<Arc<Snapshot>> {
        if self.stale.load(Ordering::SeqCst) {
            return None;
        }
        self.last
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(_, at)| at.elapsed() < SERVE_STALE_FOR)
            .map(|(s, _)| Arc::clone(s))
    }

    async fn reload(&self, store: &dyn Store) -> hookwarden_store::Result<Arc<Snapshot>> {
        let forced = self.stale.swap(false, Ordering::SeqCst);
        let restore = || {
            if forced {
                self.stale.store(true, Ordering::SeqCst);
            }
        };
        let timeout = || hookwarden_store::StoreError::TimedOut("integrations");
        let generation = tokio::time::timeout(READ_TIMEOUT, store.integration_generation())
            .await
            .unwrap_or_else(|_| Err(timeout()))
            .inspect_err(|_| restore())?;
        let previous = self
            .last
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(s, _)| Arc::clone(s));
        let by_name = match previous {
            Some(s) if s.generation == generation && !forced => Arc::clone(&s.by_name),
            _ => {
                // The generation is read first: a change committed between
                // the two reads only makes the next check reload again.
                let all = tokio::time::timeout(READ_TIMEOUT, store.list_integrations())
                    .await
                    .unwrap_or_else(|_| Err(timeout()))
                    .inspect_err(|_| restore())?;
                Arc::new(
                    all.into_iter()
                        .map(|i| (i.name.clone(), Arc::new(Ready::new(i))))
                        .collect(),
                )
            }
        };
        let snapshot = Arc::new(Snapshot {
            generation,
            by_name,
        });
        *self.last.write().unwrap_or_else(|p| p.into_inner()) =
            Some((Arc::clone(&snapshot), Instant::now()));
        Ok(snapshot)
    }
}
