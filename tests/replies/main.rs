//! End to end: flux-recv on 127.0.0.1:0 in front of a stand-in fluxd, over
//! real sockets. What the provider sees when fluxd is fine, down, slow,
//! flapping or wrong (the delivery contract), and what never reaches fluxd.
//!
//! - `contract`: the delivery contract, fluxd fine, down, slow, flapping,
//!   wrong, restarting or fanned out to;
//! - `fair_share`: the queue shared between endpoints, and deliveries
//!   that can never fit;
//! - `nothing_sent`: what never reaches fluxd: refused hooks, other paths,
//!   bodies over the limits, dry runs;
//! - `shutdown`: requests in flight, deliveries pending, and connections
//!   opened as the server stops.

#[path = "../common/mod.rs"]
mod common;
mod contract;
mod fair_share;
mod nothing_sent;
mod shutdown;

use std::time::Duration;

use flux_recv::options::Options;

/// A reply budget short enough for tests that wait it out.
fn budget(ms: u64) -> Options {
    Options {
        reply_budget: Duration::from_millis(ms),
        ..Options::default()
    }
}
