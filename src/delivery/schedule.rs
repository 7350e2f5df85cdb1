//! Which entry is sent next: each target's side of the queue (the entries
//! ready to send to it, in one lane per endpoint; how many of its attempts
//! are in flight; its backoff and what it asked for with `Retry-After`; its
//! counters; the newest value of the target, which each attempt uses), and
//! the turn in which the workers serve the targets. Targets are told apart
//! by their [`Key`].
//!
//! **Turns.** Workers serve the targets with entries ready in turn, and
//! within a target the endpoints in turn, oldest first within an endpoint.
//! So a flood of one endpoint's changes to one fluxd puts each change of
//! another endpoint at most one entry behind per endpoint, and a backlog for
//! one fluxd puts another fluxd's changes behind none of it.
//!
//! **Workers.** A target may have at most half of the workers (rounded
//! down, at least one) in flight at once, always, so a fluxd that is slow
//! (not failing: merely slow) leaves the other half to the other targets.
//! A target whose last answer was a failure is *probed*: one attempt at a
//! time, after a backoff that grows with its failures in a row (and not
//! before what it asked for in `Retry-After`); its first success gives
//! it its share back. Backoff is the target's, not each entry's: however
//! many notifications wait for a fluxd that is down, it gets one attempt
//! per backoff.
//!
//! **The newest value.** Each submit hands the target's state the value
//! of the table it was made with, and every attempt after it uses that
//! value: a target whose secret was rotated signs its next attempt with
//! the new one, whichever hook queued the entry.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::targets::{Key, Target};

/// A target's counters, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counters {
    pub(super) delivered: u64,
    pub(super) late: u64,
    pub(super) expired: u64,
    pub(super) refused: u64,
    pub(super) attempts: u64,
    pub(super) retries: u64,
    pub(super) joined: u64,
}

/// One target's scheduling state and counters.
pub(super) struct PerTarget {
    /// Its newest value: what the next attempt is made with, and how the
    /// logs and metrics name it.
    target: Target,
    /// Entries ready to send, by the endpoint that queued them.
    lanes: Lanes,
    /// Attempts in flight.
    sending: usize,
    /// Failed attempts in a row; zero while fluxd takes notifications.
    failures: u32,
    /// No attempt before this: the backoff after the last failure.
    backoff_until: Option<Instant>,
    /// Nor before this: what it asked for with `Retry-After`. A success
    /// already in flight when it asked does not cancel it.
    asked_until: Option<Instant>,
    /// In [`Schedule::turn`].
    in_turn: bool,
    /// Why its last attempt failed, while it is failing: for the entries
    /// left waiting behind the probe.
    last_error: Option<String>,
    pub(super) counters: Counters,
}

impl PerTarget {
    fn new(target: Target) -> PerTarget {
        PerTarget {
            target,
            lanes: Lanes::default(),
            sending: 0,
            failures: 0,
            backoff_until: None,
            asked_until: None,
            in_turn: false,
            last_error: None,
            counters: Counters::default(),
        }
    }

    /// Until when it waits, if it does at `now`.
    fn waits_until(&self, now: Instant) -> Option<Instant> {
        let until = self.backoff_until.max(self.asked_until)?;
        (until > now).then_some(until)
    }

    /// Whether another attempt may start at `now`, with `share` attempts
    /// in flight the most a healthy target may have.
    fn may_send(&self, now: Instant, share: usize) -> bool {
        let most = if self.failures > 0 { 1 } else { share };
        self.sending < most && self.waits_until(now).is_none()
    }
}

/// A target's ready entries: a queue per endpoint, the endpoints in turn.
#[derive(Default)]
struct Lanes {
    by_endpoint: HashMap<Arc<str>, VecDeque<u64>>,
    /// The endpoints with entries, the next to be served first.
    turn: VecDeque<Arc<str>>,
}

