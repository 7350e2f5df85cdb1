//! A stand-in Argo CD: reads a push as Argo CD's `/api/webhook` does
//! (argo-cd `util/webhook/webhook.go` and `scm.go`, go-playground/webhooks
//! `github`), written from its code, not from flux-recv's.
//!
//! - The request: `X-GitHub-Event: push` (another event, or none, is 400);
//!   `X-Hub-Signature-256` is `sha256=` and the hex HMAC-SHA256 of the body
//!   keyed with `webhook.github.secret` (go-playground/webhooks 6.4, what
//!   Argo CD links today), and `X-Hub-Signature` is `sha1=` and the
//!   HMAC-SHA1 (6.2 and before, older Argo CD releases); a mismatch is 400.
//! - The body: a GitHub `PushPayload`, each field read with its Go type
//!   (a field of another type fails the whole push: 400).
//! - What it acts on: `repository.html_url` made into `GetWebURLRegex`'s
//!   regex, matched against an Application's `repoURL`; the revision,
//!   `ParseRevision(ref)`; `touchedHead`, `default_branch == revision`; the
//!   files of `commits[].added/modified/removed`; `before` and `after`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use tokio::sync::oneshot;
use warp::Filter;

/// Argo CD's `usernameRegex`.
const USERNAME: &str = r"[\w\.][\w\.-]{0,30}[\w\.\$-]?";

/// What Argo CD makes of one push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgoPush {
    pub web_url: String,
    pub revision: String,
    pub touched_head: bool,
    pub before: String,
    pub after: String,
    pub files: Vec<String>,
}

impl ArgoPush {
    /// Whether an Application whose source's `repoURL` is `repo_url` is
    /// the pushed repository's: `sourceUsesURL`.
    pub fn uses(&self, repo_url: &str) -> bool {
        web_url_regex(&self.web_url).is_match(repo_url)
    }

    /// Whether an Application tracking `target_revision` (`HEAD`, empty,
    /// a branch, a tag, `refs/heads/…`) is refreshed for this revision:
    /// `sourceRevisionHasChanged`, without semver constraints.
    pub fn refreshes(&self, target_revision: &str) -> bool {
        let target = parse_revision(target_revision);
        if target == "HEAD" || target.is_empty() {
            return self.touched_head;
        }
        self.revision == target
    }
}

/// `ParseRevision`: the last of at most three `/`-separated parts.
pub fn parse_revision(git_ref: &str) -> String {
    git_ref.splitn(3, '/').last().unwrap_or("").to_string()
}

/// `GetWebURLRegex(webURL)`: Go's `url.Parse` host (no port) and escaped
/// path (without its leading `/`), quoted, in Argo CD's pattern.
pub fn web_url_regex(web_url: &str) -> regex::Regex {
    let rest = web_url.split_once("://").map_or(web_url, |(_, r)| r);
    let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    let pattern = format!(
        r"(?i-u)^((https?|ssh)://)?({USERNAME}@)?((alt)?ssh\.)?{}(:\d+)?[:/]{}(\.git)?$",
        regex::escape(host),
        regex::escape(path)
    );
    regex::Regex::new(&pattern).expect("Argo CD's pattern compiles")
}

#[derive(Deserialize)]
struct PushPayload {
    #[serde(rename = "ref", default)]
    git_ref: String,
    #[serde(default)]
    before: String,
    #[serde(default)]
    after: String,
    #[serde(default)]
    commits: Vec<Commit>,
    #[serde(default)]
    repository: Repository,
}

#[derive(Deserialize, Default)]
struct Repository {
    #[serde(default)]
    html_url: String,
    #[serde(default)]
    default_branch: String,
}

#[derive(Deserialize)]
struct Commit {
    #[serde(default)]
    added: Option<Vec<String>>,
    #[serde(default)]
    modified: Option<Vec<String>>,
    #[serde(default)]
    removed: Option<Vec<String>>,
}

/// Read a request as Argo CD does, with `secret` as its
/// `webhook.github.secret`: what it makes of the push, or its status.
pub fn read(headers: &http::HeaderMap, body: &[u8], secret: &[u8]) -> Result<ArgoPush, u16> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header("x-github-event") != Some("push") {
        return Err(400);
    }
    let sha256 = {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    };
    let sha1 = {
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).unwrap();
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    };
    // 6.4: the -256 header, its prefix trimmed, compared with the hex.
    let v64 = header("x-hub-signature-256").map(|s| s.trim_start_matches("sha256="));
    if v64 != Some(sha256.as_str()) {
        return Err(400);
    }
    // 6.2: the legacy header, its five-byte prefix cut.
    let v62 = header("x-hub-signature").and_then(|s| s.get(5..));
    if v62 != Some(sha1.as_str()) || !header("x-hub-signature").unwrap().starts_with("sha1=") {
        return Err(400);
    }
    let payload: PushPayload = serde_json::from_slice(body).map_err(|_| 400u16)?;
    let revision = parse_revision(&payload.git_ref);
    let mut files = Vec::new();
    for commit in payload.commits {
        for list in [commit.added, commit.modified, commit.removed] {
            files.extend(list.unwrap_or_default());
        }
    }
    Ok(ArgoPush {
        touched_head: payload.repository.default_branch == revision,
        web_url: payload.repository.html_url,
        revision,
        before: payload.before,
        after: payload.after,
        files,
    })
}

/// A stand-in Argo CD API server on loopback: `POST /api/webhook`, read
/// with [`read`], answered as [`FakeArgoCd::answer`] says (200 by default,
/// 400 for a push it cannot read, as Argo CD answers).
pub struct FakeArgoCd {
    pub addr: SocketAddr,
    /// Each push read, in order of arrival.
    pub pushes: Arc<Mutex<Vec<ArgoPush>>>,
    /// Each status answered, in order.
    pub answered: Arc<Mutex<Vec<u16>>>,
    /// The status to answer a push it reads with.
    pub answer: Arc<Mutex<u16>>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeArgoCd {
    pub async fn start(secret: &[u8]) -> FakeArgoCd {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pushes = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let answer = Arc::new(Mutex::new(200u16));
        let (p, a, s) = (pushes.clone(), answered.clone(), answer.clone());
        let secret = secret.to_vec();
        let webhook = warp::path!("api" / "webhook")
            .and(warp::post())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(move |headers: http::HeaderMap, body: bytes::Bytes| {
                let status = match read(&headers, &body, &secret) {
                    Ok(push) => {
                        let status = *s.lock().unwrap();
                        if status == 200 {
                            p.lock().unwrap().push(push);
                        }
                        status
                    }
                    Err(status) => status,
                };
                a.lock().unwrap().push(status);
                warp::reply::with_status("", warp::http::StatusCode::from_u16(status).unwrap())
            });
        let stop = super::serve(webhook, listener);
        FakeArgoCd {
            addr,
            pushes,
            answered,
            answer,
            stop: Some(stop),
        }
    }

    /// The webhook URL.
    pub fn url(&self) -> String {
        format!("http://{}/api/webhook", self.addr)
    }

    /// Answer pushes it reads with `status` from now on.
    pub fn answer(&self, status: u16) {
        *self.answer.lock().unwrap() = status;
    }

    /// Take the pushes read so far.
    pub fn take(&self) -> Vec<ArgoPush> {
        std::mem::take(&mut *self.pushes.lock().unwrap())
    }

    /// The statuses answered so far.
    pub fn answered(&self) -> Vec<u16> {
        self.answered.lock().unwrap().clone()
    }
}

impl Drop for FakeArgoCd {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}
