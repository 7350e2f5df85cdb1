//! One hook URL: an `endpoints:` entry of the config with its key read,
//! checked and turned into what the request path needs, its targets
//! ([`crate::targets`]) and filter ([`crate::filter`]) among them.
//!
//! Building an endpoint reports every problem it finds (errors stop it,
//! warnings do not), naming the file and field, so one run of `check` or
//! one reload lists them all. Collecting endpoints into a table, and what
//! is wrong between them (two with one URL), is [`crate::table`]'s job.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::{EndpointConfig, GcrAuth, NotifyConfig, Problem};
use crate::files::ReadErrorKind;
use crate::filter::Filter;
use crate::notification::Change;
use crate::source::{Extra, Proof, Secret, Settings, Source};
use crate::targets::{argocd, flux_receiver, fluxd, Configured, Target};

/// Keys shorter than this are easy to guess; `check` and start-up warn.
pub const SHORT_KEY: usize = 16;

/// One hook URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// 1-based position in the config's `endpoints:` list.
    pub position: usize,
    /// Which provider's rules apply.
    pub source: Source,
    /// The key file, resolved against the config file's directory.
    pub key_path: PathBuf,
    /// Lowercase hex sha256(key bytes ++ registryHost bytes): the last
    /// segment of the hook URL, as in the Go original.
    pub fingerprint: String,
    /// What the source needs to verify and parse a delivery.
    pub settings: Settings,
    /// GoogleContainerRegistry: whose signed token each Pub/Sub push must
    /// carry. Checked before the source runs, because it needs Google's
    /// published keys, which sources never fetch.
    pub gcr: Option<GcrAuth>,
    /// Where its changes go, if it names any target; else the table's
    /// default.
    pub targets: Option<Arc<[Target]>>,
    /// Which changes are sent.
    pub filter: Filter,
}

