//! Shared harness for the per-source fuzz targets.
//!
//! A source verifies before it parses, so random bytes would almost never
//! reach the parser. The fuzzer's input therefore picks one of the events
//! the provider has a sample of (or a random one), and whether the body is
//! signed with the endpoint's key. The headers come from the provider's own
//! sample (see `flux_recv::source::sample`), signed over the fuzzed body, so
//! what each provider sends is written down once, in its file, and most
//! runs exercise parsing.

use arbitrary::Arbitrary;
use flux_recv::notification::Change;
use flux_recv::source::{SampleRequest, Secret, Settings, Source};
use http::{HeaderName, HeaderValue};

/// The key every fuzzed endpoint uses...
pub const KEY: &[u8] = b"fuzzing-key-0123456789";
/// ...but those whose source needs a signing secret.
pub const SECRET: &[u8] = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// One fuzzed delivery.
#[derive(Debug, Arbitrary)]
pub struct Delivery<'a> {
    /// Index into the provider's sample events; out of range sends the
    /// push sample's headers with `random_event` as the event.
    event: u8,
    random_event: &'a str,
    /// Sign the body properly (most runs), or send this as the proof.
    signed: bool,
    random_proof: &'a str,
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

/// Run one delivery through `source`. Panics are the bugs being hunted;
/// every `Result` is a legitimate answer.
pub fn run(source: Source, data: &[u8]) {
    let Ok(d) = Delivery::arbitrary(&mut arbitrary::Unstructured::new(data)) else {
        return;
    };
    let provider = source.provider();
    let key = if source.needs_signing_secret() {
        SECRET
    } else {
        KEY
    };
    let known = provider.sample_events.get(d.event as usize);
    let request = SampleRequest {
        event: known.copied().unwrap_or("push"),
        registry_host: d.registry_host,
        body: Some(d.body),
        ..SampleRequest::push(key)
    };
    let Ok(sample) = source.sample(&request) else {
        return;
    };
    let mut headers = sample.header_map();
    if let (None, Some(event)) = (known, provider.event_header) {
        insert(&mut headers, event, d.random_event);
    }
    if let (false, Some(proof)) = (d.signed, source.proof_for(key).header()) {
        insert(&mut headers, proof, d.random_proof);
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
    let _ = source.handle(&headers, d.body, &settings);
}
