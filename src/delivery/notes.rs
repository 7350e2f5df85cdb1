//! What the queue logs about single notifications, and the budget that
//! bounds it.
//!
//! Workers decide what to log under the queue's lock and log it once the
//! lock is released: a [`Note`] carries what the line needs. A line names
//! the target by its label in the `api` field, and says who answered by
//! its name (`fluxd refused a notification`). The lines a flood can
//! multiply (a notification delivered late, refused by its target, or
//! dropped after `--delivery-max-age`: an unsigned endpoint's posts make
//! one each) are held to `--refusal-logs-per-second` by a [`Budget`]; those
//! left out are counted by kind and target and summed up in one line once
//! the second is over, so that a flood that stops is still reported.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slog::{debug, info, warn, Logger};

use super::readout::Deliveries;
use crate::logging::{Admit, Throttle};
use crate::targets::{Changes, Target};

/// A target as a line names it.
#[derive(Debug, Clone)]
pub(super) struct Named {
    /// Its label, in the `api` field.
    pub(super) label: Arc<str>,
    /// Who answers: `fluxd`.
    pub(super) name: &'static str,
}

impl Named {
    pub(super) fn of(target: &Target) -> Named {
        Named {
            label: target.label().clone(),
            name: target.name(),
        }
    }
}

/// One thing to log, once the state lock is released.
pub(super) enum Note {
    /// The target took it; at debug, or at info when a reply gave up on it.
    Delivered {
        target: Named,
        changes: Changes,
        deliveries: Deliveries,
        attempts: u32,
        /// Since it was queued: for a late one, how late.
        after: Duration,
        late: bool,
    },
    /// The target refused it for good.
    Refused {
        target: Named,
        changes: Changes,
        deliveries: Deliveries,
        attempts: u32,
        reason: String,
    },
    /// Dropped after `max_age`.
    Expired {
        target: Named,
        changes: Changes,
        deliveries: Deliveries,
        attempts: u32,
        age: Duration,
        last_error: Option<String>,
    },
    /// An attempt failed; it will be retried (debug).
    Failed {
        target: Named,
        changes: Changes,
        attempts: u32,
        reason: String,
    },
    /// Lines left out by the budget.
    Suppressed(Tally),
}

/// The lines left out since the last summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Tally {
    /// When the first was left out.
    since: Option<Instant>,
    refused: u64,
    expired: u64,
    late: u64,
    /// The targets they were for, by label: the first few, and how many
    /// more.
    apis: Vec<Arc<str>>,
    more_apis: usize,
    /// The last reason a target gave for a refusal left out.
    last_reason: Option<String>,
}

/// Targets named in a summary.
const NAMED_APIS: usize = 3;

