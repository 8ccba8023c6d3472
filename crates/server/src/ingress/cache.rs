//! Integrations as the receive path reads them: cached for a few seconds, the
//! absence of one too, so that requests for unknown providers (a cheap way to
//! load the database) cost no query. A change made through this replica is
//! visible at once; through another, within `FRESH_FOR`.

use hookwarden_store::ingress::Integration;
use hookwarden_store::Store;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const FRESH_FOR: Duration = Duration::from_secs(5);
/// Bounds the memory that requests for random provider names can use.
const MAX_ENTRIES: usize = 10_000;

type Entry = (Instant, Option<Integration>);

#[derive(Default)]
pub struct IntegrationCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl IntegrationCache {
    pub async fn get(
        &self,
        store: &dyn Store,
        name: &str,
    ) -> hookwarden_store::Result<Option<Integration>> {
        if let Some((at, found)) = self
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
        {
            if at.elapsed() < FRESH_FOR {
                return Ok(found.clone());
            }
        }
        let found = store.get_integration(name).await?;
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(name.to_owned(), (Instant::now(), found.clone()));
        Ok(found)
    }

    /// Forgets one integration (after this replica changed it).
    pub fn invalidate(&self, name: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}
