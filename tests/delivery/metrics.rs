//! The queue's metrics, per API, as `/metrics` shows them.

use std::sync::Arc;

use flux_recv::delivery::{Acceptance, Queue};

use crate::fluxd::Fluxd;
use crate::{image, item, start, with_workers, BUDGET};

/// The queue's metrics as a scrape shows them: OpenMetrics text from a
/// registry with the prefix `/metrics` uses. (tests/observability/metrics.rs runs promtool
/// over the whole of `/metrics`.)
fn scrape(queue: &Queue) -> Vec<String> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("fluxrecv");
    registry.register_collector(queue.collector());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out.lines().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_per_api_from_the_first_notification() {
    let fluxd = Fluxd::holding_image("held").await;
    // One worker, so that while it waits on the held POST, b's entry is
    // pending and never tried.
    let settings = with_workers(1);
    let max_pending = format!("fluxrecv_delivery_max_pending {}", settings.max_pending);
    let (queue, _) = start(settings);
    let a = fluxd.url();
    let b: Arc<str> = format!("http://{}/b/api/flux/v11/notify", fluxd.addr).into();
    let got = scrape(&queue);
    assert!(got.contains(&"fluxrecv_delivery_oldest_age_seconds 0.0".to_string()));
    // The queue's room, from the start: what an alert compares the pending
    // series with.
    assert!(got.contains(&max_pending), "{got:?}");
    assert!(got.contains(&"fluxrecv_delivery_pending_bytes 0".to_string()));
    let samples = |got: &[String]| -> Vec<String> {
        got.iter()
            .filter(|l| {
                !l.starts_with('#')
                    && !l.starts_with("fluxrecv_delivery_oldest_age")
                    && !l.starts_with("fluxrecv_delivery_max_pending")
                    && !l.starts_with("fluxrecv_delivery_pending_bytes")
            })
            .cloned()
            .collect()
    };
    assert_eq!(samples(&got), Vec::<String>::new(), "no API yet");

    let t = queue.submit(vec![item(&a, &image("a"), "")]).unwrap();
    assert_eq!(t.wait(BUDGET).await, Acceptance::Accepted);
    let held = queue.submit(vec![item(&a, &image("held"), "")]).unwrap();
    fluxd.arrived(2).await;
    let waiting = queue.submit(vec![item(&b, &image("b"), "")]).unwrap();

    let got = scrape(&queue);
    // Every per-API sample in scrape order, given a's and b's pending,
    // delivered and attempts; the other counters stay 0 here.
    let expected = |a_figures: [u64; 3], b_figures: [u64; 3]| {
        let mut lines = Vec::new();
        for (name, figure) in [
            ("delivery_pending", Some(0)),
            ("delivered_total", Some(1)),
            ("delivered_late_total", None),
            ("delivery_expired_total", None),
            ("delivery_refused_total", None),
            ("relay_attempts_total", Some(2)),
            ("relay_retries_total", None),
            ("relay_coalesced_total", None),
        ] {
            for (url, figures) in [(&a, a_figures), (&b, b_figures)] {
                let n = figure.map_or(0, |at: usize| figures[at]);
                lines.push(format!(r#"fluxrecv_{name}{{api="{url}"}} {n}"#));
            }
        }
        lines
    };
    assert_eq!(samples(&got), expected([1, 1, 2], [1, 0, 0]), "{got:#?}");
    let oldest = got
        .iter()
        .find_map(|l| l.strip_prefix("fluxrecv_delivery_oldest_age_seconds "))
        .expect("the oldest age");
    assert!(oldest.parse::<f64>().unwrap() > 0.0, "{oldest}");
    for line in [
        "# TYPE fluxrecv_delivery_pending gauge",
        "# UNIT fluxrecv_delivery_oldest_age_seconds seconds",
        "# TYPE fluxrecv_delivered counter",
        "# TYPE fluxrecv_relay_coalesced counter",
    ] {
        assert!(got.contains(&line.to_string()), "no {line:?} in {got:#?}");
    }

    fluxd.open_gate();
    assert_eq!(held.wait(BUDGET).await, Acceptance::Accepted);
    assert_eq!(waiting.wait(BUDGET).await, Acceptance::Accepted);
    let got = scrape(&queue);
    assert_eq!(samples(&got), expected([0, 2, 2], [0, 1, 1]), "{got:#?}");
    assert!(got.contains(&"fluxrecv_delivery_oldest_age_seconds 0.0".to_string()));
}
