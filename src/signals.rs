//! Process signals: SIGTERM and SIGINT stop the server gracefully.

use slog::{info, Logger};
use tokio::signal::unix::{signal, SignalKind};

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
