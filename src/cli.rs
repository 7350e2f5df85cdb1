//! Command-line arguments, and which command runs.
//!
//! Serving is the default: the Go original's invocation (`flux-recv --config F
//! --listen :8080`) works unchanged, and its flags live in [`ServeArgs`]. The
//! other commands help an operator around the server: `keygen` makes a key,
//! `endpoints` lists the hook URLs to paste into providers, `check` reports
//! every problem with a config, and `send` delivers a signed sample event.
//! What each one does is in [`crate::commands`]; this module only parses,
//! and turns the server's flags into [`Options`] (which
//! [`crate::service::Config::from_args`] validates). The defaults are
//! [`crate::options`]'s, shown in `--help`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::{BoolishValueParser, RangedU64ValueParser};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::options::{Options, DEFAULT_CONFIG, DEFAULT_LISTEN};

/// Receives provider webhooks (the sources are listed at the end),
/// verifies them and relays a notification to fluxd.
///
/// Without a command, serves hooks.
#[derive(Debug, Parser)]
#[command(name = "flux-recv", version, args_conflicts_with_subcommands = true)]
#[command(after_help = format!(
    "Sources (`source:` in the config): {}.\nWhat each verifies, and its setup: docs/providers.md",
    crate::source::Source::names()
))]
pub struct Cli {
    /// A command other than serving.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The server's flags (used when no command is given).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Everything flux-recv does besides serving.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Make a new random key for an endpoint (hex, or a whsec_ signing
    /// secret; no trailing newline).
    Keygen(KeygenArgs),
    /// List every endpoint with its hook URL, to paste into the provider.
    Endpoints(EndpointsArgs),
    /// Load the config and keys as the server would and report every
    /// problem; exits 1 if any is an error.
    Check(CheckArgs),
    /// Send an endpoint a sample event, signed as its provider signs it, to
    /// try the whole chain (ingress, flux-recv, fluxd) without a real push.
    Send(SendArgs),
}

