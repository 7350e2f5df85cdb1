//! The fuzz targets' harness (`fuzz/src/lib.rs`) under `cargo test`: for
//! every source, a thousand deliveries made from pseudo-random bytes
//! (a fixed seed, so a failure repeats), signed with the key, with another
//! key, without their proof or with a random one. Nothing may panic, and
//! what is signed with another key, or unsigned where a proof is required,
//! must be refused as unauthorized. `scripts/fuzz` runs the same harness
//! under libFuzzer for as long as one likes.

#[path = "../../fuzz/src/lib.rs"]
mod harness;

use flux_recv::source::Source;

#[test]
fn wrongly_signed_and_unsigned_deliveries_are_refused_by_every_source() {
    for source in Source::all() {
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut runs = 0;
        let mut refusals = 0;
        for _ in 0..1000 {
            let len = rng.usize(..600);
            let data: Vec<u8> = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
            if let Some(refused) = harness::run(source, &data) {
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