impl Endpoint {
    /// Build the endpoint at `index` of `config_path`'s `endpoints:` list,
    /// reading its key from `base`'s point of view. Returns the endpoint if
    /// nothing is an error, and every problem found either way.
    pub fn build(
        config_path: &Path,
        index: usize,
        ep: &EndpointConfig,
    ) -> (Option<Endpoint>, Vec<Problem>) {
        let field = format!("endpoints[{index}]");
        let error = |at: &str, message: String| Problem::error(config_path, at, message);
        let Some(source) = Source::from_name(&ep.source) else {
            let message = format!(
                "unknown source {:?}; valid sources are {}",
                ep.source,
                Source::names()
            );
            return (None, vec![error(&format!("{field}.source"), message)]);
        };
        let mut problems = extras_problems(config_path, &field, source, ep);
        let registry_host = ep.registry_host.clone().filter(|h| !h.is_empty());
        if let (None, Some(why)) = (&registry_host, source.without_registry_host()) {
            let at = format!("{field}.registryHost");
            problems.push(Problem::warning(config_path, at, why));
        }
        let notify = match &ep.notify {
            Some(notify) => notify_changes(config_path, &field, notify, &mut problems),
            None => Vec::new(),
        };
        let named = targets_named(config_dir(config_path), &field, ep);
        problems.extend(named.problems.into_iter().map(|found| {
            let problem = Problem::error(
                found.file.as_deref().unwrap_or(config_path),
                found.field,
                found.message,
            );
            match (found.absent, &found.file) {
                (true, Some(file)) => problem.absent(file),
                _ => problem,
            }
        }));
        let targets: Vec<Target> = named.targets.into_iter().map(|(_, t)| t).collect();
        let targets = (!targets.is_empty()).then(|| Arc::from(targets));
        let kinds = source.provider().changes;
        let filter = match &ep.filter {
            None => Filter::default(),
            Some(config) => Filter::build(config, source.name(), kinds.git(), kinds.image())
                .unwrap_or_else(|found| {
                    for (at, message) in found {
                        problems.push(error(&format!("{field}.filter.{at}"), message));
                    }
                    Filter::default()
                }),
        };
        let key_path = key_path(config_path, ep);
        let key = match crate::files::read_regular(&key_path, crate::files::KEY) {
            Ok(key) if key.is_empty() => {
                let at = format!("{field}.keyPath");
                problems.push(Problem::error(&key_path, at, "the key file is empty"));
                None
            }
            Ok(key) => {
                let at = format!("{field}.keyPath");
                match source.check_key(&key) {
                    Err(message) => problems.push(Problem::error(&key_path, at, message)),
                    Ok(warning) => {
                        let signing_secret = matches!(source.proof_for(&key), Proof::Stamped);
                        problems.extend(key_warnings(&key_path, &field, &key, signing_secret));
                        problems.extend(warning.map(|w| Problem::warning(&key_path, at, w)));
                    }
                }
                Some(key)
            }
            Err(e) => {
                let missing =
                    matches!(&e.kind, ReadErrorKind::Io(io) if io.kind() == ErrorKind::NotFound);
                let message = if missing && looks_like_a_key(&ep.key_path) {
                    format!(
                        "cannot read key file: no file has the name keyPath gives, a value of {} \
                         characters that looks like a key rather than a path, so it is not \
                         shown; keyPath (or key) names the file that holds the key",
                        ep.key_path.chars().count()
                    )
                } else {
                    format!("cannot read key file {e}")
                };
                let problem = error(&format!("{field}.keyPath"), message);
                problems.push(match missing {
                    true => problem.absent(&key_path),
                    false => problem,
                });
                None
            }
        };
        let failed = problems
            .iter()
            .any(|p| p.severity == crate::config::Severity::Error);
        let (Some(key), false) = (key, failed) else {
            return (None, problems);
        };
        let endpoint = Endpoint {
            position: index + 1,
            source,
            key_path,
            fingerprint: fingerprint(&key, registry_host.as_deref()),
            settings: Settings {
                key: Secret::new(key),
                registry_host,
                notify,
                require_signature: ep.require_signature.unwrap_or(false),
            },
            gcr: ep.gcr.clone(),
            targets,
            filter,
        };
        (Some(endpoint), problems)
    }

    /// Whether `other` treats deliveries as this one does: the same
    /// settings, `gcr:` block, targets and filter (wherever it is listed).
    pub fn same_settings(&self, other: &Endpoint) -> bool {
        self.settings == other.settings
            && self.gcr == other.gcr
            && self.targets == other.targets
            && self.filter == other.filter
    }

    /// `/hook/<fingerprint>`.
    pub fn url_path(&self) -> String {
        format!("/hook/{}", self.fingerprint)
    }

    /// Whether requests to this endpoint must prove who sent them: the
    /// source verifies a signature or token, a `gcr:` block asks for
    /// Google's signed token, or `requireSignature` makes an optional
    /// signature mandatory. Otherwise the hook URL is the only protection.
    pub fn verifies_sender(&self) -> bool {
        verifies_sender(
            self.source,
            self.gcr.is_some(),
            self.settings.require_signature,
        )
    }
}

/// Whether an endpoint of `source` must prove who sent a request: the
/// source verifies a signature or token, it has a `gcr:` block, or
/// `requireSignature` makes an optional signature mandatory. Shared by
/// [`Endpoint::verifies_sender`] and `check`, which asks it of the config
/// so it answers even for endpoints that do not build.
pub fn verifies_sender(source: Source, gcr: bool, require_signature: bool) -> bool {
    source.verifies_sender() || gcr || require_signature
}

/// The fingerprint of a key (and registry host): the hook URL's last segment.
pub fn fingerprint(key: &[u8], registry_host: Option<&str>) -> String {
    let mut sha = Sha256::new();
    sha.update(key);
    sha.update(registry_host.unwrap_or("").as_bytes());
    hex::encode(sha.finalize())
}

