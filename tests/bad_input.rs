//! Bad input, per source, through the real HTTP stack: every mutation of a
//! valid delivery gets its 4xx and nothing reaches fluxd. At the end, the
//! whole run's logs and replies are searched for every key and signature.

mod common;

use base64::Engine;
use common::*;
use flux_recv::options::Options;
use flux_recv::source::verify::{sign, Algorithm};

type Headers = Vec<(String, String)>;

/// How one source is addressed and what a valid delivery looks like.
struct Spec {
    source: &'static str,
    key_file: &'static str,
    registry_host: Option<&'static str>,
    /// A valid body.
    body: Vec<u8>,
    /// Valid headers for `body` (signed with `key` where the source signs).
    headers: fn(key: &[u8], body: &[u8]) -> Headers,
    /// The header carrying the signature or token, and whether it is
    /// `algo=hex` (so an algorithm prefix can be wrong).
    signature: Option<(&'static str, bool)>,
    /// A header naming the event, a wrong value for it, and the status that
    /// value gets.
    event: Option<(&'static str, &'static str, u16)>,
    /// A body naming the wrong event (for sources that put it in the body).
    wrong_event_body: Option<Vec<u8>>,
    /// A body whose relayed field is a huge string.
    huge: Vec<u8>,
}

fn h(pairs: &[(&str, &str)]) -> Headers {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn long() -> String {
    "a".repeat(100_000)
}

fn specs() -> Vec<Spec> {
    let fixture = |name: &str| std::fs::read(testdata().join(name)).unwrap();
    vec![
        Spec {
            source: "GitHub",
            key_file: "github_key",
            registry_host: None,
            body: fixture("github_payload"),
            headers: |key, body| {
                h(&[
                    ("Content-Type", "application/json"),
                    ("X-GitHub-Event", "push"),
                    ("X-Hub-Signature-256", &sign(Algorithm::Sha256, key, body)),
                ])
            },
            signature: Some(("X-Hub-Signature-256", true)),
            // GitHub's other events are acknowledged, not refused.
            event: Some(("X-GitHub-Event", "issues", 200)),
            wrong_event_body: None,
            huge: format!(r#"{{"ref":"refs/heads/{}","repository":{{"ssh_url":"git@github.com:a/b.git"}}}}"#, long()).into_bytes(),
        },
        Spec {
            source: "GitLab",
            key_file: "gitlab_key",
            registry_host: None,
            body: fixture("gitlab_payload"),
            headers: |key, _| {
                h(&[
                    ("X-Gitlab-Event", "Push Hook"),
                    ("X-Gitlab-Token", std::str::from_utf8(key).unwrap()),
                ])
            },
            signature: Some(("X-Gitlab-Token", false)),
            event: Some(("X-Gitlab-Event", "Issue Hook", 400)),
            wrong_event_body: None,
            huge: format!(r#"{{"ref":"refs/heads/main","project":{{"git_ssh_url":"git@x:{}.git"}}}}"#, long()).into_bytes(),
        },
        Spec {
            source: "BitbucketCloud",
            key_file: "bitbucket_cloud_key",
            registry_host: None,
            body: fixture("bitbucket_cloud_payload"),
            headers: |_, _| {
                h(&[
                    ("Content-Type", "application/json; charset=UTF-8"),
                    ("X-Event-Key", "repo:push"),
                ])
            },
            signature: None,
            event: Some(("X-Event-Key", "repo:fork", 400)),
            wrong_event_body: None,
            huge: format!(r#"{{"push":{{"changes":[{{"new":{{"name":"{}"}}}}]}},"repository":{{"full_name":"a/b"}}}}"#, long()).into_bytes(),
        },
        Spec {
            source: "BitbucketServer",
            key_file: "bitbucket_server_key",
            registry_host: None,
            body: fixture("bitbucket_server_payload"),
            headers: |key, body| {
                h(&[
                    ("Content-Type", "application/json; charset=UTF-8"),
                    ("X-Event-Key", "repo:refs_changed"),
                    ("X-Hub-Signature", &sign(Algorithm::Sha256, key, body)),
                ])
            },
            signature: Some(("X-Hub-Signature", true)),
            event: Some(("X-Event-Key", "pr:opened", 400)),
            wrong_event_body: None,
            huge: format!(r#"{{"repository":{{"links":{{"clone":[{{"name":"ssh","href":"ssh://git@x/a.git"}}]}}}},"changes":[{{"ref":{{"id":"refs/heads/{}","type":"BRANCH"}}}}]}}"#, long()).into_bytes(),
        },
        Spec {
            source: "DockerHub",
            key_file: "dockerhub_key",
            registry_host: None,
            body: fixture("dockerhub_payload"),
            headers: |_, _| h(&[("Content-Type", "application/json")]),
            signature: None,
            event: None,
            wrong_event_body: None,
            huge: format!(r#"{{"repository":{{"repo_name":"org/{}"}}}}"#, long()).into_bytes(),
        },
        Spec {
            source: "Quay",
            key_file: "quay_key",
            registry_host: None,
            body: fixture("quay_payload"),
            headers: |_, _| h(&[]),
            signature: None,
            event: None,
            wrong_event_body: None,
            huge: format!(r#"{{"docker_url":"quay.io/org/{}"}}"#, long()).into_bytes(),
        },
        Spec {
            source: "Harbor",
            key_file: "harborV2_key",
            registry_host: None,
            body: fixture("harborV2_payload"),
            headers: |key, _| h(&[("Authorization", std::str::from_utf8(key).unwrap())]),
            signature: Some(("Authorization", false)),
            event: None,
            wrong_event_body: Some(
                String::from_utf8(fixture("harborV2_payload"))
                    .unwrap()
                    .replace("PUSH_ARTIFACT", "DELETE_ARTIFACT")
                    .into_bytes(),
            ),
            huge: format!(r#"{{"type":"PUSH_ARTIFACT","event_data":{{"resources":[{{"resource_url":"h.example.com/a/{}:1"}}]}}}}"#, long()).into_bytes(),
        },
        Spec {
            source: "Nexus",
            key_file: "nexus_key",
            registry_host: Some("container.example.com"),
            body: fixture("nexus_payload"),
            headers: |key, body| {
                let sig = sign(Algorithm::Sha1, key, body);
                h(&[
                    ("X-Nexus-Webhook-Id", "rm:repository:component"),
                    ("X-Nexus-Webhook-Delivery", "bd9e6aef-0e27-4570-980d-f639c49ab5ed"),
                    ("X-Nexus-Webhook-Signature", sig.trim_start_matches("sha1=")),
                ])
            },
            signature: Some(("X-Nexus-Webhook-Signature", false)),
            event: Some(("X-Nexus-Webhook-Id", "rm:repository:asset", 400)),
            wrong_event_body: Some(
                String::from_utf8(fixture("nexus_payload"))
                    .unwrap()
                    .replace("CREATED", "DELETED")
                    .into_bytes(),
            ),
            huge: format!(r#"{{"action":"CREATED","component":{{"format":"docker","name":"a/{}"}}}}"#, long()).into_bytes(),
        },
        Spec {
            source: "GoogleContainerRegistry",
            key_file: "gcr_key",
            registry_host: None,
            body: fixture("gcr_payload"),
            headers: |_, _| h(&[("Content-Type", "application/json")]),
            signature: None,
            event: None,
            wrong_event_body: None,
            huge: {
                let data = base64::engine::general_purpose::STANDARD.encode(format!(
                    r#"{{"action":"INSERT","tag":"gcr.io/p/{}:1"}}"#,
                    long()
                ));
                format!(r#"{{"message":{{"data":"{data}"}},"subscription":"s"}}"#).into_bytes()
            },
        },
    ]
}

/// A request to send and the status it must get.
struct Case {
    name: String,
    headers: Headers,
    body: Vec<u8>,
    status: u16,
}

fn cases(spec: &Spec, key: &[u8]) -> Vec<Case> {
    let signed = |body: &[u8]| (spec.headers)(key, body);
    let case = |name: &str, headers: Headers, body: Vec<u8>, status| Case {
        name: format!("{} {name}", spec.source),
        headers,
        body,
        status,
    };
    let mut cases = vec![case("valid", signed(&spec.body), spec.body.clone(), 200)];

    // Payload faults, correctly signed so that the payload is what fails.
    let half = spec.body[..spec.body.len() / 2].to_vec();
    let wrong_types = br#"{"ref":5,"repository":5,"project":5,"push":5,"changes":5,"docker_url":5,"type":5,"event_data":5,"action":5,"component":5,"message":5}"#.to_vec();
    let mut not_utf8 = b"\xff\xfe\x00".to_vec();
    not_utf8.extend_from_slice(&spec.body);
    for (name, body) in [
        ("empty body", Vec::new()),
        ("truncated JSON", half),
        ("wrong JSON types", wrong_types),
        ("non-UTF-8 bytes", not_utf8),
        ("huge string", spec.huge.clone()),
    ] {
        cases.push(case(name, signed(&body), body, 400));
    }

    if let Some((header, prefixed)) = spec.signature {
        let without = |headers: Headers| -> Headers {
            headers.into_iter().filter(|(k, _)| k != header).collect()
        };
        let replaced = |value: String| -> Headers {
            let mut hs = without(signed(&spec.body));
            hs.push((header.to_string(), value));
            hs
        };
        let value_for = |key: &[u8], body: &[u8]| -> String {
            (spec.headers)(key, body)
                .into_iter()
                .find(|(k, _)| k == header)
                .unwrap()
                .1
        };
        cases.push(case(
            "missing signature",
            without(signed(&spec.body)),
            spec.body.clone(),
            401,
        ));
        cases.push(case(
            "wrong key",
            replaced(value_for(b"not the key", &spec.body)),
            spec.body.clone(),
            401,
        ));
        cases.push(case(
            "empty signature",
            replaced(String::new()),
            spec.body.clone(),
            401,
        ));
        if value_for(key, b"other body") != value_for(key, &spec.body) {
            cases.push(case(
                "signature of a different body",
                replaced(value_for(key, b"{\"other\":\"body\"}")),
                spec.body.clone(),
                401,
            ));
        }
        if prefixed {
            let good = value_for(key, &spec.body);
            let (_, hex) = good.split_once('=').unwrap();
            cases.push(case(
                "wrong algorithm prefix",
                replaced(format!("sha512={hex}")),
                spec.body.clone(),
                401,
            ));
            cases.push(case(
                "unknown algorithm",
                replaced(format!("md5={hex}")),
                spec.body.clone(),
                401,
            ));
        }
    }

    if let Some((header, wrong, status)) = spec.event {
        let without: Headers = signed(&spec.body)
            .into_iter()
            .filter(|(k, _)| k != header)
            .collect();
        let mut wrong_event = without.clone();
        wrong_event.push((header.to_string(), wrong.to_string()));
        cases.push(case(
            "missing event header",
            without,
            spec.body.clone(),
            400,
        ));
        cases.push(case("wrong event", wrong_event, spec.body.clone(), status));
    }
    if let Some(body) = &spec.wrong_event_body {
        cases.push(case(
            "wrong event in payload",
            signed(body),
            body.clone(),
            400,
        ));
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_input_gets_its_4xx_and_nothing_reaches_fluxd() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let specs = specs();
    let mut yaml = String::new();
    for s in &specs {
        yaml.push_str(&format!(
            "- source: {}\n  keyPath: {}\n",
            s.source,
            testdata().join(s.key_file).display()
        ));
        if let Some(host) = s.registry_host {
            yaml.push_str(&format!("  registryHost: {host}\n"));
        }
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
    for spec in &specs {
        let key = std::fs::read(testdata().join(spec.key_file)).unwrap();
        let key_text = String::from_utf8_lossy(&key).trim().to_string();
        // The GCR fixture's key is "gcr", which every GCR image name contains;
        // a key that short protects nothing and cannot be searched for.
        if key_text.len() >= 16 {
            secrets.push((format!("{} key", spec.source), key_text));
        }
        let fp = flux_recv::endpoint::fingerprint(&key, spec.registry_host);
        for case in cases(spec, &key) {
            for (k, v) in &case.headers {
                if Some(k.as_str()) == spec.signature.map(|s| s.0) && v.len() >= 16 {
                    let value = v.split_once('=').map_or(v.as_str(), |(_, hex)| hex);
                    secrets.push((format!("{} signature", case.name), value.to_string()));
                }
            }
            let reply = post(recv.url(&format!("/hook/{fp}")), case.headers, case.body).await;
            assert_eq!(reply.status, case.status, "{}: {}", case.name, reply.body);
            let sent = fluxd.take();
            if case.name.ends_with(" valid") {
                assert_eq!(sent.len(), 1, "{}", case.name);
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
    assert_eq!(count, 88, "cases per source changed");

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
