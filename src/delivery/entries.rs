//! The queue's machinery behind [`Queue`](super::Queue): the entries and
//! their index, the room each endpoint holds, the rounds of waiters each
//! send settles (`rounds.rs`) and the targets (`targets.rs`), all under one
//! lock in [`Shared`]; and how a relay worker takes its next job and
//! settles its answer ([`Jobs`] for [`Shared`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use slog::Logger;
use tokio::sync::watch;

use super::notes::{self, Budget, Note};
use super::relay::{Answer, Job, Jobs};
use super::report::Deliveries;
use super::rounds::{Round, Waiter};
use super::targets::Targets;
use super::{Full, Item, Options};
use crate::notification::Change;

/// Expired entries are looked for at most this often (and when the first
/// can expire): an entry may outlive its `max_age` by this much.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What the [`Queue`](super::Queue) clones, the tickets and the relay
/// workers share.
pub(super) struct Shared {
    pub(super) options: Options,
    pub(super) log: Logger,
    pub(super) state: Mutex<State>,
    /// Workers sleep here until an entry may be sent, a target's wait
    /// ends, something may have expired, or the queue stops.
    pub(super) work: Condvar,
    /// Whether nothing is pending; [`Queue::drain`](super::Queue::drain)
    /// waits on it.
    pub(super) empty: watch::Sender<bool>,
}

pub(super) struct State {
    /// Entries by URL, then change: looked up without building a key.
    pub(super) index: HashMap<Arc<str>, HashMap<Change, u64>>,
    pub(super) entries: HashMap<u64, Entry>,
    /// Entries queued by each endpoint (that has any), for its share of
    /// the room.
    held: HashMap<Arc<str>, usize>,
    /// Every notify URL's ready entries, workers in flight, backoff and
    /// counters.
    pub(super) targets: Targets,
    pub(super) next_id: u64,
    pub(super) closed: bool,
    pub(super) stopped: bool,
    /// Workers asleep on the condvar. A worker that is awake takes what is
    /// ready before it sleeps, so a new entry wakes one only if none is
    /// awake to take it: under load, no wake-up (a futex call and a
    /// context switch) per entry.
    pub(super) idle: usize,
    /// No entry can have expired before this.
    next_sweep: Option<Instant>,
    /// Lines about single notifications, within `--refusal-logs-per-second`.
    budget: Budget,
}

impl State {
    pub(super) fn new(options: &Options) -> State {
        State {
            index: HashMap::new(),
            entries: HashMap::new(),
            held: HashMap::new(),
            targets: Targets::new(options.workers.max(1)),
            next_id: 0,
            closed: false,
            stopped: false,
            idle: 0,
            next_sweep: None,
            budget: Budget::new(options.logs_per_second),
        }
    }
}

pub(super) struct Entry {
    pub(super) url: Arc<str>,
    pub(super) change: Change,
    /// The endpoint that queued it: it holds the room, and its lane at the
    /// target is where it waits.
    endpoint: Arc<str>,
    /// `change` as fluxd is sent it, made before the submit took the lock.
    body: Arc<[u8]>,
    /// Who the next successful send settles.
    pub(super) round: Round,
    /// Who joined while `round` was being sent: they need one more send.
    pub(super) again: Option<Round>,
    pub(super) sending: bool,
    /// Attempts for `round`.
    pub(super) attempts: u32,
    /// Failed attempts, for the count of retries.
    failures: u32,
    pub(super) last_error: Option<String>,
}

impl Entry {
    /// A new entry for `item`, due now and not yet tried; `body` is its
    /// change as fluxd is sent it.
    fn new(item: Item, body: Arc<[u8]>, round: Round) -> Entry {
        Entry {
            body,
            url: item.url,
            change: item.change,
            endpoint: item.endpoint,
            round,
            again: None,
            sending: false,
            attempts: 0,
            failures: 0,
            last_error: None,
        }
    }

