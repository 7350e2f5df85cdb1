#![no_main]
//! The config loader on arbitrary files: parse and, when that succeeds,
//! build a table (key files will mostly be missing: errors, not panics).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("/nonexistent/fluxrecv.yaml");
    if let Ok(config) = flux_recv::config::ConfigFile::parse(path, data) {
        let _ = flux_recv::table::Table::build(path, &config, None);
    }
});
