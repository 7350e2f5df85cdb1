//! Where changes go: one [`Target`] value per relay destination, of one of
//! the kinds listed at the bottom of this file (today fluxd's notify API,
//! [`fluxd`]).
//!
//! A target knows its URL, what requests a verified hook makes for it
//! ([`TargetKind::items`]: fluxd, one notification per change), the
//! headers each request goes with ([`TargetKind::headers`], made again at
//! every attempt so that a secret read with the newest table signs it) and
//! what an answer means ([`TargetKind::read`]). The delivery queue and its
//! relay workers know only this interface: they queue each [`Outgoing`]
//! request once per (target, body), share the workers and back off per
//! target, and post what the target makes.
//!
//! **Adding a kind.** A file here that defines the kind's value (`Fluxd` in
//! `fluxd.rs`), implements [`TargetKind`] for it and reads its part of an
//! endpoint's config (`fluxd::configured`), and `Kind: module` in the
//! `targets!` list; then the config's field for it
//! ([`crate::config::EndpointConfig`]) and the call in
//! [`crate::endpoint::targets_named`] that reads it, as a source's extra
//! settings have. The queue and the relay do not change. A kind's file
//! does not use the config's types, so that the config can use the kind's
//! shape of its settings (fluxd's [`fluxd::ApiConfig`]) without a cycle.
//!
//! **An enum, not a trait object.** [`Target`] is an enum with one variant
//! per kind, each holding its kind's value behind an `Arc`: a table is
//! compared whole on reload (a rotated token must make it differ), which an
//! enum derives and a `dyn` value cannot; `match` on it stays exhaustive
//! where a command must treat a kind apart; and a clone is one reference
//! count. The kinds' common behaviour is the [`TargetKind`] trait, which
//! the enum dispatches to.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, LOCATION, RETRY_AFTER};
use http::{HeaderMap, StatusCode};

use crate::notification::Change;
use crate::target_files::{CaFile, FileProblem};

/// What every kind of target does. Each kind's file implements it for its
/// value; [`Target`] dispatches to it.
pub trait TargetKind: fmt::Debug + Send + Sync {
    /// Its identity in the queue: entries are one per (key, body), and
    /// workers, backoff and counters are per key.
    fn key(&self) -> &Key;
    /// How the queue's metrics (the `api` label) and log lines name it:
    /// the kind and a short identity, never a secret, and another for
    /// another key. fluxd's is its notify URL, as before there were other
    /// kinds (dashboards select on it).
    fn label(&self) -> &Arc<str>;
    /// Who answers, as log lines and reasons say it: `fluxd`.
    fn name(&self) -> &'static str;
    /// How `endpoints` and the hook's log line show it, as the config
    /// names it: fluxd's API base URL.
    fn shown(&self) -> &str;
    /// Whether its requests are made from the provider's body as received
    /// (not only from the changes): the hook then keeps the body for it.
    fn needs_body(&self) -> bool {
        false
    }
    /// The requests `hook` makes for it, in order; none when it has nothing
    /// to say of this hook. fluxd: one per change.
    fn items(&self, hook: &VerifiedHook) -> Vec<Outgoing>;
    /// The headers to send `body` with, made at each attempt on a relay
    /// worker (so a signature is made with this value's secret, and may
    /// cost CPU). The relay adds none but `User-Agent`, `Host` and
    /// `Content-Length`.
    fn headers(&self, body: &Body) -> Headers;
    /// What the answer `status` with `headers` means for the request.
    fn read(&self, status: StatusCode, headers: &HeaderMap) -> Answer;
    /// What a dry run says it would have been sent, for a kind whose
    /// requests are made from the hook's body (fluxd's are one line per
    /// change): no secret, only which headers.
    fn dry_run(&self) -> String {
        String::new()
    }
    /// What `check` says of it: legal, but probably not what was meant.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// The files it was made from besides the config (a token, a CA),
    /// resolved: reload watches their directories, and a change in one
    /// builds a new table with the new content.
    fn files(&self) -> Vec<&Path> {
        Vec::new()
    }
    /// The largest body it takes, if it has a limit: a request over it is
    /// never queued, and the hook is answered that it was not sent.
    fn max_body(&self) -> Option<usize> {
        None
    }
    /// The only CA certificates an `https://` URL's certificate is checked
    /// against, if the config names some (`caPath:`); otherwise the system's
    /// roots.
    fn ca(&self) -> Option<&CaFile> {
        None
    }
}

