//! An entry's whole life, behind [`Shared`]: made by a submit (or joined,
//! when one for the same target and body is pending), taken by a relay
//! worker and sent, settled by its target's answer (accepted, retried
//! after the target's backoff, refused), expired after `max_age`, and read
//! for the replies waiting on it, the metrics and what a drain leaves.
//! Everything it touches is in one [`Ledger`] under one lock, with private
//! fields: the entries and their index, each endpoint's room
//! ([`Room`]), the rounds of waiters each send settles (`rounds.rs`) and
//! the turn of the targets (`schedule.rs`). An [`Entry`] itself is in
//! `entries/entry.rs`, and what the metrics and a drain read of the whole
//! in `entries/views.rs`: modules of this one, so nothing outside it sees
//! a field.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use slog::Logger;
use tokio::sync::watch;

use super::notes::{self, Budget, Named, Note};
use super::relay::{Job, Jobs};
use super::room::{Bounds, Room};
use super::rounds::{Round, Waiter};
use super::schedule::Schedule;
use super::{Acceptance, Full, Item, QueueSettings};
use crate::targets::{Answer, Body, Key, Target};
use entry::Entry;

mod entry;
mod views;

/// Expired entries are looked for at most this often (and when the first
/// can expire): an entry may outlive its `max_age` by this much.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What the [`Queue`](super::Queue) clones, the tickets and the relay
/// workers share.
pub(super) struct Shared {
    settings: QueueSettings,
    log: Logger,
    ledger: Mutex<Ledger>,
    /// Workers sleep here until an entry may be sent, a target's wait
    /// ends, something may have expired, or the queue stops.
    work: Condvar,
    /// Whether nothing is pending; [`Queue::drain`](super::Queue::drain)
    /// waits on it.
    empty: watch::Sender<bool>,
}

/// Everything the lock guards.
struct Ledger {
    /// Entries by target, then body: looked up without building a key.
    index: HashMap<Key, HashMap<Body, u64>>,
    entries: HashMap<u64, Entry>,
    /// Entries queued by each endpoint, for its share of the room.
    room: Room,
    /// Every target's ready entries, workers in flight, backoff, counters
    /// and newest value.
    schedule: Schedule,
    next_id: u64,
    closed: bool,
    stopped: bool,
    /// Workers asleep on the condvar. A worker that is awake takes what is
    /// ready before it sleeps, so a new entry wakes one only if none is
    /// awake to take it: under load, no wake-up (a futex call and a
    /// context switch) per entry.
    idle: usize,
    /// No entry can have expired before this.
    next_sweep: Option<Instant>,
    /// Lines about single notifications, within `--refusal-logs-per-second`.
    budget: Budget,
}

impl Ledger {
    fn new(settings: &QueueSettings) -> Ledger {
        Ledger {
            index: HashMap::new(),
            entries: HashMap::new(),
            room: Room::default(),
            schedule: Schedule::new(settings.max_relays.max(1)),
            next_id: 0,
            closed: false,
            stopped: false,
            idle: 0,
            next_sweep: None,
            budget: Budget::new(settings.refusal_logs_per_second),
        }
    }
}

impl Ledger {
    fn find(&self, item: &Item) -> Option<u64> {
        self.index
            .get(item.target.key())?
            .get(&item.outgoing.body)
            .copied()
    }

    /// A reply stopped waiting for `waiter`'s entries (those of `ids` still
    /// pending): the sends it waited for will be late.
    fn gave_up(&mut self, waiter: &Arc<Waiter>, ids: &[u64]) {
        for id in ids {
            let Some(entry) = self.entries.get_mut(id) else {
                continue;
            };
            if let Some(round) = entry.rounds_mut().find(|r| r.holds(waiter)) {
                round.late = true;
            }
        }
    }

    /// How a line names the target of `key`.
    fn named(&self, key: &Key) -> Named {
        Named::of(self.schedule.target(key))
    }

    /// Drop an entry taken out of `entries` from the index and its
    /// endpoint's room.
    fn unindex(&mut self, entry: &Entry) {
        if let Some(bodies) = self.index.get_mut(&entry.key) {
            bodies.remove(&entry.body);
            if bodies.is_empty() {
                self.index.remove(&entry.key);
            }
        }
        self.room.release(&entry.endpoint, entry.body.bytes.len());
    }
}

