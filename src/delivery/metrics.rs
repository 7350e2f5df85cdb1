//! The queue's figures for `/metrics`. They are read at each scrape, all in
//! one go under the queue's lock ([`Queue::snapshot`]), so they agree with each
//! other and cost nothing between scrapes. The registry puts `fluxrecv_`
//! before each name.
//!
//! Per-target series carry an `api` label, the target's label: fluxd's is
//! its notify URL (which cannot hold a user name or password: the config
//! and the flags refuse those), as before there were other kinds; another
//! kind's names the kind, and never a secret. A target has series from its
//! first notification on, every counter among them, at 0 until it counts
//! something.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use super::entries::Shared;
use super::{Queue, Snapshot, TargetSnapshot};

/// The per-target counters: name, help text (the registry adds no full
/// stop to a collector's) and the figure.
type PerTarget = (&'static str, &'static str, fn(&TargetSnapshot) -> u64);

const COUNTERS: [PerTarget; 7] = [
    (
        "delivered",
        "Notifications fluxd accepted, by API.",
        |a| a.delivered,
    ),
    (
        "delivered_late",
        "Of the notifications fluxd accepted, those accepted after the reply had stopped waiting, by API.",
        |a| a.late,
    ),
    (
        "delivery_expired",
        "Notifications dropped after --delivery-max-age without fluxd accepting them, by API.",
        |a| a.expired,
    ),
    (
        "delivery_refused",
        "Notifications fluxd refused for good (a 4xx other than 408 and 429, or a redirect), by API.",
        |a| a.refused,
    ),
    (
        "relay_attempts",
        "POSTs made to fluxd, retries included, by API.",
        |a| a.attempts,
    ),
    (
        "relay_retries",
        "POSTs made to fluxd after a failed one (unreachable, too slow, 408, 429 or 5xx), by API.",
        |a| a.retries,
    ),
    (
        "relay_coalesced",
        "Notifications that joined an identical pending one instead of being sent again, by API.",
        |a| a.joined,
    ),
];

impl Queue {
    /// A collector for the registry behind `/metrics`: it reads the queue
    /// at each scrape. It holds no [`Queue`] clone, so it does not keep the
    /// workers running.
    pub fn collector(&self) -> Box<dyn Collector> {
        Box::new(Figures(self.workers.shared.clone()))
    }
}

/// The collector [`Queue::collector`] hands out.
struct Figures(Arc<Shared>);

impl fmt::Debug for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("delivery queue figures")
    }
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        encode(&self.0.snapshot(), &mut encoder)
    }
}

