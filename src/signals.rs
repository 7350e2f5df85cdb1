//! Process signals: SIGTERM and SIGINT stop the server gracefully; SIGHUP
//! reloads the endpoint table (see [`crate::reload`]).

use slog::{info, Logger};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Resolves when SIGTERM or SIGINT arrives (Kubernetes sends SIGTERM).
pub async fn shutdown(log: Logger) {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(log, "signal received, finishing requests in flight"; "signal" => name);
}

/// SIGHUPs as they arrive; each asks for a reload. From the moment this
/// returns, SIGHUP no longer terminates the process, and one that arrives
/// before anything waits on the stream is kept until then (several are
/// one), so `serve` calls this first thing.
pub fn hangups() -> std::io::Result<Signal> {
    signal(SignalKind::hangup())
}
