//! The queue's machinery behind [`Queue`](super::Queue): the entries and
//! their index, the rounds of waiters each send settles, the per-API
//! counters, all under one lock in [`Shared`]; and how a relay worker takes
//! its next job and settles its answer ([`Jobs`] for [`Shared`]).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use slog::{debug, info, warn, Logger};
use tokio::sync::watch;

use super::relay::{Answer, Job, Jobs};
use super::report::Deliveries;
use super::{Item, Options};
use crate::notification::Change;

/// What the [`Queue`](super::Queue) clones, the tickets and the relay
/// workers share.
pub(super) struct Shared {
    pub(super) options: Options,
    /// Most workers an API may hold while its last answer was a failure,
    /// or while another API's entries wait: half of them, rounded down, but
    /// at least one.
    pub(super) share: usize,
    pub(super) log: Logger,
    pub(super) state: Mutex<State>,
    /// Workers sleep here until an entry is ready, a backoff ends or the
    /// queue stops.
    pub(super) work: Condvar,
    /// Whether nothing is pending; [`Queue::drain`](super::Queue::drain)
    /// waits on it.
    pub(super) empty: watch::Sender<bool>,
}

#[derive(Default)]
pub(super) struct State {
    /// Entries by URL, then change: looked up without building a key.
    pub(super) index: HashMap<Arc<str>, HashMap<Change, u64>>,
    pub(super) entries: HashMap<u64, Entry>,
    /// Due now, oldest first.
    pub(super) ready: VecDeque<u64>,
    /// Backing off, earliest due first.
    backing_off: BinaryHeap<Reverse<(Instant, u64)>>,
    pub(super) next_id: u64,
    pub(super) closed: bool,
    pub(super) stopped: bool,
    pub(super) counters: HashMap<Arc<str>, Counters>,
    /// Workers asleep on the condvar. A worker that is awake takes what is
    /// ready before it sleeps, so a new entry wakes one only if none is
    /// awake to take it: under load, no wake-up (a futex call and a
    /// context switch) per entry.
    pub(super) idle: usize,
}

#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counters {
    /// Being sent now (a gauge, for the per-API share of the workers).
    sending: usize,
    /// The last answer was a failure worth retrying.
    failing: bool,
    pub(super) delivered: u64,
    pub(super) late: u64,
    pub(super) expired: u64,
    pub(super) refused: u64,
    pub(super) attempts: u64,
    pub(super) retries: u64,
    pub(super) joined: u64,
}

pub(super) struct Entry {
    pub(super) url: Arc<str>,
    pub(super) change: Change,
    /// `change` as fluxd is sent it, made before the submit took the lock.
    body: Arc<[u8]>,
    /// Who the next successful send settles.
    pub(super) round: Round,
    /// Who joined while `round` was being sent: they need one more send.
    pub(super) again: Option<Round>,
    pub(super) sending: bool,
    /// Attempts for `round`.
    pub(super) attempts: u32,
    /// Failed attempts in a row, for the backoff.
    failures: u32,
    pub(super) last_error: Option<String>,
}