    /// Who sent it, in either round.
    pub(super) fn deliveries(&self) -> Deliveries {
        let mut deliveries = self.round.deliveries.clone();
        if let Some(again) = &self.again {
            deliveries.absorb(again.deliveries.clone());
        }
        deliveries
    }

    /// How much longer it is retried: until the newest change that joined
    /// it is `max_age` old, so that a push that joins an old entry is
    /// retried as long as one that starts a new entry. Zero once it has
    /// expired.
    pub(super) fn time_left(&self, max_age: Duration, now: Instant) -> Duration {
        max_age.saturating_sub(now - self.round.newest)
    }

    /// Its rounds: the one the next send settles, and the one after it.
    fn rounds(&self) -> impl Iterator<Item = &Round> {
        std::iter::once(&self.round).chain(&self.again)
    }

    /// [`Entry::rounds`], to change.
    fn rounds_mut(&mut self) -> impl Iterator<Item = &mut Round> {
        std::iter::once(&mut self.round).chain(&mut self.again)
    }

    /// Tell everyone still waiting on it, in either round, that it will
    /// never be delivered.
    fn refuse(&self, reason: &str) {
        for w in self.rounds().flat_map(Round::waiters) {
            w.refused(&self.url, reason);
        }
    }

    /// The line for a refusal.
    fn refused(self, reason: String) -> Note {
        Note::Refused {
            deliveries: self.deliveries(),
            url: self.url,
            change: self.change,
            attempts: self.attempts,
            reason,
        }
    }
}

impl State {
    pub(super) fn find(&self, item: &Item) -> Option<u64> {
        self.index.get(&item.url)?.get(&item.change).copied()
    }

    /// Entries `endpoint` holds.
    pub(super) fn held(&self, endpoint: &str) -> usize {
        self.held.get(endpoint).copied().unwrap_or(0)
    }

    /// Whether `endpoint` may add `n` entries to the queue of at most
    /// `max`: at most half of the room the other endpoints leave (rounded
    /// up), so that however many entries one endpoint makes, as much room
    /// again stays free for the others.
    fn has_room(&self, endpoint: &str, n: usize, needed: usize, max: usize) -> bool {
        let mine = self.held(endpoint) + n;
        let others = self.entries.len() + needed - mine;
        mine <= max.saturating_sub(others).div_ceil(2)
    }

    /// A reply stopped waiting for `waiter`'s entries (those of `ids` still
    /// pending): the sends it waited for will be late.
    pub(super) fn gave_up(&mut self, waiter: &Arc<Waiter>, ids: &[u64]) {
        for id in ids {
            let Some(entry) = self.entries.get_mut(id) else {
                continue;
            };
            if let Some(round) = entry.rounds_mut().find(|r| r.holds(waiter)) {
                round.late = true;
            }
        }
    }

