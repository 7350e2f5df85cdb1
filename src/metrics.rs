//! What `GET /metrics` reports, in the Prometheus text format (the
//! OpenMetrics flavour `prometheus-client` writes, which Prometheus asks
//! for first).
//!
//! One [`Metrics`] value lives in [`crate::server::State`]. Each place that
//! knows an outcome records it with one call: [`crate::hook`] once per hook
//! and once per relay, [`crate::reload::reload`] once per reload. The relay
//! keeps its own counters ([`crate::relay::RelayStats`]) as plain atomics,
//! so it knows nothing of metrics; they are read at scrape time.
//!
//! Every name starts with `fluxrecv_`; the README lists them all, with
//! example alerts.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::hook::Verdict;
use crate::relay::Relay;
use crate::reload::ReloadResult;
use crate::source::Source;
use crate::table::Table;

/// The `Content-Type` of a scrape.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds of the relay duration buckets, in seconds: from a fluxd in
/// the same pod answering in a millisecond to the default 8 s deadline.
const RELAY_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every hook outcome. A source's series are created at zero for each of
/// them as soon as the source is served, so an alert on the first
/// unauthorized hook sees 0 → 1 rather than a series appearing from nowhere.
const OUTCOMES: [Verdict; 6] = [
    Verdict::Relayed,
    Verdict::Ignored,
    Verdict::Unauthorized,
    Verdict::BadRequest,
    Verdict::UpstreamError,
    Verdict::TooLarge,
];

/// Fails to compile when [`Verdict`] gains a variant, as a reminder to add
/// it to [`OUTCOMES`] (and to the README's list).
const _: fn(Verdict) = |v| match v {
    Verdict::Relayed
    | Verdict::Ignored
    | Verdict::Unauthorized
    | Verdict::BadRequest
    | Verdict::UpstreamError
    | Verdict::TooLarge => {}
};

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
    relay_duration: Histogram,
    reloads: Family<ResultLabels, Counter>,
    last_reload_success: Gauge<f64, AtomicU64>,
    endpoints: Gauge,
    gcr_token_refusals: Family<CheckLabels, Counter>,
}

impl Metrics {
    /// Metrics for a server relaying through `relay` and serving `table`
    /// (loaded just now, so it counts as the last successful reload).
    pub fn new(relay: &Relay, table: &Table) -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("fluxrecv"),
            hooks: Family::default(),
            unknown_hooks: Counter::default(),
            relay_duration: Histogram::new(RELAY_BUCKETS),
            reloads: Family::default(),
            last_reload_success: Gauge::default(),
            endpoints: Gauge::default(),
            gcr_token_refusals: Family::default(),
        };
        metrics.register(relay);
        for result in ["changed", "unchanged", "failed"] {
            // Creating the series at zero is the point; the guard goes.
            let _ = metrics.reloads.get_or_create(&ResultLabels { result });
        }
        metrics.serving(table);
        metrics
    }

    /// Put every metric in the registry. The registry holds clones, which
    /// share their values with the fields. (It ends each help text with a
    /// full stop, so these have none.)
    fn register(&mut self, relay: &Relay) {
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
            "relay_duration",
            "Time to relay one hook's changes to fluxd, retries included",
            Unit::Seconds,
            self.relay_duration.clone(),
        );
        registry.register_collector(Box::new(RelayCounters(relay.clone())));
        registry.register(
            "reloads",
            "Reloads of the config and keys, by result (changed, unchanged, failed)",
            self.reloads.clone(),
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

    /// Count one hook to a known endpoint. [`crate::hook`] calls this once
    /// per hook, where it logs it.
    pub fn hook(&self, source: Source, verdict: Verdict) {
        self.hooks
            .get_or_create(&HookLabels {
                source: source.name(),
                outcome: verdict.as_str(),
            })
            .inc();
    }

    /// Count one request to a hook URL no endpoint has: a stale URL after
    /// a key rotation, or someone probing.
    pub fn unknown_hook(&self) {
        self.unknown_hooks.inc();
    }

    /// Record how long one relay to fluxd took, whatever its result.
    pub fn relay_finished(&self, took: Duration) {
        self.relay_duration.observe(took.as_secs_f64());
    }

    /// Count one refused Pub/Sub push token by the check that failed
    /// ([`crate::gcr_auth::TokenError::check`]).
    pub fn gcr_token_refused(&self, check: &'static str) {
        self.gcr_token_refusals
            .get_or_create(&CheckLabels { check })
            .inc();
    }

    /// Count one reload; `serving` is the table served after it.
    pub fn reloaded(&self, result: &ReloadResult, serving: &Table) {
        let result = match result {
            ReloadResult::Swapped { .. } => "changed",
            ReloadResult::Unchanged => "unchanged",
            ReloadResult::Failed { .. } => "failed",
        };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        if result != "failed" {
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
            for verdict in OUTCOMES {
                let _ = self.hooks.get_or_create(&HookLabels {
                    source: endpoint.source.name(),
                    outcome: verdict.as_str(),
                });
            }
        }
    }

    /// Everything, in the text format (see [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The relay's counters, read at scrape time.
struct RelayCounters(Relay);

impl fmt::Debug for RelayCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RelayCounters")
            .field(self.0.stats())
            .finish()
    }
}