/// A target's identity in the delivery queue: its kind and URL, never a
/// secret, so that a target whose token was rotated is still the same
/// destination.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    kind: &'static str,
    url: Arc<str>,
}

impl Key {
    /// The key of the target of kind `kind` that posts to `url`.
    pub fn new(kind: &'static str, url: Arc<str>) -> Key {
        Key { kind, url }
    }

    /// Where its requests are POSTed.
    pub fn url(&self) -> &Arc<str> {
        &self.url
    }
}

/// A hook that its source verified and parsed, and that the endpoint's
/// filter left changes in: what a target makes its requests from.
#[derive(Debug, Clone, Copy)]
pub struct VerifiedHook<'a> {
    /// The changes the filter let through, in order, at least one.
    pub changes: &'a [Change],
    /// The provider's body as received, with its `Content-Type`: only when
    /// one of the endpoint's targets [needs it](TargetKind::needs_body).
    pub body: Option<&'a Body>,
}

/// One request a target makes for a hook, as the queue holds it until the
/// target accepts it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// What is sent. With the target, what the queue de-duplicates on.
    pub body: Body,
    /// The changes it tells of, for the log lines.
    pub changes: Changes,
}

/// A request body and its media type. Cheap to clone: the bytes are shared.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Body {
    /// The bytes sent.
    pub bytes: Bytes,
    /// Its `Content-Type`, if it has one.
    pub content_type: Option<HeaderValue>,
}

/// Headers a target adds to a request.
pub type Headers = Vec<(HeaderName, HeaderValue)>;

/// The changes a request tells of, for the logs: one for fluxd, all of a
/// hook's for a request made from the hook's body. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes(Arc<[Change]>);

/// Changes named in a log line; the rest are counted.
const NAMED_CHANGES: usize = 3;

impl Changes {
    /// These changes.
    pub fn of(changes: &[Change]) -> Changes {
        Changes(changes.into())
    }

    /// The changes.
    pub fn as_slice(&self) -> &[Change] {
        &self.0
    }
}

/// Each change as [`Change`]'s `Display` shows it, separated by `, `: the
/// first few and how many more; `-` for none.
impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("-");
        }
        for (i, change) in self.0.iter().take(NAMED_CHANGES).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{change}")?;
        }
        if self.0.len() > NAMED_CHANGES {
            write!(f, " (+{} more)", self.0.len() - NAMED_CHANGES)?;
        }
        Ok(())
    }
}

/// What came of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The target took it.
    Accepted,
    /// Worth another attempt later: the target unreachable, too slow, or
    /// answering that it cannot take it now.
    Retry {
        /// Which, for the logs.
        reason: String,
        /// How long the target asked to be left alone (`Retry-After`), if
        /// it did.
        after: Option<Duration>,
    },
    /// Will never succeed as sent. The text is the reason a waiting
    /// provider is given.
    Refused(String),
}

impl Answer {
    /// Retry later, when the queue sees fit.
    pub fn retry(reason: String) -> Answer {
        Answer::Retry {
            reason,
            after: None,
        }
    }

    /// Retry later, not before what the answer's `Retry-After` asks.
    pub fn retry_after(reason: String, headers: &HeaderMap) -> Answer {
        let after = headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, SystemTime::now()));
        Answer::Retry { reason, after }
    }

    /// A redirect, which the relay never follows (it would re-send the
    /// request elsewhere, or as a bodiless GET): refused, naming where it
    /// pointed. `said` is what the target answered, `setting` the setting
    /// to check (`the api URL`).
    pub fn redirect(said: String, setting: &str, headers: &HeaderMap) -> Answer {
        let location = headers
            .get(LOCATION)
            .map(|v| crate::printable(&String::from_utf8_lossy(v.as_bytes())));
        Answer::Refused(format!(
            "{said}, a redirect to {}, which flux-recv does not follow; check {setting}",
            location.as_deref().unwrap_or("nowhere (no Location)")
        ))
    }
}

/// How long a `Retry-After` value asks to wait at `now`: a number of
/// seconds, or an HTTP-date (in any of the three formats RFC 9110 names);
/// zero for a date that has passed. `None` for anything else, which is
/// ignored.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Digits only: too many for a u64 is "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or_default())
}

impl Target {
    /// See [`TargetKind::key`].
    pub fn key(&self) -> &Key {
        self.kind().key()
    }

    /// Where its requests are POSTed.
    pub fn url(&self) -> &Arc<str> {
        self.key().url()
    }

