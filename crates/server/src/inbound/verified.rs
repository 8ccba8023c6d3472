//! Which provider secret last verified a request, per integration, so an
//! operator can see when an older secret stopped being used. Held in memory
//! by each replica (a lock and a map write per verified request, never a
//! database write): the view says what this replica saw since it started.

use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

/// Per integration name: the secret's index and when it verified.
type Seen = HashMap<String, (usize, DateTime<Utc>)>;

#[derive(Default)]
pub struct LastVerified {
    by_name: Mutex<Seen>,
}

impl LastVerified {
    fn map(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.by_name.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that secret `index` (0 = newest) verified a request now.
    pub fn note(&self, name: &str, index: usize, at: DateTime<Utc>) {
        let mut map = self.map();
        match map.get_mut(name) {
            Some(entry) => *entry = (index, at),
            None => {
                map.insert(name.to_owned(), (index, at));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<(usize, DateTime<Utc>)> {
        self.map().get(name).copied()
    }

    /// The secrets were replaced: no index applies any more.
    pub fn forget(&self, name: &str) {
        self.map().remove(name);
    }

    /// A new secret went first: the one noted moved one place down.
    pub fn shift_for_new_secret(&self, name: &str) {
        if let Some(entry) = self.map().get_mut(name) {
            entry.0 += 1;
        }
    }

    /// Secret `retired` left the list: the indices after it move up.
    pub fn retired(&self, name: &str, retired: usize) {
        let mut map = self.map();
        match map.get(name).map(|e| e.0) {
            Some(i) if i == retired => {
                map.remove(name);
            }
            Some(i) if i > retired => {
                if let Some(e) = map.get_mut(name) {
                    e.0 -= 1;
                }
            }
            _ => {}
        }
    }
}
