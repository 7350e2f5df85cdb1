//! What `GET /metrics` reports, in the format the scraper asks for: the
//! OpenMetrics text format (what Prometheus asks for first), or the classic
//! Prometheus text format 0.0.4 (what everything else reads).
//!
//! One [`Metrics`] value lives in [`crate::service::Service`]. Each place
//! that knows an outcome records it with one call: [`crate::reply`] once
//! per hook, [`crate::reload`] once per reload. Parts that keep their own
//! counters (the relay) hand in a [`Collector`] that reads them at scrape
//! time. This module knows the labels, not the request path or the reload.
//!
//! Every name starts with `fluxrecv_`; `docs/operations.md` lists them all;
//! `container/monitoring/` has alerts and a dashboard on them.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::table::Table;

/// The two text formats a scrape can be answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0: `# UNIT` lines, counters' families named without
    /// `_total`, `# EOF` at the end.
    OpenMetrics,
    /// The Prometheus text format 0.0.4, for scrapers and tools that do not
    /// ask for OpenMetrics (`curl`, `promtool check metrics`, older agents).
    Prometheus,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics if it names it,
    /// else the classic text format.
    pub fn for_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The reply's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Upper bounds of the reply duration buckets, in seconds: from a fluxd in
/// the same pod answering in a millisecond, past the default 2 s reply
/// budget, to a body that took its time to arrive.
const REPLY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How a hook to a known endpoint ended: the `outcome` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// fluxd accepted every change within the reply budget (or, in a dry
    /// run, would have been told): answered 200.
    Relayed,
    /// Queued, and not confirmed by fluxd within the reply budget: answered
    /// 202, and delivered later.
    Queued,
    /// Verified, nothing to send.
    Ignored,
    /// Verified, and the endpoint's filter left out every change.
    Filtered,
    /// Verified, and a hook with the same signed id was accepted
    /// within the signature tolerance: nothing sent again, answered 200.
    Replayed,
    /// Signature or token missing or wrong.
    Unauthorized,
    /// Wrong event, bad payload, a body that did not arrive.
    BadRequest,
    /// fluxd refused a change for good (a wrong `api:` path, a redirect):
    /// answered 502.
    UpstreamError,
    /// flux-recv could not take the hook now (body budget, queue full,
    /// shutting down): answered 503 with `Retry-After`.
    Busy,
    /// Body over `--max-body`.
    TooLarge,
}

impl HookOutcome {
    /// Every outcome a hook can have (a URL no endpoint has is counted
    /// apart, with no source: [`Metrics::unknown_hook`]). A source's series are
    /// created at zero for each as soon as the source is served, so an alert
    /// on the first unauthorized hook sees 0 → 1 rather than a series
    /// appearing from nowhere.
    const FOR_ENDPOINTS: [HookOutcome; 10] = [
        HookOutcome::Relayed,
        HookOutcome::Queued,
        HookOutcome::Ignored,
        HookOutcome::Filtered,
        HookOutcome::Replayed,
        HookOutcome::Busy,
        HookOutcome::Unauthorized,
        HookOutcome::BadRequest,
        HookOutcome::UpstreamError,
        HookOutcome::TooLarge,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            HookOutcome::Relayed => "relayed",
            HookOutcome::Queued => "queued",
            HookOutcome::Busy => "busy",
            HookOutcome::Ignored => "ignored",
            HookOutcome::Filtered => "filtered",
            HookOutcome::Replayed => "replayed",
            HookOutcome::Unauthorized => "unauthorized",
            HookOutcome::BadRequest => "bad_request",
            HookOutcome::UpstreamError => "upstream_error",
            HookOutcome::TooLarge => "too_large",
        }
    }
}

/// What a reload did: the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// A new table is served.
    Changed,
    /// The files build the table already served.
    Unchanged,
    /// The files do not build a table.
    Failed,
    /// They do not yet: a file the new config names is not there, and
    /// the reload grace for it has not run out.
    Waiting,
}

impl Reload {
    const ALL: [Reload; 4] = [
        Reload::Changed,
        Reload::Unchanged,
        Reload::Failed,
        Reload::Waiting,
    ];

