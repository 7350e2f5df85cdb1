//! The service: everything serving needs, assembled in one place.
//!
//! The binary's flags become one validated [`Config`] in one fallible step
//! ([`Config::from_args`]). [`Service::start`] builds from it, in this
//! order: the SIGHUP handler (first of all: until one is installed, a
//! SIGHUP ends the process), the endpoint table (every problem logged, then
//! one line per endpoint), the connection cap fitted to the open-file
//! limit, the delivery queue and its relay workers, the metrics, Google's
//! keys, the replay memory, the request path ([`Hooks`]), what records each
//! hook ([`Recorder`]), the TLS pair if served ([`crate::tls`]), and the
//! reload task (which reloads the pair too). [`Service::serve`] then serves
//! a bound listener until shutdown, and drains; [`Service::serve_on`] with
//! an admin listener beside it (`--metrics-listen`). `commands/serve.rs` and the
//! end-to-end tests call the same two functions, so the tests drive what
//! runs in production, reload task included.
//!
//! What start-up logs is tagged [`KEEP`]: it waits for room in the log
//! queue rather than be dropped (the hook URLs are what operators tail
//! for).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use slog::{info, o, warn, Logger};
use tokio::net::TcpListener;

use crate::cli::{ServeArgs, Size};
use crate::delivery::Queue;
use crate::fd_limit;
use crate::gcr_auth::Jwks;
use crate::hook::Hooks;
use crate::logging::KEEP;
use crate::metrics::Metrics;
use crate::options::Options;
use crate::reload::Reloader;
use crate::replay::Replays;
use crate::reply::Recorder;
use crate::table::{Table, TableHandle};

/// Everything the service is started with, validated. The binary makes it
/// from its flags ([`Config::from_args`]); it binds `--listen` and sets up
/// logging from `--log-level` and `--log-format` itself, as a caller of
/// [`Service::serve`] does.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file (`--config`); relative key paths in it are resolved
    /// against its directory.
    pub config_file: PathBuf,
    /// fluxd's API for endpoints without their own `api:` (`--api`),
    /// instead of the config's top-level `api`.
    pub api: Option<String>,
    /// Every other setting, fixed while the service runs.
    pub options: Options,
    /// Reload on SIGHUP, installing the handler before anything else. The
    /// binary's; tests share one process, and ask the [`Reloader`] instead.
    pub sighup: bool,
}

impl Config {
    /// The service's config as the flags set it, or why they cannot work
    /// together.
    pub fn from_args(args: &ServeArgs) -> Result<Config, StartError> {
        let options = args.options();
        if options.body_budget < options.max_body {
            return Err(StartError::BodyBudgetBelowMaxBody {
                body_budget: Size(options.body_budget),
                max_body: Size(options.max_body),
            });
        }
        if options.max_pending_bytes / 2 < options.max_body {
            return Err(StartError::PendingBytesBelowTwiceMaxBody {
                max_pending_bytes: Size(options.max_pending_bytes),
                max_body: Size(options.max_body),
            });
        }
        Ok(Config {
            config_file: args.config.clone(),
            api: args.fluxd.api.clone(),
            options,
            sighup: true,
        })
    }

    /// Serve `config_file` with `options` as they are (tests set limits the
    /// flags refuse, to reach a path), without `--api` and without SIGHUP.
    pub fn new(config_file: impl Into<PathBuf>, options: Options) -> Config {
        Config {
            config_file: config_file.into(),
            api: None,
            options,
            sighup: false,
        }
    }
}

