//! The delivery queue: verified changes wait here until fluxd accepts them,
//! so a provider's reply no longer depends on fluxd's health.
//!
//! A hook [`Queue::submit`]s its changes, one [`Item`] per (notify URL,
//! change), and gets a [`Ticket`]; the reply waits on it for at most the
//! reply budget. A fixed pool of relay workers (`relay.rs`) sends what is
//! pending, oldest first, and retries what fluxd could not take (down, 408,
//! 429, 5xx) with exponential backoff and jitter until fluxd accepts it or
//! it is older than `max_age`; then it is dropped with a warning, since
//! fluxd's own polling catches up by then. Answers that can never succeed
//! (another 4xx, a redirect) end it at once.
//!
//! **One entry per distinct (URL, change).** fluxd treats a notification as
//! a trigger to look, so identical changes need one look:
//! - a change whose entry is *waiting* (queued or backing off) joins it, and
//!   its ticket is settled by that entry's send;
//! - a change whose entry is *being sent* does not simply join: fluxd may
//!   already have looked before the new push was visible. The entry is
//!   marked to be sent once more after the current attempt, and the newcomer
//!   waits for that send (whatever the current attempt's outcome: a failed
//!   attempt is retried for both, a permanent refusal ends both).
//!
//! **Several APIs.** An entry is one change for one notify URL, so with
//! fan-out each API gets its own entries, retries and counters, and one
//! that is down does not hold up the others. Workers are shared, but an API
//! whose last answer was a failure may hold at most half of them, so a
//! hanging fluxd ties up half the pool, not all of it (see
//! `State::take_ready`).
//!
//! The queue holds at most `max_pending` entries. A submit whose new
//! entries do not all fit is refused whole ([`Full`]): nothing of it is
//! queued, so the provider's retry starts clean.
//!
//! **Waiting.** Workers are std threads; replies are tokio tasks. Each
//! ticket has a `tokio::sync::watch` channel that workers update (a watch
//! sender needs no runtime) as its entries are settled. [`Ticket::wait`]
//! returns [`Confirmation::Accepted`] when fluxd took every entry,
//! [`Confirmation::Refused`] as soon as one was refused for good (or
//! expired), and [`Confirmation::Pending`] when the budget runs out first.
//! A budget of zero never waits: it reports what is already settled, which
//! in practice is `Pending`. An entry accepted after a reply stopped waiting
//! for it is logged once, at info, as a late delivery (a reply with a zero
//! budget never waited, so it makes nothing late).
//!
//! **Shutdown.** [`Queue::close`] refuses new work; [`Queue::drain`] waits
//! until nothing is pending or a deadline, then stops the workers and
//! returns what is left. Workers also stop when the last [`Queue`] clone is
//! dropped. All state is under one std Mutex that is never held across an
//! `.await` nor during a POST, and nothing is logged while it is held.

mod relay;
mod resolver;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slog::{debug, info, warn, Logger};
use tokio::sync::watch;

use crate::notification::Change;
use relay::{Answer, Job, Jobs, Relay};

/// Relay workers when `--max-relays` is not given. Measured on a 2-core
/// machine against a stand-in fluxd on loopback (`cargo bench --bench
/// delivery`): with fluxd answering at once, distinct notifications a
/// second level off from 4 workers (37k/s; 8: 40k/s, 64: 49k/s, 1: 22k/s),
/// and with fluxd taking 1–2 ms a worker carries ~400/s, so 8 still carry
/// over 3000/s. Each worker that has sent costs about 90 KiB of RSS
/// (8: +1.9 MiB, 64: +6.6 MiB).
pub const DEFAULT_WORKERS: usize = 8;

/// How the queue runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Relay worker threads (`--max-relays`): at most this many POSTs to
    /// fluxd at once.
    pub workers: usize,
    /// Most distinct notifications pending at once (`--max-pending`).
    pub max_pending: usize,
    /// How long a notification is retried before it is dropped
    /// (`--delivery-max-age`), counted from when it was queued.
    pub max_age: Duration,
    /// Longest one POST may take, connecting included.
    pub attempt_timeout: Duration,
    /// Waits between attempts.
    pub backoff: Backoff,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: DEFAULT_WORKERS,
            max_pending: 1024,
            max_age: Duration::from_secs(15 * 60),
            attempt_timeout: Duration::from_secs(5),
            backoff: Backoff::default(),
        }
    }
}

