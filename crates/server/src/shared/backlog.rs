//! What a pump knows of due work waiting in the database, per lane: a try
//! handed to the worker as it is stored (leased at birth) must not overtake
//! older due work of its lane, and a freed slot of a lane with nothing
//! waiting needs no claim (the claim would walk the due index for nothing).

use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct Backlog(Mutex<State>);

struct State {
    /// Any lane may have due work waiting (start-up, a claim that came back
    /// full, work of lanes not named).
    all: bool,
    /// Lanes that may have due work waiting.
    lanes: HashSet<String>,
    /// Bumped whenever a lane gains work, so that a claim whose snapshot
    /// may predate that work does not clear it.
    epoch: u64,
}

impl Default for State {
    fn default() -> Self {
        Self {
            all: true,
            lanes: HashSet::new(),
            epoch: 0,
        }
    }
}

impl Backlog {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this lane may have due work waiting in the database.
    pub fn behind(&self, lane: &str) -> bool {
        let s = self.state();
        s.all || s.lanes.contains(lane)
    }

    /// Due work was stored for these lanes (a try the worker had no room
    /// for, a wake).
    pub fn gained<'a>(&self, lanes: impl IntoIterator<Item = &'a String>) {
        let mut s = self.state();
        s.lanes.extend(lanes.into_iter().cloned());
        s.epoch += 1;
    }

    /// Due work was stored for lanes not named.
    pub fn gained_any(&self) {
        let mut s = self.state();
        s.all = true;
        s.epoch += 1;
    }

    /// Taken before a claim's query: what `settle` compares against.
    pub fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// After a claim begun at `epoch`: a claim that came back short found
    /// every due row of the lanes it did not exclude, so only the excluded
    /// lanes (and those whose rows it gave back) may still have some,
    /// unless work was stored meanwhile; a full claim may have left more
    /// anywhere.
    pub fn settle(&self, epoch: u64, short: bool, unseen: impl IntoIterator<Item = String>) {
        let mut s = self.state();
        if !short {
            s.all = true;
        } else if s.epoch == epoch {
            s.all = false;
            s.lanes = unseen.into_iter().collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Backlog;

    #[test]
    fn everything_is_behind_until_a_short_claim_says_otherwise() {
        let b = Backlog::default();
        assert!(b.behind("a"));
        let e = b.epoch();
        b.settle(e, true, ["busy".to_owned()]);
        assert!(!b.behind("a"));
        assert!(b.behind("busy"), "an excluded lane was not looked at");
        b.settle(b.epoch(), false, []);
        assert!(b.behind("a"), "a full claim may have left more");
    }

    #[test]
    fn work_stored_while_a_claim_runs_is_not_cleared_by_it() {
        let b = Backlog::default();
        b.settle(b.epoch(), true, []);
        let e = b.epoch();
        b.gained([&"a".to_owned()]);
        b.settle(e, true, []);
        assert!(b.behind("a"));
        b.settle(b.epoch(), true, []);
        assert!(!b.behind("a"));
        b.gained_any();
        assert!(b.behind("z"));
    }
}
