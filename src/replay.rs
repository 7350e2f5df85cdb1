//! Replays refused, for signatures that cover a delivery's id and time
//! (Standard Webhooks: the `StandardWebhooks` source, GitLab's signing
//! tokens).
//!
//! Two checks, both on the request path, since sources are pure functions
//! of the request and have neither a clock nor a memory:
//!
//! - **Fresh**: the signed timestamp must lie within the tolerance
//!   (`--signature-tolerance`, 5 minutes by default) of now, either way;
//!   checked before the body is read. A recorded delivery replayed later
//!   fails it.
//! - **First**: within that window, a delivery whose `webhook-id` this
//!   endpoint already accepted is acknowledged and nothing is sent again:
//!   the sender retries with the same id when it lost a reply, and an
//!   attacker replaying a recorded delivery within the window gets no
//!   more. An id counts as accepted once its signature verified and its
//!   changes were queued (or, in a dry run, would have been): a delivery
//!   refused 503 because the queue was full has not used up its id.
//!
//! The memory is bounded: at most [`MAX_IDS`] ids, each held as a 16-byte
//! digest of the endpoint's fingerprint and the id (whatever the id's
//! length) with the time it may be forgotten. Its room is taken whole with
//! the first id remembered (nothing before) and never grows: about 2 MiB
//! (`cargo bench --bench replay` prints it). An id is forgotten once the
//! tolerance has passed since it was accepted (or since its timestamp, if
//! that is later): a replay of that delivery fails the timestamp check by
//! then, and a retry the sender signed anew within it is still known. When
//! the memory is full of ids still in their window, the one closest to its
//! end is forgotten first and counted ([`Replays::forgotten_early`]); a
//! replay of it would be sent again, which asks fluxd to look once more at
//! what it was told of, and nothing else. Only deliveries whose signature
//! verified are remembered, so filling the memory takes the signing key.
//!
//! The memory is in the process: a restart, or another replica, does not
//! know the ids this one accepted.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::source::{HookError, Stamp};

/// The most ids remembered at once: at peak, 54 accepted deliveries a
/// second for 5 minutes, far above what a GitOps receiver sees.
pub const MAX_IDS: usize = 16_384;

/// The default tolerance: what the Standard Webhooks libraries use.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// What an id is remembered by: the first 16 bytes of SHA-256 over the
/// endpoint's fingerprint and the id, so that ids of any length cost the
/// same and endpoints do not share ids.
type Key = [u8; 16];

/// The ids accepted within the window, and the time each may be forgotten.
pub struct Replays {
    tolerance: u64,
    max: usize,
    /// A `std` mutex, never held across an `.await`: what runs under it is
    /// a few map operations and the queue's own short, non-blocking submit.
    ids: Mutex<Ids>,
}

#[derive(Default)]
struct Ids {
    /// Each id and the Unix second after which it is forgotten.
    until: HashMap<Key, u64>,
    /// The same entries, soonest forgotten first.
    by_end: BinaryHeap<Reverse<(u64, Key)>>,
    /// Ids forgotten before their window ended, for lack of room.
    forgotten_early: u64,
}

impl Replays {
    /// A memory for `tolerance` (whole seconds count) holding at most `max`
    /// ids.
    pub fn new(tolerance: Duration, max: usize) -> Replays {
        Replays {
            tolerance: tolerance.as_secs(),
            max: max.max(1),
            ids: Mutex::new(Ids::default()),
        }
    }

    /// The tolerance, in seconds.
    pub fn tolerance(&self) -> u64 {
        self.tolerance
    }

    /// Whether `stamp`'s time lies within the tolerance of `now` (Unix
    /// seconds), either way; [`HookError::Stale`] if not, which says no
    /// more (not which way, nor by how much).
    pub fn fresh(&self, stamp: &Stamp, now: u64) -> Result<(), HookError> {
        if stamp.timestamp.abs_diff(now) <= self.tolerance {
            Ok(())
        } else {
            Err(HookError::Stale)
        }
    }

