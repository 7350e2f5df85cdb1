#![no_main]
//! Verify and parse of the StandardWebhooks source on arbitrary deliveries.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    flux_recv_fuzz::run(flux_recv::source::Source::named("StandardWebhooks"), data);
});