/// Whether a `keyPath` value looks like a key written in place of its
/// file's path (`key:` reads as if it wanted one): 16 characters or more,
/// all of them ones a hex or base64 key is made of, and no `.`. Such a
/// value that names no file is never repeated in a message, since it may
/// be the secret itself. A file name that looks like that and is missing
/// is then not named either: the message says why.
fn looks_like_a_key(value: &str) -> bool {
    value.len() >= 16
        && !value.starts_with('/')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'_' | b'-'))
}

/// An endpoint's key file, resolved against the config file's directory.
pub fn key_path(config_path: &Path, ep: &EndpointConfig) -> PathBuf {
    config_dir(config_path).join(&ep.key_path)
}

/// The directory the files a config names are resolved against: the
/// config file's.
pub fn config_dir(config_path: &Path) -> &Path {
    config_path.parent().unwrap_or(Path::new(""))
}

/// The targets an endpoint's config names, of every kind, each with the
/// field that names it (under `field`, the endpoint's: `endpoints[3]`);
/// and what is wrong with them, by field; the files they name (a token)
/// are read from `dir`, the config file's directory. The one place that
/// knows which config field holds which kind's settings.
pub fn targets_named(dir: &Path, field: &str, ep: &EndpointConfig) -> Configured {
    let mut named = Configured::default();
    if let Some(api) = &ep.api {
        named.extend(fluxd::configured(field, api));
    }
    if let Some(receivers) = &ep.flux_receivers {
        named.extend(flux_receiver::configured(dir, field, receivers));
    }
    if let Some(list) = &ep.argocd {
        let source = Source::from_name(&ep.source);
        if source.is_some_and(|s| !s.provider().changes.git()) {
            let message = format!(
                "{} sends image changes only, and Argo CD takes git pushes; remove argocd, or \
                 move it to an endpoint of a git provider",
                ep.source
            );
            named.problem(format!("{field}.argocd"), message);
        } else {
            let github = source.is_some_and(|s| s.name() == "GitHub");
            named.extend(argocd::configured(dir, field, list, github));
        }
    }
    named
}

/// What is wrong with the settings only some sources take: one a source
/// does not take, one it requires and lacks, or a `gcr:` block with an
/// empty field.
fn extras_problems(
    config_path: &Path,
    field: &str,
    source: Source,
    ep: &EndpointConfig,
) -> Vec<Problem> {
    let given = [
        (Extra::PubSubToken, ep.gcr.is_some()),
        (Extra::Notify, ep.notify.is_some()),
        (Extra::RequireSignature, ep.require_signature.is_some()),
    ];
    let mut problems = Vec::new();
    for (extra, present) in given {
        let at = format!("{field}.{}", extra.field());
        // `A`, `A and B`, `A, B and C`.
        let takers = || {
            let names: Vec<&str> = Source::all()
                .filter(|s| s.takes(extra))
                .map(Source::name)
                .collect();
            match names.split_last() {
                Some((last, rest)) if !rest.is_empty() => {
                    format!("{} and {last}", rest.join(", "))
                }
                _ => names.concat(),
            }
        };
        if present && !source.takes(extra) {
            let what = match extra {
                Extra::PubSubToken => "a gcr block verifies Google Pub/Sub push tokens, which",
                Extra::Notify => {
                    "a notify block says what to send for deliveries that name nothing; "
                }
                Extra::RequireSignature => {
                    "requireSignature is for providers that sign only when given a secret;"
                }
            };
            let message = match extra {
                Extra::PubSubToken => format!(
                    "{what} only {} endpoints receive; remove it from this {source} endpoint",
                    takers()
                ),
                _ => format!(
                    "{what} only {} endpoints take it; remove it from this {source} endpoint",
                    takers()
                ),
            };
            problems.push(Problem::error(config_path, at, message));
        } else if !present && extra == Extra::Notify && source.takes(extra) {
            let message = format!(
                "is required for {source} endpoints: say what to send, e.g. \
                 `notify: {{git: {{url: \"git@github.com:org/app.git\", branch: main}}}}` \
                 or `notify: {{image: registry.example.com/team/app}}`"
            );
            problems.push(Problem::error(config_path, at, message));
        }
    }
    if let (Some(gcr), true) = (&ep.gcr, source.takes(Extra::PubSubToken)) {
        if gcr.audience.trim().is_empty() {
            problems.push(Problem::error(
                config_path,
                format!("{field}.gcr.audience"),
                "is empty; set it to the audience configured on the Pub/Sub push \
                 subscription (often the hook URL)",
            ));
        }
        if gcr.email.trim().is_empty() {
            problems.push(Problem::error(
                config_path,
                format!("{field}.gcr.email"),
                "is empty; set it to the push subscription's service account, \
                 e.g. gcr-push@my-project.iam.gserviceaccount.com",
            ));
        }
    }
    problems
}