/// The queue's series, all from one snapshot.
fn encode(s: &Snapshot, encoder: &mut DescriptorEncoder) -> fmt::Result {
    let mut pending = encoder.encode_descriptor(
        "delivery_pending",
        "Notifications waiting for fluxd or being sent, by API.",
        None,
        MetricType::Gauge,
    )?;
    for t in &s.targets {
        ConstGauge::new(t.pending).encode(pending.encode_family(&[("api", &*t.target)])?)?;
    }
    // What an alert compares the pending series with: the queue nearly
    // full, before hooks get 503.
    let max_pending = ConstGauge::new(s.max_pending as i64);
    max_pending.encode(encoder.encode_descriptor(
        "delivery_max_pending",
        "Most notifications the queue holds (--max-pending); one endpoint may take half of the room the others leave.",
        None,
        max_pending.metric_type(),
    )?)?;
    // The same pair in bytes: what a large body costs, apart from how many.
    let pending_bytes = ConstGauge::new(s.pending_bytes as i64);
    pending_bytes.encode(encoder.encode_descriptor(
        "delivery_pending",
        "Bytes of the request bodies waiting or being sent.",
        Some(&Unit::Bytes),
        pending_bytes.metric_type(),
    )?)?;
    let max_pending_bytes = ConstGauge::new(s.max_pending_bytes as i64);
    max_pending_bytes.encode(encoder.encode_descriptor(
        "delivery_max_pending",
        "Most bytes of request bodies the queue holds (--max-pending-bytes); one endpoint may take half of the room the others leave.",
        Some(&Unit::Bytes),
        max_pending_bytes.metric_type(),
    )?)?;
    let oldest = ConstGauge::new(s.oldest_age.as_secs_f64());
    oldest.encode(encoder.encode_descriptor(
        "delivery_oldest_age",
        "Age of the oldest pending notification; 0 when none is.",
        Some(&Unit::Seconds),
        oldest.metric_type(),
    )?)?;
    for (name, help, figure) in COUNTERS {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for t in &s.targets {
            ConstCounter::new(figure(t)).encode(family.encode_family(&[("api", &*t.target)])?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::registry::Registry;

    use super::*;

    /// Encodes a given snapshot, as [`Figures`] encodes the queue's.
    #[derive(Debug)]
    struct Fixed(Snapshot);

    impl Collector for Fixed {
        fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
            encode(&self.0, &mut encoder)
        }
    }

    fn scrape(collector: Box<dyn Collector>) -> String {
        let mut registry = Registry::with_prefix("fluxrecv");
        registry.register_collector(collector);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn each_api_has_every_series() {
        let snapshot = Snapshot {
            pending: 2,
            max_pending: 64,
            pending_bytes: 3000,
            max_pending_bytes: 65536,
            sending: 1,
            oldest_age: Duration::from_millis(1500),
            targets: vec![
                TargetSnapshot {
                    target: "http://a:3030/api/flux/v11/notify".into(),
                    pending: 0,
                    delivered: 3,
                    late: 1,
                    expired: 2,
                    refused: 4,
                    attempts: 9,
                    retries: 5,
                    joined: 6,
                },
                TargetSnapshot {
                    target: "http://b:3030/api/flux/v11/notify".into(),
                    pending: 2,
                    ..TargetSnapshot::default()
                },
            ],
        };
        let text = scrape(Box::new(Fixed(snapshot)));
        let (a, b) = (
            r#"{api="http://a:3030/api/flux/v11/notify"}"#,
            r#"{api="http://b:3030/api/flux/v11/notify"}"#,
        );
        let mut expected = vec![
            "# TYPE fluxrecv_delivery_pending gauge".to_string(),
            format!("fluxrecv_delivery_pending{a} 0"),
            format!("fluxrecv_delivery_pending{b} 2"),
            "# TYPE fluxrecv_delivery_max_pending gauge".to_string(),
            "fluxrecv_delivery_max_pending 64".to_string(),
            "# TYPE fluxrecv_delivery_pending_bytes gauge".to_string(),
            "# UNIT fluxrecv_delivery_pending_bytes bytes".to_string(),
            "fluxrecv_delivery_pending_bytes 3000".to_string(),
            "# TYPE fluxrecv_delivery_max_pending_bytes gauge".to_string(),
            "# UNIT fluxrecv_delivery_max_pending_bytes bytes".to_string(),
            "fluxrecv_delivery_max_pending_bytes 65536".to_string(),
            "# TYPE fluxrecv_delivery_oldest_age_seconds gauge".to_string(),
            "# UNIT fluxrecv_delivery_oldest_age_seconds seconds".to_string(),
            "fluxrecv_delivery_oldest_age_seconds 1.5".to_string(),
        ];
        for (name, n) in [
            ("delivered", 3),
            ("delivered_late", 1),
            ("delivery_expired", 2),
            ("delivery_refused", 4),
            ("relay_attempts", 9),
            ("relay_retries", 5),
            ("relay_coalesced", 6),
        ] {
            expected.push(format!("# TYPE fluxrecv_{name} counter"));
            expected.push(format!("fluxrecv_{name}_total{a} {n}"));
            expected.push(format!("fluxrecv_{name}_total{b} 0"));
        }
        expected.push("# EOF".to_string());
        let (help, rest): (Vec<&str>, Vec<&str>) =
            text.lines().partition(|l| l.starts_with("# HELP "));
        assert_eq!(rest, expected, "{text}");
        // One help text a family, ending in one full stop (the registry
        // adds none to a collector's).
        assert_eq!(help.len(), 12, "{text}");
        for h in help {
            assert!(h.ends_with('.') && !h.ends_with(".."), "{h}");
        }
    }
}
