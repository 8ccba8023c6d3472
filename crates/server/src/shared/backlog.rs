//! What a pump knows of due work waiting in the database, per lane: a try
//! handed to the worker as it is stored (leased at birth) must not overtake
//! older due work of its lane, and a freed slot of a lane with nothing
//! waiting needs no claim (the claim would walk the due index for nothing).

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct Backlog(Mutex<State>);

struct State {
    /// Since when any lane may have due work waiting (start-up, a claim
    /// that came back full, work of lanes not named); None: no such doubt.
    all: Option<u64>,
    /// Lanes that may have due work waiting, with when they gained it.
    lanes: HashMap<String, u64>,
    /// Counts every gain, so that a claim clears only what was stored
    /// before it began: its snapshot may predate later work.
    epoch: u64,
    /// Lanes with items on their way back to the database (given back,
    /// still leased until that write commits): behind whatever a claim
    /// meanwhile shows, since no claim can see them yet.
    returning: HashMap<String, usize>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            all: Some(0),
            lanes: HashMap::new(),
            epoch: 0,
            returning: HashMap::new(),
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
        s.all.is_some() || s.lanes.contains_key(lane) || s.returning.contains_key(lane)
    }

    /// Whether this lane may have due work waiting that was stored after
    /// `epoch` (a claim begun then cannot have seen it).
    pub fn behind_since(&self, lane: &str, epoch: u64) -> bool {
        let s = self.state();
        s.all.is_some_and(|since| since > epoch)
            || s.lanes.get(lane).is_some_and(|since| *since > epoch)
            || s.returning.contains_key(lane)
    }

    /// An item of this lane is on its way back to the database.
    pub fn returning(&self, lane: &str) {
        *self.state().returning.entry(lane.to_owned()).or_insert(0) += 1;
    }

    /// It is back (its release committed, or failed and waits for its
    /// lease): the lane is behind by an ordinary gain from here on.
    pub fn returned(&self, lane: &str) {
        let mut s = self.state();
        s.epoch += 1;
        let epoch = s.epoch;
        s.lanes.insert(lane.to_owned(), epoch);
        if let Some(n) = s.returning.get_mut(lane) {
            *n -= 1;
            if *n == 0 {
                s.returning.remove(lane);
            }
        }
    }

    /// Due work was stored for these lanes (a try the worker had no room
    /// for, a wake).
    pub fn gained<'a>(&self, lanes: impl IntoIterator<Item = &'a String>) {
        let mut s = self.state();
        s.epoch += 1;
        let epoch = s.epoch;
        for lane in lanes {
            s.lanes.insert(lane.clone(), epoch);
        }
    }

    /// Due work was stored for lanes not named.
    pub fn gained_any(&self) {
        let mut s = self.state();
        s.epoch += 1;
        s.all = Some(s.epoch);
    }

    /// Taken before a claim's query: what `settle` compares against.
    pub fn epoch(&self) -> u64 {
        self.state().epoch
    }

    /// After a claim begun at `epoch`: a claim that came back short found
    /// every due row, stored before it began, of the lanes it did not
    /// exclude, so those lanes are clear unless they gained work since; the
    /// excluded lanes (and those whose rows it gave back) were not looked
    /// at. A full claim may have left more anywhere.
    pub fn settle(&self, epoch: u64, short: bool, unseen: impl IntoIterator<Item = String>) {
        let mut s = self.state();
        s.epoch += 1;
        let now = s.epoch;
        if !short {
            s.all = Some(now);
            return;
        }
        if s.all.is_some_and(|since| since <= epoch) {
            s.all = None;
        }
        s.lanes.retain(|_, since| *since > epoch);
        for lane in unseen {
            s.lanes.insert(lane, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Backlog;

    /// A lane with an item on its way back stays behind through a short
    /// claim (which cannot have seen it), and after its return until a
    /// claim begun since comes back short.
    #[test]
    fn a_lane_whose_item_is_on_its_way_back_stays_behind() {
        let b = Backlog::default();
        b.settle(b.epoch(), true, []);
        b.returning("a");
        assert!(b.behind("a") && b.behind_since("a", u64::MAX));
        b.settle(b.epoch(), true, []);
        assert!(b.behind("a"), "a short claim does not clear it");
        let before = b.epoch();
        b.returned("a");
        b.settle(before, true, []);
        assert!(b.behind("a"), "returned after that claim began");
        b.settle(b.epoch(), true, []);
        assert!(!b.behind("a"));
    }

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
    fn a_claim_clears_the_lanes_it_saw_even_while_other_lanes_gain_work() {
        let b = Backlog::default();
        b.settle(b.epoch(), true, []);
        b.gained([&"quiet".to_owned()]);
        let e = b.epoch();
        b.gained([&"busy".to_owned()]);
        b.settle(e, true, []);
        assert!(!b.behind("quiet"), "its work was stored before the claim");
        assert!(
            b.behind("busy"),
            "its work may postdate the claim's snapshot"
        );
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