/// The changes a `notify:` block names, checked the way fluxd reads them.
fn notify_changes(
    config_path: &Path,
    field: &str,
    notify: &NotifyConfig,
    problems: &mut Vec<Problem>,
) -> Vec<Change> {
    let mut error = |at: &str, message: String| {
        problems.push(Problem::error(
            config_path,
            format!("{field}.notify{at}"),
            message,
        ))
    };
    let mut changes = Vec::new();
    if let Some(git) = &notify.git {
        if git.url.trim().is_empty() {
            error(
                ".git.url",
                "is empty; give the repository URL fluxd is configured with (--git-url)".into(),
            );
        } else if git.branch.trim().is_empty() {
            error(
                ".git.branch",
                "is empty; give the branch fluxd syncs (--git-branch)".into(),
            );
        } else {
            changes.push(Change::git(git.url.trim(), git.branch.trim()));
        }
    }
    if let Some(image) = &notify.image {
        match crate::image::parse(image.trim()) {
            Ok(name) => changes.push(Change::image(name)),
            Err(e) => error(
                ".image",
                format!("{e}; give an image repository such as registry.example.com/team/app"),
            ),
        }
    }
    if notify.git.is_none() && notify.image.is_none() {
        error(
            "",
            "names nothing; give `git` (url and branch), `image`, or both".into(),
        );
    }
    changes
}

