//! Argo CD's webhook, `POST /api/webhook`: each verified git change sent as
//! the GitHub `push` event Argo CD reads, signed with Argo CD's
//! `webhook.github.secret`.
//!
//! ```yaml
//! endpoints:
//! - source: GitLab
//!   keyPath: gitlab.key
//!   argocd:
//!   - url: https://argocd-server.argocd.svc.cluster.local/api/webhook
//!     secretPath: argocd-webhook.secret    # Argo CD's webhook.github.secret
//!     caPath: argocd-ca.pem                # optional, for https
//! ```
//!
//! Argo CD refreshes the Applications whose `repoURL` its regex built from
//! `repository.html_url` matches (scheme, user and port aside, host and
//! path with or without `.git`, `/` or `:` before the path), whose target
//! revision is the pushed ref's name (`ref` without `refs/heads/` or
//! `refs/tags/`; an Application tracking `HEAD` when it is
//! `repository.default_branch`), and, for those with a
//! `manifest-generate-paths` annotation, where one of the files listed in
//! `commits[].added/modified/removed` is under those paths (or where none
//! is listed). It moves its manifest cache from `before` to `after`.
//!
//! From a GitHub delivery, the delivery's own body is sent, re-signed (up
//! to [`MAX_SENT_AS_RECEIVED`]; a larger one as a built push); from any
//! other source, a push built from what the source read
//! ([`crate::push::Push`]): `ref`, `before` and `after`, the repository's
//! `html_url` (its https clone URL without `.git`, so that Bitbucket
//! Server's `/scm/` path is kept; else its web page; else its ssh URL's
//! host and path) and `default_branch`, and one commit listing the files,
//! each only where the source told it. One push per distinct push told,
//! so the ssh and https URLs fluxd is told of separately make one.
//!
//! Signatures: `X-Hub-Signature-256` (HMAC-SHA256, what Argo CD reads) and
//! `X-Hub-Signature` (HMAC-SHA1, what releases before go-playground/webhooks
//! 6.4 read), keyed with the secret file's bytes as they are, made at each
//! attempt with the newest secret. `X-GitHub-Delivery` is a UUID made from
//! the body, the same at every attempt.
//!
//! Argo CD's answers: 200 took it (it queues the push for its own
//! workers); 400 (a signature that does not match, a body it cannot parse,
//! an event it does not know) never will; 503 (its queue is full), 408,
//! 429 and other 5xx may succeed later; a redirect is not followed.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{
    Answer, Body, Changes, Configured, Headers, Key, Outgoing, Target, TargetKind, VerifiedHook,
};
use crate::notification::{split_url, Change};
use crate::push::{Push, Repository};
use crate::source::verify::{sign, Algorithm};
use crate::target_files::{self, CaFile, SecretFile};

/// The kind's name.
const NAME: &str = "argocd";

/// Largest GitHub delivery sent on as received: a larger one is sent as
/// the push built from what was read (the same ref, URLs, SHAs and files),
/// so that what the queue holds per push stays small whatever the
/// provider sent (a built push is at most about 17 KiB, its files
/// included: [`crate::push::MAX_FILES_BYTES`]).
pub const MAX_SENT_AS_RECEIVED: usize = 64 * 1024;

/// Where Argo CD's API server takes webhooks.
const WEBHOOK_PATH: &str = "/api/webhook";

/// `argocd:` on an endpoint: a list of these.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ArgoCdConfig {
    /// Argo CD's webhook URL, `…/api/webhook`.
    pub url: String,
    /// The file holding Argo CD's `webhook.github.secret`, relative to the
    /// config file's directory or absolute.
    pub secret_path: String,
    /// For an `https://` URL: the PEM file of the CA that signed Argo CD's
    /// certificate, if not one the system trusts (Argo CD's own,
    /// self-signed `argocd-secret` certificate).
    pub ca_path: Option<String>,
}

/// One Argo CD webhook, as a table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgoCd {
    /// Where pushes are POSTed; what `endpoints` shows.
    key: Key,
    /// `argocd <url>`: its metric label and log name.
    label: Arc<str>,
    /// Argo CD's `webhook.github.secret`, as read from the secret file.
    secret: SecretFile,
    /// The only CAs its certificate is checked against, if `caPath` names
    /// some.
    ca: Option<CaFile>,
    /// Whether the endpoint's source is GitHub, whose deliveries Argo CD
    /// reads as they are: the body is sent on, re-signed.
    sends_body: bool,
}