/// Backoff between attempts: exponential from `first`, capped at `max`,
/// each wait drawn uniformly from its upper half so that notifications that
/// failed together do not retry together. The cap is a few seconds so that
/// when fluxd comes back, everything pending reaches it within seconds.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Wait after the first failure.
    pub first: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(3),
        }
    }
}

impl Backoff {
    /// The wait after `failures` failed attempts (1 or more).
    pub fn wait(&self, failures: u32) -> Duration {
        let exp = self
            .first
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(self.max);
        let half = exp / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

/// One change for one Flux API.
#[derive(Debug, Clone)]
pub struct Item {
    /// The full notify URL, e.g. `http://localhost:3030/api/flux/v11/notify`;
    /// also the API's name in metrics and logs.
    pub url: Arc<str>,
    /// What fluxd should look at.
    pub change: Change,
    /// The provider's delivery id, for the logs; may be empty. Logged as
    /// it is, so it must already be printable ([`crate::printable`]).
    pub delivery: Arc<str>,
}

/// A submit that was not queued; nothing of it was. Both mean "503, retry
/// later".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// Its new notifications do not all fit.
    #[error("{needed} more notification(s) do not fit: {pending} of at most {max} are pending")]
    NoRoom {
        /// Distinct notifications the submit would have added.
        needed: usize,
        /// Notifications pending.
        pending: usize,
        /// `max_pending`.
        max: usize,
    },
    /// The queue was closed (shutting down).
    #[error("flux-recv is shutting down")]
    Closed,
}

/// What a reply can say about its changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// fluxd accepted every one.
    Accepted,
    /// Not yet confirmed; delivery is retried for at least `retry_for`.
    Pending {
        /// Until the first of them would expire.
        retry_for: Duration,
    },
    /// One will never be delivered: fluxd refused it for good, or it
    /// expired while the reply still waited.
    Refused {
        /// The notify URL that refused it.
        api: Arc<str>,
        /// Why, for the provider and the log: e.g. "fluxd answered 404 Not
        /// Found", or a redirect and its Location.
        reason: String,
    },
}

/// The provider delivery ids an entry carries, for the logs: the first few
/// and how many more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deliveries {
    ids: Vec<Arc<str>>,
    more: usize,
}

/// Ids kept per entry; a storm of identical pushes would otherwise grow it
/// without bound.
const KEPT_IDS: usize = 8;

impl Deliveries {
    fn add(&mut self, id: &Arc<str>) {
        if id.is_empty() || self.ids.contains(id) {
            return;
        }
        if self.ids.len() < KEPT_IDS {
            self.ids.push(id.clone());
        } else {
            self.more += 1;
        }
    }

    fn absorb(&mut self, other: Deliveries) {
        for id in &other.ids {
            self.add(id);
        }
        self.more += other.more;
    }

    /// The ids kept.
    pub fn ids(&self) -> &[Arc<str>] {
        &self.ids
    }

    /// How many more there were.
    pub fn more(&self) -> usize {
        self.more
    }
}

impl fmt::Display for Deliveries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ids.is_empty() && self.more == 0 {
            return f.write_str("-");
        }
        for (i, id) in self.ids.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(id)?;
        }
        if self.more > 0 {
            write!(f, " (+{} more)", self.more)?;
        }
        Ok(())
    }
}

/// A notification still pending when [`Queue::drain`] gave up.
#[derive(Debug, Clone)]
pub struct Leftover {
    /// The notify URL.
    pub api: Arc<str>,
    /// The change.
    pub change: Change,
    /// Who sent it.
    pub deliveries: Deliveries,
    /// Attempts made.
    pub attempts: u32,
    /// Since it was queued.
    pub age: Duration,
    /// The last attempt's failure, if one failed.
    pub last_error: Option<String>,
    /// An attempt was still under way (it may yet succeed).
    pub sending: bool,
}

/// Plain figures for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Notifications pending (queued, backing off or being sent).
    pub pending: usize,
    /// Of those, being sent right now.
    pub sending: usize,
    /// Age of the oldest pending notification; zero when none is.
    pub oldest_age: Duration,
    /// Per notify URL, sorted by it.
    pub apis: Vec<ApiSnapshot>,
}