    /// Drop an entry taken out of `entries` from the index and its
    /// endpoint's room.
    fn unindex(&mut self, entry: &Entry) {
        if let Some(changes) = self.index.get_mut(&entry.url) {
            changes.remove(&entry.change);
            if changes.is_empty() {
                self.index.remove(&entry.url);
            }
        }
        if let Some(held) = self.held.get_mut(&entry.endpoint) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(&entry.endpoint);
            }
        }
    }
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("delivery queue state")
    }

    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.work.notify_all();
    }

    /// Queue `items` (distinct, each with its body) for `waiter`, all or
    /// nothing: items identical to a pending entry join it; the new ones
    /// must fit their endpoint's share of the room. Returns the entries.
    pub(super) fn submit(
        &self,
        items: Vec<(Item, Arc<[u8]>)>,
        waiter: &Arc<Waiter>,
    ) -> Result<Vec<u64>, Full> {
        let max = self.options.max_pending;
        let now = Instant::now();
        let mut st = self.lock();
        if st.closed {
            return Err(Full::Closed);
        }
        let found: Vec<Option<u64>> = items.iter().map(|(item, _)| st.find(item)).collect();
        let needed = found.iter().filter(|id| id.is_none()).count();
        // Each endpoint's new entries (one endpoint, in practice).
        let mut new: Vec<(&Arc<str>, usize)> = Vec::new();
        for ((item, _), _) in items.iter().zip(&found).filter(|(_, id)| id.is_none()) {
            match new.iter_mut().find(|(e, _)| *e == &item.endpoint) {
                Some((_, n)) => *n += 1,
                None => new.push((&item.endpoint, 1)),
            }
        }
        if let Some((endpoint, _)) = new.iter().find(|(e, n)| !st.has_room(e, *n, needed, max)) {
            return Err(Full::NoRoom {
                needed,
                held: st.held(endpoint),
                pending: st.entries.len(),
                max,
            });
        }

        let mut ids = Vec::with_capacity(items.len());
        let mut wake = false;
        for ((item, body), found) in items.into_iter().zip(found) {
            let id = match found {
                Some(id) => {
                    let entry = st.entries.get_mut(&id).expect("indexed entries exist");
                    let round = if entry.sending {
                        entry.again.get_or_insert_with(|| Round::new(now))
                    } else {
                        &mut entry.round
                    };
                    round.join(waiter, &item.delivery, now);
                    st.targets.get(&item.url).counters.joined += 1;
                    id
                }
                None => {
                    let id = st.next_id;
                    st.next_id += 1;
                    let mut round = Round::new(now);
                    round.join(waiter, &item.delivery, now);
                    st.index
                        .entry(item.url.clone())
                        .or_default()
                        .insert(item.change.clone(), id);
                    *st.held.entry(item.endpoint.clone()).or_default() += 1;
                    st.targets.ready(&item.url, &item.endpoint, id, false);
                    wake |= st.targets.may_send(&item.url, now);
                    st.entries.insert(id, Entry::new(item, body, round));
                    id
                }
            };
            ids.push(id);
        }
        if needed > 0 {
            let expires = now + self.options.max_age;
            st.next_sweep = Some(st.next_sweep.map_or(expires, |s| s.min(expires)));
            self.empty.send_if_modified(|e| std::mem::replace(e, false));
        }
        // A worker that is awake takes what is ready before it sleeps; wake
        // one only while some sleep, and only for an entry it may send.
        if wake && st.idle > 0 {
            self.work.notify_one();
        }
        Ok(ids)
    }

    /// Forget an entry taken out of `entries` for good (delivered, refused
    /// or expired), and tell [`Queue::drain`](super::Queue::drain) if it
    /// was the last.
    fn retire(&self, st: &mut State, entry: &Entry) {
        st.unindex(entry);
        if st.entries.is_empty() {
            self.empty.send_if_modified(|e| !std::mem::replace(e, true));
        }
    }

    /// Drop an entry that outlived `max_age`; its waiters are told.
    fn expire(&self, st: &mut State, entry: Entry, now: Instant, notes: &mut Vec<Note>) {
        st.targets.get(&entry.url).counters.expired += 1;
        self.retire(st, &entry);
        let reason = format!("fluxd did not accept it within {:?}", self.options.max_age);
        entry.refuse(&reason);
        // An entry left waiting behind the probes has no error of its own.
        let deliveries = entry.deliveries();
        let last_error = entry
            .last_error
            .or_else(|| st.targets.last_error(&entry.url).map(String::from));
        let note = Note::Expired {
            deliveries,
            age: now - entry.round.since,
            url: entry.url,
            change: entry.change,
            attempts: entry.attempts,
            last_error,
        };
        st.budget.push(note, notes, now);
    }

    /// Drop the entries waiting (not being sent) that outlived `max_age`,
    /// so they neither hold room nor wait for a target that is backing off
    /// or busy; and note when the next one can expire.
    fn sweep(&self, st: &mut State, now: Instant, notes: &mut Vec<Note>) {
        let max_age = self.options.max_age;
        let expired: Vec<u64> = st
            .entries
            .iter()
            .filter(|(_, e)| !e.sending && e.time_left(max_age, now).is_zero())
            .map(|(id, _)| *id)
            .collect();
        let mut urls = HashSet::new();
        for id in expired {
            let entry = st.entries.remove(&id).expect("just found");
            urls.insert(entry.url.clone());
            self.expire(st, entry, now, notes);
        }
        let State {
            targets, entries, ..
        } = st;
        for url in urls {
            targets.retain(&url, |id| entries.contains_key(&id));
        }
        st.next_sweep = st
            .entries
            .values()
            .map(|e| e.round.newest + max_age)
            .min()
            .map(|first| first.max(now + SWEEP_EVERY));
    }
}