impl Collector for RelayCounters {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let stats = self.0.stats();
        let counters = [
            (
                "relay_attempts",
                "POSTs made to fluxd, retries included.",
                &stats.attempts,
            ),
            (
                "relay_retries",
                "POSTs made to fluxd after a transient failure (unreachable, 502, 503, 504).",
                &stats.retries,
            ),
            (
                "relay_coalesced",
                "Notifications that joined an identical one already on its way to fluxd.",
                &stats.coalesced,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dir: &std::path::Path) -> Table {
        std::fs::write(dir.join("a.key"), b"0123456789abcdef-a").unwrap();
        let config = dir.join("fluxrecv.yaml");
        std::fs::write(
            &config,
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a.key\n",
        )
        .unwrap();
        Table::load(&config).table.expect("table")
    }

    #[test]
    fn names_units_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new(&Relay::new(Duration::from_secs(1), 1), &table(dir.path()));
        metrics.hook(Source::GitHub, Verdict::Unauthorized);
        metrics.relay_finished(Duration::from_millis(3));
        metrics.reloaded(&ReloadResult::Unchanged, &table(dir.path()));
        let text = metrics.encode();
        for line in [
            "# TYPE fluxrecv_hooks counter",
            r#"fluxrecv_hooks_total{source="GitHub",outcome="unauthorized"} 1"#,
            r#"fluxrecv_hooks_total{source="GitHub",outcome="relayed"} 0"#,
            "fluxrecv_unknown_hook_requests_total 0",
            "# UNIT fluxrecv_relay_duration_seconds seconds",
            r#"fluxrecv_relay_duration_seconds_bucket{le="0.0025"} 0"#,
            r#"fluxrecv_relay_duration_seconds_bucket{le="0.005"} 1"#,
            "fluxrecv_relay_duration_seconds_count 1",
            "fluxrecv_relay_attempts_total 0",
            "fluxrecv_relay_retries_total 0",
            r#"fluxrecv_reloads_total{result="unchanged"} 1"#,
            r#"fluxrecv_reloads_total{result="failed"} 0"#,
            "fluxrecv_endpoints 1",
            concat!(
                r#"fluxrecv_build_info{version=""#,
                env!("CARGO_PKG_VERSION"),
                r#""} 1"#
            ),
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        for help in text.lines().filter(|l| l.starts_with("# HELP")) {
            assert!(help.ends_with('.') && !help.ends_with(".."), "{help}");
        }
        assert!(
            !text.contains("source=\"GitLab\""),
            "only served sources get series:\n{text}"
        );
    }
}
