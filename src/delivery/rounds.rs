//! The rounds of an entry: who the next send of a notification settles
//! ([`Round`]), and each ticket's side of it ([`Waiter`], [`Progress`]).

use std::sync::{Arc, Weak};
use std::time::Instant;

use tokio::sync::watch;

use super::readout::Deliveries;

/// The changes one send covers.
pub(super) struct Round {
    /// When the oldest of them was queued: the entry's age, as the metrics
    /// and the logs report it.
    pub(super) since: Instant,
    /// When the newest of them was queued: the entry is retried until this
    /// is `max_age` old.
    pub(super) newest: Instant,
    /// The replies that wait for this send. Weak: a reply that has been
    /// sent no longer needs telling, and identical pushes during a long
    /// outage must not pile up here.
    pub(super) waiters: Vec<Weak<Waiter>>,
    /// A reply stopped waiting for this send before it was settled, so its
    /// delivery is late. Kept here, not with the reply, which is gone by
    /// then.
    pub(super) late: bool,
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

    pub(super) fn absorb(&mut self, other: Round) {
        self.since = self.since.min(other.since);
        self.newest = self.newest.max(other.newest);
        self.waiters.extend(other.waiters);
        self.late |= other.late;
        self.deliveries.absorb(other.deliveries);
    }

    /// The replies still waiting.
    pub(super) fn waiters(&self) -> impl Iterator<Item = Arc<Waiter>> + '_ {
        self.waiters.iter().filter_map(Weak::upgrade)
    }

    /// Whether `waiter`'s reply waits for this send.
    pub(super) fn holds(&self, waiter: &Arc<Waiter>) -> bool {
        let waiter = Arc::as_ptr(waiter);
        self.waiters
            .iter()
            .any(|w| std::ptr::eq(w.as_ptr(), waiter))
    }
}

/// One ticket's side. Its entries' rounds hold it weakly: it goes with the
/// ticket, once the reply is sent.
pub(super) struct Waiter {
    progress: watch::Sender<Progress>,
}

/// How far a ticket's entries are.
#[derive(Debug, Clone)]
pub(super) struct Progress {
    /// Entries not yet accepted.
    pub(super) left: usize,
    /// The first refusal: the target's label, and why.
    pub(super) refused: Option<(Arc<str>, String)>,
}

impl Progress {
    fn settled(&self) -> bool {
        self.left == 0 || self.refused.is_some()
    }
}

impl Waiter {
    /// A waiter for `entries` entries.
    pub(super) fn new(entries: usize) -> Waiter {
        Waiter {
            progress: watch::Sender::new(Progress {
                left: entries,
                refused: None,
            }),
        }
    }

    /// Wait until every entry is accepted or one is refused. Workers settle
    /// entries from std threads: a watch sender needs no runtime.
    pub(super) async fn settled(&self) {
        let mut progress = self.progress.subscribe();
        let _ = progress.wait_for(Progress::settled).await;
    }

    /// Where its entries are now.
    pub(super) fn progress(&self) -> Progress {
        self.progress.borrow().clone()
    }

    pub(super) fn accepted(&self) {
        self.progress
            .send_modify(|p| p.left = p.left.saturating_sub(1));
    }

    /// The target labelled `target` refused an entry for good.
    pub(super) fn refused(&self, target: &Arc<str>, reason: &str) {
        self.progress.send_if_modified(|p| {
            let first = p.refused.is_none();
            if first {
                p.refused = Some((target.clone(), reason.to_string()));
            }
            first
        });
    }
}