impl ArgoCd {
    /// The webhook at `url` (already [checked](check_url)), signing with
    /// `secret`, its certificate checked against `ca` if given;
    /// `sends_body` for a GitHub endpoint.
    pub fn new(url: &str, secret: SecretFile, ca: Option<CaFile>, sends_body: bool) -> ArgoCd {
        ArgoCd {
            key: Key::new(NAME, Arc::from(url)),
            label: super::label(NAME, url),
            secret,
            ca,
            sends_body,
        }
    }
}

impl TargetKind for ArgoCd {
    fn key(&self) -> &Key {
        &self.key
    }

    fn label(&self) -> &Arc<str> {
        &self.label
    }

    fn name(&self) -> &'static str {
        "Argo CD"
    }

    fn shown(&self) -> &str {
        self.key.url()
    }

    fn needs_body(&self) -> bool {
        self.sends_body
    }

    fn files(&self) -> Vec<&Path> {
        let ca = self.ca.iter().map(|ca| ca.path.as_path());
        std::iter::once(self.secret.path.as_path()).chain(ca).collect()
    }

    fn ca(&self) -> Option<&CaFile> {
        self.ca.as_ref()
    }

    fn items(&self, hook: &VerifiedHook) -> Vec<Outgoing> {
        let git: Vec<&Change> = hook
            .changes
            .iter()
            .filter(|c| matches!(c, Change::Git(_)))
            .collect();
        if git.is_empty() {
            return Vec::new();
        }
        let as_received = |b: &&Body| {
            self.sends_body && is_json(b) && b.bytes.len() <= MAX_SENT_AS_RECEIVED
        };
        if let Some(body) = hook.body.filter(as_received) {
            let changes: Vec<Change> = git.into_iter().cloned().collect();
            return vec![Outgoing {
                body: Body {
                    bytes: body.bytes.clone(),
                    content_type: Some(HeaderValue::from_static("application/json")),
                },
                changes: Changes::of(&changes),
            }];
        }
        let mut pushes: Vec<(Push, Vec<Change>)> = Vec::new();
        for change in git {
            let push = told(change);
            match pushes.iter_mut().find(|(p, _)| *p == push) {
                Some((_, changes)) => changes.push(change.clone()),
                None => pushes.push((push, vec![change.clone()])),
            }
        }
        pushes
            .into_iter()
            .map(|(push, changes)| Outgoing {
                body: Body {
                    bytes: Bytes::from(github_push(&push)),
                    content_type: Some(HeaderValue::from_static("application/json")),
                },
                changes: Changes::of(&changes),
            })
            .collect()
    }

    fn headers(&self, body: &Body) -> Headers {
        let key = self.secret.secret.expose();
        let value = |v: String| HeaderValue::try_from(v).expect("hex and ASCII");
        let mut headers: Headers = body
            .content_type
            .iter()
            .map(|t| (CONTENT_TYPE, t.clone()))
            .collect();
        headers.extend([
            (
                HeaderName::from_static("x-github-event"),
                HeaderValue::from_static("push"),
            ),
            (
                HeaderName::from_static("x-github-delivery"),
                value(delivery_id(&body.bytes)),
            ),
            (
                HeaderName::from_static("x-hub-signature-256"),
                value(sign(Algorithm::Sha256, key, &body.bytes)),
            ),
            (
                HeaderName::from_static("x-hub-signature"),
                value(sign(Algorithm::Sha1, key, &body.bytes)),
            ),
        ]);
        headers
    }

    fn read(&self, status: StatusCode, headers: &HeaderMap) -> Answer {
        let said = || format!("Argo CD answered {status}");
        match status.as_u16() {
            200..=299 => Answer::Accepted,
            300..=399 => Answer::redirect(said(), "the argocd url", headers),
            400 => Answer::Refused(format!(
                "{}: it found the signature wrong or could not read the push; check that \
                 secretPath holds Argo CD's webhook.github.secret",
                said()
            )),
            408 | 429 | 500..=599 => Answer::retry_after(said(), headers),
            _ => Answer::Refused(said()),
        }
    }

    /// A URL whose path is not `/api/webhook`: Argo CD serves its UI
    /// there, and answers 200 with a web page to every push.
    fn warnings(&self) -> Vec<String> {
        let path = split_url(self.key.url()).map_or("", |(_, path)| path);
        if path.trim_end_matches('/').ends_with(WEBHOOK_PATH) {
            return Vec::new();
        }
        vec![format!(
            "{:?} does not end in {WEBHOOK_PATH}, where Argo CD takes webhooks; Argo CD serves \
             its web UI elsewhere and would take each push without acting on it (e.g. \
             http://argocd-server.argocd.svc.cluster.local{WEBHOOK_PATH})",
            &**self.key.url()
        )]
    }
}

