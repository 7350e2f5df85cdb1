//! Flux v2's notification-controller Receivers: the provider's delivery
//! body as received, `POST`ed to the Receiver's webhook URL, signed as a
//! `generic-hmac` Receiver verifies it.
//!
//! ```yaml
//! endpoints:
//! - source: AzureDevOps
//!   keyPath: azure.key
//!   fluxReceivers:
//!   - url: http://notification-controller.flux-system.svc.cluster.local/hook/<digest>
//!     tokenPath: receiver.token   # the Receiver Secret's `token`; omit for `generic`
//!     caPath: ca.pem              # optional: the only CA an https:// URL is checked against
//! ```
//!
//! What the controller checks (`internal/server/receiver_handlers.go`): the
//! request URI, exactly, against a Receiver's `.status.webhookPath` (404
//! if none has it); the body, at most 3 MiB (413 over it); the Receiver
//! neither suspended nor not ready (503); for `generic-hmac`, `X-Signature:
//! sha256=<hex HMAC-SHA256 of the body keyed with the Secret's token>`
//! (400 if it does not match); then it asks for the reconciliation of the
//! Receiver's resources (500 if one fails). So flux-recv posts to the URL
//! as given, sends the body with its `Content-Type` (a Receiver's CEL
//! `resourceFilter` reads `req`, the provider's JSON), signs it with the
//! token file's bytes as they are (the controller does not trim the
//! token either), and never sends a body over 3 MiB.
//!
//! Its answers: 2xx took it; 408, 429, 500 and 503 (and other 5xx) may
//! succeed later; 400, 404, 413, another 4xx or a redirect never will,
//! and the reason says what to check. Its label, in metrics and logs, is
//! `flux-receiver` and the URL with the digest cut short.

use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use sha2::Sha256;

use super::{
    Answer, Body, Changes, Configured, Headers, Key, Outgoing, Target, TargetKind, VerifiedHook,
};
use crate::target_files::{self, CaFile, SecretFile};

/// The kind's name: how metrics, logs and replies name it.
pub const NAME: &str = "flux-receiver";

/// The most the controller reads of a body (its `maxRequestSizeBytes`);
/// it answers 413 to more.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// Where notification-controller serves its Receivers' webhooks.
const HOOK_PATH: &str = "/hook/";

/// The header a `generic-hmac` Receiver reads the signature from.
const SIGNATURE: HeaderName = HeaderName::from_static("x-signature");

/// One Receiver, as a table holds it: its URL, and the token and CA read
/// from their files when the table was built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluxReceiver {
    key: Key,
    label: Arc<str>,
    /// The URL with its digest cut short, as `endpoints` and log lines
    /// show it.
    shown: String,
    /// The Secret's `token`, for a `generic-hmac` Receiver.
    token: Option<SecretFile>,
    /// The only CA its certificate is checked against, if given.
    ca: Option<CaFile>,
}

impl FluxReceiver {
    /// The Receiver at `url` (already [checked](check_url)), signed with
    /// `token` if given, its certificate checked against `ca` if given.
    pub fn new(url: &str, token: Option<SecretFile>, ca: Option<CaFile>) -> FluxReceiver {
        let label = super::label(NAME, url);
        FluxReceiver {
            key: Key::new(NAME, Arc::from(url)),
            shown: label[NAME.len() + 1..].to_string(),
            label,
            token,
            ca,
        }
    }
}

impl TargetKind for FluxReceiver {
    fn key(&self) -> &Key {
        &self.key
    }