    /// See [`TargetKind::label`].
    pub fn label(&self) -> &Arc<str> {
        self.kind().label()
    }

    /// See [`TargetKind::name`].
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// See [`TargetKind::needs_body`].
    pub fn needs_body(&self) -> bool {
        self.kind().needs_body()
    }

    /// See [`TargetKind::items`].
    pub fn items(&self, hook: &VerifiedHook) -> Vec<Outgoing> {
        self.kind().items(hook)
    }

    /// See [`TargetKind::headers`].
    pub fn headers(&self, body: &Body) -> Headers {
        self.kind().headers(body)
    }

    /// See [`TargetKind::read`].
    pub fn read(&self, status: StatusCode, headers: &HeaderMap) -> Answer {
        self.kind().read(status, headers)
    }

    /// See [`TargetKind::warnings`].
    pub fn warnings(&self) -> Vec<String> {
        self.kind().warnings()
    }

    /// See [`TargetKind::dry_run`].
    pub fn dry_run(&self) -> String {
        self.kind().dry_run()
    }

    /// See [`TargetKind::files`].
    pub fn files(&self) -> Vec<&Path> {
        self.kind().files()
    }

    /// See [`TargetKind::max_body`].
    pub fn max_body(&self) -> Option<usize> {
        self.kind().max_body()
    }

    /// See [`TargetKind::ca`].
    pub fn ca(&self) -> Option<&CaFile> {
        self.kind().ca()
    }

    /// Why `body` is never sent to it, if it is over its
    /// [limit](TargetKind::max_body): what the waiting hook is answered.
    pub fn too_large(&self, body: &Body) -> Option<String> {
        let max = self.max_body()?;
        (body.bytes.len() > max).then(|| {
            format!(
                "the body is {} bytes, over the {max} bytes {} takes; it was not sent",
                body.bytes.len(),
                self.name()
            )
        })
    }
}

/// As the config names it ([`TargetKind::shown`]).
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind().shown())
    }
}

/// Targets a config names, each with the field that names it (e.g.
/// `endpoints[3].api[1]`), and what is wrong with them: what a kind's
/// `configured` returns.
#[derive(Debug, Default)]
pub struct Configured {
    /// Each target that could be made, with its field.
    pub targets: Vec<(String, Target)>,
    /// What is wrong, each an error.
    pub problems: Vec<Found>,
}

impl Configured {
    /// Add what `other` found.
    pub fn extend(&mut self, other: Configured) {
        self.targets.extend(other.targets);
        self.problems.extend(other.problems);
    }

    /// A problem with the setting at `field`, in the config.
    pub fn problem(&mut self, field: String, message: String) {
        self.problems.push(Found {
            field,
            message,
            file: None,
            absent: false,
        });
    }

    /// A problem with the file the setting at `field` names.
    pub fn file_problem(&mut self, field: String, problem: FileProblem) {
        self.problems.push(Found {
            field,
            message: problem.message,
            file: Some(problem.file),
            absent: problem.absent,
        });
    }
}

/// One thing wrong with a target's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The field, e.g. `endpoints[3].fluxReceivers[0].tokenPath`.
    pub field: String,
    /// What is wrong and what to do, never a secret.
    pub message: String,
    /// The file it is about, when not the config (a token file).
    pub file: Option<PathBuf>,
    /// That file is not there.
    pub absent: bool,
}

/// How a reply names the target whose label is `label` when it refused a
/// request: `fluxd` for fluxd (whose label is its notify URL, as
/// dashboards know it); a kind's label otherwise, which starts with the
/// kind's name ([`label`]).
pub fn refuser(label: &str) -> &str {
    match label.starts_with("http://") || label.starts_with("https://") {
        true => fluxd::NAME,
        false => label,
    }
}

/// A label for a target of kind `kind` (not fluxd) that posts to `url`:
/// the kind's name, a space, and the URL with its last path segment cut to
/// its first 8 characters and `…` when longer than 12 (a Receiver's digest,
/// a token in a path: a label is in every metric and log line, so it never
/// holds one in full). A query string is left out.
pub fn label(kind: &str, url: &str) -> Arc<str> {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (head, last) = match url.rsplit_once('/') {
        Some((head, last)) if head.contains("://") && !head.ends_with('/') => (head, last),
        _ => (url, ""),
    };
    let shown = match last.chars().count() > 12 {
        true => format!("{head}/{}…", last.chars().take(8).collect::<String>()),
        false if last.is_empty() => head.to_string(),
        false => format!("{head}/{last}"),
    };
    Arc::from(format!("{kind} {shown}"))
}

