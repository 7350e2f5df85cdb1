//! What is read of the ledger whole: the figures for `/metrics` and what a
//! drain leaves. A module of `entries.rs`, so it reads the entries'
//! private fields; it changes nothing but the flag that stops the workers.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::time::Instant;

use super::Shared;
use crate::delivery::readout::{Leftover, Snapshot, TargetSnapshot};
use crate::targets::Key;

impl Shared {
    /// Stop the workers (no new attempt starts) and list what is left,
    /// oldest first.
    pub(in crate::delivery) fn stop_and_list_left(&self) -> Vec<Leftover> {
        let mut st = self.lock();
        st.stopped = true;
        self.work.notify_all();
        let now = Instant::now();
        let mut left: Vec<Leftover> = st
            .entries
            .values()
            .map(|e| Leftover {
                target: st.schedule.target(&e.key).label().clone(),
                changes: e.changes.clone(),
                deliveries: e.deliveries(),
                attempts: e.attempts,
                age: now - e.round.since,
                last_error: e.last_error.clone().or_else(|| {
                    // Left waiting behind the probes: why they failed.
                    st.schedule.last_error(&e.key).map(String::from)
                }),
                sending: e.sending,
            })
            .collect();
        drop(st);
        left.sort_by_key(|l| Reverse(l.age));
        left
    }

    /// The figures for `/metrics`, read under the lock in one go.
    pub(in crate::delivery) fn snapshot(&self) -> Snapshot {
        let st = self.lock();
        let now = Instant::now();
        let mut targets: HashMap<&Key, TargetSnapshot> = st
            .schedule
            .counters()
            .map(|(target, c)| {
                let s = TargetSnapshot {
                    target: target.label().clone(),
                    pending: 0,
                    delivered: c.delivered,
                    late: c.late,
                    expired: c.expired,
                    refused: c.refused,
                    attempts: c.attempts,
                    retries: c.retries,
                    joined: c.joined,
                };
                (target.key(), s)
            })
            .collect();
        let mut snapshot = Snapshot {
            pending: st.entries.len(),
            max_pending: self.settings.max_pending,
            pending_bytes: st.room.bytes(),
            max_pending_bytes: self.settings.max_pending_bytes,
            ..Snapshot::default()
        };
        for e in st.entries.values() {
            snapshot.sending += usize::from(e.sending);
            snapshot.oldest_age = snapshot.oldest_age.max(now - e.round.since);
            if let Some(t) = targets.get_mut(&e.key) {
                t.pending += 1;
            }
        }
        snapshot.targets = targets.into_values().collect();
        drop(st);
        snapshot.targets.sort_by(|a, b| a.target.cmp(&b.target));
        snapshot
    }
}