    fn label(&self) -> &Arc<str> {
        &self.label
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn shown(&self) -> &str {
        &self.shown
    }

    fn needs_body(&self) -> bool {
        true
    }

    /// One request per hook: its body as received, telling of every change
    /// the filter let through.
    fn items(&self, hook: &VerifiedHook) -> Vec<Outgoing> {
        hook.body
            .map(|body| Outgoing {
                body: body.clone(),
                changes: Changes::of(hook.changes),
            })
            .into_iter()
            .collect()
    }

    fn headers(&self, body: &Body) -> Headers {
        let mut headers: Headers = body
            .content_type
            .iter()
            .map(|t| (CONTENT_TYPE, t.clone()))
            .collect();
        if let Some(token) = &self.token {
            let signature = signature(token.secret.expose(), &body.bytes);
            let value = HeaderValue::from_str(&signature).expect("hex is a header value");
            headers.push((SIGNATURE, value));
        }
        headers
    }

    fn read(&self, status: StatusCode, headers: &HeaderMap) -> Answer {
        let said = format!("the Receiver answered {status}");
        let check = match status.as_u16() {
            200..=299 => return Answer::Accepted,
            300..=399 => return Answer::redirect(said, "the fluxReceivers url", headers),
            408 | 429 | 500..=599 => return Answer::retry_after(said, headers),
            400 => match self.token {
                Some(_) => "its token is not tokenPath's (compare with the Receiver Secret's \
                            `token`), or it is not of type generic-hmac",
                None => "it wants a signature: is it of type generic-hmac? give its Secret's \
                         token as tokenPath",
            },
            404 => "no Receiver has this webhook path; copy the url's path from the Receiver's \
                    .status.webhookPath",
            413 => "the body is over the controller's limit",
            _ => return Answer::Refused(said),
        };
        Answer::Refused(format!("{said}: {check}"))
    }

    fn dry_run(&self) -> String {
        match self.token {
            Some(_) => "POST of the delivery's body as received, with its Content-Type and \
                        X-Signature (HMAC-SHA256 with tokenPath's token)"
                .into(),
            None => "POST of the delivery's body as received, with its Content-Type, unsigned \
                     (a generic Receiver)"
                .into(),
        }
    }

    fn warnings(&self) -> Vec<String> {
        let path = self.key.url().split("://").nth(1).unwrap_or_default();
        let path = path.find('/').map_or("", |at| &path[at..]);
        if path.starts_with(HOOK_PATH) {
            return Vec::new();
        }
        vec![format!(
            "{:?}'s path does not start with {HOOK_PATH}, where notification-controller serves \
             Receivers; the controller will answer 404 (copy the path from the Receiver's \
             .status.webhookPath)",
            self.shown
        )]
    }

    fn files(&self) -> Vec<&Path> {
        let token = self.token.as_ref().map(|t| t.path.as_path());
        let ca = self.ca.as_ref().map(|c| c.path.as_path());
        token.into_iter().chain(ca).collect()
    }

    fn max_body(&self) -> Option<usize> {
        Some(MAX_BODY)
    }

    fn ca(&self) -> Option<&CaFile> {
        self.ca.as_ref()
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` keyed with `token`: what a
/// `generic-hmac` Receiver compares `X-Signature` with.
pub fn signature(token: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(token).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One `fluxReceivers:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ReceiverConfig {
    /// The Receiver's webhook URL: the controller's address and the
    /// Receiver's `.status.webhookPath`.
    pub url: String,
    /// The file holding the Receiver Secret's `token`; none for a
    /// `generic` Receiver.
    pub token_path: Option<String>,
    /// A PEM file of the CA that signs an `https://` Receiver's
    /// certificate, trusted instead of the system's roots.
    pub ca_path: Option<String>,
}

/// Check a Receiver URL: `http://` or `https://`, a host, a path, and no
/// user name, password or fragment. The message shows the URL with its
/// digest cut short.
pub fn check_url(url: &str) -> Result<(), String> {
    // A user name or password is never repeated, nor the digest whole.
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let unnamed = match rest[..end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[end..]),
        None => url.to_string(),
    };
    let shown = super::label(NAME, &crate::printable(&unnamed));
    let shown = &shown[NAME.len() + 1..];
    let example = "e.g. http://notification-controller.flux-system.svc.cluster.local/hook/<digest>";
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{shown:?} is not a URL ({e}); {example}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "{shown:?} is not an http:// or https:// URL; {example}"
        ));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{shown:?} has no host; {example}"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "{shown:?} has a user name or password, which Receivers do not take; the token \
             goes in tokenPath"
        ));
    }
    if authority.host().is_empty() {
        return Err(format!("{shown:?} has no host; {example}"));
    }
    if url.contains('#') {
        return Err(format!("{shown:?} has a fragment, which is never sent; remove it"));
    }
    if uri.path().len() <= 1 {
        return Err(format!(
            "{shown:?} has no path; add the Receiver's .status.webhookPath, {example}"
        ));
    }
    Ok(())
}

