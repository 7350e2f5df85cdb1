//! Verify + parse of one delivery, per source: what a hook costs before the
//! relay. Each case is the provider's own sample delivery (what `flux-recv
//! send` posts), signed the way the provider signs it, and handed to
//! [`Source::handle`] exactly as the server does after reading the body; a
//! second case per signing source carries a wrong signature. GitLab is
//! measured twice: with a secret token, and with a signing token (a Standard
//! Webhooks signature, as the StandardWebhooks source checks).
//!
//! Run with `cargo bench --bench sources`; figures are time per hook.

use criterion::{criterion_group, criterion_main, Criterion};
use flux_recv::notification::Change;
use flux_recv::source::{Extra, Outcome, SampleRequest, Secret, Settings, Source};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
/// A signing secret, and another one, for the sources that verify those.
const SECRET: &[u8] = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const OTHER_SECRET: &[u8] = b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn verify_and_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify+parse");
    // Each source with its kind of key, then GitLab with a signing token.
    let cases = Source::all()
        .map(|source| match source.needs_signing_secret() {
            true => (source, SECRET, OTHER_SECRET, source.name().to_string()),
            false => (
                source,
                KEY,
                &b"not the key the delivery was signed with"[..],
                source.name().to_string(),
            ),
        })
        .chain([(
            Source::named("GitLab"),
            SECRET,
            OTHER_SECRET,
            "GitLab (signing token)".to_string(),
        )]);
    for (source, key, wrong_key, name) in cases {
        let settings = Settings {
            key: Secret::new(key.to_vec()),
            ..Settings::default()
        };
        let wrong = Settings {
            key: Secret::new(wrong_key.to_vec()),
            ..Settings::default()
        };
        // Sources that send what the endpoint names need a `notify:` block,
        // as their endpoints have.
        let notify = if source.takes(Extra::Notify) {
            vec![Change::git("git@github.com:example/app.git", "main")]
        } else {
            Vec::new()
        };
        let settings = Settings {
            notify: notify.clone(),
            ..settings.clone()
        };
        let wrong = Settings {
            notify,
            ..wrong.clone()
        };
        let delivery = source
            .sample(&SampleRequest::push(key))
            .expect("every source has a push sample");
        let headers = delivery.header_map();
        let body = delivery.body;
        // Measure the path we mean to: a genuine hook is relayed, a forged
        // one refused.
        match source.handle(&headers, &body, &settings) {
            Ok(Outcome::Notify(changes)) => assert!(!changes.is_empty()),
            other => panic!("{source}: unexpected {other:?}"),
        }
        group.bench_function(&name, |b| {
            b.iter(|| {
                source.handle(
                    std::hint::black_box(&headers),
                    std::hint::black_box(&body),
                    &settings,
                )
            })
        });
        if source.verifies_sender() {
            let refused = source.handle(&headers, &body, &wrong);
            assert!(
                refused.as_ref().is_err_and(|e| e.is_unauthorized()),
                "{source}: {refused:?}"
            );
            group.bench_function(format!("{name}, wrong signature"), |b| {
                b.iter(|| {
                    source.handle(
                        std::hint::black_box(&headers),
                        std::hint::black_box(&body),
                        &wrong,
                    )
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, verify_and_parse);
criterion_main!(benches);