impl Entry {
    /// A new entry for `change`, due now and not yet tried; `body` is
    /// `change` as fluxd is sent it.
    pub(super) fn new(url: Arc<str>, change: Change, body: Arc<[u8]>, round: Round) -> Entry {
        Entry {
            body,
            url,
            change,
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
}

/// The changes one send covers.
pub(super) struct Round {
    /// When the oldest of them was queued: the entry's age, as the metrics
    /// and the logs report it.
    pub(super) since: Instant,
    /// When the newest of them was queued: the entry is retried until this
    /// is `max_age` old.
    newest: Instant,
    /// The replies that wait for this send. Weak: a reply that has been
    /// sent no longer needs telling, and identical pushes during a long
    /// outage must not pile up here.
    waiters: Vec<Weak<Waiter>>,
    /// A reply stopped waiting for this send before it was settled, so its
    /// delivery is late. Kept here, not with the reply, which is gone by
    /// then.
    late: bool,
    pub(super) deliveries: Deliveries,
}

impl Round {
    pub(super) fn new(now: Instant) -> Round {
        Round {
            since: now,
            newest: now,
            waiters: Vec::new(),
            late: false,
            deliveries: Deliveries::default(),
        }
    }

    /// Add a change queued at `now`, with the reply waiting for it.
    pub(super) fn join(&mut self, waiter: &Arc<Waiter>, delivery: &Arc<str>, now: Instant) {
        // Forget the replies already sent once the list is full, before it
        // grows: it stays in proportion to the replies waiting at once, not
        // to the pushes, at no cost per join.
        if self.waiters.len() == self.waiters.capacity() {
            self.waiters.retain(|w| w.strong_count() > 0);
        }
        self.waiters.push(Arc::downgrade(waiter));
        self.newest = self.newest.max(now);
        self.deliveries.add(delivery);
    }

    fn absorb(&mut self, other: Round) {
        self.since = self.since.min(other.since);
        self.newest = self.newest.max(other.newest);
        self.waiters.extend(other.waiters);
        self.late |= other.late;
        self.deliveries.absorb(other.deliveries);
    }

    /// The replies still waiting.
    fn waiters(&self) -> impl Iterator<Item = Arc<Waiter>> + '_ {
        self.waiters.iter().filter_map(Weak::upgrade)
    }

    /// Whether `waiter`'s reply waits for this send.
    fn holds(&self, waiter: &Arc<Waiter>) -> bool {
        let waiter = Arc::as_ptr(waiter);
        self.waiters
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), waiter))
    }
}

/// One ticket's side. Its entries' rounds hold it weakly: it goes with the
/// ticket, once the reply is sent.
pub(super) struct Waiter {
    pub(super) progress: watch::Sender<Progress>,
}

#[derive(Debug, Clone)]
pub(super) struct Progress {
    /// Entries not yet accepted.
    pub(super) left: usize,
    pub(super) refused: Option<(Arc<str>, String)>,
}

impl Progress {
    pub(super) fn settled(&self) -> bool {
        self.left == 0 || self.refused.is_some()
    }
}

impl Waiter {
    fn accepted(&self) {
        self.progress
            .send_modify(|p| p.left = p.left.saturating_sub(1));
    }

    fn refused(&self, api: &Arc<str>, reason: &str) {
        self.progress.send_if_modified(|p| {
            let first = p.refused.is_none();
            if first {
                p.refused = Some((api.clone(), reason.to_string()));
            }
            first
        });
    }
}

/// Something to log once the state lock is released.
enum Note {
    Delivered {
        url: Arc<str>,
        change: Change,
        round: Round,
        attempts: u32,
        late: bool,
    },
    Refused {
        entry: Entry,
        reason: String,
    },
    Expired {
        entry: Entry,
        age: Duration,
    },
    Failed {
        url: Arc<str>,
        change: Change,
        attempts: u32,
        reason: String,
    },
}

