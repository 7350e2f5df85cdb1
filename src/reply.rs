//! What a hook's reply says, and what is recorded about it.
//!
//! [`verdict`] decides, from how the hook was handled alone, its status,
//! reply text, `Retry-After`, metric label and log level: one exhaustive
//! `match`, a pure function (like warp's `handle_rejection`), so every
//! outcome is a one-line unit test. [`Recorder::record`] then does the side
//! effects, in one place: the metrics, the log budgets, the `hook` line and
//! the lines per change (what a dry run would have sent, or each change at
//! debug). [`crate::routes`] only turns the verdict into an HTTP reply.

use std::time::{Duration, Instant};

use http::StatusCode;
use slog::{debug, info, o, warn, Drain as _, Logger};

use crate::hook::{DeliveryState, Handled, HookReport, Refusal};
use crate::logging::Budget;
use crate::metrics::{HookOutcome, Metrics};

/// What a hook's reply is, decided from how it was handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The reply's status.
    pub status: StatusCode,
    /// The reply's text: one line saying what happened (the line break is
    /// the reply's to add). Also the `reason` of a refusal's log line.
    pub text: String,
    /// `Retry-After`, in seconds, for a 503: a provider that honours it
    /// comes back once the burst has drained.
    pub retry_after: Option<u64>,
    /// The `outcome` label of `fluxrecv_hooks_total`.
    pub outcome: HookOutcome,
    /// How loudly the hook is logged, and within which budget.
    pub level: Level,
}

/// How loudly a hook is logged, and within which budget: every hook is
/// counted, but what a remote client can make flux-recv log is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Info, within the hooks' budget (`--hook-logs-per-second`): the hook
    /// did what it should. An unsigned endpoint's URL is all it takes to
    /// send these, so a flood of them cannot be logged line for line
    /// either; they get a budget apart from refusals so that junk cannot
    /// crowd them out.
    Info,
    /// Info, within the refusal-log budget: a signed hook whose id was
    /// accepted before. A sender's retry is rare, but anyone holding a
    /// recorded hook can repeat it as fast as they like within the
    /// signature tolerance.
    Repeat,
    /// Warning, within the refusal-log budget: the client sent something
    /// we refuse.
    Refused,
    /// Warning, within the same budget: flux-recv could not take the hook
    /// now (503). Anyone can cause these, signed or not, by holding the
    /// body budget with a few stalled uploads, so they cannot be logged
    /// every time. They share the refusal budget rather than get one of
    /// their own because `--refusal-logs-per-second` bounds the lines a
    /// flood can write, whatever it is made of; a second budget would let
    /// an attacker double that by mixing kinds. Every one is still counted
    /// (`outcome="busy"`), and the summary line counts those left out.
    Busy,
    /// Warning, within the hooks' budget: fluxd refused the changes for
    /// good (502), which an operator must see. Only a hook that passed its
    /// endpoint's checks gets this far, but an unsigned endpoint's checks
    /// are its URL.
    Failed,
}