impl Shared {
    pub(super) fn new(settings: QueueSettings, log: Logger) -> Shared {
        Shared {
            ledger: Mutex::new(Ledger::new(&settings)),
            settings,
            log,
            work: Condvar::new(),
            empty: watch::Sender::new(true),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().expect("delivery queue state")
    }

    /// Most entries one endpoint may have pending: half of `max_pending`,
    /// rounded up, when no other endpoint has any.
    pub(super) fn most_per_endpoint(&self) -> usize {
        self.settings.max_pending.div_ceil(2)
    }

    /// Refuse every later submit ([`Full::Closed`]).
    pub(super) fn close(&self) {
        self.lock().closed = true;
    }

    /// Stop the workers: no new attempt starts.
    pub(super) fn stop(&self) {
        self.lock().stopped = true;
        self.work.notify_all();
    }

    /// See [`Schedule::retarget`](super::schedule::Schedule::retarget).
    pub(super) fn retarget<'a>(&self, targets: impl Iterator<Item = &'a Target>) {
        self.lock().schedule.retarget(targets);
    }

    /// Whether nothing is pending, as it changes.
    pub(super) fn emptiness(&self) -> watch::Receiver<bool> {
        self.empty.subscribe()
    }

    /// Queue `items` for one new waiter, all or nothing: items identical
    /// to a pending entry (the same target and body) join it; the new ones
    /// must fit their endpoint's share of the room. Returns the waiter and
    /// the entries it waits for.
    pub(super) fn submit(&self, items: Vec<Item>) -> Result<(Arc<Waiter>, Vec<u64>), Full> {
        let items = distinct(items);
        let most = self.most_per_endpoint();
        if let Some(needed) = largest_per_endpoint(&items).filter(|n| *n > most) {
            return Err(Full::NeverFits { needed, most });
        }
        let waiter = Arc::new(Waiter::new(items.len()));
        let max = Bounds {
            entries: self.settings.max_pending,
            bytes: self.settings.max_pending_bytes,
        };
        let now = Instant::now();
        let mut st = self.lock();
        if st.closed {
            return Err(Full::Closed);
        }
        let found: Vec<Option<u64>> = items.iter().map(|item| st.find(item)).collect();
        let new = items
            .iter()
            .zip(&found)
            .filter(|(_, id)| id.is_none())
            .map(|(item, _)| (&item.endpoint, item.outgoing.body.bytes.len()));
        st.room.admits(new, st.entries.len(), max)?;

        let mut ids = Vec::with_capacity(items.len());
        let mut wake = false;
        let mut added = false;
        for (item, found) in items.into_iter().zip(found) {
            let key = item.target.key().clone();
            st.schedule.enter(&item.target);
            let id = match found {
                Some(id) => {
                    let entry = st.entries.get_mut(&id).expect("indexed entries exist");
                    let round = if entry.sending {
                        entry.again.get_or_insert_with(|| Round::new(now))
                    } else {
                        &mut entry.round
                    };
                    round.join(&waiter, &item.delivery, now);
                    st.schedule.get(&key).counters.joined += 1;
                    id
                }
                None => {
                    let id = st.next_id;
                    st.next_id += 1;
                    let mut round = Round::new(now);
                    round.join(&waiter, &item.delivery, now);
                    st.index
                        .entry(key.clone())
                        .or_default()
                        .insert(item.outgoing.body.clone(), id);
                    st.room.hold(&item.endpoint, item.outgoing.body.bytes.len());
                    st.schedule.ready(&key, &item.endpoint, id, false);
                    wake |= st.schedule.may_send(&key, now);
                    st.entries.insert(id, Entry::new(item, round));
                    added = true;
                    id
                }
            };
            ids.push(id);
        }
        if added {
            let expires = now + self.settings.delivery_max_age;
            st.next_sweep = Some(st.next_sweep.map_or(expires, |s| s.min(expires)));
            self.empty.send_if_modified(|e| std::mem::replace(e, false));
        }
        // A worker that is awake takes what is ready before it sleeps; wake
        // one only while some sleep, and only for an entry it may send.
        if wake && st.idle > 0 {
            self.work.notify_one();
        }
        Ok((waiter, ids))
    }

    /// What `waiter`'s reply says of its entries `ids` now; `waited` when
    /// it waited for them (and, unsettled, makes their sends late).
    /// Decided under the lock, so a delivery racing the end of the wait is
    /// either seen here or logged as late, never neither.
    pub(super) fn acceptance(&self, waiter: &Arc<Waiter>, ids: &[u64], waited: bool) -> Acceptance {
        let mut st = self.lock();
        let progress = waiter.progress();
        if let Some((target, reason)) = progress.refused {
            return Acceptance::Refused { target, reason };
        }
        if progress.left == 0 {
            return Acceptance::Accepted;
        }
        if waited {
            st.gave_up(waiter, ids);
        }
        let now = Instant::now();
        let max_age = self.settings.delivery_max_age;
        let retry_for = ids
            .iter()
            .filter_map(|id| st.entries.get(id))
            .map(|e| e.time_left(max_age, now))
            .min()
            .unwrap_or_default();
        Acceptance::Pending { retry_for }
    }