/// One notify URL's figures. Counters count since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiSnapshot {
    /// The notify URL.
    pub api: Arc<str>,
    /// Notifications pending for it.
    pub pending: usize,
    /// Notifications fluxd accepted.
    pub delivered: u64,
    /// Of those, accepted after a reply had stopped waiting.
    pub late: u64,
    /// Dropped after `max_age` without fluxd accepting them.
    pub expired: u64,
    /// Ended by an answer that can never succeed.
    pub refused: u64,
    /// POSTs made.
    pub attempts: u64,
    /// Of those, attempts after a failed one.
    pub retries: u64,
    /// Changes that joined a pending identical one instead of adding one.
    pub joined: u64,
}

/// The delivery queue and its workers. Cheap to clone; the workers stop
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Queue {
    workers: Arc<Workers>,
}

/// Owned by the [`Queue`] clones only (workers and tickets hold `Shared`),
/// so dropping the last clone is what stops the workers.
struct Workers {
    shared: Arc<Shared>,
    /// Not joined on drop: a worker may be inside a POST for up to the
    /// attempt timeout, and dropping must not block an async task. Each
    /// thread ends by itself after its current attempt.
    _threads: Vec<JoinHandle<()>>,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// A submitted set of changes; wait on it for the reply.
#[must_use = "a ticket says whether fluxd took the changes"]
pub struct Ticket {
    shared: Arc<Shared>,
    waiter: Arc<Waiter>,
    /// Its entries, for how long they will be retried.
    entries: Vec<u64>,
}

struct Shared {
    options: Options,
    /// Most workers one API may hold while another's entries wait: half.
    share: usize,
    log: Logger,
    state: Mutex<State>,
    /// Workers sleep here until an entry is ready, a backoff ends or the
    /// queue stops.
    work: Condvar,
    /// Whether nothing is pending; [`Queue::drain`] waits on it.
    empty: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    /// Entries by URL, then change: looked up without building a key.
    index: HashMap<Arc<str>, HashMap<Change, u64>>,
    entries: HashMap<u64, Entry>,
    /// Due now, oldest first.
    ready: VecDeque<u64>,
    /// Backing off, earliest due first.
    backing_off: BinaryHeap<Reverse<(Instant, u64)>>,
    next_id: u64,
    closed: bool,
    stopped: bool,
    counters: HashMap<Arc<str>, Counters>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// Being sent now (a gauge, for the per-API share of the workers).
    sending: usize,
    /// The last answer was a failure worth retrying.
    failing: bool,
    delivered: u64,
    late: u64,
    expired: u64,
    refused: u64,
    attempts: u64,
    retries: u64,
    joined: u64,
}

struct Entry {
    url: Arc<str>,
    change: Change,
    body: Arc<[u8]>,
    /// Who the next successful send settles.
    round: Round,
    /// Who joined while `round` was being sent: they need one more send.
    again: Option<Round>,
    sending: bool,
    /// Attempts for `round`.
    attempts: u32,
    /// Failed attempts in a row, for the backoff.
    failures: u32,
    last_error: Option<String>,
}

/// The changes one send covers.
struct Round {
    /// When the oldest of them was queued: the entry's age.
    since: Instant,
    waiters: Vec<Arc<Waiter>>,
    deliveries: Deliveries,
}

impl Round {
    fn new(now: Instant) -> Round {
        Round {
            since: now,
            waiters: Vec::new(),
            deliveries: Deliveries::default(),
        }
    }

    fn join(&mut self, waiter: &Arc<Waiter>, delivery: &Arc<str>) {
        self.waiters.push(waiter.clone());
        self.deliveries.add(delivery);
    }

