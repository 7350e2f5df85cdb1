#![no_main]
//! Verify and parse of every source on arbitrary deliveries: the input's
//! first byte picks the source among `Source::all()`, so a provider is
//! fuzzed as soon as it is listed; the rest is the delivery (see the
//! harness, `fuzz/src/lib.rs`). `FUZZ_SOURCE=GitLab` fuzzes that source
//! alone.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = flux_recv_fuzz::run_any(data);
});