impl Jobs for Shared {
    fn next(&self) -> Option<Job> {
        let mut notes = Vec::new();
        let mut st = self.lock();
        loop {
            if st.stopped {
                drop(st);
                self.log(notes);
                return None;
            }
            let now = Instant::now();
            if st.next_sweep.is_some_and(|s| s <= now) {
                self.sweep(&mut st, now, &mut notes);
            }
            if let Some(summary) = st.budget.summary(now) {
                notes.push(summary);
            }
            while let Some(id) = st.targets.take(now) {
                let Some(mut entry) = st.entries.remove(&id) else {
                    continue;
                };
                if entry.time_left(self.options.max_age, now).is_zero() {
                    self.expire(&mut st, entry, now, &mut notes);
                    continue;
                }
                entry.sending = true;
                entry.attempts += 1;
                st.targets.started(&entry.url);
                let c = &mut st.targets.get(&entry.url).counters;
                c.attempts += 1;
                c.retries += u64::from(entry.failures > 0);
                let job = Job {
                    id,
                    url: entry.url.clone(),
                    body: entry.body.clone(),
                };
                st.entries.insert(id, entry);
                // More that may go now: another worker takes it.
                if st.idle > 0 && st.targets.any_may_send(now) {
                    self.work.notify_one();
                }
                drop(st);
                self.log(notes);
                return Some(job);
            }
            if !notes.is_empty() {
                // Log before sleeping, outside the lock.
                drop(st);
                self.log(std::mem::take(&mut notes));
                st = self.lock();
                continue;
            }
            // Sleep until woken, or until a target's wait ends, an entry
            // may expire or the log summary is due.
            let wake = [st.targets.next_due(now), st.next_sweep, st.budget.due()]
                .into_iter()
                .flatten()
                .min();
            st.idle += 1;
            st = match wake {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.work
                        .wait_timeout(st, wait)
                        .expect("delivery queue state")
                        .0
                }
                None => self.work.wait(st).expect("delivery queue state"),
            };
            st.idle -= 1;
        }
    }

    fn finish(&self, id: u64, answer: Answer) {
        let mut notes = Vec::new();
        let mut st = self.lock();
        let Some(mut entry) = st.entries.remove(&id) else {
            return;
        };
        entry.sending = false;
        let now = Instant::now();
        match answer {
            Answer::Accepted => {
                if st.targets.answered(&entry.url) && st.idle > 0 {
                    // It was failing, held to one probe: it may have its
                    // share of the workers again.
                    self.work.notify_all();
                }
                let late = entry.round.late;
                let c = &mut st.targets.get(&entry.url).counters;
                c.delivered += 1;
                c.late += u64::from(late);
                for w in entry.round.waiters() {
                    w.accepted();
                }
                let (url, change, round, attempts) = match entry.again.take() {
                    Some(again) => {
                        // Those who came during the send get a send of
                        // their own.
                        let settled = std::mem::replace(&mut entry.round, again);
                        let attempts = std::mem::replace(&mut entry.attempts, 0);
                        entry.failures = 0;
                        entry.last_error = None;
                        st.targets.ready(&entry.url, &entry.endpoint, id, false);
                        let (url, change) = (entry.url.clone(), entry.change.clone());
                        st.entries.insert(id, entry);
                        (url, change, settled, attempts)
                    }
                    None => {
                        self.retire(&mut st, &entry);
                        (entry.url, entry.change, entry.round, entry.attempts)
                    }
                };
                let note = Note::Delivered {
                    url,
                    change,
                    after: now - round.since,
                    deliveries: round.deliveries,
                    attempts,
                    late,
                };
                st.budget.push(note, &mut notes, now);
            }
            Answer::Retry { reason, after } => {
                let backoff = self.options.backoff;
                let max_age = self.options.max_age;
                st.targets.failed(
                    &entry.url,
                    now,
                    &reason,
                    |n| backoff.wait(n),
                    after,
                    max_age,
                );
                entry.failures += 1;
                if let Some(again) = entry.again.take() {
                    entry.round.absorb(again);
                }
                notes.push(Note::Failed {
                    url: entry.url.clone(),
                    change: entry.change.clone(),
                    attempts: entry.attempts,
                    reason: reason.clone(),
                });
                entry.last_error = Some(reason);
                if entry.time_left(max_age, now).is_zero() {
                    self.expire(&mut st, entry, now, &mut notes);
                } else {
                    st.targets.ready(&entry.url, &entry.endpoint, id, true);
                    st.entries.insert(id, entry);
                }
            }
            Answer::Refused(reason) => {
                st.targets.answered(&entry.url);
                st.targets.get(&entry.url).counters.refused += 1;
                self.retire(&mut st, &entry);
                entry.refuse(&reason);
                st.budget.push(entry.refused(reason), &mut notes, now);
            }
        }
        drop(st);
        self.log(notes);
    }
}

