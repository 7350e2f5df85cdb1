//! Verify + parse of one delivery, per source: what a hook costs before the
//! relay. Each case is the provider's own sample delivery (what `flux-recv
//! send` posts), signed the way the provider signs it, and handed to
//! [`Source::handle`] exactly as the server does after reading the body; a
//! second case per signing source carries a wrong signature.
//!
//! Run with `cargo bench --bench sources`; figures are time per hook.

use criterion::{criterion_group, criterion_main, Criterion};
use flux_recv::notification::Change;
use flux_recv::source::{Extra, Outcome, SampleRequest, Secret, Settings, Source};

const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

fn verify_and_parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify+parse");
    let settings = Settings {
        key: Secret::new(KEY.to_vec()),
        ..Settings::default()
    };
    let wrong = Settings {
        key: Secret::new(b"not the key the delivery was signed with".to_vec()),
        ..Settings::default()
    };
    for source in Source::all() {
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
            .sample(&SampleRequest::push(KEY))
            .expect("every source has a push sample");
        let headers = delivery.header_map();
        let body = delivery.body;
        // Measure the path we mean to: a genuine hook is relayed, a forged
        // one refused.
        match source.handle(&headers, &body, &settings) {
            Ok(Outcome::Notify(changes)) => assert!(!changes.is_empty()),
            other => panic!("{source}: unexpected {other:?}"),
        }
        group.bench_function(source.name(), |b| {
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
            group.bench_function(format!("{source}, wrong signature"), |b| {
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