impl Lanes {
    fn push(&mut self, endpoint: &Arc<str>, id: u64, first: bool) {
        let lane = match self.by_endpoint.get_mut(endpoint) {
            Some(lane) => lane,
            None => {
                self.turn.push_back(endpoint.clone());
                self.by_endpoint.entry(endpoint.clone()).or_default()
            }
        };
        if first {
            lane.push_front(id);
        } else {
            lane.push_back(id);
        }
    }

    /// The next endpoint's oldest entry; that endpoint goes to the back.
    fn pop(&mut self) -> Option<u64> {
        let endpoint = self.turn.pop_front()?;
        let lane = self.by_endpoint.get_mut(&endpoint)?;
        let id = lane.pop_front();
        if lane.is_empty() {
            self.by_endpoint.remove(&endpoint);
        } else {
            self.turn.push_back(endpoint);
        }
        id
    }

    fn is_empty(&self) -> bool {
        self.turn.is_empty()
    }

    fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        self.by_endpoint.retain(|_, lane| {
            lane.retain(|id| keep(*id));
            !lane.is_empty()
        });
        let by_endpoint = &self.by_endpoint;
        self.turn.retain(|e| by_endpoint.contains_key(e));
    }
}

/// Every target the queue has had entries for (kept, with its counters and
/// backoff, once they are delivered), and the turn of those with entries
/// ready.
pub(super) struct Schedule {
    by_key: HashMap<Key, PerTarget>,
    /// The targets with entries ready, the next to be served first.
    turn: VecDeque<Key>,
    /// Most attempts a healthy target may have in flight.
    share: usize,
}

impl Schedule {
    /// A schedule for `workers` workers: each target may hold half of them
    /// (rounded down, at least one).
    pub(super) fn new(workers: usize) -> Schedule {
        Schedule {
            by_key: HashMap::new(),
            turn: VecDeque::new(),
            share: (workers / 2).max(1),
        }
    }

    /// `target`'s state, made on first use; `target` is its newest value
    /// from now on.
    pub(super) fn enter(&mut self, target: &Target) -> &mut PerTarget {
        let key = target.key();
        match self.by_key.get_mut(key) {
            Some(known) => {
                known.target = target.clone();
            }
            None => {
                self.by_key
                    .insert(key.clone(), PerTarget::new(target.clone()));
            }
        }
        self.by_key.get_mut(key).expect("just entered")
    }

