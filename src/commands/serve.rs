//! Serving hooks: the default command. The flags become the service's
//! [`Config`]; the service starts, binds `--listen` (and
//! `--metrics-listen`, if given) and serves until SIGTERM or SIGINT (see
//! [`crate::service`]).

use std::net::SocketAddr;
use std::process::ExitCode;

use slog::{error, Logger};

use crate::cli::ServeArgs;
use crate::logging::KEEP;
use crate::service::{Config, Service, StartError};

/// Set up logging and the async runtime, and serve.
pub fn main(args: ServeArgs) -> ExitCode {
    let (log, logs) = crate::logging::stderr_as(args.log_format, args.log_level);
    let code = run(&args, &log);
    // Threads that outlive serving (a file watcher's) may still hold a
    // logger: write out every line, the last included, before exiting.
    logs.flush(crate::logging::FLUSH_TIMEOUT);
    code
}

/// Check the flags, start the async runtime and serve on it.
fn run(args: &ServeArgs, log: &Logger) -> ExitCode {
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(e) => return cannot_start(log, &e),
    };
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
    let listen = (args.listen, args.metrics_listen);
    let code = match runtime.block_on(serve(config, listen, log.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cannot_start(log, &e),
    };
    // A blocking task that never ends (there should be none) must not keep
    // the process from exiting once serving is over.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

/// Start the service, bind `listen` and `admin` (if given), serve until
/// SIGTERM or SIGINT.
async fn serve(
    config: Config,
    (listen, admin): (SocketAddr, Option<SocketAddr>),
    log: Logger,
) -> Result<(), StartError> {
    let service = Service::start(config, log.clone()).await?;
    let listener = crate::service::listen(listen).await?;
    let admin = match admin {
        Some(admin) => Some(crate::service::listen(admin).await?),
        None => None,
    };
    service
        .serve_on(listener, admin, crate::signals::shutdown(log))
        .await;
    Ok(())
}

fn cannot_start(log: &Logger, e: &StartError) -> ExitCode {
    error!(log, #KEEP, "flux-recv cannot start"; "error" => %e);
    ExitCode::FAILURE
}
