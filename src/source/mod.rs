//! Webhook sources: one file per provider, each holding everything about
//! that provider.
//!
//! A provider file declares one [`Provider`] value (its name as in the
//! config, how it proves the sender, its event and delivery-id headers), a
//! `handle` function and a `sample` function:
//!
//! - `handle` takes the request's headers and raw body plus the endpoint's
//!   [`Settings`], verifies the request the way that provider signs it,
//!   parses the payload, and says what to do: notify fluxd of some changes,
//!   acknowledge and do nothing, or refuse with a typed [`HookError`].
//! - `sample` builds the delivery that provider would send for an event,
//!   signed with a key: what `flux-recv send` posts, and what the tests,
//!   benchmarks and fuzz targets start from.
//!
//! Sources never touch the network, the HTTP server or the endpoint table.
//!
//! Beside the providers sit the parts they share: what `handle` returns
//! (`outcome.rs`: [`Outcome`], [`HookError`]), the helpers that read
//! headers and bodies (`payload.rs`), signatures ([`verify`], and
//! [`stamped`] for those that cover an id and a time) and samples
//! ([`sample`]).
//!
//! To add a provider, add a file here and its name to the `providers!`
//! list at the bottom of this file. A file left out of the list is not
//! compiled, which `every_provider_file_is_listed` catches (a new shared
//! file goes in that test's list of helpers instead). Everything else that
//! lists providers reads [`Source::all`] (`--help`, the fuzz target,
//! `bad_input`, the benchmarks); what cannot be generated, a payload
//! fixture under `testdata/` named after the file and the provider's
//! section in docs/providers.md and README's table, is checked by
//! `tests/safety_net/every_source.rs`. `cargo fmt` does not reach files
//! declared inside a macro: format them with
//! `rustfmt --edition 2021 src/source/*.rs` (CI checks it).

use std::collections::HashSet;

use http::HeaderMap;

use crate::notification::Change;

mod outcome;
mod payload;
pub mod sample;
pub mod stamped;
pub mod verify;

pub use outcome::{HookError, HookResult, Outcome};
pub use payload::{
    essence, header, json, json_or_form, lenient, media_type, required, told_changes, Commit,
    FirstRefs,
};
pub use sample::{SampleError, SampleHook, SampleRequest};
pub use stamped::Stamp;

/// Everything flux-recv knows about one provider.
pub struct Provider {
    /// The name in the config file's `source:` field (exact spelling, as
    /// the Go original required).
    pub name: &'static str,
    /// How a delivery proves it comes from the provider.
    pub proof: Proof,
    /// The header naming the event, for the log line; `None` where the
    /// provider sends none or puts it in the body.
    pub event_header: Option<&'static str>,
    /// The header carrying the provider's id for this delivery, so an
    /// operator can match a log line with the provider's delivery log.
    pub delivery_header: Option<&'static str>,
    /// Verify and parse one delivery.
    pub handle: fn(&HeaderMap, &[u8], &Settings) -> HookResult,
    /// The events [`Provider::sample`] can make, the default (`push`) first.
    pub sample_events: &'static [&'static str],
    /// Build a sample delivery (see [`sample`]).
    pub sample: fn(&SampleRequest) -> SampleHook,
    /// The kinds of change it sends fluxd: what an endpoint's filter may
    /// name.
    pub changes: Kinds,
    /// Endpoint settings beyond `keyPath` and `registryHost` that this
    /// provider takes; every other source refuses them.
    pub extras: &'static [Extra],
}

/// Which kinds of change a provider can send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kinds {
    /// Git pushes only.
    Git,
    /// Image pushes only.
    Image,
    /// Both (a forge with a registry, or whatever the endpoint names).
    GitAndImage,
}

impl Kinds {
    /// Whether git changes are among them.
    pub fn git(self) -> bool {
        matches!(self, Kinds::Git | Kinds::GitAndImage)
    }

    /// Whether image changes are among them.
    pub fn image(self) -> bool {
        matches!(self, Kinds::Image | Kinds::GitAndImage)
    }
}

