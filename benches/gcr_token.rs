//! Checking one Pub/Sub push token against a cached key set, as every push
//! to an endpoint with a `gcr:` block does before its body is read:
//!
//! - `verify`: a genuine token (header, RS256 signature, claims);
//! - `bad_signature`: the same claims signed with another key.
//!
//! Run with `cargo bench --bench gcr_token`; figures are time per token.

use criterion::{criterion_group, criterion_main, Criterion};
use flux_recv::gcr_auth::Token;
use serde_json::json;

#[path = "../tests/common/gcr_token.rs"]
mod gcr_token;
use gcr_token::*;

const NOW: u64 = 1_700_000_000;

fn token(c: &mut Criterion) {
    let keys = google_keys();
    let expect = endpoint_auth();
    let genuine = signed(KID, &claims_at(NOW));
    let forged = sign(
        &json!({"alg": "RS256", "kid": KID, "typ": "JWT"}),
        &claims_at(NOW),
        &signing_key(KEY_TWO),
    );
    let check = |token: &str| Token::parse(token).and_then(|t| t.verify(&keys, &expect, NOW));
    assert!(check(&genuine).is_ok());
    assert!(check(&forged).is_err());

    let mut group = c.benchmark_group("gcr_token");
    group.bench_function("verify", |b| b.iter(|| check(&genuine)));
    group.bench_function("bad_signature", |b| b.iter(|| check(&forged)));
    group.finish();
}

criterion_group!(benches, token);
criterion_main!(benches);