impl Tally {
    fn count(&mut self, note: &Note, now: Instant) {
        let url = match note {
            Note::Refused { target, reason, .. } => {
                self.refused += 1;
                self.last_reason = Some(reason.clone());
                &target.label
            }
            Note::Expired { target, .. } => {
                self.expired += 1;
                &target.label
            }
            Note::Delivered { target, .. } => {
                self.late += 1;
                &target.label
            }
            Note::Failed { .. } | Note::Suppressed(_) => return,
        };
        self.since.get_or_insert(now);
        if !self.apis.contains(url) {
            if self.apis.len() < NAMED_APIS {
                self.apis.push(url.clone());
            } else {
                self.more_apis += 1;
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.since.is_none()
    }

    fn apis(&self) -> String {
        let mut apis = self.apis.join(" ");
        if self.more_apis > 0 {
            apis.push_str(&format!(" (+{} more)", self.more_apis));
        }
        apis
    }
}

/// The budget of per-notification lines, and what it left out.
pub(super) struct Budget {
    throttle: Throttle,
    tally: Tally,
}

impl Budget {
    /// At most `per_second` lines a second.
    pub(super) fn new(per_second: u64) -> Budget {
        Budget {
            throttle: Throttle::new(per_second),
            tally: Tally::default(),
        }
    }

    /// Add `note` to `notes` if it is within the budget (after the summary
    /// of what was left out before it, if anything was), or count it. Only
    /// the lines a flood can multiply are held to the budget.
    pub(super) fn push(&mut self, note: Note, notes: &mut Vec<Note>, now: Instant) {
        let budgeted = match &note {
            Note::Refused { .. } | Note::Expired { .. } => true,
            Note::Delivered { late, .. } => *late,
            Note::Failed { .. } | Note::Suppressed(_) => false,
        };
        if budgeted {
            if let Admit::Skip = self.throttle.admit() {
                self.tally.count(&note, now);
                return;
            }
            if !self.tally.is_empty() {
                notes.push(Note::Suppressed(std::mem::take(&mut self.tally)));
            }
        }
        notes.push(note);
    }

    /// When the summary of what was left out is due: a second after the
    /// first line left out.
    pub(super) fn due(&self) -> Option<Instant> {
        Some(self.tally.since? + Duration::from_secs(1))
    }

    /// The summary, if it is due at `now`.
    pub(super) fn summary(&mut self, now: Instant) -> Option<Note> {
        (self.due()? <= now).then(|| Note::Suppressed(std::mem::take(&mut self.tally)))
    }
}

/// Log `note`; `per_second` is the budget, for a summary.
pub(super) fn log(log: &Logger, note: Note, per_second: u64) {
    match note {
        Note::Delivered {
            target,
            changes,
            deliveries,
            attempts,
            after,
            late,
        } => {
            let after_ms = after.as_millis() as u64;
            if late {
                info!(log, "delivered late";
                    "api" => &*target.label, "change" => %changes, "delivery" => %deliveries,
                    "attempts" => attempts, "after_ms" => after_ms);
            } else {
                debug!(log, "delivered";
                    "api" => &*target.label, "change" => %changes, "delivery" => %deliveries,
                    "attempts" => attempts, "after_ms" => after_ms);
            }
        }
        Note::Refused {
            target,
            changes,
            deliveries,
            attempts,
            reason,
        } => {
            warn!(log, "{} refused a notification; not retrying", target.name;
                "api" => &*target.label, "change" => %changes, "delivery" => %deliveries,
                "attempts" => attempts, "reason" => reason);
        }
        Note::Expired {
            target,
            changes,
            deliveries,
            attempts,
            age,
            last_error,
        } => {
            warn!(log, "dropped a notification {} did not accept in time", target.name;
                "api" => &*target.label, "change" => %changes, "delivery" => %deliveries,
                "attempts" => attempts, "age_s" => age.as_secs(),
                "last_error" => last_error.as_deref().unwrap_or("-"));
        }
        Note::Failed {
            target,
            changes,
            attempts,
            reason,
        } => {
            debug!(log, "delivery attempt failed; will retry";
                "api" => &*target.label, "change" => %changes, "attempts" => attempts,
                "reason" => reason);
        }
        Note::Suppressed(tally) => {
            warn!(log, "notification lines not logged: over the log budget";
                "refused" => tally.refused, "expired" => tally.expired,
                "delivered_late" => tally.late, "api" => tally.apis(),
                "last_reason" => tally.last_reason.as_deref().unwrap_or("-"),
                "budget_per_second" => per_second);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Change;

    fn named(label: &str) -> Named {
        Named {
            label: label.into(),
            name: "fluxd",
        }
    }

    fn app() -> Changes {
        Changes::of(&[Change::image(crate::notification::ImageName {
            domain: String::new(),
            image: "app".into(),
        })])
    }

    fn refused(url: &str) -> Note {
        Note::Refused {
            target: named(url),
            changes: app(),
            deliveries: Deliveries::default(),
            attempts: 1,
            reason: "fluxd answered 404 Not Found".into(),
        }
    }

    #[test]
    fn lines_over_the_budget_are_counted_and_summed_up_before_the_next() {
        let mut budget = Budget::new(2);
        let now = Instant::now();
        let mut notes = Vec::new();
        for i in 0..7 {
            budget.push(refused(&format!("http://api-{}/", i % 5)), &mut notes, now);
        }
        assert_eq!(notes.len(), 2);
        assert_eq!(budget.due(), Some(now + Duration::from_secs(1)));
        assert!(
            budget.summary(now).is_none(),
            "not before the second is over"
        );
        let Some(Note::Suppressed(tally)) = budget.summary(now + Duration::from_secs(1)) else {
            panic!("a summary");
        };
        assert_eq!((tally.refused, tally.expired, tally.late), (5, 0, 0));
        assert_eq!(
            tally.apis(),
            "http://api-2/ http://api-3/ http://api-4/ (+2 more)"
        );
        assert_eq!(
            tally.last_reason.as_deref(),
            Some("fluxd answered 404 Not Found")
        );
        assert_eq!(budget.due(), None);
    }

    #[test]
    fn debug_lines_are_not_held_to_the_budget() {
        let mut budget = Budget::new(0);
        let mut notes = Vec::new();
        let failed = Note::Failed {
            target: named("http://a/"),
            changes: app(),
            attempts: 1,
            reason: "fluxd answered 503".into(),
        };
        budget.push(failed, &mut notes, Instant::now());
        assert_eq!(notes.len(), 1);
        assert!(budget.due().is_none());
    }
}