impl State {
    pub(super) fn find(&self, item: &Item) -> Option<u64> {
        self.index.get(&item.url)?.get(&item.change).copied()
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

    /// The next entry to send: the oldest ready one, with two exceptions
    /// so that one slow or hanging fluxd cannot hold every worker while
    /// other APIs wait. An API that holds `share` workers already is
    /// - skipped outright while it is failing (its last answer was a
    ///   failure): it waits for one of its own attempts to end, and
    /// - passed over for another API's entry while several APIs have
    ///   entries pending, but taken when nothing else is ready.
    ///
    /// So a single healthy API gets every worker, and a failing one gets
    /// them all back with its first success.
    fn take_ready(&mut self, share: usize) -> Option<u64> {
        let several = self.index.len() > 1;
        let mut fallback = None;
        for (at, id) in self.ready.iter().enumerate() {
            let Some(e) = self.entries.get(id) else {
                // Gone: the caller skips it.
                return self.ready.remove(at);
            };
            let c = self.counters.get(&e.url).copied().unwrap_or_default();
            let at_share = c.sending >= share;
            if at_share && c.failing {
                continue;
            }
            if !at_share || !several {
                return self.ready.remove(at);
            }
            fallback.get_or_insert(at);
        }
        self.ready.remove(fallback?)
    }

    pub(super) fn counters(&mut self, api: &Arc<str>) -> &mut Counters {
        if !self.counters.contains_key(api) {
            self.counters.insert(api.clone(), Counters::default());
        }
        self.counters.get_mut(api).expect("just inserted")
    }

    /// Drop an entry taken out of `entries` from the index.
    fn unindex(&mut self, entry: &Entry) {
        if let Some(changes) = self.index.get_mut(&entry.url) {
            changes.remove(&entry.change);
            if changes.is_empty() {
                self.index.remove(&entry.url);
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
        st.counters(&entry.url).expired += 1;
        self.retire(st, &entry);
        let age = now - entry.round.since;
        let reason = format!("fluxd did not accept it within {:?}", self.options.max_age);
        entry.refuse(&reason);
        notes.push(Note::Expired { entry, age });
    }

    fn log(&self, note: Note) {
        let log = &self.log;
        match note {
            Note::Delivered {
                url,
                change,
                round,
                attempts,
                late,
            } => {
                // How long after it was queued: for a late one, how late.
                let after_ms = round.since.elapsed().as_millis() as u64;
                if late {
                    info!(log, "delivered late";
                        "api" => &*url, "change" => %change,
                        "delivery" => %round.deliveries,
                        "attempts" => attempts, "after_ms" => after_ms);
                } else {
                    debug!(log, "delivered";
                        "api" => &*url, "change" => %change,
                        "delivery" => %round.deliveries,
                        "attempts" => attempts, "after_ms" => after_ms);
                }
            }
            Note::Refused { entry, reason } => {
                warn!(log, "fluxd refused a notification; not retrying";
                    "api" => &*entry.url, "change" => %entry.change,
                    "delivery" => %entry.deliveries(), "attempts" => entry.attempts,
                    "reason" => reason);
            }
            Note::Expired { entry, age } => {
                warn!(log, "dropped a notification fluxd did not accept in time";
                    "api" => &*entry.url, "change" => %entry.change,
                    "delivery" => %entry.deliveries(), "attempts" => entry.attempts,
                    "age_s" => age.as_secs(),
                    "last_error" => entry.last_error.as_deref().unwrap_or("-"));
            }
            Note::Failed {
                url,
                change,
                attempts,
                reason,
            } => {
                debug!(log, "delivery attempt failed; will retry";
                    "api" => &*url, "change" => %change, "attempts" => attempts,
                    "reason" => reason);
            }
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
                notes.into_iter().for_each(|n| self.log(n));
                return None;
            }
            let now = Instant::now();
            while let Some(&Reverse((due, id))) = st.backing_off.peek() {
                if due > now {
                    break;
                }
                st.backing_off.pop();
                st.ready.push_back(id);
            }
            while let Some(id) = st.take_ready(self.share) {
                let Some(mut entry) = st.entries.remove(&id) else {
                    continue;
                };
                if entry.time_left(self.options.max_age, now).is_zero() {
                    self.expire(&mut st, entry, now, &mut notes);
                    continue;
                }
                entry.sending = true;
                entry.attempts += 1;
                let retry = entry.failures > 0;
                let c = st.counters(&entry.url);
                c.sending += 1;
                c.attempts += 1;
                c.retries += u64::from(retry);
                let job = Job {
                    id,
                    url: entry.url.clone(),
                    body: entry.body.clone(),
                };
                st.entries.insert(id, entry);
                drop(st);
                notes.into_iter().for_each(|n| self.log(n));
                return Some(job);
            }
            if !notes.is_empty() {
                // Log before sleeping, outside the lock.
                drop(st);
                std::mem::take(&mut notes)
                    .into_iter()
                    .for_each(|n| self.log(n));
                st = self.lock();
                continue;
            }
            st.idle += 1;
            st = match st.backing_off.peek() {
                Some(&Reverse((due, _))) => {
                    self.work
                        .wait_timeout(st, due - now)
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
        let c = st.counters(&entry.url);
        c.sending -= 1;
        let was_failing = c.failing;
        c.failing = matches!(answer, Answer::Retry(_));
        if was_failing {
            // Entries of this API held back by its share may go now; all
            // of them if it recovered.
            if c.failing {
                self.work.notify_one();
            } else {
                self.work.notify_all();
            }
        }
        let now = Instant::now();
        match answer {
            Answer::Accepted => {
                let late = entry.round.late;
                let c = st.counters(&entry.url);
                c.delivered += 1;
                c.late += u64::from(late);
                for w in entry.round.waiters() {
                    w.accepted();
                }
                let delivered = match entry.again.take() {
                    Some(again) => {
                        // Those who came during the send get a send of
                        // their own.
                        let settled = std::mem::replace(&mut entry.round, again);
                        let attempts = std::mem::replace(&mut entry.attempts, 0);
                        entry.failures = 0;
                        entry.last_error = None;
                        let note = Note::Delivered {
                            url: entry.url.clone(),
                            change: entry.change.clone(),
                            round: settled,
                            attempts,
                            late,
                        };
                        st.entries.insert(id, entry);
                        st.ready.push_back(id);
                        note
                    }
                    None => {
                        self.retire(&mut st, &entry);
                        Note::Delivered {
                            url: entry.url,
                            change: entry.change,
                            round: entry.round,
                            attempts: entry.attempts,
                            late,
                        }
                    }
                };
                notes.push(delivered);
            }
            Answer::Retry(reason) => {
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
                if entry.time_left(self.options.max_age, now).is_zero() {
                    self.expire(&mut st, entry, now, &mut notes);
                } else {
                    let due = now + self.options.backoff.wait(entry.failures);
                    st.backing_off.push(Reverse((due, id)));
                    st.entries.insert(id, entry);
                }
            }
            Answer::Refused(reason) => {
                st.counters(&entry.url).refused += 1;
                self.retire(&mut st, &entry);
                entry.refuse(&reason);
                notes.push(Note::Refused { entry, reason });
            }
        }
        drop(st);
        notes.into_iter().for_each(|n| self.log(n));
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
            let st = queue.workers.shared.lock();
            let kept: usize = st
                .entries
                .values()
                .flat_map(Entry::rounds)
                .map(|r| r.waiters.len())
                .sum();
            (st.entries.len(), st.counters[&url].joined, kept)
        };
        assert_eq!((entries, joined), (1, 19_999));
        assert!(kept < 100, "{kept} waiters kept");
    }

    #[test]
    fn an_api_at_its_share_is_passed_over_or_held_back_when_failing() {
        let mut st = State::default();
        let (a, b): (Arc<str>, Arc<str>) = ("http://a/".into(), "http://b/".into());
        for (id, url, image) in [(0, &a, "x"), (1, &a, "y"), (2, &b, "x")] {
            let change = Change::image(crate::notification::ImageName {
                domain: String::new(),
                image: image.into(),
            });
            st.index
                .entry(url.clone())
                .or_default()
                .insert(change.clone(), id);
            let body = change.to_json().into();
            st.entries.insert(
                id,
                Entry::new(url.clone(), change, body, Round::new(Instant::now())),
            );
            st.ready.push_back(id);
        }
        st.counters(&a).sending = 1;
        // a holds its share (1): b's entry goes first, then a's in order.
        assert_eq!(st.take_ready(1), Some(2));
        assert_eq!(st.take_ready(1), Some(0));
        // Failing, a gets no more than its share, whatever is pending.
        st.index.remove(&b);
        st.counters(&a).failing = true;
        assert_eq!(st.take_ready(1), None);
        assert_eq!(st.take_ready(2), Some(1));
        // Healthy and alone, a gets every worker.
        st.ready.push_back(1);
        st.counters(&a).failing = false;
        st.counters(&a).sending = 5;
        assert_eq!(st.take_ready(1), Some(1));
        assert_eq!(st.take_ready(1), None);
    }
}