    fn label(self) -> &'static str {
        match self {
            Reload::Changed => "changed",
            Reload::Unchanged => "unchanged",
            Reload::Failed => "failed",
            Reload::Waiting => "waiting",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookLabels {
    source: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    check: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The registry and every metric flux-recv exports.
pub struct Metrics {
    registry: Registry,
    hooks: Family<HookLabels, Counter>,
    unknown_hooks: Counter,
    reply_duration: Histogram,
    reloads: Family<ResultLabels, Counter>,
    last_reload_success: Gauge<f64, AtomicU64>,
    /// 1 while the last reload failed (past the grace for files not there
    /// yet): what an alert on a failure that lasts watches.
    reload_failing: Gauge,
    endpoints: Gauge,
    gcr_token_refusals: Family<CheckLabels, Counter>,
}

impl Metrics {
    /// Metrics for a server serving `table` (loaded just now, so it counts
    /// as the last successful reload), with `collectors` read at each
    /// scrape.
    pub fn new(table: &Table, collectors: Vec<Box<dyn Collector>>) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("fluxrecv"),
            hooks: Family::default(),
            unknown_hooks: Counter::default(),
            reply_duration: Histogram::new(REPLY_BUCKETS),
            reloads: Family::default(),
            last_reload_success: Gauge::default(),
            reload_failing: Gauge::default(),
            endpoints: Gauge::default(),
            gcr_token_refusals: Family::default(),
        };
        metrics.register(collectors);
        for result in Reload::ALL {
            // Creating the series at zero is the point; the guard goes.
            let _ = metrics.reloads.get_or_create(&ResultLabels {
                result: result.label(),
            });
        }
        metrics.serving(table);
        metrics
    }

    /// Put every metric in the registry. The registry holds clones, which
    /// share their values with the fields. (It ends each help text with a
    /// full stop, so these have none.)
    fn register(&mut self, collectors: Vec<Box<dyn Collector>>) {
        let registry = &mut self.registry;
        registry.register(
            "hooks",
            "Hooks to a known endpoint, by source and outcome",
            self.hooks.clone(),
        );
        registry.register(
            "unknown_hook_requests",
            "Requests to a /hook/ URL no endpoint has (answered 404)",
            self.unknown_hooks.clone(),
        );
        registry.register_with_unit(
            "reply_duration",
            "Time from a hook's request to its reply, for known endpoints",
            Unit::Seconds,
            self.reply_duration.clone(),
        );
        for collector in collectors {
            registry.register_collector(collector);
        }
        registry.register_collector(Box::new(LogLinesDropped));
        registry.register(
            "reloads",
            "Reloads of the config and keys, by result (changed, unchanged, failed, waiting)",
            self.reloads.clone(),
        );
        registry.register(
            "reload_failing",
            "1 while the config and keys on disk build no table (a file not there yet only once the reload grace is over), else 0",
            self.reload_failing.clone(),
        );
        registry.register_with_unit(
            "last_reload_success_timestamp",
            "When the config and keys last built a table (at start or on a reload), in Unix time",
            Unit::Seconds,
            self.last_reload_success.clone(),
        );
        registry.register(
            "endpoints",
            "Endpoints in the table being served",
            self.endpoints.clone(),
        );
        registry.register(
            "gcr_token_refusals",
            "Pub/Sub push tokens refused, by the check that failed",
            self.gcr_token_refusals.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the version label says which flux-recv this is",
            build_info,
        );
    }

    /// Count one hook to a known endpoint of `source`.
    pub fn hook(&self, source: &'static str, outcome: HookOutcome) {
        self.hooks
            .get_or_create(&HookLabels {
                source,
                outcome: outcome.label(),
            })
            .inc();
    }

    /// Count one request to a hook URL no endpoint has: a stale URL after
    /// a key rotation, or someone probing.
    pub fn unknown_hook(&self) {
        self.unknown_hooks.inc();
    }

    /// Record how long one hook to a known endpoint took to answer.
    pub fn replied(&self, took: Duration) {
        self.reply_duration.observe(took.as_secs_f64());
    }

    /// Count one refused Pub/Sub push token by the check that failed
    /// ([`crate::gcr_auth::TokenError::check`]).
    pub fn gcr_token_refused(&self, check: &'static str) {
        self.gcr_token_refusals
            .get_or_create(&CheckLabels { check })
            .inc();
    }

    /// Count one reload; `serving` is the table served after it.
    pub fn reloaded(&self, result: Reload, serving: &Table) {
        self.reloads
            .get_or_create(&ResultLabels {
                result: result.label(),
            })
            .inc();
        self.reload_failing.set(i64::from(result == Reload::Failed));
        if matches!(result, Reload::Changed | Reload::Unchanged) {
            // An unchanged re-read is a success too: the files on disk were
            // read and are what is served.
            self.serving(serving);
        }
    }

    /// `table` is served as of now.
    fn serving(&self, table: &Table) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.last_reload_success.set(now);
        self.endpoints.set(table.endpoints().len() as i64);
        for endpoint in table.endpoints() {
            for outcome in HookOutcome::FOR_ENDPOINTS {
                let _ = self.hooks.get_or_create(&HookLabels {
                    source: endpoint.source.name(),
                    outcome: outcome.label(),
                });
            }
        }
    }

    /// Everything, in `format`.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        match format {
            Format::OpenMetrics => out,
            Format::Prometheus => to_prometheus_text(&out),
        }
    }
}

