//! One entry: a request for one target, the rounds of replies that wait
//! for its sends, and how its attempts went. A module of `entries.rs`,
//! which alone reads and writes its fields.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::delivery::readout::Deliveries;
use crate::delivery::rounds::Round;
use crate::delivery::Item;
use crate::targets::{Body, Changes, Key};

/// One request for one target, and who waits for it.
pub(super) struct Entry {
    pub(super) key: Key,
    /// What is sent.
    pub(super) body: Body,
    /// What it tells of, for the logs.
    pub(super) changes: Changes,
    /// The endpoint that queued it: it holds the room, and its lane at the
    /// target is where it waits.
    pub(super) endpoint: Arc<str>,
    /// Who the next successful send settles.
    pub(super) round: Round,
    /// Who joined while `round` was being sent: they need one more send.
    pub(super) again: Option<Round>,
    pub(super) sending: bool,
    /// Attempts for `round`.
    pub(super) attempts: u32,
    /// Failed attempts, for the count of retries.
    pub(super) failures: u32,
    pub(super) last_error: Option<String>,
}

impl Entry {
    /// A new entry for `item`, due now and not yet tried.
    pub(super) fn new(item: Item, round: Round) -> Entry {
        Entry {
            key: item.target.key().clone(),
            body: item.outgoing.body,
            changes: item.outgoing.changes,
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
    pub(super) fn rounds(&self) -> impl Iterator<Item = &Round> {
        std::iter::once(&self.round).chain(&self.again)
    }

    /// [`Entry::rounds`], to change.
    pub(super) fn rounds_mut(&mut self) -> impl Iterator<Item = &mut Round> {
        std::iter::once(&mut self.round).chain(&mut self.again)
    }

    /// Tell everyone still waiting on it, in either round, that it will
    /// never be delivered; `target` is its target's label.
    pub(super) fn refuse(&self, target: &Arc<str>, reason: &str) {
        for w in self.rounds().flat_map(Round::waiters) {
            w.refused(target, reason);
        }
    }
}
