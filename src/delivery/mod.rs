//! The delivery queue: verified changes wait here until fluxd accepts them,
//! so a provider's reply no longer depends on fluxd's health.
//!
//! A hook [`Queue::submit`]s its changes, one [`Item`] per (notify URL,
//! change), and gets a [`Ticket`]; the reply waits on it for at most the
//! reply budget. A fixed pool of relay workers (`relay.rs`) sends what is
//! pending, taking turns between APIs and between endpoints, and retries
//! what fluxd could not take (down, 408, 429, 5xx) after a backoff that is
//! the API's (and no sooner than fluxd's `Retry-After`) until fluxd
//! accepts it or even the newest change that joined it is older than
//! `max_age`; then it is dropped with a warning, since fluxd's own polling
//! catches up by then. Answers that can never succeed (another 4xx, a
//! redirect) end it at once.
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
//! Either way the newcomer is retried for its own `max_age`, however old
//! the entry it joined: an entry expires once its newest change is
//! `max_age` old. Its age in the metrics and the logs is its oldest's.
//!
//! **Several APIs.** An entry is one change for one notify URL, so with
//! fan-out each API gets its own entries, retries and counters, and one
//! that is down does not hold up the others. Workers are shared in turn,
//! and an API may hold at most half of them (rounded down, at least one)
//! at once, so with two workers or more a slow or hanging fluxd never ties
//! up the whole pool; one whose last answer was a failure is probed by one
//! attempt at a time (see `targets.rs`).
//!
//! **Room.** The queue holds at most `max_pending` entries, and each
//! endpoint (an item's [`Item::endpoint`]) at most half of the room the
//! other endpoints leave (rounded up): alone, half of the queue; so
//! however many entries one endpoint makes (an unsigned endpoint's flood,
//! say), as much room again stays free for the others. An entry counts
//! against the endpoint that made it; a change that joins it needs no room.
//! A submit whose new entries do not all fit is refused whole
//! ([`Full::NoRoom`]): nothing of it is queued, so the provider's retry
//! starts clean. One that could not fit even in an empty queue (more than
//! [`Queue::most_per_endpoint`] items for one endpoint) is
//! [`Full::NeverFits`]: retrying cannot help.
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
//! budget never waited, so it makes nothing late). An entry keeps no hold
//! on a reply that has been sent: only whether one gave up on it.
//!
//! **Shutdown.** [`Queue::close`] refuses new work; [`Queue::drain`] waits
//! until nothing is pending or a deadline, then stops the workers and
//! returns what is left. Workers also stop when the last [`Queue`] clone is
//! dropped. All state is under one std Mutex that is never held across an
//! `.await` nor during a POST, and nothing is logged while it is held.

mod entries;
mod metrics;
mod notes;
mod relay;
mod report;
mod resolver;
mod rounds;
mod targets;
mod wire;

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use slog::Logger;
use tokio::sync::watch;

use crate::notification::Change;
use entries::{Shared, State};
use relay::{Jobs, Relay};
pub use report::{ApiSnapshot, Deliveries, Leftover, Snapshot};
use rounds::{Progress, Waiter};

/// Relay workers when `--max-relays` is not given. One API may hold half
/// of them at once, so that a slow or failing fluxd never ties up the
/// workers another one needs; eight give one fluxd the four POSTs at once
/// it had before that share existed. Measured on a 2-core machine against
/// a stand-in fluxd on loopback: alone (`cargo bench --bench delivery`),
/// distinct notifications a second level off from 4 workers (37k/s; 8:
/// 40k/s, 64: 49k/s, 1: 22k/s); in the whole server under `scripts/bench`'s
/// flood of distinct pushes, where the workers share the cores with the
/// requests, 4 at once did best (29k hooks/s; 2: 26k, 8: 27.5k). With fluxd
/// taking 1–2 ms a worker carries ~400/s, so 4 carry over 1,500/s, far
/// beyond what providers send one fluxd. Each worker that has sent costs
/// about 90 KiB of RSS.
pub const DEFAULT_WORKERS: usize = 8;

