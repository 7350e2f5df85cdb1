//! End to end: flux-recv on 127.0.0.1:0 in front of a stand-in fluxd, over
//! real sockets. What the provider sees when fluxd is fine, down, slow,
//! flapping or wrong (the delivery contract), and what never reaches fluxd.
//!
//! - `contract`: the delivery contract, fluxd fine, down, slow, flapping,
//!   wrong, restarting or fanned out to;
//! - `nothing_sent`: what never reaches fluxd: refused hooks, other paths,
//!   bodies over the limits, dry runs;
//! - `shutdown`: requests in flight, deliveries pending, and connections
//!   opened as the server stops.

#[path = "../common/mod.rs"]
mod common;
mod contract;
mod nothing_sent;
mod shutdown;

use std::time::Duration;

use common::*;
use flux_recv::options::Options;

/// A reply budget short enough for tests that wait it out.
fn budget(ms: u64) -> Options {
    Options {
        reply_budget: Duration::from_millis(ms),
        ..Options::default()
    }
}

/// An address to bring a stand-in fluxd up on later.
fn free_addr() -> std::net::SocketAddr {
    dead_addr()
}

/// POST and return (status, Retry-After, body).
async fn raw_reply(
    url: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> (u16, Option<String>, String) {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut req = agent.post(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let mut resp = req.send(&body[..]).unwrap();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        (
            resp.status().as_u16(),
            retry,
            resp.body_mut().read_to_string().unwrap_or_default(),
        )
    })
    .await
    .unwrap()
}
