//! The delivery queue against a stand-in fluxd on 127.0.0.1: what a waiting
//! reply is told, what reaches fluxd (and how often), and what happens when
//! fluxd is down, flapping, refusing, redirecting, slow or gone for good.
//!
//! - `argocd`: Argo CD as a target: each git provider's push as Argo CD
//!   reads it, its answers, a rotated secret;
//! - `fluxd`: the stand-in fluxd, scripted per request;
//! - `answers`: what each of fluxd's answers (or its silence) leads to;
//! - `backoff`: backoff per API, probes, and fluxd's `Retry-After`;
//! - `coalescing`: room in the queue, and identical changes sent once;
//! - `fairness`: room and turns shared per endpoint, workers per API;
//! - `bytes`: room in bytes of request bodies, shared per endpoint;
//! - `workers`: APIs served independently and fairly, and the drain at
//!   shutdown;
//! - `metrics`: the per-API figures a scrape shows;
//! - `flux_receivers`: Flux v2 Receivers as targets, before a stand-in
//!   notification-controller (`common::controller`);
//! - `routing`: per-endpoint APIs, fan-out, filters, `--api` and their
//!   reload, through a running flux-recv in front of stand-in fluxds.

#[path = "../common/mod.rs"]
mod common;

mod answers;
mod argocd;
mod backoff;
mod bytes;
mod coalescing;
mod fairness;
mod flux_receivers;
mod fluxd;
mod metrics;
mod routing;
mod workers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flux_recv::delivery::{Backoff, Item, Queue, QueueSettings, Snapshot};
use flux_recv::logging::Captured;
use flux_recv::notification::{Change, ImageName};
use flux_recv::targets::fluxd::{notification, Fluxd};
use flux_recv::targets::Target;

use common::{dead_addr, eventually, serve, sorted};

fn notify_url(addr: SocketAddr) -> Arc<str> {
    format!("http://{addr}/api/flux/v11/notify").into()
}

fn image(name: &str) -> Change {
    Change::image(ImageName {
        domain: "registry.example.com".into(),
        image: name.into(),
    })
}

fn json(change: &Change) -> serde_json::Value {
    serde_json::from_slice(&change.to_json()).unwrap()
}

fn item(url: &Arc<str>, change: &Change, delivery: &str) -> Item {
    from("endpoint", url, change, delivery)
}

/// An item for the fluxd whose notify URL is `url`, that came from the
/// endpoint named `endpoint`.
fn from(endpoint: &str, url: &Arc<str>, change: &Change, delivery: &str) -> Item {
    let base = url.strip_suffix("/v11/notify").expect("a notify URL");
    Item {
        target: Target::from(Fluxd::new(base)),
        outgoing: notification(change),
        delivery: delivery.into(),
        endpoint: endpoint.into(),
    }
}

/// Quick retries, so that no test runs longer than a few seconds.
fn options() -> QueueSettings {
    QueueSettings {
        max_relays: 2,
        max_pending: 64,
        max_pending_bytes: 1 << 20,
        delivery_max_age: Duration::from_secs(60),
        relay_timeout: Duration::from_secs(5),
        backoff: Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
        refusal_logs_per_second: 100,
    }
}

/// The test options with `workers` relay workers.
fn with_workers(workers: usize) -> QueueSettings {
    QueueSettings {
        max_relays: workers,
        ..options()
    }
}

fn start(options: QueueSettings) -> (Queue, Captured) {
    let logs = Captured::default();
    (
        Queue::start(options, logs.logger(slog::Level::Debug)).unwrap(),
        logs,
    )
}

/// The first log line containing `needle`, waiting for it: workers log
/// after they have told the waiting replies, so a little after.
async fn log_line(logs: &Captured, needle: &str) -> String {
    eventually(needle, BUDGET, || logs.text().contains(needle)).await;
    let text = logs.text();
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap()
        .to_string()
}

fn api<'a>(s: &'a Snapshot, url: &Arc<str>) -> &'a flux_recv::delivery::TargetSnapshot {
    s.targets
        .iter()
        .find(|a| a.target == *url)
        .unwrap_or_else(|| panic!("no figures for {url} in {s:?}"))
}

const BUDGET: Duration = Duration::from_secs(5);
