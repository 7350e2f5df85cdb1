//! Bad input, for every source, through the real HTTP stack: every mutation
//! of a valid delivery gets its 4xx and nothing reaches fluxd. The valid
//! delivery is the provider's own sample, and what to mutate (the proof
//! header, its format, the event header) comes from the provider's
//! description, so a new provider is covered as soon as it is listed. At the
//! end, the whole run's logs and replies are searched for every key and
//! signature.

use crate::common;

use common::*;
use flux_recv::options::Options;
use flux_recv::source::{Extra, Proof, SampleRequest, Source};

type Headers = Vec<(String, String)>;

/// A request to send and the status it must get.
struct Case {
    name: String,
    headers: Headers,
    body: Vec<u8>,
    status: u16,
}

/// Each source's key: long enough to be searched for in the logs, and
/// sendable in a header (some providers send the key itself); a signing
/// secret (`whsec_` and base64) for the sources that need one, whose
/// decoded bytes are as easy to search for.
fn key(source: Source) -> Vec<u8> {
    let key = format!("bad-input-{}-0123456789abcdef", source.name());
    if source.needs_signing_secret() {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(&key);
        return format!("whsec_{encoded}").into_bytes();
    }
    key.into_bytes()
}

/// What an event the source does not act on gets. Sources that refused
/// other events in the Go original still do (400); the rest acknowledge
/// them (200), since a provider that sees errors disables its hook.
fn other_event_status(source: Source) -> u16 {
    match source.name() {
        "GitLab" | "BitbucketCloud" | "BitbucketServer" | "Nexus" => 400,
        _ => 200,
    }
}

/// The endpoint entry for `source` in the config.
fn endpoint_yaml(source: Source, key_path: &std::path::Path) -> String {
    let mut yaml = format!(
        "- source: {}\n  keyPath: {}\n",
        source.name(),
        key_path.display()
    );
    if source.takes(Extra::Notify) {
        yaml.push_str("  notify: {image: example/app}\n");
    }
    if source.takes(Extra::RequireSignature) {
        // So that a missing signature is a refusal to test.
        yaml.push_str("  requireSignature: true\n");
    }
    yaml
}