/// Whether `body` is JSON, which Argo CD reads; GitHub's form-encoded
/// deliveries are not, and are sent as a push built from what was read.
fn is_json(body: &Body) -> bool {
    let media = body.content_type.as_ref().and_then(|t| t.to_str().ok());
    let media = media.unwrap_or("").split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json")
}

/// What `change`'s push told, or, where its source told nothing (a
/// `notify:` block), the push its URL and branch make.
fn told(change: &Change) -> Push {
    match change {
        Change::Git(g) => match g.told.get() {
            Some(push) => Push::clone(push),
            None => {
                let repository = Repository::default().with_clone_url(Some(&g.url));
                Push::of_ref(&g.branch).to(&Arc::new(repository))
            }
        },
        Change::Image(_) => Push::default(),
    }
}

/// The GitHub push event Argo CD reads for `push`, as JSON.
pub fn github_push(push: &Push) -> Vec<u8> {
    let mut repository = Map::new();
    if let Some(url) = html_url(push) {
        repository.insert("html_url".into(), url.into());
    }
    if let Some(branch) = &push.repository.default_branch {
        repository.insert("default_branch".into(), branch.as_str().into());
    }
    let mut body = Map::new();
    body.insert("ref".into(), push.git_ref.as_str().into());
    for (field, sha) in [("before", &push.before), ("after", &push.after)] {
        if let Some(sha) = sha {
            body.insert(field.into(), sha.as_str().into());
        }
    }
    body.insert("repository".into(), Value::Object(repository));
    if let Some(files) = &push.files {
        let mut commit = json!({
            "added": files.added,
            "modified": files.modified,
            "removed": files.removed,
        });
        if let Some(after) = &push.after {
            commit["id"] = after.as_str().into();
        }
        body.insert("commits".into(), json!([commit]));
    }
    serde_json::to_vec(&Value::Object(body)).expect("JSON values always serialise")
}

/// The `repository.html_url` Argo CD builds its regex from: the https
/// clone URL without `.git` and user, else the web page, else the first
/// clone URL's host and path, as `https://host/path`.
pub fn html_url(push: &Push) -> Option<String> {
    let repository = &push.repository;
    let web = |url: &str| {
        let (host, path) = host_and_path(url)?;
        let host = host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        });
        let path = path.trim_start_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        Some((host.to_string(), path.to_string()))
    };
    let https = repository.clone_urls.iter().find(|u| u.starts_with("http"));
    if let Some((host, path)) = https.and_then(|u| web(u)) {
        let scheme = https.and_then(|u| u.split_once("://")).map_or("https", |(s, _)| s);
        return Some(format!("{scheme}://{host}/{path}"));
    }
    if let Some(url) = &repository.web_url {
        return Some(url.clone());
    }
    let (host, path) = repository.clone_urls.first().and_then(|u| web(u))?;
    Some(format!("https://{host}/{path}"))
}

/// The host (with port, without user) and path of a URL or scp-like
/// address (`[user@]host:path`).
fn host_and_path(url: &str) -> Option<(&str, &str)> {
    if url.contains("://") {
        return split_url(url);
    }
    let (authority, path) = url.split_once(':')?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then_some((host, path))
}