/// Flags of the server.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Config file (fluxRecvVersion: 1). Relative key paths in it are
    /// resolved against its directory.
    #[arg(long, env = "FLUXRECV_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Address to listen on: `host:port` (a name or an address) or `:port`
    /// (all interfaces).
    #[arg(long, env = "FLUXRECV_LISTEN", default_value = DEFAULT_LISTEN, value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// A second address, plain HTTP, serving only /metrics, /health and
    /// /ready (for probes and scrapers inside the cluster); the --listen
    /// address then serves only /hook/. Same forms as --listen.
    #[arg(long, env = "FLUXRECV_METRICS_LISTEN", value_name = "ADDR", value_parser = parse_listen)]
    pub metrics_listen: Option<SocketAddr>,

    /// Serve HTTPS on --listen with this certificate chain (PEM, leaf
    /// first, as in a kubernetes.io/tls Secret's tls.crt). Reloaded when it
    /// changes, and on SIGHUP; a broken update keeps the last good pair.
    #[arg(
        long,
        env = "FLUXRECV_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1; tls.key).
    #[arg(
        long,
        env = "FLUXRECV_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// A TLS handshake must finish within this time; until then the
    /// connection holds a slot under --max-connections.
    #[arg(long, env = "FLUXRECV_TLS_HANDSHAKE_TIMEOUT",
          default_value_t = Span(Options::default().tls_handshake_timeout))]
    pub tls_handshake_timeout: Span,

    /// `--api`.
    #[command(flatten)]
    pub fluxd: FluxdApi,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "FLUXRECV_LOG_LEVEL", default_value = "info", value_parser = crate::logging::parse_level)]
    pub log_level: slog::Level,

    /// Log format: text (for people) or json (one object per line, for log
    /// pipelines).
    #[arg(long, env = "FLUXRECV_LOG_FORMAT", default_value = "text", value_parser = crate::logging::parse_format)]
    pub log_format: crate::logging::Format,

    /// Largest request body accepted (bytes, or with KiB/MiB); larger bodies
    /// get 413 before anything is parsed.
    #[arg(long, env = "FLUXRECV_MAX_BODY", default_value_t = Size(Options::default().max_body))]
    pub max_body: Size,

    /// Most body bytes held by all requests at once (bytes, or with
    /// KiB/MiB); past it, 503 with Retry-After. The default keeps the
    /// process inside a 64 MiB container limit.
    #[arg(long, env = "FLUXRECV_BODY_BUDGET", default_value_t = Size(Options::default().body_budget))]
    pub body_budget: Size,

    /// Most distinct changes one hook may ask for (branches, images), at
    /// most 1024; a hook naming more gets 400 and nothing is sent.
    #[arg(long, env = "FLUXRECV_MAX_CHANGES", default_value_t = Options::default().max_changes,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=crate::source::MAX_CHANGES as u64))]
    pub max_changes: usize,

    /// How long a reply waits for fluxd to accept a hook's changes: 200 when
    /// it did, else 202 (the changes stay queued and are retried). Keep it
    /// under the shortest provider timeout (Harbor's 3 s); 0 never waits.
    #[arg(long, env = "FLUXRECV_REPLY_BUDGET", value_parser = parse_budget,
          default_value_t = Span(Options::default().reply_budget))]
    pub reply_budget: Span,

    /// How long a queued change is retried while fluxd is away before it
    /// is dropped with a warning (fluxd's own polling catches up by then),
    /// counted from its last push.
    #[arg(long, env = "FLUXRECV_DELIVERY_MAX_AGE",
          default_value_t = Span(Options::default().delivery_max_age))]
    pub delivery_max_age: Span,

    /// Most distinct requests waiting for their targets at once (a push
    /// makes one per target); one endpoint may have half of the room the
    /// others leave. A hook whose changes do
    /// not fit whole gets 503 with Retry-After; one whose never can, 400.
    #[arg(long, env = "FLUXRECV_MAX_PENDING", default_value_t = Options::default().max_pending,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_pending: usize,

    /// Most bytes of request bodies waiting for the targets at once (a Flux
    /// v2 Receiver's request carries the provider's whole body); shared
    /// between endpoints as --max-pending is. A hook whose requests do not
    /// fit gets 503 with Retry-After. At least twice --max-body, so that an
    /// endpoint's share holds the largest body.
    #[arg(long, env = "FLUXRECV_MAX_PENDING_BYTES",
          default_value_t = Size(Options::default().max_pending_bytes))]
    pub max_pending_bytes: Size,

    /// Longest one POST to fluxd may take (e.g. 5s, 500ms); a timeout is
    /// retried.
    #[arg(long, env = "FLUXRECV_RELAY_TIMEOUT", default_value_t = Span(Options::default().relay_timeout))]
    pub relay_timeout: Span,

    /// Re-read the config and keys this often even when no file event
    /// arrives (a backstop for lost events); swaps only if they changed.
    #[arg(long, env = "FLUXRECV_RESYNC_INTERVAL",
          default_value_t = Span(Options::default().resync_interval))]
    pub resync_interval: Span,

    /// How long a reload waits for a file the new config names that is not
    /// there yet (the keys Secret updated after the config's) before it
    /// counts as failed; meanwhile the previous table serves.
    #[arg(long, env = "FLUXRECV_RELOAD_GRACE", value_parser = parse_budget,
          default_value_t = Span(Options::default().reload_grace))]
    pub reload_grace: Span,

    /// Relay worker threads: most POSTs to fluxd at once. One fluxd is
    /// served well by the default; one API gets at most half of them at
    /// once (but always one), and one that is failing one probe at a time.
    #[arg(long, env = "FLUXRECV_MAX_RELAYS", default_value_t = Options::default().max_relays,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub max_relays: usize,

    /// Most client connections open at once. Past it, a new client takes
    /// the slot of the connection idle longest (which is closed), or waits
    /// while every connection is in the middle of a request. Default: 1024,
    /// or 384 when serving TLS (a TLS connection under attack holds ~90 KiB;
    /// 384 keep the process under 48 MiB).
    #[arg(long, env = "FLUXRECV_MAX_CONNECTIONS",
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=65536))]
    pub max_connections: Option<usize>,

    /// A client connection is closed this long after it was opened, once
    /// the reply in progress is sent (the client reconnects).
    #[arg(long, env = "FLUXRECV_MAX_CONNECTION_AGE",
          default_value_t = Span(Options::default().max_connection_age))]
    pub max_connection_age: Span,

    /// A client connection is closed after the reply to this many requests
    /// (that reply says `Connection: close`).
    #[arg(long, env = "FLUXRECV_MAX_CONNECTION_REQUESTS",
          default_value_t = Options::default().max_connection_requests,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub max_connection_requests: u64,

    /// A client must send a request's headers within this time; also how
    /// long an idle keep-alive connection is kept.
    #[arg(long, env = "FLUXRECV_HEADER_TIMEOUT", default_value_t = Span(Options::default().header_timeout))]
    pub header_timeout: Span,

    /// A client must send a request's body within this time (408 after).
    #[arg(long, env = "FLUXRECV_BODY_TIMEOUT", default_value_t = Span(Options::default().body_timeout))]
    pub body_timeout: Span,

    /// How long shutdown (SIGTERM) waits for requests in flight.
    #[arg(long, env = "FLUXRECV_DRAIN_TIMEOUT", default_value_t = Span(Options::default().drain_timeout))]
    pub drain_timeout: Span,

    /// Most refused hooks (bad signature, bad payload, too large, busy), and
    /// requests to unknown hook URLs at debug, logged per second, and apart
    /// the lines about single notifications (refused by fluxd, dropped,
    /// late); the rest are counted in /metrics, and one line says how many
    /// were left out. Keeps a flood of junk from flooding the logs.
    #[arg(long, env = "FLUXRECV_REFUSAL_LOGS_PER_SECOND",
          default_value_t = Options::default().refusal_logs_per_second)]
    pub refusal_logs_per_second: u64,

    /// For signatures that cover when they were made (GitLab signing tokens,
    /// StandardWebhooks): how far from flux-recv's clock that time may be,
    /// either way (401 outside it), and how long an accepted delivery id is
    /// remembered, so that a repeat is acknowledged and not sent again.
    /// Whole seconds (e.g. 5m, 90s).
    #[arg(long, env = "FLUXRECV_SIGNATURE_TOLERANCE", value_parser = parse_tolerance,
          default_value_t = Span(Options::default().signature_tolerance))]
    pub signature_tolerance: Span,
    /// Most lines per second about hooks an endpoint took (one per hook,
    /// fluxd's 502s, and one per change in a dry run or at debug); the rest
    /// are counted in /metrics, and one line says how many were left out.
    /// A budget apart from refusals', so junk cannot crowd them out.
    #[arg(long, env = "FLUXRECV_HOOK_LOGS_PER_SECOND",
          default_value_t = Options::default().hook_logs_per_second)]
    pub hook_logs_per_second: u64,

    /// Verify and parse hooks as usual and log the notifications, but do not
    /// call fluxd (to try flux-recv out, or to check a provider's setup).
    /// The variable takes true/false, 1/0, yes/no, on/off.
    #[arg(long, env = "FLUXRECV_DRY_RUN", num_args = 0..=1, default_missing_value = "true",
          default_value = "false", value_parser = BoolishValueParser::new())]
    pub dry_run: bool,

    /// Where Google publishes the keys that sign Pub/Sub push tokens, for
    /// GoogleContainerRegistry endpoints with a `gcr:` block. https only
    /// (plain http to localhost, for tests).
    #[arg(long, env = "FLUXRECV_GOOGLE_JWKS_URL", default_value_t = Options::default().google_jwks_url,
          value_parser = crate::gcr_auth::check_url)]
    pub google_jwks_url: String,
}