/// The kinds of `targets`, each once, in order, joined by ` and `: what a
/// dry run's reply says would be notified (`fluxd`).
pub fn kinds(targets: &[Target]) -> String {
    let mut names: Vec<&str> = Vec::new();
    for target in targets {
        if !names.contains(&target.name()) {
            names.push(target.name());
        }
    }
    names.join(" and ")
}

/// `targets` as the config names them, separated by spaces: how log lines
/// list an endpoint's targets.
pub fn names(targets: &[Target]) -> String {
    let names: Vec<String> = targets.iter().map(Target::to_string).collect();
    names.join(" ")
}

macro_rules! targets {
    ($($kind:ident: $module:ident),+ $(,)?) => {
        $(pub mod $module;)+

        /// One relay destination: a value of one of the kinds, shared.
        /// Equal when every setting is, secrets included; the queue tells
        /// destinations apart by [`Target::key`].
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Target {
            $(
                #[doc = concat!("A `", stringify!($module), "` target.")]
                $kind(Arc<$module::$kind>),
            )+
        }

        impl Target {
            fn kind(&self) -> &dyn TargetKind {
                match self {
                    $(Target::$kind(target) => &**target,)+
                }
            }
        }

        $(
            impl From<$module::$kind> for Target {
                fn from(target: $module::$kind) -> Target {
                    Target::$kind(Arc::new(target))
                }
            }
        )+

        /// The files that hold kinds, for the test that every one is
        /// listed.
        #[cfg(test)]
        const MODULES: &[&str] = &[$(stringify!($module)),+];
    };
}

targets![
    Fluxd: fluxd,
    FluxReceiver: flux_receiver,
    ArgoCd: argocd,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_file_is_listed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/targets");
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name();
            let name = name.to_str().unwrap();
            let Some(stem) = name.strip_suffix(".rs") else {
                continue;
            };
            if stem != "mod" {
                assert!(
                    MODULES.contains(&stem),
                    "src/targets/{stem}.rs is not in the targets! list"
                );
            }
        }
    }

    #[test]
    fn labels_tell_kinds_apart_and_never_hold_a_digest_whole() {
        let digest = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
        let url = format!("http://nc.flux-system.svc/hook/{digest}");
        let l = label("flux-receiver", &url);
        assert_eq!(
            &*l,
            "flux-receiver http://nc.flux-system.svc/hook/a1b2c3d4…"
        );
        assert!(!l.contains(&digest[..12]));
        assert_eq!(refuser(&l), &*l);
        assert_eq!(refuser("http://fluxd:3030/api/flux/v11/notify"), "fluxd");
        assert_eq!(
            &*label("argocd", "https://argocd.example/api/webhook?x=secret"),
            "argocd https://argocd.example/api/webhook"
        );
        assert_eq!(&*label("k", "https://host"), "k https://host");
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(retry_after("60", now), secs(60));
        assert_eq!(retry_after(" 0 ", now), secs(0));
        assert_eq!(retry_after("99999999999999999999999", now), secs(u64::MAX));
        // 2023-11-14T22:13:20Z is `now`; each format RFC 9110 names.
        for date in [
            "Tue, 14 Nov 2023 22:14:20 GMT",
            "Tuesday, 14-Nov-23 22:14:20 GMT",
            "Tue Nov 14 22:14:20 2023",
        ] {
            assert_eq!(retry_after(date, now), secs(60), "{date}");
        }
        assert_eq!(retry_after("Tue, 14 Nov 2023 22:00:00 GMT", now), secs(0));
        for junk in ["", "-1", "1.5", "soon", "60 s"] {
            assert_eq!(retry_after(junk, now), None, "{junk:?}");
        }
    }

    #[test]
    fn changes_name_a_few_and_count_the_rest() {
        let image = |n: usize| {
            Change::image(crate::notification::ImageName {
                domain: String::new(),
                image: format!("app-{n}"),
            })
        };
        assert_eq!(Changes::of(&[]).to_string(), "-");
        assert_eq!(Changes::of(&[image(0)]).to_string(), "image app-0");
        let five: Vec<Change> = (0..5).map(image).collect();
        assert_eq!(
            Changes::of(&five).to_string(),
            "image app-0, image app-1, image app-2 (+2 more)"
        );
    }
}