    fn absorb(&mut self, other: Round) {
        self.since = self.since.min(other.since);
        self.waiters.extend(other.waiters);
        self.deliveries.absorb(other.deliveries);
    }
}

/// One ticket's side, shared with its entries' rounds.
struct Waiter {
    progress: watch::Sender<Progress>,
    /// Set (under the state lock) when the reply stopped waiting, so that
    /// a delivery after it is logged as late.
    gave_up: AtomicBool,
}

#[derive(Debug, Clone)]
struct Progress {
    /// Entries not yet accepted.
    left: usize,
    refused: Option<(Arc<str>, String)>,
}

impl Progress {
    fn settled(&self) -> bool {
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

impl Queue {
    /// Start the workers. Fails only when a thread cannot be started.
    pub fn start(options: Options, log: Logger) -> std::io::Result<Queue> {
        let relay = Relay::new(options.workers, options.attempt_timeout);
        let workers = options.workers.max(1);
        let shared = Arc::new(Shared {
            options,
            share: workers.div_ceil(2),
            log,
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            empty: watch::Sender::new(true),
        });
        let jobs: Arc<dyn Jobs> = shared.clone();
        let threads = relay::spawn(workers, relay, jobs).inspect_err(|_| shared.stop())?;
        Ok(Queue {
            workers: Arc::new(Workers {
                shared,
                _threads: threads,
            }),
        })
    }

    /// Queue `items`, all or nothing. Items identical to a pending one join
    /// it (see the module doc); only new distinct ones need room.
    pub fn submit(&self, items: Vec<Item>) -> Result<Ticket, Full> {
        let shared = &self.workers.shared;
        let now = Instant::now();
        let mut st = shared.lock();
        if st.closed {
            return Err(Full::Closed);
        }
        let mut seen = HashSet::new();
        let items: Vec<Item> = items
            .into_iter()
            .filter(|i| seen.insert((i.url.clone(), i.change.clone())))
            .collect();
        let needed = items.iter().filter(|i| st.find(i).is_none()).count();
        let pending = st.entries.len();
        if pending + needed > shared.options.max_pending {
            return Err(Full::NoRoom {
                needed,
                pending,
                max: shared.options.max_pending,
            });
        }

        let waiter = Arc::new(Waiter {
            progress: watch::Sender::new(Progress {
                left: items.len(),
                refused: None,
            }),
            gave_up: AtomicBool::new(false),
        });
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            let id = match st.find(&item) {
                Some(id) => {
                    let entry = st.entries.get_mut(&id).expect("indexed entries exist");
                    let round = if entry.sending {
                        entry.again.get_or_insert_with(|| Round::new(now))
                    } else {
                        &mut entry.round
                    };
                    round.join(&waiter, &item.delivery);
                    st.counters(&item.url).joined += 1;
                    id
                }
                None => {
                    let id = st.next_id;
                    st.next_id += 1;
                    let mut round = Round::new(now);
                    round.join(&waiter, &item.delivery);
                    let body: Arc<[u8]> = item.change.to_json().into();
                    st.index
                        .entry(item.url.clone())
                        .or_default()
                        .insert(item.change.clone(), id);
                    st.entries.insert(
                        id,
                        Entry {
                            url: item.url,
                            change: item.change,
                            body,
                            round,
                            again: None,
                            sending: false,
                            attempts: 0,
                            failures: 0,
                            last_error: None,
                        },
                    );
                    st.ready.push_back(id);
                    shared.work.notify_one();
                    id
                }
            };
            ids.push(id);
        }
        if needed > 0 {
            shared
                .empty
                .send_if_modified(|e| std::mem::replace(e, false));
        }
        drop(st);
        Ok(Ticket {
            shared: shared.clone(),
            waiter,
            entries: ids,
        })
    }

    /// Figures for `/metrics`.
    pub fn snapshot(&self) -> Snapshot {
        let st = self.workers.shared.lock();
        let now = Instant::now();
        let mut apis: HashMap<Arc<str>, ApiSnapshot> = st
            .counters
            .iter()
            .map(|(api, c)| {
                let s = ApiSnapshot {
                    api: api.clone(),
                    pending: 0,
                    delivered: c.delivered,
                    late: c.late,
                    expired: c.expired,
                    refused: c.refused,
                    attempts: c.attempts,
                    retries: c.retries,
                    joined: c.joined,
                };
                (api.clone(), s)
            })
            .collect();
        let mut snapshot = Snapshot {
            pending: st.entries.len(),
            ..Snapshot::default()
        };
        for e in st.entries.values() {
            snapshot.sending += usize::from(e.sending);
            snapshot.oldest_age = snapshot.oldest_age.max(now - e.round.since);
            apis.entry(e.url.clone())
                .or_insert_with(|| ApiSnapshot {
                    api: e.url.clone(),
                    ..ApiSnapshot::default()
                })
                .pending += 1;
        }
        drop(st);
        snapshot.apis = apis.into_values().collect();
        snapshot.apis.sort_by(|a, b| a.api.cmp(&b.api));
        snapshot
    }

    /// Stop accepting: every later submit is [`Full::Closed`]. Pending
    /// notifications are still delivered.
    pub fn close(&self) {
        self.workers.shared.lock().closed = true;
    }

    /// Close the queue, wait until nothing is pending or `deadline`, then
    /// stop the workers (no new attempt starts) and return what is left.
    pub async fn drain(&self, deadline: tokio::time::Instant) -> Vec<Leftover> {
        let shared = &self.workers.shared;
        self.close();
        let mut empty = shared.empty.subscribe();
        let _ = tokio::time::timeout_at(deadline, empty.wait_for(|e| *e)).await;
        let mut st = shared.lock();
        st.stopped = true;
        shared.work.notify_all();
        let now = Instant::now();
        let mut left: Vec<Leftover> = st
            .entries
            .values()
            .map(|e| {
                let mut deliveries = e.round.deliveries.clone();
                if let Some(again) = &e.again {
                    deliveries.absorb(again.deliveries.clone());
                }
                Leftover {
                    api: e.url.clone(),
                    change: e.change.clone(),
                    deliveries,
                    attempts: e.attempts,
                    age: now - e.round.since,
                    last_error: e.last_error.clone(),
                    sending: e.sending,
                }
            })
            .collect();
        drop(st);
        left.sort_by_key(|l| Reverse(l.age));
        left
    }
}

impl Ticket {
    /// Wait at most `budget` for fluxd to accept the changes (see the
    /// module doc for what each answer means).
    pub async fn wait(self, budget: Duration) -> Confirmation {
        if !budget.is_zero() {
            let mut progress = self.waiter.progress.subscribe();
            let _ = tokio::time::timeout(budget, progress.wait_for(Progress::settled)).await;
        }
        // Decided under the state lock, so a delivery racing the end of the
        // budget is either seen here or logged as late, never neither.
        let st = self.shared.lock();
        let progress = self.waiter.progress.borrow().clone();
        if let Some((api, reason)) = progress.refused {
            return Confirmation::Refused { api, reason };
        }
        if progress.left == 0 {
            return Confirmation::Accepted;
        }
        if !budget.is_zero() {
            self.waiter.gave_up.store(true, Ordering::Relaxed);
        }
        let now = Instant::now();
        let max_age = self.shared.options.max_age;
        let retry_for = self
            .entries
            .iter()
            .filter_map(|id| st.entries.get(id))
            .map(|e| (e.round.since + max_age).saturating_duration_since(now))
            .min()
            .unwrap_or_default();
        Confirmation::Pending { retry_for }
    }
}

impl State {
    fn find(&self, item: &Item) -> Option<u64> {
        self.index.get(&item.url)?.get(&item.change).copied()
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

    fn counters(&mut self, api: &Arc<str>) -> &mut Counters {
        if !self.counters.contains_key(api) {
            self.counters.insert(api.clone(), Counters::default());
        }
        self.counters.get_mut(api).expect("just inserted")
    }

    /// Forget an entry taken out of `entries`.
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
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("delivery queue state")
    }