impl ServeArgs {
    /// The server's options, as the flags set them.
    pub fn options(&self) -> Options {
        Options {
            max_body: self.max_body.0,
            body_budget: self.body_budget.0,
            max_changes: self.max_changes,
            reply_budget: self.reply_budget.0,
            delivery_max_age: self.delivery_max_age.0,
            max_pending: self.max_pending,
            max_pending_bytes: self.max_pending_bytes.0,
            relay_timeout: self.relay_timeout.0,
            drain_timeout: self.drain_timeout.0,
            dry_run: self.dry_run,
            google_jwks_url: self.google_jwks_url.clone(),
            max_relays: self.max_relays,
            max_connections: self.max_connections,
            max_connection_age: self.max_connection_age.0,
            max_connection_requests: self.max_connection_requests,
            header_timeout: self.header_timeout.0,
            body_timeout: self.body_timeout.0,
            refusal_logs_per_second: self.refusal_logs_per_second,
            signature_tolerance: self.signature_tolerance.0,
            hook_logs_per_second: self.hook_logs_per_second,
            resync_interval: self.resync_interval.0,
            reload_grace: self.reload_grace.0,
            tls: self
                .tls_cert
                .clone()
                .zip(self.tls_key.clone())
                .map(|(cert, key)| crate::tls::PairFiles { cert, key }),
            tls_handshake_timeout: self.tls_handshake_timeout.0,
            ..Options::default()
        }
    }
}