/// An endpoint setting only some providers take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    /// `gcr:`: a Google-signed Pub/Sub push token, checked before the body
    /// is read (optional).
    PubSubToken,
    /// `notify:`: what to send, for providers whose deliveries name nothing
    /// fluxd can use (required).
    Notify,
    /// `requireSignature:`: refuse deliveries that carry no signature,
    /// where the provider signs only when given a secret (optional).
    RequireSignature,
}

impl Extra {
    /// The field's name in the config file.
    pub fn field(self) -> &'static str {
        match self {
            Extra::PubSubToken => "gcr",
            Extra::Notify => "notify",
            Extra::RequireSignature => "requireSignature",
        }
    }
}

/// How a provider proves that a delivery is genuine.
#[derive(Clone, Copy)]
pub enum Proof {
    /// An HMAC of the body in this header, keyed with the endpoint's key;
    /// verified once the body has been read.
    Signature {
        /// The header (the preferred one, where there are several).
        header: &'static str,
        /// Whether its value is `<algorithm>=<hex>` rather than bare hex.
        prefixed: bool,
    },
    /// A credential in a header, compared with the key. It does not depend
    /// on the body, so it is checked before the body is read: a forged
    /// request costs no body buffering.
    HeaderToken {
        /// The header.
        header: &'static str,
        /// The check, as the source's `handle` runs it too.
        check: fn(&HeaderMap, &[u8]) -> Result<(), HookError>,
    },
    /// An HMAC of the body in this header, sent only when the provider was
    /// given a secret: verified when present; a delivery without it is
    /// accepted unless the endpoint sets `requireSignature: true`.
    OptionalSignature {
        /// The header.
        header: &'static str,
        /// Whether its value is `<algorithm>=<hex>` rather than bare hex.
        prefixed: bool,
    },
    /// Nothing: the provider signs nothing, so the unguessable hook URL is
    /// the only protection.
    HookUrl,
    /// A Standard Webhooks signature ([`stamped`]): an HMAC-SHA256 of the
    /// delivery's id, timestamp and body, keyed with the endpoint's signing
    /// secret (`whsec_…`). The id and timestamp are read before the body,
    /// and the request path refuses a timestamp outside
    /// `--signature-tolerance` of now and acknowledges an id it accepted
    /// within it without sending anything again: a recorded delivery
    /// cannot be replayed. The key must be a signing secret.
    Stamped,
    /// The endpoint's key decides (GitLab's signing token or secret
    /// token): a signing secret (`whsec_…`) asks for [`Proof::Stamped`] and
    /// nothing else will do; any other key is checked as this proof says.
    SigningSecretOr(&'static Proof),
}

impl Proof {
    /// Whether every delivery proves who sent it (other than by knowing
    /// the hook URL).
    pub fn verifies_sender(self) -> bool {
        match self {
            Proof::Signature { .. } | Proof::HeaderToken { .. } | Proof::Stamped => true,
            Proof::OptionalSignature { .. } | Proof::HookUrl => false,
            Proof::SigningSecretOr(otherwise) => otherwise.verifies_sender(),
        }
    }

    /// The header the proof travels in, if any: for
    /// [`Proof::SigningSecretOr`], that of the proof an ordinary key asks
    /// for ([`Source::proof_for`] tells for a given key).
    pub fn header(self) -> Option<&'static str> {
        match self {
            Proof::Signature { header, .. }
            | Proof::HeaderToken { header, .. }
            | Proof::OptionalSignature { header, .. } => Some(header),
            Proof::Stamped => Some(stamped::SIGNATURE),
            Proof::SigningSecretOr(otherwise) => otherwise.header(),
            Proof::HookUrl => None,
        }
    }

    /// The proof a delivery to an endpoint with `key` must carry.
    pub fn for_key(self, key: &[u8]) -> Proof {
        match self {
            Proof::SigningSecretOr(_) if stamped::is_signing_secret(key) => Proof::Stamped,
            Proof::SigningSecretOr(otherwise) => otherwise.for_key(key),
            proof => proof,
        }
    }
}