    /// Run `accept` unless `endpoint` (a fingerprint) accepted `stamp`'s id
    /// within the window: `None` then. The id is remembered if `accept`
    /// returns `Ok`. Checking, accepting and remembering happen under one
    /// lock, so of two identical deliveries at once exactly one runs
    /// `accept`, and the other finds the id only once the first's changes
    /// are queued.
    pub fn first<T, E>(
        &self,
        endpoint: &str,
        stamp: &Stamp,
        now: u64,
        accept: impl FnOnce() -> Result<T, E>,
    ) -> Option<Result<T, E>> {
        let key = key(endpoint, &stamp.id);
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.forget_ended(now);
        if ids.until.contains_key(&key) {
            return None;
        }
        let result = accept();
        if result.is_ok() {
            let until = stamp.timestamp.max(now).saturating_add(self.tolerance);
            ids.remember(key, until, self.max);
        }
        Some(result)
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .until
            .len()
    }

    /// Whether no id is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many ids were forgotten before their window ended, for lack of
    /// room.
    pub fn forgotten_early(&self) -> u64 {
        self.ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .forgotten_early
    }
}

impl Ids {
    /// Forget every id whose window ended before `now`.
    fn forget_ended(&mut self, now: u64) {
        while let Some(Reverse((until, key))) = self.by_end.peek().copied() {
            if until >= now {
                break;
            }
            self.by_end.pop();
            self.until.remove(&key);
        }
    }

    /// Remember `key` until `until`, first making room if `max` are held.
    fn remember(&mut self, key: Key, until: u64, max: usize) {
        // Room for all, taken with the first id: the map's table is sized
        // so that ids forgotten and remembered never make it grow (it
        // grows while half its room is taken, deleted entries counted), so
        // what is held stays as it is from then on.
        if self.until.capacity() == 0 {
            self.until.reserve(2 * max);
            self.by_end.reserve_exact(max);
        }
        while self.until.len() >= max {
            let Some(Reverse((_, soonest))) = self.by_end.pop() else {
                break;
            };
            self.until.remove(&soonest);
            self.forgotten_early += 1;
        }
        self.until.insert(key, until);
        self.by_end.push(Reverse((until, key)));
    }

    #[cfg(test)]
    fn capacities(&self) -> (usize, usize) {
        (self.until.capacity(), self.by_end.capacity())
    }
}