/// Most distinct notifications pending when `--max-pending` is not given.
pub const DEFAULT_MAX_PENDING: usize = 1024;

/// How long a notification is retried when `--delivery-max-age` is not
/// given.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// Longest one POST may take when `--relay-timeout` is not given.
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// Lines a second about single notifications when not given.
pub const DEFAULT_LOGS_PER_SECOND: u64 = 20;

/// How the queue runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// Relay worker threads (`--max-relays`): at most this many POSTs to
    /// fluxd at once.
    pub workers: usize,
    /// Most distinct notifications pending at once (`--max-pending`); one
    /// endpoint may hold half of the room the others leave.
    pub max_pending: usize,
    /// How long a notification is retried before it is dropped
    /// (`--delivery-max-age`), counted from when it was last queued: an
    /// identical change that joins it starts the count again.
    pub max_age: Duration,
    /// Longest one POST may take, connecting included.
    pub attempt_timeout: Duration,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// Most lines a second about single notifications (refused by fluxd,
    /// dropped, delivered late); the rest are counted and summed up
    /// (`--refusal-logs-per-second`).
    pub logs_per_second: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            workers: DEFAULT_WORKERS,
            max_pending: DEFAULT_MAX_PENDING,
            max_age: DEFAULT_MAX_AGE,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
            backoff: Backoff::default(),
            logs_per_second: DEFAULT_LOGS_PER_SECOND,
        }
    }
}

/// Backoff between attempts to an API that failed: exponential in its
/// failures in a row from `first`, capped at `max`, each wait drawn
/// uniformly from its upper half so that APIs that failed together do not
/// retry together. The cap is a few seconds so that when fluxd comes back,
/// the next probe finds it and everything pending reaches it within
/// seconds. A `Retry-After` from fluxd is waited out as well, up to the
/// notifications' max age.
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
    /// The endpoint (hook URL) it came from, by its fingerprint: room in
    /// the queue and turns at the workers are shared per endpoint.
    pub endpoint: Arc<str>,
}