fn cases(source: Source, key: &[u8]) -> Vec<Case> {
    let sample = |request: SampleRequest| {
        let d = source.sample(&request).expect("a push sample");
        (headers_of(&d), d.body)
    };
    let valid = SampleRequest::push(key);
    let signed = |body: &[u8]| {
        sample(SampleRequest {
            body: Some(body),
            ..valid
        })
    };
    let case = |name: &str, (headers, body): (Headers, Vec<u8>), status| Case {
        name: format!("{source} {name}"),
        headers,
        body,
        status,
    };
    let (headers, body) = sample(valid);
    let mut cases = vec![case("valid", (headers.clone(), body.clone()), 200)];

    // Payload faults, correctly signed so that the payload is what fails.
    // Sources that send what the endpoint names never read the payload.
    if !source.takes(Extra::Notify) {
        let half = body[..body.len() / 2].to_vec();
        let wrong_types = br#"{"ref":5,"repository":5,"project":5,"push":5,"changes":5,"docker_url":5,"type":5,"event_data":5,"action":5,"component":5,"message":5,"events":5,"target":5,"request":5,"resource":5,"eventType":5}"#.to_vec();
        let mut not_utf8 = b"\xff\xfe\x00".to_vec();
        not_utf8.extend_from_slice(&body);
        for (name, bad) in [
            ("empty body", Vec::new()),
            ("truncated JSON", half),
            ("wrong JSON types", wrong_types),
            ("non-UTF-8 bytes", not_utf8),
        ] {
            cases.push(case(name, signed(&bad), 400));
        }
        let huge = "a".repeat(100_000);
        let huge = sample(SampleRequest {
            name: &huge,
            ..valid
        });
        cases.push(case("huge name", huge, 400));
    }

    let proof = source.proof_for(key);
    if let Some(header) = proof.header() {
        let prefixed = matches!(
            proof,
            Proof::Signature { prefixed: true, .. }
                | Proof::OptionalSignature { prefixed: true, .. }
        );
        let value_of = |headers: &Headers| -> String {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(header))
                .map(|(_, v)| v.clone())
                .expect("the sample carries its proof")
        };
        let replaced = |value: String| -> (Headers, Vec<u8>) {
            let mut hs: Headers = headers
                .iter()
                .filter(|(k, _)| !k.eq_ignore_ascii_case(header))
                .cloned()
                .collect();
            hs.push((header.to_string(), value));
            (hs, body.clone())
        };
        let other_key = sample(SampleRequest::push(b"not the key, but sendable"));
        let other_body = signed(b"{\"other\":\"body\"}");
        // Every header that depends on the key carries a proof (GitHub
        // sends two signatures): without any of them.
        let unproven: Headers = headers
            .iter()
            .filter(|h| other_key.0.contains(h))
            .cloned()
            .collect();
        cases.push(case("missing proof", (unproven, body.clone()), 401));
        cases.push(case("wrong key", replaced(value_of(&other_key.0)), 401));
        cases.push(case("empty proof", replaced(String::new()), 401));
        if value_of(&other_body.0) != value_of(&headers) {
            cases.push(case(
                "signature of a different body",
                replaced(value_of(&other_body.0)),
                401,
            ));
        }
        if prefixed {
            let good = value_of(&headers);
            let (_, hex) = good.split_once('=').expect("algo=hex");
            cases.push(case(
                "wrong algorithm prefix",
                replaced(format!("sha512={hex}")),
                401,
            ));
            cases.push(case(
                "unknown algorithm",
                replaced(format!("md5={hex}")),
                401,
            ));
        }
    }

    if let Some(header) = source.provider().event_header {
        let without: Headers = headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case(header))
            .cloned()
            .collect();
        let mut other = without.clone();
        other.push((header.to_string(), "some:other-event".to_string()));
        // A request that names no event is not a genuine delivery.
        cases.push(case("missing event header", (without, body.clone()), 400));
        cases.push(case(
            "another event",
            (other, body.clone()),
            other_event_status(source),
        ));
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_4xx_and_nothing_reaches_fluxd() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::new();
    for source in Source::all() {
        let path = dir.path().join(format!("{}.key", source.name()));
        std::fs::write(&path, key(source)).unwrap();
        yaml.push_str(&endpoint_yaml(source, &path));
    }
    let config = write_config(dir.path(), &fluxd.api(), &yaml);
    // Log every refusal: this test reads the whole run's logs.
    let options = Options {
        refusal_logs_per_second: u64::MAX,
        ..Options::default()
    };
    let recv = Recv::start(&config, options).await;

    // (where it came from, the secret)
    let mut secrets: Vec<(String, String)> = Vec::new();
    let mut replies = String::new();
    let mut count = 0;
    for source in Source::all() {
        let key = key(source);
        secrets.push((
            format!("{source} key"),
            String::from_utf8(key.clone()).unwrap(),
        ));
        if source.needs_signing_secret() {
            let decoded = format!("bad-input-{}-0123456789abcdef", source.name());
            secrets.push((format!("{source} decoded key"), decoded));
        }
        let proof = source.proof_for(&key).header();
        let hook = hook_path(&key);
        let cases = cases(source, &key);
        // Every source gets the payload cases or the proof cases, or both;
        // one that reads nothing and proves nothing (Generic) has no bad
        // input but its URL.
        if source.verifies_sender() || !source.takes(Extra::Notify) {
            assert!(cases.len() >= 5, "{source}: only {} cases", cases.len());
        }
        for case in cases {
            for (k, v) in &case.headers {
                if proof.is_some_and(|p| p.eq_ignore_ascii_case(k)) && v.len() >= 16 {
                    // `sha256=<hex>`, or `Basic <base64>`, whose `=`
                    // padding is no prefix.
                    let value = v.rsplit(' ').next().unwrap_or(v);
                    let value = ["sha1=", "sha256=", "sha512="]
                        .iter()
                        .find_map(|algo| value.strip_prefix(algo))
                        .unwrap_or(value);
                    secrets.push((format!("{} proof", case.name), value.to_string()));
                }
            }
            let reply = post(recv.url(&hook), case.headers, case.body).await;
            assert_eq!(reply.status, case.status, "{}: {}", case.name, reply.body);
            let sent = fluxd.take();
            if case.name.ends_with(" valid") {
                assert!(!sent.is_empty(), "{}", case.name);
            } else {
                assert!(sent.is_empty(), "{}: sent {sent:?}", case.name);
            }
            assert!(
                reply.body.len() < 300,
                "{}: long reply {}",
                case.name,
                reply.body.len()
            );
            replies.push_str(&reply.body);
            count += 1;
        }
    }

    // No key, token or signature in any reply or log line of the whole run.
    let logs = recv.logs.text();
    assert!(logs.lines().count() >= count, "logs were not captured");
    assert!(
        secrets.len() > 40,
        "only {} secrets to look for",
        secrets.len()
    );
    for (what, secret) in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "the {what} reached the logs"
        );
        assert!(
            !replies.contains(secret.as_str()),
            "the {what} reached a reply"
        );
    }
}

/// A header value that is not visible ASCII (0xE9, Latin-1 `é`) gets the
/// answer its route gives a wrong value: never the 404 of a route that
/// rejected the request, nor a 5xx.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_header_values_get_the_routes_own_answer() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let recv = Recv::start(&config, Options::default()).await;
    let body = github_body("org/app", "main");
    // `head`'s request and headers, then `name` with an unreadable value.
    let request = |head: &str, name: &str, body: &[u8]| {
        let mut r = format!("{head}\r\nHost: x\r\nConnection: close\r\n{name}: a").into_bytes();
        r.extend_from_slice(b"\xe9\r\n\r\n");
        r.extend_from_slice(body);
        r
    };
    // A signed push whose `name` header is unreadable.
    let push = |name: &str| {
        let mut head = format!("POST {hook} HTTP/1.1\r\nContent-Length: {}", body.len());
        for (k, v) in github_push(&body) {
            if !k.eq_ignore_ascii_case(name) {
                head.push_str(&format!("\r\n{k}: {v}"));
            }
        }
        request(&head, name, &body)
    };
    let cases = [
        (
            "/health",
            request("GET /health HTTP/1.1", "Accept", b""),
            "200",
        ),
        (
            "/ready",
            request("GET /ready HTTP/1.1", "Accept", b""),
            "200",
        ),
        (
            "/nowhere",
            request("GET /nowhere HTTP/1.1", "Accept", b""),
            "404",
        ),
        (
            "GET hook",
            request(&format!("GET {hook} HTTP/1.1"), "Accept", b""),
            "405",
        ),
        ("signature", push("X-Hub-Signature-256"), "401"),
        ("event", push("X-GitHub-Event"), "400"),
        ("delivery id", push("X-GitHub-Delivery"), "200"),
        ("content type", push("Content-Type"), "200"),
    ];
    for (name, request, status) in cases {
        let reply = raw(recv.addr, request).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{name}: {reply}"
        );
    }
}