fn key(endpoint: &str, id: &str) -> Key {
    let mut sha = Sha256::new();
    sha.update(endpoint.as_bytes());
    sha.update([0]);
    sha.update(id.as_bytes());
    let digest = sha.finalize();
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_760_000_000;

    fn stamp(id: &str, timestamp: u64) -> Stamp {
        Stamp {
            id: id.to_string(),
            timestamp,
        }
    }

    fn replays() -> Replays {
        Replays::new(Duration::from_secs(300), MAX_IDS)
    }

    /// Accept, as the queue does when it has room.
    fn queued() -> Result<(), ()> {
        Ok(())
    }

    #[test]
    fn a_timestamp_within_the_tolerance_either_way_is_fresh() {
        let r = replays();
        for ts in [NOW, NOW - 300, NOW + 300, NOW - 1, NOW + 1] {
            assert_eq!(r.fresh(&stamp("a", ts), NOW), Ok(()), "{ts}");
        }
        for ts in [NOW - 301, NOW + 301, 0, u64::MAX] {
            assert_eq!(r.fresh(&stamp("a", ts), NOW), Err(HookError::Stale), "{ts}");
        }
        let strict = Replays::new(Duration::from_secs(1), MAX_IDS);
        assert_eq!(
            strict.fresh(&stamp("a", NOW - 2), NOW),
            Err(HookError::Stale)
        );
    }

    #[test]
    fn an_id_accepted_once_is_not_accepted_again_within_the_window() {
        let r = replays();
        let s = stamp("msg_1", NOW);
        assert_eq!(r.first("ep", &s, NOW, queued), Some(Ok(())));
        let mut ran = false;
        let again = r.first("ep", &s, NOW + 10, || {
            ran = true;
            queued()
        });
        assert_eq!(again, None);
        assert!(!ran, "a repeat must not be accepted again");
        // The same id on another endpoint, another id on this one.
        assert_eq!(r.first("other", &s, NOW, queued), Some(Ok(())));
        assert_eq!(
            r.first("ep", &stamp("msg_2", NOW), NOW, queued),
            Some(Ok(()))
        );
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn a_refused_delivery_does_not_use_up_its_id() {
        let r = replays();
        let s = stamp("msg_1", NOW);
        let full: Result<(), &str> = Err("queue full");
        assert_eq!(r.first("ep", &s, NOW, || full), Some(Err("queue full")));
        assert!(r.is_empty());
        assert_eq!(r.first("ep", &s, NOW + 5, queued), Some(Ok(())));
        assert_eq!(r.first("ep", &s, NOW + 6, queued), None);
    }

    #[test]
    fn ids_are_forgotten_once_a_replay_would_be_stale() {
        let r = replays();
        // Signed 100 s ago: a replay is fresh until NOW + 200.
        let old = stamp("old", NOW - 100);
        // Signed 100 s ahead (a clock ahead of ours): fresh until NOW + 400.
        let ahead = stamp("ahead", NOW + 100);
        r.first("ep", &old, NOW, queued);
        r.first("ep", &ahead, NOW, queued);
        for at in [NOW + 200, NOW + 299] {
            assert_eq!(r.first("ep", &old, at, queued), None, "{at}");
        }
        // The window is counted from when the id was accepted, so that a
        // sender's retry of it, signed anew, is still known: the spec has
        // senders sign each attempt with its own time.
        assert_eq!(
            r.first("ep", &stamp("old", NOW + 250), NOW + 250, queued),
            None
        );
        assert_eq!(r.first("ep", &ahead, NOW + 400, queued), None);
        // Past both windows, both are forgotten.
        r.first("ep", &stamp("x", NOW + 401), NOW + 401, queued);
        assert_eq!(r.len(), 1);
        assert_eq!(r.first("ep", &ahead, NOW + 401, queued), Some(Ok(())));
    }

    #[test]
    fn the_memory_stays_within_its_bound_and_forgets_the_soonest_first() {
        let r = Replays::new(Duration::from_secs(300), 100);
        // 100 ids, each signed a second after the one before.
        let s = |i: u64| stamp(&format!("msg_{i}"), NOW + i);
        for i in 0..100 {
            assert_eq!(r.first("ep", &s(i), NOW, queued), Some(Ok(())));
        }
        assert_eq!((r.len(), r.forgotten_early()), (100, 0));
        // One more: the id whose window ends first, msg_0, makes room.
        assert_eq!(r.first("ep", &s(100), NOW, queued), Some(Ok(())));
        assert_eq!((r.len(), r.forgotten_early()), (100, 1));
        let known = |i| r.first("ep", &s(i), NOW, || Err::<(), ()>(())).is_none();
        assert!(!known(0));
        assert!((1..=100).all(known));
        // However many more come, it holds 100, in maps that stopped
        // growing.
        for i in 101..10_000 {
            r.first("ep", &s(i), NOW, queued);
            assert!(r.len() <= 100);
        }
        assert!(known(9_999));
        let (map, heap) = r.ids.lock().unwrap().capacities();
        assert!(map <= 256 && heap <= 256, "{map} {heap}");
    }

    #[test]
    fn long_ids_cost_what_short_ones_do() {
        let r = replays();
        let long = "x".repeat(64 * 1024);
        r.first("ep", &stamp(&long, NOW), NOW, queued);
        assert_eq!(r.first("ep", &stamp(&long, NOW), NOW, queued), None);
        let mut other = long.clone();
        other.push('y');
        assert_eq!(
            r.first("ep", &stamp(&other, NOW), NOW, queued),
            Some(Ok(()))
        );
        assert_eq!(std::mem::size_of::<Key>(), 16);
    }

    #[test]
    fn identical_deliveries_at_once_are_accepted_once() {
        let r = std::sync::Arc::new(replays());
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // Eight copies of each of 50 deliveries at once, each accept taking
        // a millisecond (a slow queue): were checking and remembering not
        // one step with accepting, copies would slip in while the first is
        // accepted.
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (r, accepted) = (r.clone(), accepted.clone());
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let s = stamp(&format!("msg_{i}"), NOW);
                        r.first("ep", &s, NOW, || {
                            accepted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(1));
                            queued()
                        });
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 50);
    }
}
