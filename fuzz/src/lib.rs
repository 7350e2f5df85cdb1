//! Shared harness for the per-source fuzz targets.
//!
//! A source verifies before it parses, so random bytes would almost never
//! reach the parser. The fuzzer's input therefore chooses the event header
//! from the values the source knows (or a random one), and whether to sign
//! the body with the endpoint's key, so most runs exercise parsing.

use arbitrary::Arbitrary;
use flux_recv::source::verify::{sign, Algorithm};
use flux_recv::source::{Secret, Settings, Source};
use http::{HeaderMap, HeaderName, HeaderValue};

/// The key every fuzzed endpoint uses.
pub const KEY: &[u8] = b"fuzzing-key-0123456789";

/// One fuzzed delivery.
#[derive(Debug, Arbitrary)]
pub struct Delivery<'a> {
    /// Index into the known events, or a random event when out of range.
    event: u8,
    random_event: &'a str,
    /// Sign the body properly (most runs), or send this as the signature.
    signed: bool,
    algorithm: u8,
    random_signature: &'a str,
    form_encoded: bool,
    registry_host: Option<&'a str>,
    body: &'a [u8],
}

const EVENTS: &[(&str, &str)] = &[
    ("X-GitHub-Event", "push"),
    ("X-GitHub-Event", "ping"),
    ("X-Gitlab-Event", "Push Hook"),
    ("X-Event-Key", "repo:push"),
    ("X-Event-Key", "repo:refs_changed"),
    ("X-Event-Key", "diagnostics:ping"),
    ("X-Nexus-Webhook-Id", "rm:repository:component"),
];

fn insert(headers: &mut HeaderMap, name: &str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), v);
    }
}

/// Run one delivery through `source`. Panics are the bugs being hunted;
/// every `Result` is a legitimate answer.
pub fn run(source: Source, data: &[u8]) {
    let Ok(d) = Delivery::arbitrary(&mut arbitrary::Unstructured::new(data)) else {
        return;
    };
    let mut headers = HeaderMap::new();
    match EVENTS.get(d.event as usize) {
        Some((name, value)) => insert(&mut headers, name, value),
        None => {
            for (name, _) in EVENTS {
                insert(&mut headers, name, d.random_event);
            }
        }
    }
    let algorithm = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512][d.algorithm as usize % 3];
    let signature = if d.signed {
        sign(algorithm, KEY, d.body)
    } else {
        d.random_signature.to_string()
    };
    insert(&mut headers, "X-Hub-Signature-256", &signature);
    insert(&mut headers, "X-Hub-Signature", &signature);
    insert(
        &mut headers,
        "X-Nexus-Webhook-Signature",
        signature.split_once('=').map_or(signature.as_str(), |(_, hex)| hex),
    );
    let token = if d.signed { std::str::from_utf8(KEY).unwrap() } else { d.random_signature };
    insert(&mut headers, "X-Gitlab-Token", token);
    insert(&mut headers, "Authorization", token);
    if d.form_encoded {
        insert(&mut headers, "Content-Type", "application/x-www-form-urlencoded");
    }
    let settings = Settings {
        key: Secret::new(KEY.to_vec()),
        registry_host: d.registry_host.map(str::to_string),
        gcr: None,
    };
    let _ = source.handle(&headers, d.body, &settings);
}
