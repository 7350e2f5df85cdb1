//! Log budgets: at most so many lines of a kind a second, the rest counted
//! and summed up in one line once lines get through again, so that what a
//! remote client can make flux-recv log is bounded whatever it sends.

use slog::{warn, Logger};

/// The budget of one kind of line: a [`Throttle`], and the line that says
/// how many it left out.
#[derive(Debug)]
pub struct Budget {
    throttle: Throttle,
    /// What the lines are, for the summary: `refused hooks`.
    what: &'static str,
}

impl Budget {
    /// At most `per_second` lines of `what` a second.
    pub fn new(per_second: u64, what: &'static str) -> Budget {
        Budget {
            throttle: Throttle::new(per_second),
            what,
        }
    }

    /// Count `lines` as left out without asking (lines that go with one
    /// that was not admitted).
    pub fn left_out(&self, lines: u64) {
        self.throttle
            .suppressed
            .fetch_add(lines, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether one more line may be logged. When lines were left out since
    /// the last one admitted, a warning on `log` says how many first:
    /// `refused hooks not logged: over the log budget, suppressed: 12,
    /// budget_per_second: 20`.
    pub fn admit(&self, log: &Logger) -> bool {
        match self.throttle.admit() {
            Admit::Skip => false,
            Admit::Log { suppressed: 0 } => true,
            Admit::Log { suppressed } => {
                warn!(log, "{} not logged: over the log budget", self.what;
                      "suppressed" => suppressed,
                      "budget_per_second" => self.throttle.per_second);
                true
            }
        }
    }
}

/// Lets through at most `per_second` events a second and counts the rest, so
/// a flood of junk requests cannot flood the logs (or the disk under them).
/// Approximate under contention, which is all a log budget needs.
#[derive(Debug)]
pub struct Throttle {
    per_second: u64,
    origin: std::time::Instant,
    /// The second (since `origin`) being counted.
    window: std::sync::atomic::AtomicU64,
    /// Events seen in that second.
    seen: std::sync::atomic::AtomicU64,
    /// Events not logged since the last one that was.
    suppressed: std::sync::atomic::AtomicU64,
}

/// What [`Throttle::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log this event; `suppressed` events were dropped since the last one
    /// logged, and a line should say so.
    Log {
        /// Events dropped before this one.
        suppressed: u64,
    },
    /// Over budget: count it, log nothing.
    Skip,
}

impl Throttle {
    /// A budget of `per_second` events a second.
    pub fn new(per_second: u64) -> Throttle {
        Throttle {
            per_second,
            origin: std::time::Instant::now(),
            window: Default::default(),
            seen: Default::default(),
            suppressed: Default::default(),
        }
    }

    /// Decide about one event.
    pub fn admit(&self) -> Admit {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.origin.elapsed().as_secs();
        let window = self.window.load(Relaxed);
        if now != window
            && self
                .window
                .compare_exchange(window, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.seen.store(0, Relaxed);
        }
        if self.seen.fetch_add(1, Relaxed) < self.per_second {
            Admit::Log {
                suppressed: self.suppressed.swap(0, Relaxed),
            }
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            Admit::Skip
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::Captured;

    #[test]
    fn throttle_keeps_to_its_budget_and_reports_what_it_dropped() {
        let t = Throttle::new(3);
        let decisions: Vec<Admit> = (0..5).map(|_| t.admit()).collect();
        assert_eq!(
            decisions,
            vec![
                Admit::Log { suppressed: 0 },
                Admit::Log { suppressed: 0 },
                Admit::Log { suppressed: 0 },
                Admit::Skip,
                Admit::Skip,
            ]
        );
        // The next second: logging resumes, and says what was dropped.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(t.admit(), Admit::Log { suppressed: 2 });
        assert_eq!(t.admit(), Admit::Log { suppressed: 0 });
    }

    #[test]
    fn a_budget_says_what_it_left_out_before_the_next_line() {
        let out = Captured::default();
        let log = out.logger(slog::Level::Info);
        let budget = Budget::new(2, "refused hooks");
        let admitted = (0..5).filter(|_| budget.admit(&log)).count();
        assert_eq!(admitted, 2);
        assert!(out.text().is_empty());
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert!(budget.admit(&log));
        let text = out.text();
        assert!(
            text.contains(
                "WARN refused hooks not logged: over the log budget, suppressed: 3, \
                 budget_per_second: 2"
            ),
            "{text}"
        );
    }
}