impl Shared {
    /// Log `notes`, outside the lock.
    fn log(&self, notes: Vec<Note>) {
        let per_second = self.options.logs_per_second;
        for note in notes {
            notes::log(&self.log, note, per_second);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::tests::{dead_url, item, start};
    use crate::delivery::{Confirmation, Options};

    #[tokio::test]
    async fn an_entry_keeps_no_reply_that_was_sent() {
        let (queue, _) = start(Options::default());
        let url = dead_url();
        for i in 0..20_000 {
            let ticket = queue
                .submit(vec![item(&url, "app", &format!("d-{i}"))])
                .unwrap();
            let reply = ticket.wait(Duration::ZERO).await;
            assert!(matches!(reply, Confirmation::Pending { .. }), "{reply:?}");
        }
        // Read under the lock, checked after it: a failed check must not
        // poison it for the workers.
        let (entries, joined, kept) = {
            let mut st = queue.workers.shared.lock();
            let kept: usize = st
                .entries
                .values()
                .flat_map(Entry::rounds)
                .map(|r| r.waiters.len())
                .sum();
            (st.entries.len(), st.targets.get(&url).counters.joined, kept)
        };
        assert_eq!((entries, joined), (1, 19_999));
        assert!(kept < 100, "{kept} waiters kept");
    }

    #[test]
    fn an_endpoint_has_room_for_half_of_what_the_others_leave() {
        let mut st = State::new(&Options::default());
        let url: Arc<str> = "http://a/".into();
        st.held.insert("a".into(), 6);
        for id in 0..6 {
            // Only their number counts here.
            st.entries.insert(
                id,
                Entry::new(
                    item(&url, &format!("i{id}"), ""),
                    Arc::from(&b"{}"[..]),
                    Round::new(Instant::now()),
                ),
            );
        }
        // 6 of 16 taken by a: b may hold 5 (half of 10), rounded up.
        assert!(st.has_room("b", 5, 5, 16));
        assert!(!st.has_room("b", 6, 6, 16));
        // a, alone, may hold 8 (half of 16): two more.
        assert!(st.has_room("a", 2, 2, 16));
        assert!(!st.has_room("a", 3, 3, 16));
        // A queue of one still takes one.
        let st = State::new(&Options::default());
        assert!(st.has_room("a", 1, 1, 1));
    }
}