    /// Each of `targets` the queue knows by its key is its newest value
    /// from now on (a reload swapped in a table with a rotated token).
    pub(super) fn retarget<'a>(&mut self, targets: impl Iterator<Item = &'a Target>) {
        for target in targets {
            if let Some(known) = self.by_key.get_mut(target.key()) {
                known.target = target.clone();
            }
        }
    }

    /// The state of the target of `key`, which has had entries.
    pub(super) fn get(&mut self, key: &Key) -> &mut PerTarget {
        self.by_key
            .get_mut(key)
            .expect("a target is entered with its first entry")
    }

    /// The newest value of the target of `key`, which has had entries.
    pub(super) fn target(&self, key: &Key) -> &Target {
        &self.by_key[key].target
    }

    /// Every target and its counters.
    pub(super) fn counters(&self) -> impl Iterator<Item = (&Target, &Counters)> {
        self.by_key.values().map(|t| (&t.target, &t.counters))
    }

    /// Entry `id`, queued by `endpoint` for the target of `key`, is ready
    /// to send: behind that endpoint's other entries, or before them
    /// (`first`) when it has just failed, so that its endpoint keeps its
    /// oldest first.
    pub(super) fn ready(&mut self, key: &Key, endpoint: &Arc<str>, id: u64, first: bool) {
        let target = self.get(key);
        target.lanes.push(endpoint, id, first);
        if !target.in_turn {
            target.in_turn = true;
            self.turn.push_back(key.clone());
        }
    }

    /// Whether an attempt to the target of `key` may start at `now`.
    pub(super) fn may_send(&self, key: &Key, now: Instant) -> bool {
        self.by_key
            .get(key)
            .is_some_and(|t| t.may_send(now, self.share))
    }

    /// The next entry to send at `now`: from the first target in turn that
    /// may start an attempt, which then goes to the back of the turn.
    pub(super) fn take(&mut self, now: Instant) -> Option<u64> {
        let share = self.share;
        let mut at = 0;
        while at < self.turn.len() {
            let target = self.by_key.get_mut(&self.turn[at]).expect("targets stay");
            if target.lanes.is_empty() {
                target.in_turn = false;
                self.turn.remove(at);
                continue;
            }
            if !target.may_send(now, share) {
                at += 1;
                continue;
            }
            let id = target.lanes.pop();
            let key = self.turn.remove(at).expect("in turn");
            if target.lanes.is_empty() {
                target.in_turn = false;
            } else {
                self.turn.push_back(key);
            }
            return id;
        }
        None
    }

    /// Whether some target in turn may start an attempt at `now`.
    pub(super) fn any_may_send(&self, now: Instant) -> bool {
        self.turn.iter().any(|key| {
            self.by_key
                .get(key)
                .is_some_and(|t| !t.lanes.is_empty() && t.may_send(now, self.share))
        })
    }

    /// When the first target in turn that waits (backing off, or as it
    /// asked) may go again.
    pub(super) fn next_due(&self, now: Instant) -> Option<Instant> {
        self.turn
            .iter()
            .filter_map(|key| self.by_key.get(key)?.waits_until(now))
            .min()
    }

    /// Keep only the ready entries of the target of `key` that `keep` says.
    pub(super) fn retain(&mut self, key: &Key, keep: impl FnMut(u64) -> bool) {
        if let Some(target) = self.by_key.get_mut(key) {
            target.lanes.retain(keep);
        }
    }

    /// Why the last attempt to the target of `key` failed, while it is
    /// failing.
    pub(super) fn last_error(&self, key: &Key) -> Option<&str> {
        self.by_key.get(key)?.last_error.as_deref()
    }

    /// An attempt to the target of `key` starts, with its newest value.
    pub(super) fn started(&mut self, key: &Key) -> Target {
        let target = self.get(key);
        target.sending += 1;
        target.target.clone()
    }

    /// An attempt to the target of `key` ended with the target taking it
    /// (or refusing it for good: an answer, so the target is there).
    /// Whether it was failing: its held-back entries may all go now.
    pub(super) fn answered(&mut self, key: &Key) -> bool {
        let target = self.get(key);
        target.sending -= 1;
        target.backoff_until = None;
        target.last_error = None;
        std::mem::take(&mut target.failures) > 0
    }

    /// An attempt to the target of `key` failed at `now` for `reason`, in a
    /// way worth retrying: the target backs off for `backoff(failures in a
    /// row)`, and waits at least `asked` (its `Retry-After`) if given,
    /// capped at `cap`.
    pub(super) fn failed(
        &mut self,
        key: &Key,
        now: Instant,
        reason: &str,
        backoff: impl Fn(u32) -> Duration,
        asked: Option<Duration>,
        cap: Duration,
    ) {
        let target = self.get(key);
        target.sending -= 1;
        target.last_error = Some(reason.to_string());
        target.failures = target.failures.saturating_add(1);
        target.backoff_until = Some(now + backoff(target.failures));
        if let Some(asked) = asked {
            let until = now + asked.min(cap);
            target.asked_until = target.asked_until.max(Some(until));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::targets::fluxd::Fluxd;

    fn ids(targets: &mut Schedule, now: Instant) -> Vec<u64> {
        std::iter::from_fn(|| targets.take(now)).collect()
    }

    /// The key of a fluxd target at `base`, entered in `t`.
    fn entered(t: &mut Schedule, base: &str) -> Key {
        let target = Target::from(Fluxd::new(base));
        t.enter(&target);
        target.key().clone()
    }

    #[test]
    fn endpoints_and_targets_take_turns() {
        let mut t = Schedule::new(8);
        let (a, b) = (entered(&mut t, "http://a"), entered(&mut t, "http://b"));
        let (flood, genuine): (Arc<str>, Arc<str>) = ("flood".into(), "genuine".into());
        for id in 0..4 {
            t.ready(&a, &flood, id, false);
        }
        t.ready(&a, &genuine, 10, false);
        t.ready(&b, &flood, 20, false);
        // a's lanes in turn, b between a's entries.
        assert_eq!(ids(&mut t, Instant::now()), [0, 20, 10, 1, 2, 3]);
        assert!(t.turn.is_empty());
    }

    #[test]
    fn a_failed_entry_goes_first_in_its_lane() {
        let mut t = Schedule::new(8);
        let a = entered(&mut t, "http://a");
        let e: Arc<str> = "e".into();
        t.ready(&a, &e, 1, false);
        t.ready(&a, &e, 2, false);
        t.ready(&a, &e, 0, true);
        assert_eq!(ids(&mut t, Instant::now()), [0, 1, 2]);
    }

    #[test]
    fn a_target_holds_half_the_workers_and_one_probe_while_failing() {
        let mut t = Schedule::new(5);
        let a = entered(&mut t, "http://a");
        let e: Arc<str> = "e".into();
        for id in 0..10 {
            t.ready(&a, &e, id, false);
        }
        let now = Instant::now();
        // Healthy: two of five.
        for id in [0, 1] {
            assert_eq!(t.take(now), Some(id));
            t.started(&a);
        }
        assert_eq!(t.take(now), None);
        assert!(!t.any_may_send(now));
        // Both fail: it backs off, then one probe at a time.
        let backoff = |_| Duration::from_millis(100);
        t.failed(&a, now, "503", backoff, None, Duration::MAX);
        t.failed(&a, now, "503", backoff, None, Duration::MAX);
        assert_eq!(t.take(now), None);
        assert_eq!(t.next_due(now), Some(now + Duration::from_millis(100)));
        let later = now + Duration::from_millis(100);
        assert_eq!(t.take(later), Some(2));
        t.started(&a);
        assert_eq!(t.take(later), None);
        // Its first success gives its share back.
        assert!(t.answered(&a));
        for id in [3, 4] {
            assert_eq!(t.take(later), Some(id));
            t.started(&a);
        }
        assert_eq!(t.take(later), None);
    }

    #[test]
    fn retry_after_outlasts_a_success_and_is_capped() {
        let mut t = Schedule::new(4);
        let a = entered(&mut t, "http://a");
        let e: Arc<str> = "e".into();
        t.ready(&a, &e, 0, false);
        let now = Instant::now();
        t.started(&a);
        t.started(&a);
        let asked = Some(Duration::from_secs(60));
        let cap = Duration::from_secs(30);
        t.failed(&a, now, "503", |_| Duration::from_millis(1), asked, cap);
        // A success already in flight ends the backoff, not the wait asked.
        t.answered(&a);
        assert_eq!(t.take(now + Duration::from_secs(29)), None);
        assert_eq!(t.next_due(now), Some(now + cap));
        assert_eq!(t.take(now + cap), Some(0));
    }

    #[test]
    fn each_attempt_takes_the_newest_value_of_its_target() {
        let mut t = Schedule::new(2);
        let e: Arc<str> = "e".into();
        let first = Target::from(Fluxd::new("http://a"));
        t.enter(&first);
        t.ready(first.key(), &e, 0, false);
        // Another value with the same key, as the next table's would be
        // (a fluxd's holds nothing but its URL; a target whose secret was
        // rotated would differ): the attempt takes the one entered last.
        let newer = Target::from(Fluxd::new("http://a"));
        t.enter(&newer);
        assert_eq!(t.take(Instant::now()), Some(0));
        let sent = t.started(first.key());
        assert!(
            matches!((&sent, &newer), (Target::Fluxd(s), Target::Fluxd(n)) if Arc::ptr_eq(s, n))
        );
    }
}
