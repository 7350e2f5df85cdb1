//! The fuzz targets' harness (`fuzz/src/lib.rs`) under `cargo test`, as
//! the `source` target runs it: for every source, a thousand deliveries made from pseudo-random bytes
//! (a fixed seed, so a failure repeats), signed with the key, with another
//! key, without their proof or with a random one. Nothing may panic, and
//! what is signed with another key, or unsigned where a proof is required,
//! must be refused as unauthorized. `scripts/fuzz` runs the same harness
//! under libFuzzer for as long as one likes.

#[path = "../../fuzz/src/lib.rs"]
mod harness;

use flux_recv::source::Source;

/// Each input goes in as the `source` target takes it: its first byte
/// picks the source (here, each in turn), the rest is the delivery.
#[test]
fn wrongly_signed_and_unsigned_deliveries_are_refused_by_every_source() {
    assert_eq!(harness::fuzzed_sources().len(), Source::all().count());
    for (index, source) in Source::all().enumerate() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut runs = 0;
        let mut refusals = 0;
        for _ in 0..1000 {
            let len = rng.usize(..600);
            let delivery = std::iter::repeat_with(|| rng.u8(..)).take(len);
            let data: Vec<u8> = std::iter::once(index as u8).chain(delivery).collect();
            if let Some(refused) = harness::run_any(&data) {
                runs += 1;
                refusals += usize::from(refused);
            }
        }
        assert!(runs > 300, "{source}: only {runs} deliveries made");
        // A source that proves its senders had refusals to check.
        if source.provider().proof.header().is_some() {
            assert!(refusals > 50, "{source}: {refusals} refusals checked");
        }
    }
}

/// The one `source` target reaches every source: each value of the first
/// byte picks one, and together they pick them all.
#[test]
fn the_source_target_picks_every_source() {
    let all: Vec<Source> = Source::all().collect();
    assert_eq!(harness::fuzzed_sources(), all.as_slice());
    let mut picked = Vec::new();
    for first in 0..=u8::MAX {
        let data = [first, 7];
        let (source, rest) = harness::pick(&all, &data).unwrap();
        assert_eq!(rest, [7]);
        if !picked.contains(&source) {
            picked.push(source);
        }
    }
    assert_eq!(picked, all);
    assert!(harness::pick(&all, &[]).is_none());
}