/// Why the service cannot start. Each is logged as `flux-recv cannot
/// start`, and the process exits 1.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Flags that cannot work together: a body between the two sizes could
    /// never be read.
    #[error(
        "--body-budget ({body_budget}) is smaller than --max-body ({max_body}): a body between \
         the two could never be read"
    )]
    BodyBudgetBelowMaxBody {
        /// `--body-budget`.
        body_budget: Size,
        /// `--max-body`.
        max_body: Size,
    },
    /// Flags that cannot work together: one endpoint's share of the
    /// queue's bytes (half) could not hold the largest body, so such a
    /// delivery to a target that carries the body would get 503 for ever.
    #[error(
        "--max-pending-bytes ({max_pending_bytes}) is less than twice --max-body ({max_body}): \
         one endpoint may hold half of it, and the largest body would never fit"
    )]
    PendingBytesBelowTwiceMaxBody {
        /// `--max-pending-bytes`.
        max_pending_bytes: Size,
        /// `--max-body`.
        max_body: Size,
    },
    /// The config file, or a file it names, has errors (each was logged,
    /// naming the file and field).
    #[error("{} has {errors} error(s); see above", config_file.display())]
    Config {
        /// The config file.
        config_file: PathBuf,
        /// How many errors were logged.
        errors: usize,
    },
    /// A relay worker thread could not be started.
    #[error("cannot start the relay worker threads: {0}")]
    RelayWorkers(#[source] std::io::Error),
    /// The TLS certificate and key cannot be served.
    #[error("cannot serve TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The listen address cannot be bound (in use, or a privileged port).
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// `--listen`.
        address: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Everything serving needs, running: the table and its reload task, the
/// request path with its key caches, the delivery queue and its workers,
/// the metrics and the log. Dropping it stops the reload task and, once
/// the last request holding them is done, the relay workers.
pub struct Service {
    /// Fixed settings, as validated.
    options: Options,
    /// The endpoint table served; the reload task swaps what it holds.
    table: TableHandle,
    /// The request path: the table, Google's keys, the replay memory, the
    /// body budget and the delivery queue.
    hooks: Arc<Hooks>,
    /// Where each hook is counted and logged.
    recorder: Arc<Recorder>,
    /// What `/metrics` reports.
    metrics: Arc<Metrics>,
    /// The reload task, started when serving begins.
    reloader: Reloader,
    /// The connection cap the open-file limit allows.
    connections: ConnectionCap,
    /// TLS on the public port, if served; the reload task reloads its pair.
    tls: Option<Arc<crate::tls::Tls>>,
    /// Set when shutdown begins, so `/ready` answers 503 and load
    /// balancers stop sending new requests while those in flight finish.
    stopping: Arc<AtomicBool>,
    log: Logger,
}

impl Service {
    /// Build everything serving needs from `config`, logging to `log` (see
    /// the module's introduction for the order). Call it on the async
    /// runtime; nothing is served until [`Service::serve`].
    pub async fn start(config: Config, log: Logger) -> Result<Service, StartError> {
        let Config {
            config_file,
            api,
            options,
            sighup,
        } = config;
        // First of all: until a handler is installed, a SIGHUP ends the
        // process, and one may come while the table loads (an operator, or
        // a sidecar that signals after each Secret update). The handler
        // keeps a signal that arrives before the reload task listens: it
        // becomes one reload once serving starts.
        let hangups = match sighup {
            true => match crate::signals::hangups() {
                Ok(hangups) => Some(hangups),
                Err(e) => {
                    warn!(log, "cannot handle SIGHUP; it will not reload"; "error" => %e);
                    None
                }
            },
            false => None,
        };
        let table = load_table(&config_file, api.as_deref(), &log)?;
        crate::logging::log_endpoints(&log, &table);
        let tls = match &options.tls {
            Some(files) => Some(crate::tls::Tls::load(
                files.clone(),
                options.tls_handshake_timeout,
            )?),
            None => None,
        };
        let connections = ConnectionCap::fit(&options);
        let queue =
            Queue::start(options.delivery(), log.new(o!())).map_err(StartError::RelayWorkers)?;
        let mut metrics = Metrics::new(&table, vec![queue.collector()]);
        if let Some(tls) = &tls {
            metrics.serve_tls(tls.not_after());
        }
        let metrics = Arc::new(metrics);
        let google_keys = Jwks::new(
            options.google_jwks_url.clone(),
            options.google_jwks_min_refresh,
            log.new(o!()),
        );
        let replays = Replays::new(options.signature_tolerance, crate::replay::MAX_IDS);
        let table: TableHandle = Arc::new(ArcSwap::from_pointee(table));
        let follower = queue.clone();
        let swapped = Box::new(move |table: &Table| follower.retarget(table.targets()));
        let hooks = Hooks::new(
            table.clone(),
            google_keys,
            replays,
            queue,
            options.request_limits(),
        );
        let recorder = Recorder::new(
            metrics.clone(),
            log.new(o!()),
            options.refusal_logs_per_second,
            options.hook_logs_per_second,
        );
        let tls = tls.map(|tls| {
            Arc::new(tls.serve(metrics.clone(), recorder.refusal_logs(), log.new(o!())))
        });
        let companion = tls
            .clone()
            .map(|tls| tls as Arc<dyn crate::reload::Companion>);
        let reloader = Reloader::new(
            (table.clone(), companion),
            metrics.clone(),
            options.reload_timing(),
            hangups,
            swapped,
            log.new(o!()),
        );
        Ok(Service {
            options,
            table,
            hooks: Arc::new(hooks),
            recorder: Arc::new(recorder),
            metrics,
            reloader,
            connections,
            tls,
            stopping: Arc::new(AtomicBool::new(false)),
            log,
        })
    }

    /// Serve every route on `listener` until `shutdown` resolves; then
    /// drain: `/ready` answers 503, requests in flight get up to
    /// `--drain-timeout` to finish, and the changes still pending are
    /// delivered until that same deadline (what is left is logged). Starts
    /// the reload task first.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.serve_on(listener, None, shutdown).await;
    }

    /// Serve as [`Service::serve`] does, and with `admin` (bound at
    /// `--metrics-listen`) split the routes: `/hook/` only on `listener`,
    /// `/health`, `/ready` and `/metrics` in plain HTTP on `admin`.
    pub async fn serve_on(
        &self,
        listener: TcpListener,
        admin: Option<TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) {
        let address = |l: &TcpListener| match l.local_addr() {
            Ok(address) => address.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        info!(self.log, #KEEP, "listening"; "address" => address(&listener),
              "tls" => self.tls.is_some(),
              "max_connections" => self.connections.fits,
              "max_connections_from" => self.options.max_connections().1.as_str(),
              "api" => %self.table.load().default_target(),
              "dry_run" => self.options.dry_run);
        if let Some(admin) = &admin {
            info!(self.log, #KEEP, "serving /metrics, /health and /ready apart, in plain HTTP; the address above serves only /hook/";
                  "admin_address" => address(admin));
        }
        self.connections
            .say(self.options.max_connections().0, &self.log);
        self.reloader.start();
        let stopping = self.stopping.clone();
        let shutdown = futures_util::FutureExt::shared(Box::pin(async move {
            shutdown.await;
            stopping.store(true, Ordering::Relaxed);
        }));
        let settings = crate::server::Settings {
            slots: crate::slots::Limits {
                max_connections: self.connections.fits,
                ..self.options.slots()
            },
            header_timeout: self.options.header_timeout,
            drain_timeout: self.options.drain_timeout,
            tls: self.tls.clone(),
        };
        let serve = match admin {
            Some(_) => crate::routes::Serve::HooksOnly,
            None => crate::routes::Serve::All,
        };
        let public = crate::server::run(
            listener,
            self.routes_serving(serve),
            settings.clone(),
            &self.log,
            shutdown.clone(),
        );
        let admin = async {
            let Some(admin) = admin else { return };
            let settings = crate::server::Settings {
                slots: crate::slots::Limits {
                    max_connections: crate::options::ADMIN_CONNECTIONS,
                    ..settings.slots
                },
                tls: None,
                ..settings
            };
            let routes = crate::routes::admin(self.metrics.clone(), self.stopping.clone());
            let log = self.log.new(o!("listener" => "admin"));
            crate::server::run(admin, routes, settings, &log, shutdown).await;
        };
        let (deadline, ()) = tokio::join!(public, admin);
        deliver_pending(self.hooks.queue(), deadline, &self.log).await;
        info!(self.log, #KEEP, "stopped");
    }

    /// Every route the service serves, for [`Service::serve`] and for
    /// tests that need no socket (`warp::test`).
    pub fn routes(
        &self,
    ) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = Infallible>
           + Clone
           + Send
           + Sync
           + 'static {
        self.routes_serving(crate::routes::Serve::All)
    }

    /// The public port's routes, as `serve` says.
    fn routes_serving(
        &self,
        serve: crate::routes::Serve,
    ) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = Infallible>
           + Clone
           + Send
           + Sync
           + 'static {
        crate::routes::routes(
            self.hooks.clone(),
            self.recorder.clone(),
            (self.metrics.clone(), self.stopping.clone()),
            serve,
        )
    }

    /// The endpoint table being served; reload swaps what it holds.
    pub fn table(&self) -> &TableHandle {
        &self.table
    }

    /// The delivery queue.
    pub fn queue(&self) -> &Queue {
        self.hooks.queue()
    }

    /// What `/metrics` reports.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The reload task, to ask for a reload as SIGHUP does.
    pub fn reloader(&self) -> &Reloader {
        &self.reloader
    }

    /// Where the service logs.
    pub fn log(&self) -> &Logger {
        &self.log
    }

    /// The options the service runs with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Most connections served at once: `--max-connections` or its default
    /// ([`Options::max_connections`]: lower when serving TLS), or fewer when
    /// that many do not fit in the open-file limit.
    pub fn max_connections(&self) -> usize {
        self.connections.fits
    }

    /// Shutdown has begun: `/ready` answers 503 from now on. Serving does
    /// this when its `shutdown` resolves.
    pub fn begin_shutdown(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

/// Bind `address`, as `--listen` names it.
pub async fn listen(address: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(address)
        .await
        .map_err(|source| StartError::Listen { address, source })
}

/// Build the table from `config_file` (with `api`, `--api`, if given) as
/// the service does when it starts, logging every problem; fail if any is
/// an error.
pub fn load_table(
    config_file: &Path,
    api: Option<&str>,
    log: &Logger,
) -> Result<Table, StartError> {
    let loaded = Table::load(config_file, api);
    for p in &loaded.problems {
        crate::logging::log_problem(log, p);
    }
    let errors = loaded.errors().count();
    loaded.table.ok_or_else(|| StartError::Config {
        config_file: config_file.to_path_buf(),
        errors,
    })
}

/// The connection cap, fitted to the open-file limit when the service
/// starts, and said once when it begins to serve (after the line that
/// says where it listens, which is what operators look for first).
struct ConnectionCap {
    /// Most connections served: `--max-connections`, or what fits.
    fits: usize,
    /// The open-file limits in force.
    limits: fd_limit::Limits,
    /// Why the limit could not be raised, if it could not.
    raise_failed: Option<std::io::Error>,
}

impl ConnectionCap {
    /// Raise the open-file limit as far as it goes, and serve no more
    /// connections than fit in it beside the files, watches and relay
    /// sockets the process needs.
    fn fit(options: &Options) -> ConnectionCap {
        let (limits, raise_failed) = match fd_limit::raise() {
            Ok(limits) => (limits, None),
            Err(e) => (fd_limit::current(), Some(e)),
        };
        let margin = fd_limit::margin(options.max_relays);
        let fits =
            fd_limit::effective_connections(options.max_connections().0, limits.soft, margin);
        ConnectionCap {
            fits,
            limits,
            raise_failed,
        }
    }

    /// One line when fewer connections are served than `asked`.
    fn say(&self, asked: usize, log: &Logger) {
        if let Some(e) = &self.raise_failed {
            warn!(log, "cannot raise the open-file limit"; "error" => %e);
        }
        if let Some(line) = fd_limit::lowered_message(asked, self.fits, self.limits) {
            warn!(log, #KEEP, "{}", line);
        }
    }
}

/// Take no more changes, and go on delivering those pending until they are
/// delivered or the drain deadline; then say what was left undelivered, and
/// which, so an operator can push or sync them by hand (lines that wait for
/// room in the log queue rather than be dropped).
async fn deliver_pending(queue: &Queue, deadline: tokio::time::Instant, log: &Logger) {
    queue.close();
    let pending = queue.snapshot().pending;
    if pending > 0 {
        info!(log, #KEEP, "delivering pending notifications before exiting"; "pending" => pending);
    }
    let left = queue.drain(deadline).await;
    if left.is_empty() {
        return;
    }
    warn!(log, #KEEP, "notifications left undelivered at shutdown"; "undelivered" => left.len());
    for l in &left {
        warn!(log, #KEEP, "undelivered";
              "api" => &*l.target,
              "change" => %l.changes,
              "delivery" => %l.deliveries,
              "attempts" => l.attempts,
              "age_s" => l.age.as_secs(),
              "last_error" => l.last_error.as_deref().unwrap_or("-"),
              "still_sending" => l.sending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_body_budget_must_hold_the_largest_body() {
        let parse = |args: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(args).unwrap();
            Config::from_args(&cli.serve)
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        assert_eq!(parse(&["flux-recv"]), Ok(()));
        let big = [
            "flux-recv",
            "--max-body",
            "16MiB",
            "--max-pending-bytes",
            "32MiB",
        ];
        assert_eq!(parse(&big), Ok(()));
        let e = parse(&["flux-recv", "--max-body", "4MiB", "--body-budget", "3MiB"]).unwrap_err();
        assert!(
            e.contains("--body-budget (3MiB) is smaller than --max-body (4MiB)"),
            "{e}"
        );
        let e = parse(&["flux-recv", "--max-pending-bytes", "5MiB"]).unwrap_err();
        assert!(
            e.contains("--max-pending-bytes (5MiB) is less than twice --max-body (3MiB)"),
            "{e}"
        );
        let six = ["flux-recv", "--max-pending-bytes", "6MiB"];
        assert_eq!(parse(&six), Ok(()));
    }
}