    /// Forget an entry taken out of `entries` for good (delivered, refused
    /// or expired), and tell [`Queue::drain`](super::Queue::drain) if it
    /// was the last.
    fn retire(&self, st: &mut Ledger, entry: &Entry) {
        st.unindex(entry);
        if st.entries.is_empty() {
            self.empty.send_if_modified(|e| !std::mem::replace(e, true));
        }
    }

    /// Drop an entry that outlived `max_age`; its waiters are told.
    fn expire(&self, st: &mut Ledger, entry: Entry, now: Instant, notes: &mut Vec<Note>) {
        st.schedule.get(&entry.key).counters.expired += 1;
        self.retire(st, &entry);
        let target = st.named(&entry.key);
        let reason = format!(
            "{} did not accept it within {:?}",
            target.name, self.settings.delivery_max_age
        );
        entry.refuse(&target.label, &reason);
        // An entry left waiting behind the probes has no error of its own.
        let deliveries = entry.deliveries();
        let last_error = entry
            .last_error
            .or_else(|| st.schedule.last_error(&entry.key).map(String::from));
        let note = Note::Expired {
            target,
            deliveries,
            age: now - entry.round.since,
            changes: entry.changes,
            attempts: entry.attempts,
            last_error,
        };
        st.budget.push(note, notes, now);
    }

    /// Drop the entries waiting (not being sent) that outlived `max_age`,
    /// so they neither hold room nor wait for a target that is backing off
    /// or busy; and note when the next one can expire.
    fn sweep(&self, st: &mut Ledger, now: Instant, notes: &mut Vec<Note>) {
        let max_age = self.settings.delivery_max_age;
        let expired: Vec<u64> = st
            .entries
            .iter()
            .filter(|(_, e)| !e.sending && e.time_left(max_age, now).is_zero())
            .map(|(id, _)| *id)
            .collect();
        let mut keys = HashSet::new();
        for id in expired {
            let entry = st.entries.remove(&id).expect("just found");
            keys.insert(entry.key.clone());
            self.expire(st, entry, now, notes);
        }
        let Ledger {
            schedule, entries, ..
        } = st;
        for key in keys {
            schedule.retain(&key, |id| entries.contains_key(&id));
        }
        st.next_sweep = st
            .entries
            .values()
            .map(|e| e.round.newest + max_age)
            .min()
            .map(|first| first.max(now + SWEEP_EVERY));
    }

    /// The target took entry `id`'s send.
    fn accepted(&self, st: &mut Ledger, id: u64, mut entry: Entry, now: Instant) -> Note {
        if st.schedule.answered(&entry.key) && st.idle > 0 {
            // It was failing, held to one probe: it may have its share of
            // the workers again.
            self.work.notify_all();
        }
        let late = entry.round.late;
        let c = &mut st.schedule.get(&entry.key).counters;
        c.delivered += 1;
        c.late += u64::from(late);
        for w in entry.round.waiters() {
            w.accepted();
        }
        let target = st.named(&entry.key);
        let (changes, round, attempts) = match entry.again.take() {
            Some(again) => {
                // Those who came during the send get a send of their own.
                let settled = std::mem::replace(&mut entry.round, again);
                let attempts = std::mem::replace(&mut entry.attempts, 0);
                entry.failures = 0;
                entry.last_error = None;
                st.schedule.ready(&entry.key, &entry.endpoint, id, false);
                let changes = entry.changes.clone();
                st.entries.insert(id, entry);
                (changes, settled, attempts)
            }
            None => {
                self.retire(st, &entry);
                (entry.changes, entry.round, entry.attempts)
            }
        };
        Note::Delivered {
            target,
            changes,
            after: now - round.since,
            deliveries: round.deliveries,
            attempts,
            late,
        }
    }

