//! What the queue reports: the figures for `/metrics` ([`Snapshot`]), what
//! [`Queue::drain`](super::Queue::drain) leaves behind ([`Leftover`]), and
//! the provider delivery ids an entry carries for the logs ([`Deliveries`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::targets::Changes;

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
    pub(super) fn add(&mut self, id: &Arc<str>) {
        if id.is_empty() || self.ids.contains(id) {
            return;
        }
        if self.ids.len() < KEPT_IDS {
            self.ids.push(id.clone());
        } else {
            self.more += 1;
        }
    }

    pub(super) fn absorb(&mut self, other: Deliveries) {
        for id in &other.ids {
            self.add(id);
        }
        self.more += other.more;
    }

    /// The ids kept.
    pub fn ids(&self) -> &[Arc<str>] {
        &self.ids
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

/// A notification still pending when [`Queue::drain`](super::Queue::drain)
/// gave up.
#[derive(Debug, Clone)]
pub struct Leftover {
    /// Its target's label (fluxd's: the notify URL).
    pub target: Arc<str>,
    /// The changes it tells of.
    pub changes: Changes,
    /// Who sent it.
    pub deliveries: Deliveries,
    /// Attempts made.
    pub attempts: u32,
    /// Since it was queued.
    pub age: Duration,
    /// Its last attempt's failure, if one failed; for one never tried while
    /// its target failed (it waited behind the probes), the target's last.
    pub last_error: Option<String>,
    /// An attempt was still under way (it may yet succeed).
    pub sending: bool,
}

/// Plain figures for `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Notifications pending (queued, backing off or being sent).
    pub pending: usize,
    /// Most notifications the queue holds (`--max-pending`).
    pub max_pending: usize,
    /// Bytes of the pending requests' bodies.
    pub pending_bytes: usize,
    /// Most bytes of bodies the queue holds (`--max-pending-bytes`).
    pub max_pending_bytes: usize,
    /// Of those, being sent right now.
    pub sending: usize,
    /// Age of the oldest pending notification; zero when none is.
    pub oldest_age: Duration,
    /// Per target, sorted by label.
    pub targets: Vec<TargetSnapshot>,
}

/// One target's figures. Counters count since start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetSnapshot {
    /// Its label (fluxd's: the notify URL), the `api` label of its series.
    pub target: Arc<str>,
    /// Notifications pending for it.
    pub pending: usize,
    /// Notifications it accepted.
    pub delivered: u64,
    /// Of those, accepted after a reply had stopped waiting.
    pub late: u64,
    /// Dropped after `--delivery-max-age` without it accepting them.
    pub expired: u64,
    /// Ended by an answer that can never succeed.
    pub refused: u64,
    /// Requests made.
    pub attempts: u64,
    /// Of those, attempts after a failed one.
    pub retries: u64,
    /// Changes that joined a pending identical one instead of adding one.
    pub joined: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(d.more, 12 - KEPT_IDS);
        assert!(d.to_string().ends_with(" (+4 more)"), "{d}");
    }
}
