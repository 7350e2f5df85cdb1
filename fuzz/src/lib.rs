//! The harness of the `source` fuzz target, which fuzzes every source.
//!
//! The input's first byte picks the source among [`Source::all`] (or, with
//! `FUZZ_SOURCE` set to a source's config name, that source alone): a
//! provider is fuzzed as soon as it is listed, with nothing to add here.
//!
//! A source verifies before it parses, so random bytes would almost never
//! reach the parser. The fuzzer's input therefore picks one of the events
//! the provider has a sample of (or a random one), and how the delivery
//! proves itself: signed with the endpoint's key, signed with another key,
//! without its proof, or with a random one. The headers come from the
//! provider's own sample (see `flux_recv::source::sample`), signed over the
//! fuzzed body, so what each provider sends is written down once, in its
//! file, and most runs exercise parsing.
//!
//! Besides never panicking, a source must refuse (401) every delivery
//! signed with another key, and every delivery without its proof where the
//! endpoint requires one, whatever the event, headers and body.

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use flux_recv::notification::Change;
use flux_recv::source::{HookResult, Proof, SampleRequest, Secret, Settings, Source};
use http::{HeaderName, HeaderValue};

/// The key every fuzzed endpoint uses...
pub const KEY: &[u8] = b"fuzzing-key-0123456789";
/// ...but those whose source needs a signing secret.
pub const SECRET: &[u8] = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// The key wrongly signed deliveries are signed with...
pub const WRONG_KEY: &[u8] = b"another-key-9876543210";
/// ...or, where the source needs a signing secret, this one.
pub const WRONG_SECRET: &[u8] = b"whsec_bm90IHRoZSBmdXp6aW5nIHNlY3JldCBhdCBhbGw=";

/// How a fuzzed delivery proves who sent it.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Proven<'a> {
    /// Signed (or carrying the token) as the provider does, with the key.
    Signed,
    /// The same, with another key: must be refused.
    WrongKey,
    /// Without any header that depends on the key: must be refused where
    /// the endpoint requires a proof.
    Unsigned,
    /// This in the proof header instead (most likely wrong, but anything
    /// may come out of a fuzzer, so no outcome is asserted).
    Random(&'a str),
}

/// One fuzzed delivery.
#[derive(Debug, Arbitrary)]
pub struct Hook<'a> {
    /// Index into the provider's sample events; out of range sends the
    /// push sample's headers with `random_event` as the event.
    event: u8,
    random_event: &'a str,
    proven: Proven<'a>,
    form_encoded: bool,
    registry_host: Option<&'a str>,
    require_signature: bool,
    body: &'a [u8],
}

fn insert(headers: &mut http::HeaderMap, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        headers.insert(name, value);
    }
}

/// The sources [`run_any`] picks from: every one, or the one `FUZZ_SOURCE`
/// names (as the config does: `GitLab`, `DockerHub`, …).
pub fn fuzzed_sources() -> &'static [Source] {
    static SOURCES: OnceLock<Vec<Source>> = OnceLock::new();
    SOURCES.get_or_init(|| match std::env::var("FUZZ_SOURCE") {
        Ok(name) => vec![Source::from_name(&name).unwrap_or_else(|| {
            panic!(
                "FUZZ_SOURCE={name:?} is no source; sources: {}",
                Source::names()
            )
        })],
        Err(_) => Source::all().collect(),
    })
}

/// The source `data`'s first byte picks among `sources`, and the rest of
/// `data`; `None` for no data.
pub fn pick<'a>(sources: &[Source], data: &'a [u8]) -> Option<(Source, &'a [u8])> {
    let (&first, rest) = data.split_first()?;
    Some((sources[usize::from(first) % sources.len()], rest))
}

/// Run one delivery through the source its first byte picks among
/// [`fuzzed_sources`]: what the `source` target does with each input.
pub fn run_any(data: &[u8]) -> Option<bool> {
    let (source, rest) = pick(fuzzed_sources(), data)?;
    run(source, rest)
}

/// Run one delivery through `source`. Panics are the bugs being hunted: a
/// crash, or a delivery accepted that must be refused. Every other
/// `Result` is a legitimate answer. Says whether a refusal was required
/// (and so checked); `None` when `data` made no delivery.
pub fn run(source: Source, data: &[u8]) -> Option<bool> {
    let d = Hook::arbitrary(&mut arbitrary::Unstructured::new(data)).ok()?;
    let provider = source.provider();
    let (key, wrong_key) = match source.needs_signing_secret() {
        true => (SECRET, WRONG_SECRET),
        false => (KEY, WRONG_KEY),
    };
    let known = provider.sample_events.get(d.event as usize);
    let request = |key| SampleRequest {
        event: known.copied().unwrap_or("push"),
        registry_host: d.registry_host,
        body: Some(d.body),
        ..SampleRequest::push(key)
    };
    let (Ok(sample), Ok(wrong)) = (
        source.sample(&request(key)),
        source.sample(&request(wrong_key)),
    ) else {
        return None;
    };
    let mut headers = match d.proven {
        Proven::WrongKey => wrong.header_map(),
        _ => sample.header_map(),
    };
    if let Proven::Unsigned = d.proven {
        // Every header whose value depends on the key (GitHub sends two
        // signatures), and nothing else.
        for (name, value) in &sample.headers {
            if !wrong.headers.contains(&(*name, value.clone())) {
                headers.remove(*name);
            }
        }
    }
    if let (None, Some(event)) = (known, provider.event_header) {
        insert(&mut headers, event, d.random_event);
    }
    if let (Proven::Random(proof), Some(header)) = (d.proven, source.proof_for(key).header()) {
        insert(&mut headers, header, proof);
    }
    if d.form_encoded {
        insert(
            &mut headers,
            "Content-Type",
            "application/x-www-form-urlencoded",
        );
    }
    let settings = Settings {
        key: Secret::new(key.to_vec()),
        registry_host: d.registry_host.map(str::to_string),
        notify: vec![Change::git("git@example.com:org/app.git", "main")],
        require_signature: d.require_signature,
    };
    let result = source.handle(&headers, d.body, &settings);
    let refused = must_be_refused(source.proof_for(key), d.proven, d.require_signature);
    if refused {
        assert_refused(source, &d, &result);
    }
    Some(refused)
}

/// Whether a delivery proven this way must be refused by a provider that
/// proves its deliveries with `proof`.
fn must_be_refused(proof: Proof, proven: Proven, require_signature: bool) -> bool {
    match (proven, proof) {
        (Proven::Signed | Proven::Random(_), _) | (_, Proof::HookUrl) => false,
        (Proven::WrongKey, _) => true,
        (
            Proven::Unsigned,
            Proof::Signature { .. } | Proof::HeaderToken { .. } | Proof::Stamped,
        ) => true,
        (Proven::Unsigned, Proof::OptionalSignature { .. }) => require_signature,
        // `proof_for` has already chosen what the endpoint's key asks for.
        (Proven::Unsigned, Proof::SigningSecretOr(otherwise)) => {
            must_be_refused(*otherwise, proven, require_signature)
        }
    }
}

fn assert_refused(source: Source, d: &Hook, result: &HookResult) {
    assert!(
        matches!(result, Err(e) if e.is_unauthorized()),
        "{source}: a delivery {:?} was not refused as unauthorized: {result:?}\n{d:?}",
        d.proven
    );
}
