//! What an operator watches, end to end.
//!
//! - `metrics`: `/metrics` scraped after real hooks, `/ready` through a
//!   graceful shutdown, JSON log lines from a running server;
//! - `logs`: the log lines a remote client can cause, escaped, bounded and
//!   within their budgets, and the start-up lines never dropped;
//! - `monitoring`: the alerts and the dashboard under container/monitoring,
//!   unit-tested with promtool, and every metric they use served.
//!
//! One test binary, so that CI links one.

#[path = "../common/mod.rs"]
mod common;

mod logs;
mod metrics;
mod monitoring;
