//! Verify + parse of one delivery, per source: what a hook costs before the
//! relay. Each case is a fixture from `testdata/` with its key, signed the
//! way the provider signs it (as in `testdata/cases.json`), and handed to
//! [`Source::handle`] exactly as the server does after reading the body.
//!
//! Run with `cargo bench --bench sources`; figures are time per hook.

use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use flux_recv::source::verify::{sign, Algorithm};
use flux_recv::source::{Outcome, Settings, Source};
use flux_recv::table::Table;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// Builds a request's headers from the key and the body.
type HeaderFn = fn(key: &[u8], body: &[u8]) -> Vec<(&'static str, String)>;

/// One delivery to benchmark.
struct Case {
    name: &'static str,
    source: Source,
    key_file: &'static str,
    registry_host: Option<&'static str>,
    body_file: &'static str,
    /// The request's headers, given the key and the body.
    headers: HeaderFn,
    /// Whether the delivery is genuine (the wrong-signature case is not).
    genuine: bool,
}

fn key_text(key: &[u8]) -> String {
    String::from_utf8(key.to_vec()).expect("token keys are text")
}

const CASES: &[Case] = &[
    Case {
        name: "GitHub",
        source: Source::GitHub,
        key_file: "github_key",
        registry_host: None,
        body_file: "github_payload",
        headers: |key, body| {
            vec![
                ("Content-Type", "application/json".into()),
                ("X-GitHub-Event", "push".into()),
                ("X-Hub-Signature-256", sign(Algorithm::Sha256, key, body)),
            ]
        },
        genuine: true,
    },
    Case {
        name: "GitHub, wrong signature",
        source: Source::GitHub,
        key_file: "github_key",
        registry_host: None,
        body_file: "github_payload",
        headers: |_key, body| {
            vec![
                ("Content-Type", "application/json".into()),
                ("X-GitHub-Event", "push".into()),
                (
                    "X-Hub-Signature-256",
                    sign(Algorithm::Sha256, b"not the key", body),
                ),
            ]
        },
        genuine: false,
    },
    Case {
        name: "GitLab",
        source: Source::GitLab,
        key_file: "gitlab_key",
        registry_host: None,
        body_file: "gitlab_payload",
        headers: |key, _body| {
            vec![
                ("Content-Type", "application/json".into()),
                ("X-Gitlab-Event", "Push Hook".into()),
                ("X-Gitlab-Token", key_text(key)),
            ]
        },
        genuine: true,
    },
    Case {
        name: "BitbucketCloud",
        source: Source::BitbucketCloud,
        key_file: "bitbucket_cloud_key",
        registry_host: None,
        body_file: "bitbucket_cloud_payload",
        headers: |_key, _body| {
            vec![
                ("Content-Type", "application/json".into()),
                ("X-Event-Key", "repo:push".into()),
            ]
        },
        genuine: true,
    },
    Case {
        name: "BitbucketServer",
        source: Source::BitbucketServer,
        key_file: "bitbucket_server_key",
        registry_host: None,
        body_file: "bitbucket_server_payload",
        headers: |key, body| {
            vec![
                ("Content-Type", "application/json".into()),
                ("X-Event-Key", "repo:refs_changed".into()),
                ("X-Hub-Signature", sign(Algorithm::Sha256, key, body)),
            ]
        },
        genuine: true,
    },
    Case {
        name: "DockerHub",
        source: Source::DockerHub,
        key_file: "dockerhub_key",
        registry_host: None,
        body_file: "dockerhub_payload",
        headers: |_key, _body| vec![],
        genuine: true,
    },
    Case {
        name: "Quay",
        source: Source::Quay,
        key_file: "quay_key",
        registry_host: None,
        body_file: "quay_payload",
        headers: |_key, _body| vec![],
        genuine: true,
    },
    Case {
        name: "Harbor 1.x",
        source: Source::Harbor,
        key_file: "harbor_key",
        registry_host: None,
        body_file: "harbor_payload",
        headers: |key, _body| vec![("Authorization", key_text(key))],
        genuine: true,
    },
    Case {
        name: "Harbor 2.x",
        source: Source::Harbor,
        key_file: "harborV2_key",
        registry_host: None,
        body_file: "harborV2_payload",
        headers: |key, _body| vec![("Authorization", key_text(key))],
        genuine: true,
    },
    Case {
        name: "Nexus",
        source: Source::Nexus,
        key_file: "nexus_key",
        registry_host: Some("container.example.com"),
        body_file: "nexus_payload",
        headers: |key, body| {
            let sig = sign(Algorithm::Sha1, key, body);
            vec![
                ("X-Nexus-Webhook-Id", "rm:repository:component".into()),
                (
                    "X-Nexus-Webhook-Signature",
                    sig.trim_start_matches("sha1=").into(),
                ),
            ]
        },
        genuine: true,
    },
    Case {
        name: "GoogleContainerRegistry",
        source: Source::GoogleContainerRegistry,
        key_file: "gcr_key",
        registry_host: None,
        body_file: "gcr_payload",
        headers: |_key, _body| vec![],
        genuine: true,
    },
];

fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// Each case's settings, built the way flux-recv builds them: a config file
/// naming the testdata keys, loaded into a table.
fn settings() -> Vec<Settings> {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = String::from("fluxRecvVersion: 1\nendpoints:\n");
    for case in CASES.iter().filter(|c| c.genuine) {
        let key = testdata().join(case.key_file);
        config += &format!("- source: {}\n  keyPath: {}\n", case.source, key.display());
        if let Some(host) = case.registry_host {
            config += &format!("  registryHost: {host}\n");
        }
    }
    let path = dir.path().join("fluxrecv.yaml");
    std::fs::write(&path, config).expect("write config");
    let table = Table::load(&path)
        .table
        .expect("the bench config has no errors");
    CASES
        .iter()
        .map(|case| {
            let key = testdata().join(case.key_file);
            let endpoint = table
                .endpoints()
                .iter()
                .find(|e| e.key_path == key)
                .expect("every key is in the table");
            endpoint.settings.clone()
        })
        .collect()
}

fn verify_and_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify+parse");
    for (case, settings) in CASES.iter().zip(settings()) {
        let body = std::fs::read(testdata().join(case.body_file)).expect("fixture");
        let mut headers = HeaderMap::new();
        for (name, value) in (case.headers)(settings.key.expose(), &body) {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(&value).expect("header value"),
            );
        }
        // Measure the path we mean to: a genuine hook is relayed, a forged
        // one refused.
        let outcome = case.source.handle(&headers, &body, &settings);
        match (case.genuine, &outcome) {
            (true, Ok(Outcome::Notify(changes))) => assert!(!changes.is_empty()),
            (false, Err(e)) => assert_eq!(e.status(), 401),
            _ => panic!("{}: unexpected {outcome:?}", case.name),
        }
        group.bench_function(case.name, |b| {
            b.iter(|| {
                case.source.handle(
                    std::hint::black_box(&headers),
                    std::hint::black_box(&body),
                    &settings,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, verify_and_parse);
criterion_main!(benches);
