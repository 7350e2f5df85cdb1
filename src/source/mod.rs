//! Webhook sources: one file per provider, each a plain function.
//!
//! A source takes the request's headers and raw body plus the endpoint's
//! settings, verifies the request the way that provider signs it, parses the
//! payload, and says what to do: notify fluxd of some changes, acknowledge
//! and do nothing, or refuse with a typed error that carries its status.
//! Sources never touch the network, the HTTP server or the endpoint table.
//!
//! To add a provider: add a file here with a `handle` function, a variant to
//! [`Source`], and a line in each of its `match`es.

use http::HeaderMap;

use crate::notification::Change;

mod bitbucket_cloud;
mod bitbucket_server;
mod dockerhub;
mod gcr;
mod github;
mod gitlab;
mod harbor;
mod nexus;
mod quay;
pub mod verify;

/// The providers flux-recv understands, spelt as in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// GitHub push webhooks, HMAC-signed.
    GitHub,
    /// GitLab push hooks, with a secret token.
    GitLab,
    /// Bitbucket Cloud push webhooks (unsigned).
    BitbucketCloud,
    /// Bitbucket Server / Data Center `repo:refs_changed`, HMAC-signed.
    BitbucketServer,
    /// Docker Hub repository webhooks (unsigned).
    DockerHub,
    /// Quay.io repository notifications (unsigned).
    Quay,
    /// Harbor push events, with an `Authorization` secret.
    Harbor,
    /// Sonatype Nexus repository component events, HMAC-SHA1-signed.
    Nexus,
    /// Google Container Registry via a Pub/Sub push subscription.
    GoogleContainerRegistry,
}

impl Source {
    /// Every source, in the order the documentation lists them.
    pub const ALL: [Source; 9] = [
        Source::GitHub,
        Source::GitLab,
        Source::BitbucketCloud,
        Source::BitbucketServer,
        Source::DockerHub,
        Source::Quay,
        Source::Harbor,
        Source::Nexus,
        Source::GoogleContainerRegistry,
    ];

    /// The name used in the config file's `source:` field.
    pub fn name(self) -> &'static str {
        match self {
            Source::GitHub => "GitHub",
            Source::GitLab => "GitLab",
            Source::BitbucketCloud => "BitbucketCloud",
            Source::BitbucketServer => "BitbucketServer",
            Source::DockerHub => "DockerHub",
            Source::Quay => "Quay",
            Source::Harbor => "Harbor",
            Source::Nexus => "Nexus",
            Source::GoogleContainerRegistry => "GoogleContainerRegistry",
        }
    }

    /// Look a source up by its config-file name (exact spelling, as the Go
    /// original required).
    pub fn from_name(name: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the provider proves who sent a request. For those that do not
    /// (Docker Hub, Quay, Bitbucket Cloud, GCR without a `gcr:` block), the
    /// unguessable hook URL is the only protection. GCR proves it only when
    /// the endpoint has a `gcr:` block, which this cannot see; ask
    /// [`crate::table::Endpoint::verifies_sender`] about an endpoint.
    pub fn verifies_sender(self) -> bool {
        !matches!(
            self,
            Source::BitbucketCloud
                | Source::DockerHub
                | Source::Quay
                | Source::GoogleContainerRegistry
        )
    }

    /// Verify and parse one delivery.
    pub fn handle(self, headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
        let outcome = match self {
            Source::GitHub => github::handle(headers, body, settings),
            Source::GitLab => gitlab::handle(headers, body, settings),
            Source::BitbucketCloud => bitbucket_cloud::handle(headers, body, settings),
            Source::BitbucketServer => bitbucket_server::handle(headers, body, settings),
            Source::DockerHub => dockerhub::handle(headers, body, settings),
            Source::Quay => quay::handle(headers, body, settings),
            Source::Harbor => harbor::handle(headers, body, settings),
            Source::Nexus => nexus::handle(headers, body, settings),
            Source::GoogleContainerRegistry => gcr::handle(headers, body, settings),
        }?;
        if let Outcome::Notify(changes) = &outcome {
            changes.iter().try_for_each(check_lengths)?;
        }
        Ok(outcome)
    }
}

/// Longest URL, branch or image name relayed. Real ones are far shorter
/// (Docker caps repository names at 255); anything longer is junk that
/// fluxd should not be asked to look for.
pub const MAX_FIELD: usize = 1024;

fn check_lengths(change: &Change) -> Result<(), HookError> {
    let fields: [(&str, &str); 2] = match change {
        Change::Git(g) => [("repository URL", &g.url), ("branch", &g.branch)],
        Change::Image(i) => [
            ("image domain", &i.name.domain),
            ("image name", &i.name.image),
        ],
    };
    match fields.iter().find(|(_, v)| v.len() > MAX_FIELD) {
        Some((what, _)) => Err(HookError::BadPayload(format!(
            "the {what} is longer than {MAX_FIELD} bytes"
        ))),
        None => Ok(()),
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What an endpoint knows besides its source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The shared secret, verbatim from the key file.
    pub key: Secret,
    /// Nexus: the registry host its payloads leave out. Also part of the
    /// fingerprint for every source, as in the Go original.
    pub registry_host: Option<String>,
    /// GoogleContainerRegistry: whose signed token each push must carry.
    /// Checked before the source runs (see [`crate::jwks`]), because it
    /// needs Google's published keys, which sources never fetch.
    pub gcr: Option<crate::config::GcrAuth>,
}

/// Key bytes. Debug never shows them, so a stray `{:?}` cannot leak a secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// Wrap the bytes read from a key file.
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(bytes)
    }

    /// The secret's bytes, for signing and comparing only.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// A verified, understood delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Tell fluxd about these changes, in this order.
    Notify(Vec<Change>),
    /// A genuine delivery that needs no action (GitHub's ping, a non-push
    /// event, a GCR delete); the text says why, for the log and the reply.
    Ignore(String),
}