/// Log lines dropped because stderr was not taking them (see
/// [`crate::logging`]), read at scrape time.
#[derive(Debug)]
struct LogLinesDropped;

impl Collector for LogLinesDropped {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let counter =
            prometheus_client::metrics::counter::ConstCounter::new(crate::logging::dropped());
        let metric = encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines dropped because stderr was not taking them.",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)
    }
}

/// OpenMetrics text as the classic Prometheus text format: a counter's
/// family takes its samples' `_total` name (or `HELP` and `TYPE` describe
/// nothing that is there), and the OpenMetrics-only `UNIT` and `EOF` lines
/// go. Samples are the same in both.
fn to_prometheus_text(open_metrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = open_metrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open_metrics.len());
    for line in open_metrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "]
            .iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
        match described {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = match counters.contains(name) {
                    true => format!("{name}_total"),
                    false => name.to_string(),
                };
                out.push_str(&format!("{prefix}{name} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_created_at_zero() {
        // Exhaustive: an outcome added to the enum does not compile until it
        // has an arm here, which asks that FOR_ENDPOINTS list it too.
        let listed = |outcome: HookOutcome| match outcome {
            HookOutcome::Relayed
            | HookOutcome::Queued
            | HookOutcome::Ignored
            | HookOutcome::Filtered
            | HookOutcome::Replayed
            | HookOutcome::Busy
            | HookOutcome::Unauthorized
            | HookOutcome::BadRequest
            | HookOutcome::UpstreamError
            | HookOutcome::TooLarge => HookOutcome::FOR_ENDPOINTS.contains(&outcome),
        };
        for outcome in [
            HookOutcome::Relayed,
            HookOutcome::Queued,
            HookOutcome::Ignored,
            HookOutcome::Filtered,
            HookOutcome::Replayed,
            HookOutcome::Busy,
            HookOutcome::Unauthorized,
            HookOutcome::BadRequest,
            HookOutcome::UpstreamError,
            HookOutcome::TooLarge,
        ] {
            assert!(listed(outcome), "{outcome:?} is not created at zero");
        }
    }

    fn table(dir: &std::path::Path) -> Table {
        std::fs::write(dir.join("a.key"), b"0123456789abcdef-a").unwrap();
        let config = dir.join("fluxrecv.yaml");
        std::fs::write(
            &config,
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a.key\n",
        )
        .unwrap();
        Table::load(&config, None).table.expect("table")
    }

    #[test]
    fn names_units_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new(&table(dir.path()), vec![]);
        metrics.hook("GitHub", HookOutcome::Unauthorized);
        metrics.replied(Duration::from_millis(3));
        metrics.reloaded(Reload::Unchanged, &table(dir.path()));
        let text = metrics.encode(Format::OpenMetrics);
        for line in [
            "# TYPE fluxrecv_hooks counter",
            r#"fluxrecv_hooks_total{source="GitHub",outcome="unauthorized"} 1"#,
            r#"fluxrecv_hooks_total{source="GitHub",outcome="relayed"} 0"#,
            "fluxrecv_unknown_hook_requests_total 0",
            "# UNIT fluxrecv_reply_duration_seconds seconds",
            r#"fluxrecv_reply_duration_seconds_bucket{le="0.0025"} 0"#,
            r#"fluxrecv_reply_duration_seconds_bucket{le="0.005"} 1"#,
            "fluxrecv_reply_duration_seconds_count 1",
            r#"fluxrecv_reloads_total{result="unchanged"} 1"#,
            r#"fluxrecv_reloads_total{result="failed"} 0"#,
            "fluxrecv_endpoints 1",
            "# TYPE fluxrecv_log_lines_dropped counter",
            concat!(
                r#"fluxrecv_build_info{version=""#,
                env!("CARGO_PKG_VERSION"),
                r#""} 1"#
            ),
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        let classic = metrics.encode(Format::Prometheus);
        for line in [
            "# HELP fluxrecv_hooks_total Hooks to a known endpoint, by source and outcome.",
            "# TYPE fluxrecv_hooks_total counter",
            r#"fluxrecv_hooks_total{source="GitHub",outcome="unauthorized"} 1"#,
            "# TYPE fluxrecv_endpoints gauge",
            "# TYPE fluxrecv_reply_duration_seconds histogram",
        ] {
            assert!(
                classic.lines().any(|l| l == line),
                "no {line:?} in\n{classic}"
            );
        }
        assert!(
            !classic.contains("# EOF") && !classic.contains("# UNIT"),
            "{classic}"
        );
        for help in text.lines().filter(|l| l.starts_with("# HELP")) {
            assert!(help.ends_with('.') && !help.ends_with(".."), "{help}");
        }
        assert!(
            !text.contains("source=\"GitLab\""),
            "only served sources get series:\n{text}"
        );
    }
}
