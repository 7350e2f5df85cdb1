//! What each benchmark measures is the path it means to, checked under
//! `cargo test` (benchmarks run only under `cargo bench`, so their own
//! checks would catch nothing in CI):
//!
//! - `benches/sources.rs`: every source's genuine sample is verified and
//!   relayed, and one signed with another key is refused as unauthorized;
//! - `benches/gcr_token.rs`: a genuine Pub/Sub push token is accepted, one
//!   signed with another key refused;
//! - `benches/table.rs`: a table of N endpoints is built whole;
//! - `benches/delivery.rs`: N distinct notifications, one submit each, all
//!   reach fluxd exactly once, whatever the number of relay workers.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::common::gcr_token::*;
use crate::common::{self, FakeFluxd};
use flux_recv::delivery::{Item, Queue, QueueSettings};
use flux_recv::gcr_auth::Token;
use flux_recv::notification::{Change, ImageName};
use flux_recv::source::{Extra, Outcome, Proof, SampleRequest, Secret, Settings, Source};
use flux_recv::targets::fluxd::{self, Fluxd};
use flux_recv::targets::Target;

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
/// A signing secret, and another one, for the sources that verify Standard
/// Webhooks signatures.
const SIGNING_SECRET: &[u8] = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const OTHER_SIGNING_SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[test]
fn each_source_relays_its_genuine_sample_and_refuses_another_keys() {
    for source in Source::all() {
        let notify = match source.takes(Extra::Notify) {
            true => vec![Change::git("git@github.com:example/app.git", "main")],
            false => Vec::new(),
        };
        let settings = |key: &[u8]| Settings {
            key: Secret::new(key.to_vec()),
            notify: notify.clone(),
            ..Settings::default()
        };
        // Sources that verify Standard Webhooks signatures take a signing
        // secret; a wrong one is another signing secret.
        let (key, wrong_key): (&[u8], &[u8]) = match source.needs_signing_secret() {
            true => (SIGNING_SECRET, OTHER_SIGNING_SECRET),
            false => (KEY, b"not the key the delivery was signed with"),
        };
        let delivery = source.sample(&SampleRequest::push(key)).unwrap();
        let headers = delivery.header_map();
        match source.handle(&headers, &delivery.body, &settings(key)) {
            Ok(Outcome::Notify(changes)) => assert!(!changes.is_empty(), "{source}"),
            other => panic!("{source}: {other:?}"),
        }
        let refused = source.handle(&headers, &delivery.body, &settings(wrong_key));
        match source.proof_for(key) {
            // Nothing is signed: nothing to refuse.
            Proof::HookUrl => assert!(refused.is_ok(), "{source}: {refused:?}"),
            // Signed, so checked, where a signature is optional too.
            Proof::Signature { .. }
            | Proof::HeaderToken { .. }
            | Proof::OptionalSignature { .. }
            | Proof::Stamped
            | Proof::SigningSecretOr(_) => {
                assert!(
                    refused.as_ref().is_err_and(|e| e.is_unauthorized()),
                    "{source}: {refused:?}"
                )
            }
        }
    }
}

#[test]
fn a_genuine_token_is_accepted_and_a_forged_one_refused() {
    const NOW: u64 = 1_700_000_000;
    let keys = google_keys();
    let expect = endpoint_auth();
    let check = |token: &str| Token::parse(token).and_then(|t| t.verify(&keys, &expect, NOW));
    assert_eq!(check(&signed(KID, &claims_at(NOW))).map(|_| ()), Ok(()));
    let forged = sign(
        &serde_json::json!({"alg": "RS256", "kid": KID, "typ": "JWT"}),
        &claims_at(NOW),
        &signing_key(KEY_TWO),
    );
    assert!(check(&forged).is_err());
}

#[test]
fn a_table_of_many_endpoints_is_built_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = String::new();
    for i in 0..100 {
        let key = format!("key-{i:03}");
        std::fs::write(
            dir.path().join(&key),
            format!("bench-secret-{i:03}-0123456789abcdef"),
        )
        .unwrap();
        yaml += &format!("- source: GitHub\n  keyPath: {key}\n");
    }
    let config = common::write_config(dir.path(), "http://127.0.0.1:3030/api/flux", &yaml);
    let loaded = flux_recv::table::Table::load(&config, None);
    let table = loaded
        .table
        .unwrap_or_else(|| panic!("{:#?}", loaded.problems));
    let fingerprints: BTreeSet<_> = table.endpoints().iter().map(|e| &e.fingerprint).collect();
    assert_eq!(fingerprints.len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_notifications_each_reach_fluxd_once_whatever_the_workers() {
    let fluxd = FakeFluxd::start().await;
    let target = Target::from(Fluxd::new(&fluxd.api()));
    let n = 200;
    for workers in [1, 2, 16, 64] {
        let log = slog::Logger::root(slog::Discard, slog::o!());
        let queue = Queue::start(
            QueueSettings {
                max_relays: workers,
                // One endpoint may hold half the queue: all n fit.
                max_pending: 2 * n,
                ..QueueSettings::default()
            },
            log,
        )
        .unwrap();
        let tickets: Vec<_> = (0..n)
            .map(|i| {
                let change = Change::image(ImageName {
                    domain: "registry.example.com".into(),
                    image: format!("team/app-{i}"),
                });
                let item = Item {
                    target: target.clone(),
                    outgoing: fluxd::notification(&change),
                    delivery: "".into(),
                    endpoint: "bench".into(),
                };
                queue.submit(vec![item]).expect("room")
            })
            .collect();
        let left = queue
            .drain(tokio::time::Instant::now() + Duration::from_secs(60))
            .await;
        assert!(left.is_empty(), "{workers} workers: {} left", left.len());
        drop(tickets);
        let received = fluxd.take();
        let distinct: BTreeSet<String> = received.iter().map(|n| n.to_string()).collect();
        assert_eq!(received.len(), n, "{workers} workers");
        assert_eq!(distinct.len(), n, "{workers} workers");
    }
}