/// A UUID-shaped id made from `body`: one delivery id per push, the same
/// at each attempt.
fn delivery_id(body: &[u8]) -> String {
    let hash = hex::encode(&Sha256::digest(body)[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &hash[..8],
        &hash[8..12],
        &hash[12..16],
        &hash[16..20],
        &hash[20..32]
    )
}

/// Check a webhook URL and return it as given: `http://` or `https://`
/// (checked against the system's roots, or the CAs of `caPath`), with a
/// host, and without credentials or a query string, which Argo CD's
/// webhook does not take.
pub fn check_url(url: &str) -> Result<String, String> {
    let example = format!("e.g. http://argocd-server.argocd.svc.cluster.local{WEBHOOK_PATH}");
    let uri: http::Uri = url.parse().map_err(|e| {
        let shown = crate::printable(url);
        format!("{shown:?} is not a URL ({e}); give Argo CD's webhook URL, {example}")
    })?;
    let Some(authority) = uri.authority() else {
        return Err(format!("{:?} has no host, {example}", crate::printable(url)));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "the URL has a user name or password, which Argo CD's webhook does not take (it \
             checks the signature); remove it, {example}"
        ));
    }
    let shown = crate::printable(url);
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!("{shown:?} is not an http:// or https:// URL, {example}"));
    }
    if authority.host().is_empty() {
        return Err(format!("{shown:?} has no host, {example}"));
    }
    if uri.query().is_some() {
        return Err(format!("{shown:?} has a query string, {example}"));
    }
    Ok(url.to_string())
}

