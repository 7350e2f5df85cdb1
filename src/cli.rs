//! Command-line flags, turned into a running server.
//!
//! The Go original's invocation (`flux-recv --config F --listen :8080`)
//! works unchanged.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use slog::{error, info, o, warn, Logger};

use crate::config::Severity;
use crate::server::{Options, State};
use crate::table::Table;

/// Receives provider webhooks (GitHub, GitLab, Bitbucket, Docker Hub, Quay,
/// Harbor, Nexus, GCR), verifies them and relays a notification to fluxd.
#[derive(Debug, Parser)]
#[command(name = "flux-recv", version)]
pub struct Cli {
    /// Config file (fluxRecvVersion: 1). Relative key paths in it are
    /// resolved against its directory.
    #[arg(long, env = "FLUXRECV_CONFIG", default_value = "fluxrecv.yaml")]
    pub config: PathBuf,

    /// Address to listen on, `host:port` or `:port` (all interfaces).
    #[arg(long, env = "FLUXRECV_LISTEN", default_value = "0.0.0.0:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "FLUXRECV_LOG_LEVEL", default_value = "info", value_parser = crate::logging::parse_level)]
    pub log_level: slog::Level,

    /// Largest request body accepted (bytes, or with KiB/MiB); larger bodies
    /// get 413 before anything is parsed.
    #[arg(long, env = "FLUXRECV_MAX_BODY", default_value = "3MiB", value_parser = parse_size)]
    pub max_body: u64,

    /// Deadline for relaying one hook to fluxd (e.g. 8s, 500ms). Keep it
    /// under the 10 s after which GitHub and GitLab give up on a delivery.
    #[arg(long, env = "FLUXRECV_RELAY_TIMEOUT", default_value = "8s", value_parser = parse_duration)]
    pub relay_timeout: Duration,

    /// Verify and parse hooks as usual and log the notifications, but do not
    /// call fluxd (to try flux-recv out, or to check a provider's setup).
    #[arg(long, env = "FLUXRECV_DRY_RUN")]
    pub dry_run: bool,
}

/// `:8080` (Go's spelling, all interfaces) or `host:port`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    full.parse()
        .map_err(|_| format!("{s:?} is not host:port or :port"))
}

/// `3MiB`, `512KiB`, `1048576`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a size like 3MiB or 1048576"))?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "K" | "KB" | "KiB" => 1024,
        "M" | "MB" | "MiB" => 1024 * 1024,
        "G" | "GB" | "GiB" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit {other:?}; use KiB, MiB or GiB")),
    };
    n.checked_mul(factor)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{s:?} is out of range"))
}

/// `8s`, `500ms`, `2m`, or bare seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a duration like 8s, 500ms or 2m");
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(format!("{s:?} must be more than zero"));
    }
    Ok(d)
}

/// Entry point for the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = crate::logging::stderr(cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(log, "cannot start the async runtime"; "error" => %e);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli, log.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(log, "flux-recv cannot start"; "error" => format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Load the table, bind, serve until SIGTERM/SIGINT.
pub async fn serve(cli: Cli, log: Logger) -> anyhow::Result<()> {
    let table = load_table(&cli.config, &log)?;
    log_endpoints(&log, &table);
    let listener = tokio::net::TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    info!(log, "listening"; "address" => %listener.local_addr()?, "api" => &table.api,
          "dry_run" => cli.dry_run);
    let options = Options {
        max_body: cli.max_body,
        relay_timeout: cli.relay_timeout,
        dry_run: cli.dry_run,
        ..Options::default()
    };
    let state = State::new(table, options, log.new(o!()));
    crate::server::run(listener, state, crate::signals::shutdown(log.clone())).await;
    info!(log, "stopped");
    Ok(())
}

/// Build the table, logging every problem; fail if any is an error.
pub fn load_table(config: &std::path::Path, log: &Logger) -> anyhow::Result<Table> {
    let loaded = Table::load(config);
    for p in &loaded.problems {
        match p.severity {
            Severity::Warning => {
                warn!(log, "{}", p.message; "file" => %p.file.display(), "field" => &p.field)
            }
            Severity::Error => {
                error!(log, "{}", p.message; "file" => %p.file.display(), "field" => &p.field)
            }
        }
    }
    let errors = loaded.errors().count();
    loaded
        .table
        .with_context(|| format!("{} has {errors} error(s); see above", config.display()))
}

/// One line per endpoint: how operators learn each hook URL.
pub fn log_endpoints(log: &Logger, table: &Table) {
    for e in table.endpoints() {
        info!(log, "endpoint";
              "source" => e.source.name(),
              "key" => %e.key_path.display(),
              "fingerprint" => &e.fingerprint,
              "url" => e.url_path());
    }
    if table.endpoints().is_empty() {
        warn!(
            log,
            "the config has no endpoints; every hook URL will answer 404"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_accepts_go_spelling() {
        assert_eq!(
            parse_listen(":8080").unwrap(),
            "0.0.0.0:8080".parse().unwrap()
        );
        assert_eq!(
            parse_listen("127.0.0.1:9").unwrap(),
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(parse_listen("8080").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("3MiB"), Ok(3 * 1024 * 1024));
        assert_eq!(parse_size("512KiB"), Ok(512 * 1024));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("0").is_err());
        assert!(parse_size("3XB").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("8s"), Ok(Duration::from_secs(8)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("1h").is_err());
    }

    #[test]
    fn defaults_match_the_issue() {
        let cli = Cli::try_parse_from(["flux-recv"]).unwrap();
        assert_eq!(cli.config, PathBuf::from("fluxrecv.yaml"));
        assert_eq!(cli.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(cli.max_body, 3 * 1024 * 1024);
        assert_eq!(cli.relay_timeout, Duration::from_secs(8));
    }
}