/// What a source returns.
pub type HookResult = Result<Outcome, HookError>;

/// Why a delivery was refused. Nothing is sent to fluxd for any of these.
///
/// Values that come from the request are passed through [`crate::printable`]
/// first, so they are short and cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The header that should carry the signature or token is absent.
    #[error("missing {0} header")]
    Unsigned(&'static str),
    /// The signature or token is present but wrong (or uses an algorithm
    /// we do not accept).
    #[error("{0} does not match")]
    BadSignature(&'static str),
    /// The header naming the event is absent.
    #[error("missing {0} header")]
    MissingEvent(&'static str),
    /// An event this source does not act on.
    #[error("unexpected event {value:?} in {field}")]
    WrongEvent {
        /// Header or payload field the event came from.
        field: &'static str,
        /// What it said.
        value: String,
    },
    /// The body is not the JSON (or form) the provider documents, or lacks a
    /// field we need.
    #[error("bad payload: {0}")]
    BadPayload(String),
}

impl HookError {
    /// 401 for anything that fails verification, 400 for the rest.
    pub fn status(&self) -> u16 {
        match self {
            HookError::Unsigned(_) | HookError::BadSignature(_) => 401,
            HookError::MissingEvent(_)
            | HookError::WrongEvent { .. }
            | HookError::BadPayload(_) => 400,
        }
    }

    /// An unexpected event, its value made safe to print.
    pub fn wrong_event(field: &'static str, value: &str) -> HookError {
        HookError::WrongEvent {
            field,
            value: crate::printable(value),
        }
    }
}

impl From<crate::image::ImageError> for HookError {
    fn from(e: crate::image::ImageError) -> HookError {
        HookError::BadPayload(e.to_string())
    }
}

/// A header's value as text, if it is present and valid UTF-8.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The media type of `Content-Type`, lowercased and without parameters:
/// `application/json; charset=UTF-8` is `application/json`.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = header(headers, "content-type")?;
    let essence = value.split(';').next().unwrap_or("").trim();
    Some(essence.to_ascii_lowercase())
}

/// Deserialize the JSON value at the start of a payload, turning serde's
/// error into a short 400.
///
/// Like Go's `json.Decoder`, which the original used, bytes after the first
/// complete value are ignored: the GCR fixture from the original's own tests
/// has a stray `}` at the end and must be accepted. The signature, where
/// there is one, still covers the whole body.
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HookError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    T::deserialize(&mut de).map_err(|e| HookError::BadPayload(crate::printable(&e.to_string())))
}

/// A field the payload must have: `None` or empty becomes a 400 naming it.
pub fn required(value: Option<String>, field: &str) -> Result<String, HookError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(HookError::BadPayload(format!("{field} is missing"))),
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the per-source unit tests.
    use super::*;

    /// Headers from `(name, value)` pairs.
    pub fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::header::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// Settings with this key and no registry host.
    pub fn settings(key: &[u8]) -> Settings {
        Settings {
            key: Secret::new(key.to_vec()),
            registry_host: None,
            gcr: None,
        }
    }

    /// The outcome of one image push.
    pub fn image(domain: &str, image: &str) -> Outcome {
        Outcome::Notify(vec![Change::image(crate::notification::ImageName {
            domain: domain.into(),
            image: image.into(),
        })])
    }

    /// A fixture from `testdata/`.
    pub fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Source::ALL {
            assert_eq!(Source::from_name(s.name()), Some(s));
        }
        assert_eq!(Source::from_name("github"), None);
    }

    #[test]
    fn media_type_ignores_parameters_and_case() {
        let h = testing::headers(&[("Content-Type", "Application/JSON; charset=UTF-8")]);
        assert_eq!(media_type(&h).as_deref(), Some("application/json"));
        assert_eq!(media_type(&HeaderMap::new()), None);
    }

    #[test]
    fn overlong_fields_are_refused_whatever_the_source() {
        let long = "a".repeat(MAX_FIELD + 1);
        let body = format!(r#"{{"repository":{{"repo_name":"org/{long}"}}}}"#);
        let e = Source::DockerHub
            .handle(&HeaderMap::new(), body.as_bytes(), &testing::settings(b"k"))
            .unwrap_err();
        assert_eq!(
            e,
            HookError::BadPayload(format!("the image name is longer than {MAX_FIELD} bytes"))
        );
        let ok = format!(
            r#"{{"repository":{{"repo_name":"org/{}"}}}}"#,
            &long[..MAX_FIELD - 4]
        );
        assert!(Source::DockerHub
            .handle(&HeaderMap::new(), ok.as_bytes(), &testing::settings(b"k"))
            .is_ok());
    }

    #[test]
    fn statuses() {
        assert_eq!(HookError::Unsigned("X").status(), 401);
        assert_eq!(HookError::BadSignature("X").status(), 401);
        assert_eq!(HookError::MissingEvent("X").status(), 400);
        assert_eq!(HookError::wrong_event("X", "y").status(), 400);
        assert_eq!(HookError::BadPayload("x".into()).status(), 400);
    }
}