/// The Argo CD webhooks an endpoint's `argocd:` names, each checked, with
/// the field that names it (under `field`, the endpoint's: `endpoints[3]`),
/// and what is wrong; their files (`secretPath`, `caPath`) read from `dir`,
/// the config file's directory. `sends_body` for a GitHub endpoint.
pub fn configured(dir: &Path, field: &str, list: &[ArgoCdConfig], sends_body: bool) -> Configured {
    let mut found = Configured::default();
    if list.is_empty() {
        let message = "is an empty list; name at least one Argo CD webhook, or remove it";
        found.problem(format!("{field}.argocd"), message.to_string());
    }
    for (i, config) in list.iter().enumerate() {
        let at = format!("{field}.argocd[{i}]");
        let url = match check_url(&config.url) {
            Ok(url) if found.targets.iter().any(|(_, t)| t.to_string() == url) => {
                found.problem(format!("{at}.url"), "is listed twice".to_string());
                continue;
            }
            Ok(url) => url,
            Err(message) => {
                found.problem(format!("{at}.url"), message);
                continue;
            }
        };
        let ca = match &config.ca_path {
            Some(_) if !url.starts_with("https://") => {
                let message = "is for an https:// url; remove it, or give the https URL";
                found.problem(format!("{at}.caPath"), message.to_string());
                continue;
            }
            Some(path) => match target_files::ca(dir, path) {
                Ok(ca) => Some(ca),
                Err(problem) => {
                    found.file_problem(format!("{at}.caPath"), problem);
                    continue;
                }
            },
            None => None,
        };
        match target_files::secret(dir, &config.secret_path) {
            Ok(secret) => {
                let target = ArgoCd::new(&url, secret, ca, sends_body);
                found.targets.push((at, Target::from(target)));
            }
            Err(problem) => found.file_problem(format!("{at}.secretPath"), problem),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::push::Files;

    const URL: &str = "http://argocd-server.argocd/api/webhook";

    fn secret(bytes: &[u8]) -> SecretFile {
        SecretFile {
            path: "argocd.secret".into(),
            secret: crate::source::Secret::new(bytes.to_vec()),
        }
    }

    fn argocd(sends_body: bool) -> Target {
        Target::from(ArgoCd::new(URL, secret(b"s3cret"), None, sends_body))
    }

    fn push() -> Push {
        let repository = Repository {
            web_url: Some("https://git.example.org/team/app".into()),
            default_branch: Some("main".into()),
            ..Repository::default()
        }
        .with_clone_url(Some("ssh://git@git.example.org:2222/team/app.git"))
        .with_clone_url(Some("https://user@git.example.org:8443/team/app.git"));
        Push {
            before: Some("b".repeat(40)),
            after: Some("a".repeat(40)),
            files: Some(Files {
                added: vec!["new.yaml".into()],
                modified: vec!["app/deploy.yaml".into()],
                removed: vec![],
            }),
            ..Push::of_ref("refs/heads/main")
        }
        .to(&Arc::new(repository))
    }

    #[test]
    fn a_push_is_built_from_what_was_told_and_nothing_else() {
        let body: Value = serde_json::from_slice(&github_push(&push())).unwrap();
        assert_eq!(
            body,
            json!({
                "ref": "refs/heads/main",
                "before": "b".repeat(40),
                "after": "a".repeat(40),
                "repository": {
                    "html_url": "https://git.example.org/team/app",
                    "default_branch": "main",
                },
                "commits": [{
                    "id": "a".repeat(40),
                    "added": ["new.yaml"],
                    "modified": ["app/deploy.yaml"],
                    "removed": [],
                }],
            })
        );
        let repository = Repository::default().with_clone_url(Some("git@host:org/app.git"));
        let bare = Push::of_ref("dev").to(&Arc::new(repository));
        let body: Value = serde_json::from_slice(&github_push(&bare)).unwrap();
        assert_eq!(
            body,
            json!({"ref": "refs/heads/dev", "repository": {"html_url": "https://host/org/app"}})
        );
    }

    #[test]
    fn the_html_url_is_the_https_clone_url_else_the_web_page_else_the_ssh_host_and_path() {
        let of = |urls: &[&str], web: Option<&str>| {
            let mut repository = Repository::default();
            for url in urls {
                repository = repository.with_clone_url(Some(url));
            }
            repository.web_url = web.map(String::from);
            html_url(&Push::of_ref("main").to(&Arc::new(repository)))
        };
        let bb = "https://bitbucket.example.com/scm/proj/repo.git";
        let browse = "https://bitbucket.example.com/projects/PROJ/repos/repo/browse";
        assert_eq!(
            of(&[bb], Some(browse)).as_deref(),
            Some("https://bitbucket.example.com/scm/proj/repo")
        );
        assert_eq!(
            of(&["git@bitbucket.org:a/b.git"], Some("https://bitbucket.org/a/b")).as_deref(),
            Some("https://bitbucket.org/a/b")
        );
        assert_eq!(
            of(&["ssh://git@h:2222/a/b.git"], None).as_deref(),
            Some("https://h/a/b")
        );
        assert_eq!(
            of(&["http://gogs.example.com:3000/ops/cfg.git"], None).as_deref(),
            Some("http://gogs.example.com/ops/cfg")
        );
        assert_eq!(of(&[], None), None);
    }

    #[test]
    fn pushes_are_signed_with_both_algorithms_and_keep_their_id() {
        let target = argocd(false);
        let change = Change::git("git@h:a/b.git", "main").told(&Arc::new(push()));
        let https = Change::git("https://h/a/b.git", "main").told(&Arc::new(push()));
        let items = target.items(&VerifiedHook {
            changes: &[change.clone(), https.clone()],
            body: None,
        });
        assert_eq!(items.len(), 1, "one push for the URLs of one ref");
        assert_eq!(items[0].changes.as_slice(), [change, https]);
        let body = &items[0].body;
        let headers = target.headers(body);
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_str().unwrap().to_string())
        };
        assert_eq!(get("x-github-event").as_deref(), Some("push"));
        assert_eq!(get("content-type").as_deref(), Some("application/json"));
        assert_eq!(
            get("x-hub-signature-256"),
            Some(sign(Algorithm::Sha256, b"s3cret", &body.bytes))
        );
        assert_eq!(
            get("x-hub-signature"),
            Some(sign(Algorithm::Sha1, b"s3cret", &body.bytes))
        );
        let id = get("x-github-delivery").unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(target.headers(body), headers, "the same at each attempt");
    }

    #[test]
    fn a_github_delivery_is_sent_as_received_unless_it_is_a_form() {
        let change = Change::git("git@h:a/b.git", "main").told(&Arc::new(push()));
        let json_body = Body {
            bytes: Bytes::from_static(br#"{"ref":"refs/heads/main","zen":1}"#),
            content_type: Some(HeaderValue::from_static("application/json; charset=utf-8")),
        };
        let hook = VerifiedHook {
            changes: std::slice::from_ref(&change),
            body: Some(&json_body),
        };
        let target = argocd(true);
        assert!(target.needs_body());
        let items = target.items(&hook);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].body.bytes, json_body.bytes);
        let form = Body {
            content_type: Some(HeaderValue::from_static(
                "application/x-www-form-urlencoded",
            )),
            ..json_body.clone()
        };
        let items = target.items(&VerifiedHook {
            body: Some(&form),
            ..hook
        });
        assert_eq!(&items[0].body.bytes[..], &github_push(&push())[..]);
        // As a larger delivery is.
        let large = Body {
            bytes: Bytes::from(vec![b' '; MAX_SENT_AS_RECEIVED + 1]),
            ..json_body.clone()
        };
        let items = target.items(&VerifiedHook {
            body: Some(&large),
            ..hook
        });
        assert_eq!(&items[0].body.bytes[..], &github_push(&push())[..]);
        // An image change (a GitHub package) is not Argo CD's.
        let image = Change::image(crate::notification::ImageName {
            domain: "ghcr.io".into(),
            image: "a/b".into(),
        });
        let hook = VerifiedHook {
            changes: std::slice::from_ref(&image),
            body: Some(&json_body),
        };
        assert!(target.items(&hook).is_empty());
        assert!(!argocd(false).needs_body());
    }

    #[test]
    fn answers_are_classified() {
        let read = |n: u16| argocd(false).read(StatusCode::from_u16(n).unwrap(), &HeaderMap::new());
        assert_eq!(read(200), Answer::Accepted);
        for n in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(read(n), Answer::Retry { .. }), "{n}");
        }
        let Answer::Refused(why) = read(400) else {
            panic!("400 is refused")
        };
        assert!(why.contains("webhook.github.secret"), "{why}");
        for n in [301, 401, 403, 404, 405, 413] {
            assert!(matches!(read(n), Answer::Refused(_)), "{n}");
        }
    }

    #[test]
    fn urls_are_checked_and_named_by_field() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "k").unwrap();
        let list = |urls: &[&str], secret: &str| -> Vec<ArgoCdConfig> {
            urls.iter()
                .map(|u| ArgoCdConfig {
                    url: u.to_string(),
                    secret_path: secret.into(),
                    ca_path: None,
                })
                .collect()
        };
        let fields = |found: &Configured| -> Vec<String> {
            found.problems.iter().map(|p| p.field.clone()).collect()
        };
        let https = "https://argocd.example/api/webhook";
        let found = configured(dir.path(), "endpoints[0]", &list(&[URL, URL, https], "s"), false);
        let named: Vec<&str> = found.targets.iter().map(|(at, _)| at.as_str()).collect();
        assert_eq!(named, ["endpoints[0].argocd[0]", "endpoints[0].argocd[2]"]);
        assert_eq!(fields(&found), ["endpoints[0].argocd[1].url"]);
        assert_eq!(found.problems[0].message, "is listed twice");
        for bad in [
            "argocd/api/webhook",
            "ftp://argocd/api/webhook",
            "http://user:pw@argocd/api/webhook",
            "http://argocd/api/webhook?x=1",
        ] {
            let found = configured(dir.path(), "e", &list(&[bad], "s"), false);
            assert!(found.targets.is_empty(), "{bad}");
            assert!(!found.problems[0].message.contains("pw"), "{:?}", found.problems);
        }
        let found = configured(dir.path(), "e", &list(&[URL], "missing"), false);
        assert_eq!(fields(&found), ["e.argocd[0].secretPath"]);
        assert!(found.problems[0].absent);
        let found = configured(dir.path(), "e", &[], false);
        assert_eq!(fields(&found), ["e.argocd"]);
        // A CA is for https.
        let mut with_ca = list(&[URL], "s");
        with_ca[0].ca_path = Some("ca.pem".into());
        let found = configured(dir.path(), "e", &with_ca, false);
        assert_eq!(fields(&found), ["e.argocd[0].caPath"]);
        let ui = Target::from(ArgoCd::new("http://argocd/", secret(b""), None, false));
        assert_eq!(ui.warnings().len(), 1);
        assert!(argocd(false).warnings().is_empty());
        assert_eq!(argocd(false).label().as_ref(), format!("argocd {URL}"));
        assert_eq!(argocd(false).files(), [Path::new("argocd.secret")]);
    }
}