/// `--api`: serving, `endpoints` and `check` take it alike, and build the
/// endpoint table with it ([`crate::table::Table::load`]).
#[derive(Debug, Args)]
pub struct FluxdApi {
    /// fluxd's API for endpoints without their own `api:`, instead of the
    /// config's top-level `api` (so the address can live in the Deployment
    /// rather than the Secret).
    #[arg(long, env = "FLUXRECV_API", value_name = "URL", value_parser = crate::targets::fluxd::check_api)]
    pub api: Option<String>,
}

/// Flags of `flux-recv keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write the key to this file (created with mode 0600) instead of
    /// printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Replace the file if it exists. Its hook URL changes with the key, so
    /// the provider must be given the new key and URL.
    #[arg(long, requires = "out")]
    pub force: bool,

    /// The config the key is for: the `keyPath:` suggested is relative to
    /// its directory, as the server reads it.
    #[arg(long, env = "FLUXRECV_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// `hex` (a shared secret for every source) or `whsec` (a Standard
    /// Webhooks signing secret, `whsec_<base64>`: for StandardWebhooks
    /// endpoints, and GitLab's signing token).
    #[arg(long, value_enum, default_value_t = KeyFormat::Hex)]
    pub format: KeyFormat,
}

/// What `keygen` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyFormat {
    /// 32 random bytes as lowercase hex.
    Hex,
    /// `whsec_` and 32 random bytes in base64.
    Whsec,
}

/// Flags of `flux-recv endpoints`.
#[derive(Debug, Args)]
pub struct EndpointsArgs {
    /// Config file, as for serving.
    #[arg(long, env = "FLUXRECV_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Where providers reach flux-recv (e.g. `https://hooks.example.com`), to
    /// print full hook URLs; without it, only the paths.
    #[arg(long, value_name = "URL", env = "FLUXRECV_BASE_URL", value_parser = parse_base_url)]
    pub base_url: Option<String>,

    /// `--api`, as for serving.
    #[command(flatten)]
    pub fluxd: FluxdApi,

    /// `text` (aligned columns) or `json` (an array of objects, for scripts).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// How `endpoints` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// One aligned row per endpoint, with a header line.
    Text,
    /// A JSON array with one object per endpoint.
    Json,
}

/// Flags of `flux-recv check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file, as for serving.
    #[arg(long, env = "FLUXRECV_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// `--api`, as for serving.
    #[command(flatten)]
    pub fluxd: FluxdApi,
}