    /// Entry `id`'s send failed in a way worth retrying: after its
    /// target's backoff, unless it has expired.
    fn failed(
        &self,
        st: &mut Ledger,
        id: u64,
        mut entry: Entry,
        (reason, after): (String, Option<Duration>),
        now: Instant,
        notes: &mut Vec<Note>,
    ) {
        let backoff = self.settings.backoff;
        let max_age = self.settings.delivery_max_age;
        let wait = |n| backoff.wait(n);
        st.schedule
            .failed(&entry.key, now, &reason, wait, after, max_age);
        entry.failures += 1;
        if let Some(again) = entry.again.take() {
            entry.round.absorb(again);
        }
        notes.push(Note::Failed {
            target: st.named(&entry.key),
            changes: entry.changes.clone(),
            attempts: entry.attempts,
            reason: reason.clone(),
        });
        entry.last_error = Some(reason);
        if entry.time_left(max_age, now).is_zero() {
            self.expire(st, entry, now, notes);
        } else {
            st.schedule.ready(&entry.key, &entry.endpoint, id, true);
            st.entries.insert(id, entry);
        }
    }

    /// The target refused entry `id`'s send for good.
    fn refused(&self, st: &mut Ledger, entry: Entry, reason: String) -> Note {
        st.schedule.answered(&entry.key);
        st.schedule.get(&entry.key).counters.refused += 1;
        self.retire(st, &entry);
        let target = st.named(&entry.key);
        entry.refuse(&target.label, &reason);
        Note::Refused {
            target,
            deliveries: entry.deliveries(),
            changes: entry.changes,
            attempts: entry.attempts,
            reason,
        }
    }

    /// Log `notes`, outside the lock.
    fn log(&self, notes: Vec<Note>) {
        let per_second = self.settings.refusal_logs_per_second;
        for note in notes {
            notes::log(&self.log, note, per_second);
        }
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
            while let Some(id) = st.schedule.take(now) {
                let Some(mut entry) = st.entries.remove(&id) else {
                    continue;
                };
                if entry
                    .time_left(self.settings.delivery_max_age, now)
                    .is_zero()
                {
                    self.expire(&mut st, entry, now, &mut notes);
                    continue;
                }
                entry.sending = true;
                entry.attempts += 1;
                let target = st.schedule.started(&entry.key);
                let c = &mut st.schedule.get(&entry.key).counters;
                c.attempts += 1;
                c.retries += u64::from(entry.failures > 0);
                let job = Job {
                    id,
                    target,
                    body: entry.body.clone(),
                };
                st.entries.insert(id, entry);
                // More that may go now: another worker takes it.
                if st.idle > 0 && st.schedule.any_may_send(now) {
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
            let wake = [st.schedule.next_due(now), st.next_sweep, st.budget.due()]
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
                let note = self.accepted(&mut st, id, entry, now);
                st.budget.push(note, &mut notes, now);
            }
            Answer::Retry { reason, after } => {
                self.failed(&mut st, id, entry, (reason, after), now, &mut notes);
            }
            Answer::Refused(reason) => {
                let note = self.refused(&mut st, entry, reason);
                st.budget.push(note, &mut notes, now);
            }
        }
        drop(st);
        self.log(notes);
    }
}

/// `items` without repeats (the same target and body), in order.
fn distinct(items: Vec<Item>) -> Vec<Item> {
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(items.len());
        items
            .iter()
            .map(|i| seen.insert((i.target.key(), &i.outgoing.body)))
            .collect()
    };
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(item, keep)| keep.then_some(item))
        .collect()
}

/// The most items of `items` from one endpoint; `None` when it is empty.
fn largest_per_endpoint(items: &[Item]) -> Option<usize> {
    let mut per_endpoint: HashMap<&Arc<str>, usize> = HashMap::new();
    for item in items {
        *per_endpoint.entry(&item.endpoint).or_default() += 1;
    }
    per_endpoint.into_values().max()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::tests::{dead_url, item, start};
    use crate::delivery::QueueSettings;

    #[tokio::test]
    async fn an_entry_keeps_no_reply_that_was_sent() {
        let (queue, _) = start(QueueSettings::default());
        let url = dead_url();
        for i in 0..20_000 {
            let ticket = queue
                .submit(vec![item(&url, "app", &format!("d-{i}"))])
                .unwrap();
            let reply = ticket.wait(Duration::ZERO).await;
            assert!(matches!(reply, Acceptance::Pending { .. }), "{reply:?}");
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
            let key = st.entries.values().next().unwrap().key.clone();
            (
                st.entries.len(),
                st.schedule.get(&key).counters.joined,
                kept,
            )
        };
        assert_eq!((entries, joined), (1, 19_999));
        assert!(kept < 100, "{kept} waiters kept");
    }
}
