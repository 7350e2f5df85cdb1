#![no_main]
//! Verify and parse of the Gogs source on arbitrary deliveries.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = flux_recv_fuzz::run(flux_recv::source::Source::named("Gogs"), data);
});