/// Flags of `flux-recv send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// Config file, as for serving: the endpoint's source and key come from
    /// it.
    #[arg(long, env = "FLUXRECV_CONFIG", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,

    /// Which endpoint: its 1-based position in the config's `endpoints:`
    /// list, or a unique prefix of its fingerprint.
    #[arg(long, value_name = "N|FINGERPRINT")]
    pub endpoint: String,

    /// Where to POST: a full hook URL (`…/hook/<fingerprint>`), or a base URL
    /// such as `http://127.0.0.1:8080`, to which `/hook/<fingerprint>` is added.
    #[arg(
        long,
        env = "FLUXRECV_SEND_URL",
        value_parser = parse_base_url,
        required_unless_present = "dry_run"
    )]
    pub url: Option<String>,

    /// Post nothing: print what the endpoint's targets would be sent for
    /// the sample (each fluxd notification; a Receiver's body size and
    /// headers), worked out from the config as the server would.
    #[arg(long)]
    pub dry_run: bool,

    /// Which event to send: `push` for every source; others where the
    /// provider has them (`ping`, `package`, `create`, `delete`, `pull`, …;
    /// an unknown one lists the endpoint's).
    #[arg(long, default_value = "push")]
    pub event: String,

    /// Give up on the reply after this long.
    #[arg(long, default_value = "30s")]
    pub timeout: Span,
}

/// `:8080` (Go's spelling, all interfaces) or `host:port`, where the host
/// may be a name (`localhost:8080`), resolved now.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') {
        format!("0.0.0.0{s}")
    } else {
        s.to_string()
    };
    if let Ok(addr) = full.parse() {
        return Ok(addr);
    }
    let bad = |why: String| format!("{s:?} is not host:port or :port ({why})");
    let mut addrs = full.to_socket_addrs().map_err(|e| bad(e.to_string()))?;
    addrs
        .next()
        .ok_or_else(|| bad("the name has no address".into()))
}