/// A provider, as an endpoint refers to it. Cheap to copy; compares by
/// name.
#[derive(Clone, Copy)]
pub struct Source(&'static Provider);

impl Source {
    /// Every source, in the order the documentation lists them.
    pub fn all() -> impl Iterator<Item = Source> {
        ALL.iter().map(|p| Source(p))
    }

    /// Look a source up by its config-file name (exact spelling).
    pub fn from_name(name: &str) -> Option<Source> {
        Source::all().find(|s| s.name() == name)
    }

    /// The source with this name, for tests and benchmarks that name a
    /// provider. Panics on a name no provider has.
    pub fn named(name: &str) -> Source {
        Source::from_name(name).unwrap_or_else(|| panic!("no source is called {name:?}"))
    }

    /// The names of every source, for messages: `GitHub, GitLab, …`.
    pub fn names() -> String {
        Source::all()
            .map(Source::name)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The name used in the config file's `source:` field.
    pub fn name(self) -> &'static str {
        self.0.name
    }

    /// The provider's description.
    pub fn provider(self) -> &'static Provider {
        self.0
    }

    /// The provider's file in `src/source/`, without `.rs` (`gcr` for
    /// GoogleContainerRegistry): its payload fixtures under `testdata/` are
    /// named after it.
    pub fn file(self) -> &'static str {
        let index = ALL.iter().position(|p| p.name == self.name());
        FILES[index.expect("every Source is one of ALL")]
    }

    /// Whether the provider proves who sent every request. For those that
    /// do not, the unguessable hook URL is the only protection. A `gcr:`
    /// block or `requireSignature` adds a proof to an endpoint; ask
    /// [`crate::endpoint::Endpoint::verifies_sender`] about an endpoint.
    pub fn verifies_sender(self) -> bool {
        self.0.proof.verifies_sender()
    }

    /// Whether endpoints of this source need a signing secret (`whsec_…`,
    /// what `flux-recv keygen --format whsec` makes) as their key.
    pub fn needs_signing_secret(self) -> bool {
        matches!(self.0.proof, Proof::Stamped)
    }

    /// Whether endpoints of this source take the setting `extra`.
    pub fn takes(self, extra: Extra) -> bool {
        self.0.extras.contains(&extra)
    }

    /// Why an endpoint of this source needs `registryHost`, if it does:
    /// Nexus's payloads name no registry host.
    pub fn without_registry_host(self) -> Option<&'static str> {
        (self.name() == nexus::PROVIDER.name).then_some(nexus::WITHOUT_REGISTRY_HOST)
    }

    /// The proof a delivery to an endpoint of this source with `key` must
    /// carry: the provider's, or, where the key decides (GitLab), the one
    /// this key asks for.
    pub fn proof_for(self, key: &[u8]) -> Proof {
        self.0.proof.for_key(key)
    }

    /// What is wrong with `key` for this source, if anything: an error
    /// where the source needs a signing secret (`whsec_…`) and `key` is
    /// none, or a signing secret does not decode; a warning where it is
    /// shorter than the spec asks. The messages never repeat the key.
    pub fn check_key(self, key: &[u8]) -> Result<Option<String>, String> {
        let needs_secret = match self.0.proof {
            Proof::Stamped => true,
            Proof::SigningSecretOr(_) => false,
            _ => return Ok(None),
        };
        let secret = match stamped::secret_bytes(key) {
            None if needs_secret => {
                return Err(format!(
                    "{self} verifies signatures keyed with a signing secret, so the key must be \
                     whsec_ followed by base64, as the sender shows it; make one with \
                     `flux-recv keygen --format whsec`"
                ))
            }
            None => return Ok(None),
            Some(Err(e)) => {
                return Err(format!(
                    "the key starts with whsec_, so it is taken for a signing secret, but {e}; \
                     copy the secret whole, as the sender shows it"
                ))
            }
            Some(Ok(secret)) => secret,
        };
        Ok((secret.len() < stamped::MIN_SECRET_BYTES).then(|| {
            format!(
                "the signing secret is only {} bytes; the Standard Webhooks specification asks \
                 for at least {} random bytes",
                secret.len(),
                stamped::MIN_SECRET_BYTES
            )
        }))
    }

    /// Check the credential the provider sends in headers, if it sends
    /// one, before the body is read. Where the signature covers an id and a
    /// time, returns them for the request path to check against the clock
    /// and the ids already accepted; the signature itself is verified with
    /// the body, by [`Source::handle`].
    pub fn check_headers(
        self,
        headers: &HeaderMap,
        settings: &Settings,
    ) -> Result<Option<Stamp>, HookError> {
        match self.proof_for(settings.key.expose()) {
            Proof::HeaderToken { check, .. } => check(headers, settings.key.expose()).map(|_| None),
            Proof::Stamped => stamped::read(headers).map(Some),
            Proof::Signature { .. }
            | Proof::OptionalSignature { .. }
            | Proof::HookUrl
            | Proof::SigningSecretOr(_) => Ok(None),
        }
    }

    /// Verify and parse one delivery. Identical changes within it are
    /// collapsed into one, in order of first appearance.
    pub fn handle(self, headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
        let outcome = (self.0.handle)(headers, body, settings)?;
        let Outcome::Notify(changes) = outcome else {
            return Ok(outcome);
        };
        changes.iter().try_for_each(check_lengths)?;
        Ok(Outcome::Notify(distinct(changes)))
    }

    /// The provider's sample of `request.event`, or why there is none.
    pub fn sample(self, request: &SampleRequest) -> Result<SampleHook, SampleError> {
        if !self.0.sample_events.contains(&request.event) {
            return Err(SampleError::UnknownEvent {
                provider: self.name(),
                event: request.event.to_string(),
                supported: self.0.sample_events,
            });
        }
        if let Proof::HeaderToken { header, .. } = self.proof_for(request.key) {
            if !sample::sendable_in_header(request.key) {
                return Err(SampleError::KeyNotSendable {
                    provider: self.name(),
                    header,
                });
            }
        }
        Ok((self.0.sample)(request))
    }

    /// The event a delivery names, for the log line: printable, empty when
    /// the provider sends no event header.
    pub fn event_of(self, headers: &HeaderMap) -> String {
        printable_header(headers, self.0.event_header)
    }

    /// The provider's delivery id, for the log line: printable, empty when
    /// the provider sends none.
    pub fn delivery_of(self, headers: &HeaderMap) -> String {
        printable_header(headers, self.0.delivery_header)
    }
}