/// Keys that are legal but probably not what the operator meant. Around a
/// signing secret (`whsec_…`), whitespace is no part of it (base64 holds
/// none), and its length is checked by its source.
fn key_warnings(key_path: &Path, field: &str, key: &[u8], signing_secret: bool) -> Vec<Problem> {
    let mut warnings = Vec::new();
    if signing_secret {
        return warnings;
    }
    if key.last().is_some_and(|b| b.is_ascii_whitespace()) {
        warnings.push(Problem::warning(
            key_path,
            format!("{field}.keyPath"),
            "the key ends in whitespace (often a trailing newline from `echo` or an editor); \
             it is part of the secret, so the provider must be given it too, or signatures \
             will not match. Write keys with `printf %s` or `flux-recv keygen`",
        ));
    }
    if key.len() < SHORT_KEY {
        warnings.push(Problem::warning(
            key_path,
            format!("{field}.keyPath"),
            format!(
                "the key is only {} bytes; use at least {SHORT_KEY} random bytes",
                key.len()
            ),
        ));
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GitNotify;

    fn config(yaml: &str) -> EndpointConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn argo_cd_takes_git_changes_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.key"), "0123456789abcdef").unwrap();
        std::fs::write(dir.path().join("argocd.secret"), "argocd-secret-value").unwrap();
        let path = dir.path().join("fluxrecv.yaml");
        let argocd = "argocd: [{url: http://argocd/api/webhook, secretPath: argocd.secret}]";
        let ep = config(&format!("source: DockerHub\nkeyPath: a.key\n{argocd}\n"));
        let (endpoint, problems) = Endpoint::build(&path, 1, &ep);
        assert!(endpoint.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "endpoints[1].argocd");
        assert!(
            problems[0].message.contains("image changes only"),
            "{problems:?}"
        );
        // A git source takes it, and its secret file is read, never shown.
        let ep = config(&format!("source: GitLab\nkeyPath: a.key\n{argocd}\n"));
        let (endpoint, problems) = Endpoint::build(&path, 1, &ep);
        assert!(problems.is_empty(), "{problems:?}");
        let targets = endpoint.unwrap().targets.unwrap();
        assert_eq!(targets[0].to_string(), "http://argocd/api/webhook");
        assert_eq!(targets[0].files(), [dir.path().join("argocd.secret")]);
        assert!(!format!("{targets:?}").contains("argocd-secret-value"));
        // A secret file that is not there is an error naming its field.
        std::fs::remove_file(dir.path().join("argocd.secret")).unwrap();
        let (endpoint, problems) = Endpoint::build(&path, 1, &ep);
        assert!(endpoint.is_none());
        assert_eq!(problems[0].field, "endpoints[1].argocd[0].secretPath");
    }

    #[test]
    fn settings_a_source_does_not_take_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.key"), "0123456789abcdef").unwrap();
        let path = dir.path().join("fluxrecv.yaml");
        for (extra, yaml) in [
            ("notify", "notify: {image: org/app}"),
            ("requireSignature", "requireSignature: true"),
            ("gcr", "gcr: {audience: a, email: e}"),
        ] {
            let ep = config(&format!("source: GitHub\nkeyPath: a.key\n{yaml}\n"));
            let (endpoint, problems) = Endpoint::build(&path, 2, &ep);
            assert!(endpoint.is_none(), "{extra}");
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].field, format!("endpoints[2].{extra}"));
            assert!(
                problems[0]
                    .message
                    .ends_with("remove it from this GitHub endpoint"),
                "{}",
                problems[0].message
            );
        }
    }

    #[test]
    fn signing_secrets_are_checked_where_the_source_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fluxrecv.yaml");
        let build = |source: &str, key: &[u8]| {
            std::fs::write(dir.path().join("k.key"), key).unwrap();
            let ep = config(&format!(
                "source: {source}\nkeyPath: k.key\nnotify: {{image: org/app}}\n"
            ));
            let ep = EndpointConfig {
                notify: ep.notify.filter(|_| source == "StandardWebhooks"),
                ..ep
            };
            let (endpoint, problems) = Endpoint::build(&path, 0, &ep);
            let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            // Never the secret, nor the part after the prefix.
            let text = std::str::from_utf8(key).unwrap().trim();
            let secret = text.strip_prefix("whsec_").unwrap_or(text);
            for line in &lines {
                assert!(secret.len() < 4 || !line.contains(secret), "{line}");
            }
            (endpoint, lines)
        };
        const SECRET: &[u8] = b"whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=";
        for source in ["GitLab", "StandardWebhooks"] {
            // A signing secret, with or without a newline: no warning, and
            // the fingerprint is of the file's bytes, as for every key.
            for key in [SECRET.to_vec(), [SECRET, b"\n"].concat()] {
                let (endpoint, lines) = build(source, &key);
                assert_eq!(lines, Vec::<String>::new(), "{source}");
                assert_eq!(endpoint.unwrap().fingerprint, fingerprint(&key, None));
            }
            for bad in [&b"whsec_not-base64!"[..], b"whsec_", b"whsec_ab cd"] {
                let (endpoint, lines) = build(source, bad);
                assert!(endpoint.is_none(), "{source} {bad:?}");
                assert_eq!(lines.len(), 1, "{lines:?}");
                assert!(
                    lines[0].contains("taken for a signing secret"),
                    "{}",
                    lines[0]
                );
            }
            let (endpoint, lines) = build(source, b"whsec_AAAAAAAA");
            assert!(endpoint.is_some());
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].contains("only 6 bytes"), "{}", lines[0]);
        }
        // StandardWebhooks takes nothing else; GitLab takes its secret
        // token, as before.
        let (endpoint, lines) = build("StandardWebhooks", b"0123456789abcdef0123");
        assert!(endpoint.is_none());
        assert!(lines[0].contains("keygen --format whsec"), "{}", lines[0]);
        let (endpoint, lines) = build("GitLab", b"0123456789abcdef0123");
        assert!(endpoint.is_some() && lines.is_empty(), "{lines:?}");
        // Other sources take a key that looks like one as any other key.
        let (endpoint, lines) = build("GitHub", b"whsec_not-base64!");
        assert!(endpoint.is_some() && lines.is_empty(), "{lines:?}");
    }

    #[test]
    fn a_key_written_in_place_of_its_path_is_never_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fluxrecv.yaml");
        let problem = |key_path: &str| {
            let ep = config(&format!("source: GitHub\nkey: {key_path:?}\n"));
            let (endpoint, problems) = Endpoint::build(&path, 0, &ep);
            assert!(endpoint.is_none());
            assert_eq!(problems.len(), 1, "{problems:?}");
            problems[0].to_string()
        };
        // `flux-recv keygen`'s hex, and `openssl rand -base64 32`'s alphabet.
        for secret in [
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            "q1Zr+7uX/0Pw3yJ4sK9cT2bV6mN8eA5dL0fH1gR4iE=",
        ] {
            let said = problem(secret);
            assert!(!said.contains(secret), "{said}");
            assert!(
                said.contains("looks like a key rather than a path"),
                "{said}"
            );
            assert!(
                said.contains(&format!("a value of {} characters", secret.len())),
                "{said}"
            );
        }
        // Paths are named, as ever: a file name, a short one, an absolute one.
        let absolute = dir.path().join("missing-key-file-0123456789");
        for missing in ["github.key", "github", absolute.to_str().unwrap()] {
            let said = problem(missing);
            assert!(said.contains("cannot read key file"), "{said}");
            assert!(said.contains(missing), "{said}");
        }
        // A key-like name of a file that exists is read as usual.
        std::fs::write(
            dir.path().join("0123456789abcdefABCDEF"),
            "0123456789abcdef",
        )
        .unwrap();
        let ep = config("source: GitHub\nkeyPath: 0123456789abcdefABCDEF\n");
        assert!(Endpoint::build(&path, 0, &ep).0.is_some());
    }

    #[test]
    fn a_notify_block_becomes_the_changes_it_names() {
        let path = Path::new("/etc/fluxrecv/fluxrecv.yaml");
        let notify = NotifyConfig {
            git: Some(GitNotify {
                url: "git@github.com:org/app.git".into(),
                branch: "main".into(),
            }),
            image: Some("registry.example.com/team/app".into()),
        };
        let mut problems = Vec::new();
        let changes = notify_changes(path, "endpoints[0]", &notify, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            changes,
            [
                Change::git("git@github.com:org/app.git", "main"),
                Change::image(crate::image::parse("registry.example.com/team/app").unwrap()),
            ]
        );
        for (bad, field) in [
            (
                NotifyConfig {
                    git: None,
                    image: None,
                },
                "endpoints[0].notify",
            ),
            (
                NotifyConfig {
                    git: Some(GitNotify {
                        url: "u".into(),
                        branch: " ".into(),
                    }),
                    image: None,
                },
                "endpoints[0].notify.git.branch",
            ),
            (
                NotifyConfig {
                    git: None,
                    image: Some("team/:1".into()),
                },
                "endpoints[0].notify.image",
            ),
        ] {
            let mut problems = Vec::new();
            assert!(notify_changes(path, "endpoints[0]", &bad, &mut problems).is_empty());
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(problems[0].field, field);
        }
    }
}