/// An `http://` or `https://` URL with a host, without its trailing `/`.
pub fn parse_base_url(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("{s:?} is not an http:// or https:// URL"))?;
    if rest.split('/').next().unwrap_or("").is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// A size as flags spell it: `3MiB`, `512KiB`, `1048576`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Size, String> {
        parse_size(s).map(Size)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        match UNITS
            .iter()
            .find(|(n, _)| self.0 >= *n && self.0.is_multiple_of(*n))
        {
            Some((n, unit)) => write!(f, "{}{unit}", self.0 / n),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A duration as flags spell it: `8s`, `500ms`, `2m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Span, String> {
        parse_duration(s).map(Span)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else if ms.is_multiple_of(60_000) {
            write!(f, "{}m", ms / 60_000)
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
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

/// A duration that may be zero (`0` turns a wait off).
fn parse_budget(s: &str) -> Result<Span, String> {
    parse_duration_or_zero(s).map(Span)
}

/// A signature tolerance: whole seconds, at least one (timestamps are
/// whole seconds).
fn parse_tolerance(s: &str) -> Result<Span, String> {
    let d = parse_duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err(format!("{:?} is not a whole number of seconds", s.trim()));
    }
    Ok(Span(d))
}

/// `8s`, `500ms`, `2m`, or bare seconds; more than zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration_or_zero(s)?;
    if d.is_zero() {
        return Err(format!("{:?} must be more than zero", s.trim()));
    }
    Ok(d)
}

/// The longest duration any flag takes: a year, far beyond any sensible
/// timeout or interval, and far from where adding it to the clock would
/// overflow (which would end the task that waits).
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// `8s`, `500ms`, `2m`, `0`, or bare seconds; at most [`MAX_DURATION`].
fn parse_duration_or_zero(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a duration like 8s, 500ms or 2m");
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if d > MAX_DURATION {
        return Err(format!(
            "{s:?} is longer than a year ({}m), the most any duration can be",
            MAX_DURATION.as_secs() / 60
        ));
    }
    Ok(d)
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
        let local = parse_listen("localhost:8080").unwrap();
        assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
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
        // Up to a year; beyond it, adding the duration to the clock could
        // overflow.
        assert_eq!(parse_duration("525600m"), Ok(MAX_DURATION));
        assert_eq!(parse_duration("31536000"), Ok(MAX_DURATION));
        for huge in [
            "525601m",
            "31536001",
            "9223372036854775807s",
            "18446744073709551615ms",
        ] {
            let e = parse_duration(huge).unwrap_err();
            assert!(e.contains("longer than a year"), "{huge}: {e}");
        }
    }

    #[test]
    fn tls_takes_both_files_and_the_admin_address_is_optional() {
        let parse = |args: &[&str]| Cli::try_parse_from(args).map(|c| c.serve);
        let plain = parse(&["flux-recv"]).unwrap();
        assert_eq!(plain.options().tls, None);
        assert_eq!(plain.metrics_listen, None);
        assert!(parse(&["flux-recv", "--tls-cert", "c.pem"]).is_err());
        assert!(parse(&["flux-recv", "--tls-key", "k.pem"]).is_err());
        let tls = parse(&[
            "flux-recv",
            "--tls-cert=c.pem",
            "--tls-key=k.pem",
            "--tls-handshake-timeout=2s",
            "--metrics-listen=:9090",
        ])
        .unwrap();
        let options = tls.options();
        assert_eq!(
            options.tls,
            Some(crate::tls::PairFiles {
                cert: "c.pem".into(),
                key: "k.pem".into()
            })
        );
        assert_eq!(options.tls_handshake_timeout, Duration::from_secs(2));
        assert_eq!(tls.metrics_listen, Some("0.0.0.0:9090".parse().unwrap()));
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parse_base_url("https://hooks.example.com/").as_deref(),
            Ok("https://hooks.example.com")
        );
        assert_eq!(
            parse_base_url("http://127.0.0.1:8080/flux").as_deref(),
            Ok("http://127.0.0.1:8080/flux")
        );
        assert!(parse_base_url("hooks.example.com").is_err());
        assert!(parse_base_url("https:///hook").is_err());
    }

    #[test]
    fn no_flags_means_the_default_options() {
        let cli = Cli::try_parse_from(["flux-recv"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.config, PathBuf::from("fluxrecv.yaml"));
        assert_eq!(cli.serve.listen, "0.0.0.0:8080".parse().unwrap());
        let (parsed, default) = (cli.serve.options(), Options::default());
        // Options has no PartialEq (it holds no secrets, but also needs
        // none); its Debug shows every field.
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
        assert_eq!(
            cli.serve.options().resync_interval,
            Options::default().resync_interval
        );
    }

    #[test]
    fn defaults_show_as_flags_spell_them() {
        assert_eq!(Size(3 * 1024 * 1024).to_string(), "3MiB");
        assert_eq!(Size(1536).to_string(), "1536");
        assert_eq!(Span(Duration::from_secs(8)).to_string(), "8s");
        assert_eq!(Span(Duration::from_millis(1500)).to_string(), "1500ms");
        assert_eq!(Span(Duration::from_secs(900)).to_string(), "15m");
        for s in ["3MiB", "1536", "8s", "1500ms", "15m"] {
            let round = match s.parse::<Size>() {
                Ok(size) => size.to_string(),
                Err(_) => s.parse::<Span>().unwrap().to_string(),
            };
            assert_eq!(round, s);
        }
    }

    #[test]
    fn a_reply_budget_may_be_zero_other_durations_not() {
        let cli = Cli::try_parse_from(["flux-recv", "--reply-budget", "0"]).unwrap();
        assert_eq!(cli.serve.options().reply_budget, Duration::ZERO);
        assert!(Cli::try_parse_from(["flux-recv", "--body-timeout", "0"]).is_err());
        let cli = Cli::try_parse_from(["flux-recv", "--reply-budget", "1500ms"]).unwrap();
        assert_eq!(
            cli.serve.options().reply_budget,
            Duration::from_millis(1500)
        );
    }

    #[test]
    fn every_duration_flag_stops_at_a_year_and_max_changes_at_the_cap() {
        let flags = [
            "--reply-budget",
            "--delivery-max-age",
            "--relay-timeout",
            "--resync-interval",
            "--header-timeout",
            "--body-timeout",
            "--drain-timeout",
            "--signature-tolerance",
        ];
        for flag in flags {
            assert!(
                Cli::try_parse_from(["flux-recv", flag, "525600m"]).is_ok(),
                "{flag}"
            );
            let huge = Cli::try_parse_from(["flux-recv", flag, "9223372036854775807s"]);
            assert!(
                huge.is_err(),
                "{flag} took a duration that overflows the clock"
            );
        }
        let cap = crate::source::MAX_CHANGES.to_string();
        let over = (crate::source::MAX_CHANGES + 1).to_string();
        let cli = Cli::try_parse_from(["flux-recv", "--max-changes", cap.as_str()]).unwrap();
        assert_eq!(cli.serve.options().max_changes, crate::source::MAX_CHANGES);
        assert!(Cli::try_parse_from(["flux-recv", "--max-changes", over.as_str()]).is_err());
    }

    #[test]
    fn the_signature_tolerance_is_whole_seconds() {
        let parse = |v: &str| {
            Cli::try_parse_from(["flux-recv", "--signature-tolerance", v])
                .map(|cli| cli.serve.options().signature_tolerance)
        };
        assert_eq!(parse("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse("2000ms").unwrap(), Duration::from_secs(2));
        for bad in ["0", "500ms", "1500ms", "soon"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_connection_cap_defaults_lower_when_serving_tls_and_the_flag_wins() {
        use crate::options::{CapSource, MAX_CONNECTIONS, TLS_MAX_CONNECTIONS};
        let cap = |args: &[&str]| {
            let mut all = vec!["flux-recv"];
            all.extend_from_slice(args);
            Cli::try_parse_from(all)
                .unwrap()
                .serve
                .options()
                .max_connections()
        };
        let tls = ["--tls-cert", "tls.crt", "--tls-key", "tls.key"];
        assert_eq!(cap(&[]), (MAX_CONNECTIONS, CapSource::Default));
        assert_eq!(MAX_CONNECTIONS, 1024);
        assert_eq!(cap(&tls), (TLS_MAX_CONNECTIONS, CapSource::TlsDefault));
        let flag = ["--max-connections", "2000"];
        assert_eq!(
            cap(&[&tls[..], &flag[..]].concat()),
            (2000, CapSource::Flag)
        );
        assert_eq!(cap(&flag), (2000, CapSource::Flag));
        // The figure the slots are given is the one resolved.
        let cli = Cli::try_parse_from(["flux-recv", "--tls-cert", "c", "--tls-key", "k"]).unwrap();
        assert_eq!(
            cli.serve.options().slots().max_connections,
            TLS_MAX_CONNECTIONS
        );
    }

    #[test]
    fn dry_run_takes_the_usual_booleans() {
        for (args, want) in [
            (&["flux-recv", "--dry-run"][..], true),
            (&["flux-recv", "--dry-run=1"][..], true),
            (&["flux-recv", "--dry-run=yes"][..], true),
            (&["flux-recv", "--dry-run=false"][..], false),
            (&["flux-recv", "--dry-run=0"][..], false),
            (&["flux-recv"][..], false),
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert_eq!(cli.serve.dry_run, want, "{args:?}");
        }
        assert!(Cli::try_parse_from(["flux-recv", "--dry-run=maybe"]).is_err());
    }

    #[test]
    fn serving_stays_the_default_and_commands_take_their_own_flags() {
        let cli =
            Cli::try_parse_from(["flux-recv", "--config", "f.yaml", "--listen", ":9090"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.serve.config, PathBuf::from("f.yaml"));
        assert_eq!(cli.serve.listen, "0.0.0.0:9090".parse().unwrap());

        let cli = Cli::try_parse_from(["flux-recv", "check", "--config", "f.yaml"]).unwrap();
        let Some(Command::Check(check)) = cli.command else {
            panic!("check");
        };
        assert_eq!(check.config, PathBuf::from("f.yaml"));

        let cli = Cli::try_parse_from([
            "flux-recv",
            "send",
            "--endpoint",
            "2",
            "--url",
            "http://127.0.0.1:8080/",
        ])
        .unwrap();
        let Some(Command::Send(send)) = cli.command else {
            panic!("send");
        };
        assert_eq!(send.url.as_deref(), Some("http://127.0.0.1:8080"));
        assert_eq!(send.event, "push");

        // A serve flag before a command is a mistake, not a silent no-op.
        assert!(Cli::try_parse_from(["flux-recv", "--listen", ":1", "check"]).is_err());
        // --force without --out means nothing.
        assert!(Cli::try_parse_from(["flux-recv", "keygen", "--force"]).is_err());
    }
}