fn printable_header(headers: &HeaderMap, name: Option<&str>) -> String {
    name.and_then(|n| header(headers, n))
        .map(crate::printable)
        .unwrap_or_default()
}

impl PartialEq for Source {
    fn eq(&self, other: &Source) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Source {}

impl std::hash::Hash for Source {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `changes` without repeats, each where it first appears. The changes are
/// compared where they lie, not copied.
fn distinct(changes: Vec<Change>) -> Vec<Change> {
    let first: Vec<bool> = {
        let mut seen = HashSet::with_capacity(changes.len());
        changes.iter().map(|change| seen.insert(change)).collect()
    };
    changes
        .into_iter()
        .zip(first)
        .filter_map(|(change, first)| first.then_some(change))
        .collect()
}

/// Longest URL, branch or image name relayed. Real ones are far shorter
/// (Docker caps repository names at 255); anything longer is junk that
/// fluxd should not be asked to look for.
pub const MAX_FIELD: usize = 1024;

/// Most distinct changes one delivery is read into, and so the highest
/// `--max-changes` can go. Every git change holds its own copy of the
/// repository's URL: without a bound, a payload listing many refs of one
/// long URL would be built into far more memory than it took to send.
pub const MAX_CHANGES: usize = 1024;

/// The git changes of a push that lists several refs: one per distinct ref
/// in `refs`, in order of first appearance, for each of `urls`. The URLs are
/// checked against [`MAX_FIELD`] before anything is built, and a push naming
/// more than [`MAX_CHANGES`] changes is refused as soon as it passes that
/// number, so what is built stays within about 2 MiB whatever the payload.
pub fn git_changes<'a>(
    urls: &[String],
    refs: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Change>, HookError> {
    for url in urls {
        check_url(url)?;
    }
    let mut seen = HashSet::new();
    let mut changes = Vec::new();
    for git_ref in refs {
        if !seen.insert(git_ref) {
            continue;
        }
        if changes.len() + urls.len() > MAX_CHANGES {
            return Err(HookError::TooManyChanges(MAX_CHANGES));
        }
        changes.extend(urls.iter().map(|url| Change::git(url.as_str(), git_ref)));
    }
    Ok(changes)
}

/// Refuse a repository URL longer than [`MAX_FIELD`]: before anything is
/// built with a copy of it.
pub fn check_url(url: &str) -> Result<(), HookError> {
    check_field("repository URL", url)
}

fn check_lengths(change: &Change) -> Result<(), HookError> {
    let fields: [(&str, &str); 2] = match change {
        Change::Git(g) => [("repository URL", &g.url), ("branch", &g.branch)],
        Change::Image(i) => [
            ("image domain", &i.name.domain),
            ("image name", &i.name.image),
        ],
    };
    fields.iter().try_for_each(|(what, v)| check_field(what, v))
}

fn check_field(what: &str, value: &str) -> Result<(), HookError> {
    if value.len() > MAX_FIELD {
        return Err(HookError::BadPayload(format!(
            "the {what} is longer than {MAX_FIELD} bytes"
        )));
    }
    Ok(())
}

/// What a source needs of its endpoint besides the request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Settings {
    /// The shared secret, verbatim from the key file.
    pub key: Secret,
    /// Nexus: the registry host its payloads leave out. Also part of the
    /// fingerprint for every source, as in the Go original.
    pub registry_host: Option<String>,
    /// The endpoint's `notify:` block, for sources whose deliveries name
    /// nothing fluxd can use.
    pub notify: Vec<Change>,
    /// The endpoint's `requireSignature: true`, for sources whose
    /// signature is optional.
    pub require_signature: bool,
}

/// Key bytes. Debug never shows them, so a stray `{:?}` cannot leak a secret.
#[derive(Clone, PartialEq, Eq, Default)]
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

/// Declares the provider modules and [`ALL`], the one list of providers:
/// one line per provider.
macro_rules! providers {
    ($($module:ident),+ $(,)?) => {
        $(mod $module;)+

        /// Every provider, in the order the documentation lists them.
        static ALL: &[&Provider] = &[$(&$module::PROVIDER),+];

        /// The file of each provider in [`ALL`], in the same order.
        static FILES: &[&str] = &[$(stringify!($module)),+];
    };
}

providers![
    github,
    gitlab,
    bitbucket_cloud,
    bitbucket_server,
    gitea,
    forgejo,
    gogs,
    azure_devops,
    dockerhub,
    quay,
    harbor,
    nexus,
    gcr,
    acr,
    distribution,
    generic,
    generic_hmac,
    standard_webhooks,
];

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