/// The status, reply text, `Retry-After`, metric label and log level of a
/// hook handled as `handled`: the one place each outcome gets them.
pub fn verdict(handled: &Handled) -> Verdict {
    use StatusCode as S;
    let answer = |status, text: String, outcome, level| Verdict {
        status,
        text,
        retry_after: None,
        outcome,
        level,
    };
    // 503s say when to come back: a provider that honours it returns once
    // the burst has drained (the queue's backoff tops out at 3 s).
    let busy = |text: String, retry_after: u64| Verdict {
        status: S::SERVICE_UNAVAILABLE,
        text,
        retry_after: Some(retry_after),
        outcome: HookOutcome::Busy,
        level: Level::Busy,
    };
    match handled {
        Handled::Delivered {
            changes,
            filtered,
            targets,
            answer: DeliveryState::Accepted,
        } => {
            let n = changes.len();
            let text = format!(
                "ok: notified {} of {n} change(s){}",
                crate::targets::kinds(targets),
                and_filtered(*filtered)
            );
            answer(S::OK, text, HookOutcome::Relayed, Level::Info)
        }
        Handled::Delivered {
            changes,
            filtered,
            targets,
            answer: DeliveryState::Pending { retry_for },
        } => {
            let n = changes.len();
            let kinds = crate::targets::kinds(targets);
            let has = if kinds.contains(" and ") {
                "have"
            } else {
                "has"
            };
            let text = format!(
                "accepted: {kinds} {has} not confirmed {n} change(s) yet; flux-recv keeps \
                 delivering them for up to {}{}",
                for_people(*retry_for),
                and_filtered(*filtered)
            );
            answer(S::ACCEPTED, text, HookOutcome::Queued, Level::Info)
        }
        Handled::Delivered {
            changes,
            filtered,
            targets,
            answer: DeliveryState::DryRun,
        } => {
            let n = changes.len();
            let text = format!(
                "ok: dry run, {} would be notified of {n} change(s){}",
                crate::targets::kinds(targets),
                and_filtered(*filtered)
            );
            answer(S::OK, text, HookOutcome::Relayed, Level::Info)
        }
        Handled::Delivered {
            answer: DeliveryState::Refused { target, reason },
            ..
        } => {
            let text = format!(
                "{} refused the notification: {reason}",
                crate::targets::refuser(target)
            );
            answer(
                S::BAD_GATEWAY,
                text,
                HookOutcome::UpstreamError,
                Level::Failed,
            )
        }
        Handled::Ignored(why) => {
            let text = format!("ok: nothing to do ({why})");
            answer(S::OK, text, HookOutcome::Ignored, Level::Info)
        }
        Handled::Filtered { changes } => {
            let text = format!(
                "ok: nothing to do (the endpoint's filter left out all {changes} change(s))"
            );
            answer(S::OK, text, HookOutcome::Filtered, Level::Info)
        }
        Handled::Replayed { within } => {
            let text = format!(
                "ok: nothing to do (a delivery with this webhook-id was accepted within the \
                 last {}; nothing was sent again)",
                for_people(*within)
            );
            answer(S::OK, text, HookOutcome::Replayed, Level::Repeat)
        }
        Handled::Refused(refusal) => match refusal {
            Refusal::Unauthorized(e) => answer(
                S::UNAUTHORIZED,
                e.to_string(),
                HookOutcome::Unauthorized,
                Level::Refused,
            ),
            Refusal::PubSubToken(_) => {
                // The reply does not tell a forger which check failed; the
                // log line does (never the token).
                let text = "the Pub/Sub push token is not valid".to_string();
                answer(
                    S::UNAUTHORIZED,
                    text,
                    HookOutcome::Unauthorized,
                    Level::Refused,
                )
            }
            Refusal::BadRequest(e) => answer(
                S::BAD_REQUEST,
                e.to_string(),
                HookOutcome::BadRequest,
                Level::Refused,
            ),
            Refusal::TooManyChanges { count, max } => {
                let text = format!(
                    "too many changes: the delivery names {count} distinct changes, \
                     the limit is {max}; nothing was sent"
                );
                answer(
                    S::BAD_REQUEST,
                    text,
                    HookOutcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::TooLarge { limit } => {
                let text = format!("payload too large: the limit is {limit} bytes");
                answer(
                    S::PAYLOAD_TOO_LARGE,
                    text,
                    HookOutcome::TooLarge,
                    Level::Refused,
                )
            }
            Refusal::BodyTimeout => {
                let text = "the request body was not received in time".to_string();
                answer(
                    S::REQUEST_TIMEOUT,
                    text,
                    HookOutcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::BodyBroken => {
                let text = "the request body could not be read".to_string();
                answer(
                    S::BAD_REQUEST,
                    text,
                    HookOutcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::OverBodyBudget => busy(
                "too many request bodies are being read at once; retry later".into(),
                5,
            ),
            Refusal::QueueFull { held, pending, max } => busy(
                format!(
                    "too many notifications are waiting for fluxd ({pending} of at most {max}, \
                     {held} of them from this endpoint); nothing of this delivery was queued, \
                     retry later"
                ),
                5,
            ),
            Refusal::QueueBytesFull { held, pending, max } => busy(
                format!(
                    "too many bytes of requests are waiting for the targets ({pending} of at \
                     most {max}, {held} of them from this endpoint); nothing of this delivery \
                     was queued, retry later"
                ),
                5,
            ),
            // Retrying cannot help, so not a 503: the endpoint's APIs times
            // the hook's changes exceed what one endpoint may queue.
            Refusal::TooManyNotifications {
                changes,
                apis,
                most,
            } => {
                let text = format!(
                    "too many notifications: {changes} change(s) for {apis} API(s) make {} \
                     notifications, and one endpoint may have at most {most} waiting \
                     (half of --max-pending); nothing was sent",
                    changes.saturating_mul(*apis)
                );
                answer(
                    S::BAD_REQUEST,
                    text,
                    HookOutcome::BadRequest,
                    Level::Refused,
                )
            }
            Refusal::ShuttingDown => busy("flux-recv is shutting down; retry later".into(), 30),
        },
    }
}

/// `15 min`, `40 s`: how long delivery goes on, for a reply.
fn for_people(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 120 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// `; 2 left out by the endpoint's filter`, or nothing.
fn and_filtered(filtered: usize) -> String {
    match filtered {
        0 => String::new(),
        n => format!("; {n} left out by the endpoint's filter"),
    }
}

/// Where hooks are recorded: the metrics, and the log within its budgets.
pub struct Recorder {
    metrics: std::sync::Arc<Metrics>,
    log: Logger,
    /// Budget for logging refused hooks, busy refusals included (see
    /// [`Level::Busy`]), requests to unknown hook URLs, and refused TLS
    /// handshakes ([`crate::tls`]).
    refusal_logs: std::sync::Arc<Budget>,
    /// Budget for logging hooks an endpoint took: their line, the 502s, and
    /// the lines per change (see [`Level::Info`]).
    hook_logs: Budget,
}

impl Recorder {
    /// Record into `metrics` and `log`, logging at most
    /// `refusal_logs_per_second` refusals and `hook_logs_per_second` lines
    /// about hooks taken a second.
    pub fn new(
        metrics: std::sync::Arc<Metrics>,
        log: Logger,
        refusal_logs_per_second: u64,
        hook_logs_per_second: u64,
    ) -> Recorder {
        Recorder {
            metrics,
            log,
            refusal_logs: std::sync::Arc::new(Budget::new(
                refusal_logs_per_second,
                "refused hooks",
            )),
            hook_logs: Budget::new(hook_logs_per_second, "hook lines"),
        }
    }

    /// The refusal log budget, for other refusals to share.
    pub fn refusal_logs(&self) -> std::sync::Arc<Budget> {
        self.refusal_logs.clone()
    }

    /// Record a hook whose request came in at `started` and whose reply is
    /// `verdict`: count it and time its reply, then log it within its
    /// level's budget, with the lines per change after it.
    pub fn record(&self, report: HookReport, verdict: &Verdict, started: Instant) {
        let HookReport {
            endpoint,
            event,
            delivery_id,
            handled,
        } = report;
        if let Handled::Refused(Refusal::PubSubToken(e)) = &handled {
            self.metrics.gcr_token_refused(e.check());
        }
        self.metrics.hook(endpoint.source.name(), verdict.outcome);
        self.metrics.replied(started.elapsed());
        // Lines after the hook's own, one per change: what a dry run would
        // have sent, and at debug each change. Within the hooks' budget too.
        let per_change = match &handled {
            Handled::Delivered {
                changes, answer, ..
            } if matches!(answer, DeliveryState::DryRun) || self.log.is_debug_enabled() => {
                changes.as_slice()
            }
            _ => &[],
        };
        let budget = match verdict.level {
            Level::Refused | Level::Busy | Level::Repeat => &self.refusal_logs,
            Level::Info | Level::Failed => &self.hook_logs,
        };
        if !budget.admit(&self.log) {
            self.hook_logs.left_out(per_change.len() as u64);
            return;
        }
        let (changes, apis) = match &handled {
            Handled::Delivered {
                changes, targets, ..
            } => (changes.len(), crate::targets::names(targets)),
            Handled::Ignored(_)
            | Handled::Filtered { .. }
            | Handled::Replayed { .. }
            | Handled::Refused(_) => (0, String::new()),
        };
        let log = self.log.new(o!(
            "source" => endpoint.source.name(),
            "fingerprint" => endpoint.fingerprint[..12].to_string(),
            "event" => event,
            "delivery" => delivery_id,
            "outcome" => verdict.outcome.label(),
            "status" => verdict.status.as_u16(),
            "changes" => changes,
            "api" => apis.clone(),
            "duration_ms" => crate::logging::elapsed_ms(started),
        ));
        let reason = &verdict.text;
        match (verdict.level, &handled) {
            (Level::Info | Level::Repeat, _) => info!(log, "hook"),
            (_, Handled::Refused(Refusal::PubSubToken(e))) => {
                warn!(log, "hook refused"; "check" => e.check(), "reason" => %e)
            }
            (
                _,
                Handled::Delivered {
                    answer: DeliveryState::Refused { target, .. },
                    ..
                },
            ) => {
                warn!(log, "hook refused"; "reason" => reason, "refused_by" => &**target)
            }
            (Level::Refused | Level::Busy | Level::Failed, _) => {
                warn!(log, "hook refused"; "reason" => reason)
            }
        }
        let dry_run = matches!(
            handled,
            Handled::Delivered {
                answer: DeliveryState::DryRun,
                ..
            }
        );
        for c in per_change {
            if !self.hook_logs.admit(&self.log) {
                continue;
            }
            if dry_run {
                // Values escaped and cut, as in every line (notification.rs).
                let json = c.for_log().to_json();
                info!(self.log, "dry run: not sent to fluxd";
                      "notification" => String::from_utf8_lossy(&json).into_owned(),
                      "api" => &apis);
            } else {
                debug!(self.log, "change"; "change" => %c);
            }
        }
        // A target that is sent the hook's body, not its changes: one line.
        let (true, Handled::Delivered { targets, .. }) = (dry_run, &handled) else {
            return;
        };
        for target in targets.iter().filter(|t| t.needs_body()) {
            if self.hook_logs.admit(&self.log) {
                info!(self.log, "dry run: not sent"; "target" => &**target.label(),
                      "request" => target.dry_run());
            }
        }
    }

    /// Record a request to a hook URL no endpoint has (probes, stale URLs):
    /// counted apart with no source, and logged at debug only, within the
    /// refusal budget.
    pub fn unknown_hook(&self, fingerprint: &str) {
        self.metrics.unknown_hook();
        if self.log.is_debug_enabled() && self.refusal_logs.admit(&self.log) {
            debug!(self.log, "no endpoint for this hook URL";
                   "fingerprint" => crate::printable(fingerprint));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gcr_auth::TokenError;
    use crate::notification::Change;
    use crate::source::HookError;
    use crate::targets::{fluxd::Fluxd, Target};
    use std::sync::Arc;

    fn delivered(changes: usize, filtered: usize, answer: DeliveryState) -> Handled {
        Handled::Delivered {
            changes: (0..changes)
                .map(|i| Change::git("git@github.com:org/app.git", &format!("refs/heads/b{i}")))
                .collect(),
            filtered,
            targets: Arc::from(vec![Target::from(Fluxd::new("http://fluxd:3030/api/flux"))]),
            answer,
        }
    }

    #[test]
    fn the_reply_names_every_kind_of_target_it_went_to() {
        use crate::targets::flux_receiver::FluxReceiver;
        let both = |answer| match delivered(1, 0, answer) {
            Handled::Delivered {
                changes,
                filtered,
                answer,
                ..
            } => Handled::Delivered {
                changes,
                filtered,
                targets: Arc::from(vec![
                    Target::from(Fluxd::new("http://fluxd:3030/api/flux")),
                    Target::from(FluxReceiver::new("http://nc/hook/abc", None, None)),
                ]),
                answer,
            },
            _ => unreachable!(),
        };
        let ok = verdict(&both(DeliveryState::Accepted));
        assert_eq!(
            ok.text,
            "ok: notified fluxd and flux-receiver of 1 change(s)"
        );
        let pending = verdict(&both(DeliveryState::Pending {
            retry_for: Duration::from_secs(900),
        }));
        assert!(
            pending.text.starts_with(
                "accepted: fluxd and flux-receiver have not confirmed 1 change(s) yet"
            ),
            "{}",
            pending.text
        );
    }

    /// How a hook was handled; the status, text, `Retry-After`, metric
    /// label and log level it gets.
    type Case = (Handled, u16, &'static str, Option<u64>, HookOutcome, Level);

    /// Every way a hook can end, with its status, text, `Retry-After`,
    /// metric label and log level: the contract with providers, one line
    /// each.
    #[test]
    fn every_outcome_has_its_reply_label_and_level() {
        use HookOutcome as O;
        use Level as L;
        let refused = |r| Handled::Refused(r);
        let cases: Vec<Case> =
            vec![
            (
                delivered(2, 0, DeliveryState::Accepted),
                200,
                "ok: notified fluxd of 2 change(s)",
                None,
                O::Relayed,
                L::Info,
            ),
            (
                delivered(1, 2, DeliveryState::Accepted),
                200,
                "ok: notified fluxd of 1 change(s); 2 left out by the endpoint's filter",
                None,
                O::Relayed,
                L::Info,
            ),
            (
                delivered(
                    1,
                    0,
                    DeliveryState::Pending {
                        retry_for: Duration::from_secs(15 * 60),
                    },
                ),
                202,
                "accepted: fluxd has not confirmed 1 change(s) yet; flux-recv keeps delivering \
                 them for up to 15 min",
                None,
                O::Queued,
                L::Info,
            ),
            (
                delivered(3, 0, DeliveryState::DryRun),
                200,
                "ok: dry run, fluxd would be notified of 3 change(s)",
                None,
                O::Relayed,
                L::Info,
            ),
            (
                delivered(
                    1,
                    0,
                    DeliveryState::Refused {
                        target: Arc::from("http://fluxd:3030/api/flux/v11/notify"),
                        reason: "fluxd answered 404 Not Found".into(),
                    },
                ),
                502,
                "fluxd refused the notification: fluxd answered 404 Not Found",
                None,
                O::UpstreamError,
                L::Failed,
            ),
            (
                Handled::Ignored("ping".into()),
                200,
                "ok: nothing to do (ping)",
                None,
                O::Ignored,
                L::Info,
            ),
            (
                Handled::Filtered { changes: 3 },
                200,
                "ok: nothing to do (the endpoint's filter left out all 3 change(s))",
                None,
                O::Filtered,
                L::Info,
            ),
            (
                Handled::Replayed {
                    within: Duration::from_secs(40),
                },
                200,
                "ok: nothing to do (a delivery with this webhook-id was accepted within the \
                 last 40 s; nothing was sent again)",
                None,
                O::Replayed,
                L::Repeat,
            ),
            (
                refused(Refusal::Unauthorized(HookError::BadSignature(
                    "X-Hub-Signature-256",
                ))),
                401,
                "X-Hub-Signature-256 does not match",
                None,
                O::Unauthorized,
                L::Refused,
            ),
            (
                refused(Refusal::PubSubToken(TokenError::BadSignature)),
                401,
                "the Pub/Sub push token is not valid",
                None,
                O::Unauthorized,
                L::Refused,
            ),
            (
                refused(Refusal::BadRequest(HookError::BadPayload("not JSON".into()))),
                400,
                "bad payload: not JSON",
                None,
                O::BadRequest,
                L::Refused,
            ),
            (
                refused(Refusal::TooManyChanges {
                    count: 300,
                    max: 256,
                }),
                400,
                "too many changes: the delivery names 300 distinct changes, the limit is 256; \
                 nothing was sent",
                None,
                O::BadRequest,
                L::Refused,
            ),
            (
                refused(Refusal::TooLarge { limit: 4096 }),
                413,
                "payload too large: the limit is 4096 bytes",
                None,
                O::TooLarge,
                L::Refused,
            ),
            (
                refused(Refusal::BodyTimeout),
                408,
                "the request body was not received in time",
                None,
                O::BadRequest,
                L::Refused,
            ),
            (
                refused(Refusal::BodyBroken),
                400,
                "the request body could not be read",
                None,
                O::BadRequest,
                L::Refused,
            ),
            (
                refused(Refusal::OverBodyBudget),
                503,
                "too many request bodies are being read at once; retry later",
                Some(5),
                O::Busy,
                L::Busy,
            ),
            (
                refused(Refusal::QueueBytesFull {
                    held: 300,
                    pending: 500,
                    max: 1000,
                }),
                503,
                "too many bytes of requests are waiting for the targets (500 of at most 1000, 300 \
                 of them from this endpoint); nothing of this delivery was queued, retry later",
                Some(5),
                O::Busy,
                L::Busy,
            ),
            (
                refused(Refusal::QueueFull {
                    held: 512,
                    pending: 1024,
                    max: 1024,
                }),
                503,
                "too many notifications are waiting for fluxd (1024 of at most 1024, 512 of \
                 them from this endpoint); nothing of this delivery was queued, retry later",
                Some(5),
                O::Busy,
                L::Busy,
            ),
            (
                refused(Refusal::TooManyNotifications {
                    changes: 300,
                    apis: 2,
                    most: 512,
                }),
                400,
                "too many notifications: 300 change(s) for 2 API(s) make 600 notifications, and \
                 one endpoint may have at most 512 waiting (half of --max-pending); nothing was \
                 sent",
                None,
                O::BadRequest,
                L::Refused,
            ),
            (
                refused(Refusal::ShuttingDown),
                503,
                "flux-recv is shutting down; retry later",
                Some(30),
                O::Busy,
                L::Busy,
            ),
        ];
        for (handled, status, text, retry_after, outcome, level) in cases {
            let want = Verdict {
                status: StatusCode::from_u16(status).unwrap(),
                text: text.to_string(),
                retry_after,
                outcome,
                level,
            };
            assert_eq!(verdict(&handled), want, "{handled:?}");
        }
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(for_people(Duration::from_secs(40)), "40 s");
        assert_eq!(for_people(Duration::from_secs(119)), "119 s");
        assert_eq!(for_people(Duration::from_secs(15 * 60)), "15 min");
    }

    /// A report for the first endpoint of a table with one GitHub endpoint.
    fn report(handled: Handled) -> (HookReport, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("gh.key"),
            b"0123456789abcdef0123456789abcdef",
        )
        .unwrap();
        let config = dir.path().join("fluxrecv.yaml");
        std::fs::write(
            &config,
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: gh.key\n",
        )
        .unwrap();
        let table = crate::table::Table::load(&config, None).table.unwrap();
        let report = HookReport {
            endpoint: table.endpoints()[0].clone(),
            event: "push".into(),
            delivery_id: "72d3162e".into(),
            handled,
        };
        (report, dir)
    }

    #[test]
    fn recording_counts_the_hook_and_logs_it_with_its_changes_within_budget() {
        let (first, _dir) = report(delivered(2, 0, DeliveryState::DryRun));
        let table = crate::table::Table::load(&_dir.path().join("fluxrecv.yaml"), None)
            .table
            .unwrap();
        let metrics = Arc::new(Metrics::new(&table, Vec::new()));
        let logs = crate::logging::Captured::default();
        // Room for the hook's line and one of its two changes' lines.
        let recorder = Recorder::new(metrics.clone(), logs.logger(slog::Level::Info), 20, 2);
        let verdict = verdict(&first.handled);
        recorder.record(first, &verdict, Instant::now());
        let (refused, _dir) = report(Handled::Refused(Refusal::PubSubToken(
            TokenError::BadSignature,
        )));
        let verdict = super::verdict(&refused.handled);
        recorder.record(refused, &verdict, Instant::now());
        drop(recorder);

        let text = logs.text();
        let hook = text.lines().find(|l| l.contains("INFO hook")).expect(&text);
        for field in [
            "source: GitHub",
            "event: push",
            "delivery: 72d3162e",
            "outcome: relayed",
            "status: 200",
            "changes: 2",
            "api: http://fluxd:3030/api/flux",
        ] {
            assert!(hook.contains(field), "no {field} in {hook}");
        }
        assert_eq!(
            text.matches("dry run: not sent to fluxd").count(),
            1,
            "{text}"
        );
        let refused = text
            .lines()
            .find(|l| l.contains("WARN hook refused"))
            .expect(&text);
        assert!(refused.contains("check: signature"), "{refused}");
        let scraped = metrics.encode(crate::metrics::Format::OpenMetrics);
        for line in [
            r#"fluxrecv_hooks_total{source="GitHub",outcome="relayed"} 1"#,
            r#"fluxrecv_hooks_total{source="GitHub",outcome="unauthorized"} 1"#,
            r#"fluxrecv_gcr_token_refusals_total{check="signature"} 1"#,
            "fluxrecv_reply_duration_seconds_count 2",
        ] {
            assert!(scraped.contains(line), "no {line} in {scraped}");
        }
    }
}