/// A submit that was not queued; nothing of it was. [`Full::NoRoom`] and
/// [`Full::Closed`] mean "retry later"; [`Full::NeverFits`] means retrying
/// cannot help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Full {
    /// Its new notifications do not fit its endpoint's share now.
    #[error(
        "{needed} more notification(s) do not fit: {pending} of at most {max} are pending, \
         {held} of them from this endpoint"
    )]
    NoRoom {
        /// Distinct notifications the submit would have added.
        needed: usize,
        /// Notifications pending from the endpoint that was refused.
        held: usize,
        /// Notifications pending.
        pending: usize,
        /// `max_pending`.
        max: usize,
    },
    /// More notifications for one endpoint than fit its share even of an
    /// empty queue.
    #[error("{needed} notifications, and one endpoint may have at most {most} pending")]
    NeverFits {
        /// Distinct notifications of the submit, for its endpoint.
        needed: usize,
        /// [`Queue::most_per_endpoint`].
        most: usize,
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

impl Queue {
    /// Start the workers. Fails only when a thread cannot be started.
    /// Zero workers are taken as one: the queue needs one to deliver.
    pub fn start(options: Options, log: Logger) -> std::io::Result<Queue> {
        let workers = options.workers.max(1);
        let relay = Relay::new(workers, options.attempt_timeout);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(&options)),
            options,
            log,
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
    /// it (see the module doc); only new distinct ones need room, in the
    /// share of the endpoint each came from.
    pub fn submit(&self, items: Vec<Item>) -> Result<Ticket, Full> {
        let shared = &self.workers.shared;
        let items = distinct(items);
        let most = self.most_per_endpoint();
        if let Some(needed) = largest_per_endpoint(&items).filter(|n| *n > most) {
            return Err(Full::NeverFits { needed, most });
        }
        let items = with_bodies(items);
        let waiter = Arc::new(Waiter {
            progress: watch::Sender::new(Progress {
                left: items.len(),
                refused: None,
            }),
        });
        let entries = shared.submit(items, &waiter)?;
        Ok(Ticket {
            shared: shared.clone(),
            waiter,
            entries,
        })
    }

    /// Most notifications one endpoint may have pending: half of
    /// `max_pending`, rounded up, when no other endpoint has any. A
    /// delivery that makes more can never be queued.
    pub fn most_per_endpoint(&self) -> usize {
        self.workers.shared.options.max_pending.div_ceil(2)
    }

    /// Figures for `/metrics`, read under the lock in one go.
    pub fn snapshot(&self) -> Snapshot {
        metrics::snapshot(&self.workers.shared)
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
            .map(|e| Leftover {
                api: e.url.clone(),
                change: e.change.clone(),
                deliveries: e.deliveries(),
                attempts: e.attempts,
                age: now - e.round.since,
                last_error: e.last_error.clone().or_else(|| {
                    // Left waiting behind the probes: why they failed.
                    st.targets.last_error(&e.url).map(String::from)
                }),
                sending: e.sending,
            })
            .collect();
        drop(st);
        left.sort_by_key(|l| Reverse(l.age));
        left
    }
}

/// `items` without repeats, in order.
fn distinct(items: Vec<Item>) -> Vec<Item> {
    let keep: Vec<bool> = {
        let mut seen = HashSet::with_capacity(items.len());
        items
            .iter()
            .map(|i| seen.insert((&i.url, &i.change)))
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

/// Each item with its change as fluxd is sent it. Done before the submit
/// takes the lock: the JSON is made once per distinct change, whichever
/// entry (and, with fan-out, whichever API) ends up sending it.
fn with_bodies(items: Vec<Item>) -> Vec<(Item, Arc<[u8]>)> {
    let mut json: HashMap<Change, Arc<[u8]>> = HashMap::new();
    items
        .into_iter()
        .map(|item| {
            let body = match json.get(&item.change) {
                Some(body) => body.clone(),
                None => {
                    let body: Arc<[u8]> = item.change.to_json().into();
                    json.insert(item.change.clone(), body.clone());
                    body
                }
            };
            (item, body)
        })
        .collect()
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
        let mut st = self.shared.lock();
        let progress = self.waiter.progress.borrow().clone();
        if let Some((api, reason)) = progress.refused {
            return Confirmation::Refused { api, reason };
        }
        if progress.left == 0 {
            return Confirmation::Accepted;
        }
        if !budget.is_zero() {
            st.gave_up(&self.waiter, &self.entries);
        }
        let now = Instant::now();
        let max_age = self.shared.options.max_age;
        let retry_for = self
            .entries
            .iter()
            .filter_map(|id| st.entries.get(id))
            .map(|e| e.time_left(max_age, now))
            .min()
            .unwrap_or_default();
        Confirmation::Pending { retry_for }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;

    use super::*;
    use crate::logging::Captured;
    use crate::notification::ImageName;

    /// Quick retries, so that no test runs longer than a second or two.
    fn options() -> Options {
        Options {
            workers: 2,
            max_pending: 64,
            max_age: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(5),
            backoff: Backoff {
                first: Duration::from_millis(20),
                max: Duration::from_millis(20),
            },
            logs_per_second: 100,
        }
    }

    /// A queue whose log the test can read.
    pub(super) fn start(options: Options) -> (Queue, Captured) {
        let logs = Captured::default();
        (
            Queue::start(options, logs.logger(slog::Level::Debug)).unwrap(),
            logs,
        )
    }

    /// A notify URL on 127.0.0.1 where nothing listens: fluxd is down.
    pub(super) fn dead_url() -> Arc<str> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        notify_url(&listener)
    }

    /// A fluxd stand-in that takes connections but never answers: the
    /// kernel completes them, nobody reads them. Silent until the test
    /// [`answer`]s on it.
    fn silent_fluxd() -> (TcpListener, Arc<str>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = notify_url(&listener);
        (listener, url)
    }

    fn notify_url(listener: &TcpListener) -> Arc<str> {
        let addr = listener.local_addr().unwrap();
        format!("http://{addr}/api/flux/v11/notify").into()
    }

    /// Answer the next request on `fluxd` with 202, waiting at most a few
    /// seconds for it.
    fn answer(fluxd: &TcpListener) {
        fluxd.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(5);
        let stream = loop {
            match fluxd.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < until, "no request came");
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("{e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        reader.read_exact(&mut vec![0; length]).unwrap();
        let mut writer = stream;
        writer
            .write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n")
            .unwrap();
    }

    pub(super) fn item(url: &Arc<str>, image: &str, delivery: &str) -> Item {
        Item {
            url: url.clone(),
            change: Change::image(ImageName {
                domain: String::new(),
                image: image.into(),
            }),
            delivery: delivery.into(),
            endpoint: "endpoint".into(),
        }
    }

    /// Wait at most a few seconds for `done` to hold.
    fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < until, "still waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn figures(queue: &Queue, url: &Arc<str>) -> ApiSnapshot {
        let s = queue.snapshot();
        s.apis
            .into_iter()
            .find(|a| a.api == *url)
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn a_change_that_joins_an_old_entry_is_retried_for_its_own_max_age() {
        // Margins of 600 ms and more on each side, for a loaded machine:
        // joined 1.2 s into a 2 s max age and waited on for 300 ms, it has
        // 1.7 s left counted from the join, 0.5 s counted from the entry.
        let (queue, _) = start(Options {
            max_age: Duration::from_secs(2),
            ..options()
        });
        let url = dead_url();
        let first = queue.submit(vec![item(&url, "app", "d-1")]).unwrap();
        let reply = first.wait(Duration::ZERO).await;
        assert!(matches!(reply, Confirmation::Pending { .. }), "{reply:?}");
        tokio::time::sleep(Duration::from_millis(1200)).await;

        // The same change again, before the entry it joins is 2 s old: it
        // is retried for 2 s from now, not for what is left of the entry's.
        let again = queue.submit(vec![item(&url, "app", "d-2")]).unwrap();
        let reply = again.wait(Duration::from_millis(300)).await;
        let Confirmation::Pending { retry_for } = reply else {
            panic!("fluxd is only down: pending, not {reply:?}");
        };
        assert!(
            retry_for > Duration::from_millis(1100) && retry_for <= Duration::from_millis(1700),
            "{retry_for:?}"
        );
        let s = queue.snapshot();
        assert_eq!(s.pending, 1);
        assert_eq!(figures(&queue, &url).expired, 0);
        // Its age is still its oldest change's.
        assert!(s.oldest_age >= Duration::from_millis(1500), "{s:?}");
    }

    #[test]
    fn a_silent_api_holds_at_most_one_of_three_workers() {
        let (_fluxd, url) = silent_fluxd();
        let (queue, _) = start(Options {
            workers: 3,
            attempt_timeout: Duration::from_millis(200),
            ..options()
        });
        let _tickets: Vec<Ticket> = (0..6)
            .map(|i| {
                queue
                    .submit(vec![item(&url, &format!("i{i}"), "")])
                    .unwrap()
            })
            .collect();
        // Half of three workers, rounded down: one attempt at a time, from
        // the first (before anything says it hangs) to the probes after.
        let mut most = 0;
        eventually("attempts on the silent API", || {
            most = most.max(queue.snapshot().sending);
            figures(&queue, &url).attempts >= 4
        });
        assert_eq!(most, 1);
    }

    #[tokio::test]
    async fn a_delivery_after_its_reply_gave_up_is_logged_once_as_late() {
        let (fluxd, url) = silent_fluxd();
        let (queue, logs) = start(options());
        let ticket = queue.submit(vec![item(&url, "app", "d-late")]).unwrap();
        let reply = ticket.wait(Duration::from_millis(100)).await;
        assert!(matches!(reply, Confirmation::Pending { .. }), "{reply:?}");
        // The reply is gone; fluxd answers now.
        answer(&fluxd);
        eventually("the delivery", || figures(&queue, &url).delivered == 1);
        assert_eq!(figures(&queue, &url).late, 1);
        eventually("the late line", || logs.text().contains("delivered late"));
        let text = logs.text();
        let late: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("delivered late"))
            .collect();
        assert_eq!(late.len(), 1, "{text}");
        assert!(late[0].contains("d-late"), "{}", late[0]);
    }

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
}