    /// Settings with this key and nothing else.
    pub fn settings(key: &[u8]) -> Settings {
        Settings {
            key: Secret::new(key.to_vec()),
            ..Settings::default()
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
    fn a_secret_shows_its_length_never_its_bytes() {
        let key = b"hunter2-0123456789abcdef";
        let shown = format!("{:?}", Secret::new(key.to_vec()));
        assert_eq!(shown, "Secret(<24 bytes>)");
        // Nor through what holds it, however it is formatted.
        let settings = testing::settings(key);
        for shown in [format!("{settings:?}"), format!("{settings:#?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("Secret(<24 bytes>)"), "{shown}");
        }
    }

    #[test]
    fn names_round_trip_and_are_distinct() {
        let mut names = HashSet::new();
        for s in Source::all() {
            assert_eq!(Source::from_name(s.name()), Some(s));
            assert!(names.insert(s.name()), "{s} twice");
        }
        assert_eq!(Source::from_name("github"), None);
    }

    #[test]
    fn git_changes_are_one_per_distinct_ref_and_url_in_order() {
        let urls = ["git@a:x.git".to_string(), "https://a/x.git".to_string()];
        let refs = ["refs/heads/main", "dev", "refs/heads/main", "dev"];
        let expected: Vec<Change> = ["main", "dev"]
            .iter()
            .flat_map(|b| urls.iter().map(move |u| Change::git(u.as_str(), b)))
            .collect();
        assert_eq!(git_changes(&urls, refs), Ok(expected));
        assert_eq!(git_changes(&urls, []), Ok(vec![]));
    }

    #[test]
    fn git_changes_refuse_a_long_url_before_building_anything() {
        let long = "u".repeat(MAX_FIELD + 1);
        let refs = (0..10).map(|_| "main");
        assert_eq!(
            git_changes(&[long], refs),
            Err(HookError::BadPayload(format!(
                "the repository URL is longer than {MAX_FIELD} bytes"
            )))
        );
        let longest = "u".repeat(MAX_FIELD);
        assert!(git_changes(&[longest], ["main"]).is_ok());
    }

    #[test]
    fn git_changes_stop_at_the_cap() {
        let names: Vec<String> = (0..MAX_CHANGES + 1).map(|i| format!("b{i}")).collect();
        let one = ["git@a:x.git".to_string()];
        let at_cap = git_changes(&one, names[..MAX_CHANGES].iter().map(String::as_str));
        assert_eq!(at_cap.map(|c| c.len()), Ok(MAX_CHANGES));
        let over = git_changes(&one, names.iter().map(String::as_str));
        assert_eq!(over, Err(HookError::TooManyChanges(MAX_CHANGES)));
        // With two URLs each ref makes two changes: half as many refs fit.
        let two = ["git@a:x.git".to_string(), "https://a/x.git".to_string()];
        let half = names[..MAX_CHANGES / 2 + 1].iter().map(String::as_str);
        assert_eq!(
            git_changes(&two, half),
            Err(HookError::TooManyChanges(MAX_CHANGES))
        );
        // Repeats of refs already taken do not count.
        let repeats = names[..10].iter().cycle().take(100_000).map(String::as_str);
        assert_eq!(git_changes(&one, repeats).map(|c| c.len()), Ok(10));
    }

    #[test]
    fn every_provider_file_is_listed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/source");
        let helpers = ["mod", "outcome", "payload", "sample", "stamped", "verify"];
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.extension().is_some_and(|e| e == "rs") && !helpers.contains(&stem.as_str()) {
                assert!(
                    FILES.contains(&stem.as_str()),
                    "src/source/{stem}.rs is not in the providers! list"
                );
            }
        }
    }

    #[test]
    fn every_provider_describes_itself() {
        for s in Source::all() {
            let p = s.provider();
            assert_eq!(p.sample_events.first(), Some(&"push"), "{s}");
            let header = p.proof.header();
            // Header names are checked against the samples in sample.rs's
            // tests; here, that they parse as header names at all.
            for name in [header, p.event_header, p.delivery_header]
                .into_iter()
                .flatten()
            {
                assert!(
                    http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                    "{s}: {name}"
                );
            }
        }
    }
    #[test]
    fn overlong_fields_are_refused_whatever_the_source() {
        let dockerhub = Source::named("DockerHub");
        let long = "a".repeat(MAX_FIELD + 1);
        let body = format!(r#"{{"repository":{{"repo_name":"org/{long}"}}}}"#);
        let e = dockerhub
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
        assert!(dockerhub
            .handle(&HeaderMap::new(), ok.as_bytes(), &testing::settings(b"k"))
            .is_ok());
    }

    #[test]
    fn identical_changes_in_one_delivery_are_collapsed() {
        let bitbucket = Source::named("BitbucketCloud");
        let change = r#"{"new":{"name":"main"}}"#;
        let other = r#"{"new":{"name":"dev"}}"#;
        let many = vec![change; 5000].join(",");
        let body = format!(
            r#"{{"repository":{{"full_name":"a/b"}},"push":{{"changes":[{many},{other},{change}]}}}}"#
        );
        let h = testing::headers(&[("X-Event-Key", "repo:push")]);
        assert_eq!(
            bitbucket.handle(&h, body.as_bytes(), &testing::settings(b"k")),
            Ok(Outcome::Notify(vec![
                Change::git("git@bitbucket.org:a/b.git", "main"),
                Change::git("git@bitbucket.org:a/b.git", "dev"),
            ]))
        );
    }
}