    fn stop(&self) {
        self.lock().stopped = true;
        self.work.notify_all();
    }

    /// Call after removing an entry.
    fn update_empty(&self, st: &State) {
        if st.entries.is_empty() {
            self.empty.send_if_modified(|e| !std::mem::replace(e, true));
        }
    }

    /// Drop an entry that outlived `max_age`; its waiters are told.
    fn expire(&self, st: &mut State, entry: Entry, now: Instant, notes: &mut Vec<Note>) {
        st.unindex(&entry);
        st.counters(&entry.url).expired += 1;
        self.update_empty(st);
        let age = now - entry.round.since;
        let reason = format!("fluxd did not accept it within {:?}", self.options.max_age);
        for w in entry
            .round
            .waiters
            .iter()
            .chain(entry.again.iter().flat_map(|r| &r.waiters))
        {
            w.refused(&entry.url, &reason);
        }
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
                let mut deliveries = entry.round.deliveries;
                if let Some(again) = entry.again {
                    deliveries.absorb(again.deliveries);
                }
                warn!(log, "fluxd refused a notification; not retrying";
                    "api" => &*entry.url, "change" => %entry.change,
                    "delivery" => %deliveries, "attempts" => entry.attempts,
                    "reason" => reason);
            }
            Note::Expired { entry, age } => {
                let mut deliveries = entry.round.deliveries;
                if let Some(again) = entry.again {
                    deliveries.absorb(again.deliveries);
                }
                warn!(log, "dropped a notification fluxd did not accept in time";
                    "api" => &*entry.url, "change" => %entry.change,
                    "delivery" => %deliveries, "attempts" => entry.attempts,
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
                if now - entry.round.since >= self.options.max_age {
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
            st = match st.backing_off.peek() {
                Some(&Reverse((due, _))) => {
                    self.work
                        .wait_timeout(st, due - now)
                        .expect("delivery queue state")
                        .0
                }
                None => self.work.wait(st).expect("delivery queue state"),
            };
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
                let late = entry
                    .round
                    .waiters
                    .iter()
                    .any(|w| w.gave_up.load(Ordering::Relaxed));
                let c = st.counters(&entry.url);
                c.delivered += 1;
                c.late += u64::from(late);
                for w in &entry.round.waiters {
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
                        st.unindex(&entry);
                        self.update_empty(&st);
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
                if now - entry.round.since >= self.options.max_age {
                    self.expire(&mut st, entry, now, &mut notes);
                } else {
                    let due = now + self.options.backoff.wait(entry.failures);
                    st.backing_off.push(Reverse((due, id)));
                    st.entries.insert(id, entry);
                }
            }
            Answer::Refused(reason) => {
                st.unindex(&entry);
                st.counters(&entry.url).refused += 1;
                self.update_empty(&st);
                for w in entry
                    .round
                    .waiters
                    .iter()
                    .chain(entry.again.iter().flat_map(|r| &r.waiters))
                {
                    w.refused(&entry.url, &reason);
                }
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

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let b = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(800),
        };
        for _ in 0..100 {
            let w1 = b.wait(1);
            assert!(
                w1 >= Duration::from_millis(50) && w1 <= Duration::from_millis(100),
                "{w1:?}"
            );
            let w3 = b.wait(3);
            assert!(
                w3 >= Duration::from_millis(200) && w3 <= Duration::from_millis(400),
                "{w3:?}"
            );
            let w10 = b.wait(10);
            assert!(
                w10 >= Duration::from_millis(400) && w10 <= Duration::from_millis(800),
                "{w10:?}"
            );
        }
        assert!(b.wait(u32::MAX) <= Duration::from_millis(800));
    }

    #[test]
    fn workers_stop_when_the_last_clone_is_dropped() {
        let log = Logger::root(slog::Discard, slog::o!());
        let mut queue = Queue::start(
            Options {
                workers: 3,
                ..Options::default()
            },
            log,
        )
        .unwrap();
        let threads = std::mem::take(
            &mut Arc::get_mut(&mut queue.workers)
                .expect("one clone")
                ._threads,
        );
        assert_eq!(threads.len(), 3);
        let clone = queue.clone();
        drop(queue);
        std::thread::sleep(Duration::from_millis(50));
        assert!(threads.iter().all(|t| !t.is_finished()), "a clone is left");
        drop(clone);
        let until = Instant::now() + Duration::from_secs(5);
        while !threads.iter().all(|t| t.is_finished()) {
            assert!(Instant::now() < until, "workers still running");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn deliveries_keep_a_few_ids_and_count_the_rest() {
        let mut d = Deliveries::default();
        assert_eq!(d.to_string(), "-");
        d.add(&"".into());
        d.add(&"a".into());
        d.add(&"a".into());
        d.add(&"b".into());
        assert_eq!(d.to_string(), "a,b");
        for i in 0..10 {
            d.add(&format!("x{i}").into());
        }
        assert_eq!(d.ids().len(), KEPT_IDS);
        assert_eq!(d.more(), 12 - KEPT_IDS);
        assert!(d.to_string().ends_with(" (+4 more)"), "{d}");
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
            st.entries.insert(
                id,
                Entry {
                    url: url.clone(),
                    change,
                    body: Arc::from(&b"{}"[..]),
                    round: Round::new(Instant::now()),
                    again: None,
                    sending: false,
                    attempts: 0,
                    failures: 0,
                    last_error: None,
                },
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
