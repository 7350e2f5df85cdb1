//! Serving hooks: the default command. Load the table, bind, serve until
//! SIGTERM or SIGINT, reloading the table as its files change.
//!
//! What start-up logs is tagged [`KEEP`]: it waits for room in the log
//! queue rather than be dropped (the hook URLs are what operators tail
//! for).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use slog::{error, info, o, warn, Logger};

use crate::cli::ServeArgs;
use crate::logging::KEEP;
use crate::routes::State;
use crate::table::Table;

/// Set up logging and the async runtime, and serve.
pub fn main(args: ServeArgs) -> ExitCode {
    let (log, logs) = crate::logging::stderr_as(args.log_format, args.log_level);
    let code = run(args, &log);
    // Threads that outlive serving (a file watcher's) may still hold a
    // logger: write out every line, the last included, before exiting.
    logs.flush(crate::logging::FLUSH_TIMEOUT);
    code
}

/// Start the async runtime and serve on it.
fn run(args: ServeArgs, log: &Logger) -> ExitCode {
    if let Err(e) = args.check() {
        error!(log, #KEEP, "flux-recv cannot start"; "error" => e);
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(log, #KEEP, "cannot start the async runtime"; "error" => %e);
            return ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(serve(args, log.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(log, #KEEP, "flux-recv cannot start"; "error" => format!("{e:#}"));
            ExitCode::FAILURE
        }
    };
    // A blocking task that never ends (there should be none) must not keep
    // the process from exiting once serving is over.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// Raise the open-file limit as far as it goes, and serve no more
/// connections than fit in it beside the files, watches and relay sockets
/// the process needs; say so in one line when that is fewer than asked.
fn fit_connections(options: &crate::options::Options, log: &Logger) -> usize {
    use crate::fd_limit;
    let limits = fd_limit::raise().unwrap_or_else(|e| {
        warn!(log, "cannot raise the open-file limit"; "error" => %e);
        fd_limit::current()
    });
    let margin = fd_limit::margin(options.max_relays);
    let fits = fd_limit::effective_connections(options.max_connections, limits.soft, margin);
    if let Some(line) = fd_limit::lowered_message(options.max_connections, fits, limits) {
        warn!(log, #KEEP, "{}", line);
    }
    fits
}

/// Load the table, bind, serve until SIGTERM/SIGINT.
pub async fn serve(args: ServeArgs, log: Logger) -> anyhow::Result<()> {
    // First of all: until a handler is installed, a SIGHUP ends the
    // process, and one may come while the table loads (an operator, or a
    // sidecar that signals after each Secret update). The handler keeps a
    // signal that arrives before the reload task listens: it becomes one
    // reload once serving starts.
    let hangups = match crate::signals::hangups() {
        Ok(hangups) => Some(hangups),
        Err(e) => {
            warn!(log, "cannot handle SIGHUP; it will not reload"; "error" => %e);
            None
        }
    };
    let table = load_table(&args.config, args.fluxd.api.as_deref(), &log)?;
    crate::logging::log_endpoints(&log, &table);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    info!(log, #KEEP, "listening"; "address" => %listener.local_addr()?,
          "api" => &*table.api().base,
          "dry_run" => args.dry_run);
    let mut options = args.options();
    let reload_timing = options.reload_timing();
    options.max_connections = fit_connections(&options, &log);
    let state = State::new(table, options, log.new(o!()))
        .context("cannot start the relay worker threads")?;
    let _reloader = crate::reload::spawn(
        state.table().clone(),
        state.metrics.clone(),
        reload_timing,
        hangups,
        log.new(o!()),
    );
    crate::server::run(listener, state, crate::signals::shutdown(log.clone())).await;
    info!(log, #KEEP, "stopped");
    Ok(())
}

/// Build the table (with `api_flag`, `--api`, if given), logging every
/// problem; fail if any is an error.
pub fn load_table(config: &Path, api_flag: Option<&str>, log: &Logger) -> anyhow::Result<Table> {
    let loaded = Table::load(config, api_flag);
    for p in &loaded.problems {
        crate::logging::log_problem(log, p);
    }
    let errors = loaded.errors().count();
    loaded
        .table
        .with_context(|| format!("{} has {errors} error(s); see above", config.display()))
}