/// The Receivers an endpoint's `fluxReceivers:` names, each checked, its
/// token and CA read from `dir` (the config file's directory), with the
/// field that names it (under `field`, the endpoint's: `endpoints[3]`);
/// and what is wrong, by field.
pub fn configured(dir: &Path, field: &str, receivers: &[ReceiverConfig]) -> Configured {
    let mut found = Configured::default();
    let list = format!("{field}.fluxReceivers");
    if receivers.is_empty() {
        let message = "is an empty list; name at least one Receiver, or remove it";
        found.problem(list.clone(), message.into());
    }
    for (i, receiver) in receivers.iter().enumerate() {
        let at = format!("{list}[{i}]");
        let mut ok = true;
        if let Err(message) = check_url(&receiver.url) {
            found.problem(format!("{at}.url"), message);
            ok = false;
        } else if found.targets.iter().any(|(_, t)| **t.url() == *receiver.url) {
            found.problem(format!("{at}.url"), "is listed twice".into());
            ok = false;
        }
        let token = match receiver.token_path.as_deref().map(|v| target_files::secret(dir, v)) {
            None => None,
            Some(Ok(token)) => Some(token),
            Some(Err(problem)) => {
                found.file_problem(format!("{at}.tokenPath"), problem);
                ok = false;
                None
            }
        };
        let ca = match receiver.ca_path.as_deref().map(|v| target_files::ca(dir, v)) {
            None => None,
            Some(Ok(ca)) => Some(ca),
            Some(Err(problem)) => {
                found.file_problem(format!("{at}.caPath"), problem);
                ok = false;
                None
            }
        };
        if ok {
            let target = FluxReceiver::new(&receiver.url, token, ca);
            found.targets.push((at, Target::from(target)));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://nc.flux-system.svc/hook/0123456789abcdef0123456789abcdef";

    #[test]
    fn the_signature_is_openssls_hmac_sha256() {
        // printf 'hello, receiver' | openssl dgst -sha256 -hmac 'token-123'
        assert_eq!(
            signature(b"token-123", b"hello, receiver"),
            "sha256=17d8d891c4b4686d1a280f0816a896f73511bbacbc600f0c5e9ac7102490d45c"
        );
    }

    fn read(status: u16) -> Answer {
        let receiver = FluxReceiver::new(URL, None, None);
        receiver.read(StatusCode::from_u16(status).unwrap(), &HeaderMap::new())
    }

    #[test]
    fn the_controllers_statuses_are_classified() {
        assert_eq!(read(200), Answer::Accepted);
        for n in [408, 429, 500, 503] {
            assert!(matches!(read(n), Answer::Retry { .. }), "{n}");
        }
        for (n, says) in [
            (400, "generic-hmac"),
            (404, ".status.webhookPath"),
            (413, "limit"),
            (401, "401"),
            (302, "does not follow"),
        ] {
            let Answer::Refused(why) = read(n) else {
                panic!("{n} is refused");
            };
            assert!(why.contains(says), "{n}: {why}");
        }
    }

    #[test]
    fn urls_are_checked_and_shown_without_their_digest() {
        assert_eq!(check_url(URL), Ok(()));
        assert_eq!(check_url("https://nc.example.com/hook/x"), Ok(()));
        for bad in [
            "ftp://nc/hook/x",
            "nc/hook/x",
            "http://user:pw@nc/hook/0123456789abcdef0123",
            "http://nc",
            "http://nc/hook/x#y",
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(!e.contains("0123456789abcdef0") && !e.contains("pw@"), "{e}");
        }
        let receiver = FluxReceiver::new(URL, None, None);
        assert_eq!(receiver.shown(), "http://nc.flux-system.svc/hook/01234567…");
        assert!(receiver.warnings().is_empty());
        let elsewhere = FluxReceiver::new("http://nc/webhook/x", None, None);
        assert_eq!(elsewhere.warnings().len(), 1);
    }

    #[test]
    fn configured_receivers_read_their_files_and_name_each_problem() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "tok").unwrap();
        let config = |yaml: &str| -> Vec<ReceiverConfig> { serde_yaml::from_str(yaml).unwrap() };
        let ok = configured(
            dir.path(),
            "endpoints[1]",
            &config(&format!("[{{url: {URL}, tokenPath: t}}]")),
        );
        assert!(ok.problems.is_empty(), "{:?}", ok.problems);
        let (field, target) = &ok.targets[0];
        assert_eq!(field, "endpoints[1].fluxReceivers[0]");
        assert_eq!(target.files(), [dir.path().join("t").as_path()]);
        assert!(!format!("{target:?}").contains("tok\""));
        let bad = configured(
            dir.path(),
            "endpoints[1]",
            &config(&format!(
                "[{{url: {URL}, tokenPath: missing}}, {{url: {URL}}}, {{url: 'ftp://x/y'}}]"
            )),
        );
        assert!(bad.targets.is_empty() || bad.targets.len() == 1);
        let fields: Vec<&str> = bad.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "endpoints[1].fluxReceivers[0].tokenPath",
                "endpoints[1].fluxReceivers[2].url"
            ]
        );
        assert!(bad.problems[0].absent);
        assert_eq!(bad.problems[0].file, Some(dir.path().join("missing")));
        let empty = configured(dir.path(), "endpoints[0]", &[]);
        assert_eq!(empty.problems[0].field, "endpoints[0].fluxReceivers");
    }
}
