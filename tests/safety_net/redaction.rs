//! Keys never shown, wherever a value that holds one could be printed: the
//! endpoint table in a `{:?}` (what a log line or a panic message would
//! show, through `Secret`'s `Debug`), and what `endpoints` and `check`
//! print about a config. (What the server logs, replies and counts is
//! searched for every key in `bad_input`, `metrics` and `replies`; a config
//! that is a key, in `commands/check` and `reload/tables`.)

use std::process::Command;

use base64::prelude::*;

use crate::common::write_config;
use flux_recv::source::{Extra, Source};
use flux_recv::table::Table;

/// A config with one endpoint per source, each with its own key; the keys.
fn every_source(dir: &std::path::Path) -> (std::path::PathBuf, Vec<String>) {
    let mut yaml = String::new();
    let mut keys = Vec::new();
    for source in Source::all() {
        let name = source.name();
        let key = format!("redaction-{name}-0123456789abcdef");
        if source.needs_signing_secret() {
            // A signing secret: neither it nor the bytes it decodes to
            // may show.
            let secret = format!("whsec_{}", BASE64_STANDARD.encode(&key));
            std::fs::write(dir.join(format!("{name}.key")), &secret).unwrap();
            keys.push(secret);
        } else {
            std::fs::write(dir.join(format!("{name}.key")), &key).unwrap();
        }
        yaml.push_str(&format!("- source: {name}\n  keyPath: {name}.key\n"));
        if source.takes(Extra::Notify) {
            yaml.push_str("  notify: {image: registry.example.com/team/app}\n");
        }
        keys.push(key);
    }
    (
        write_config(dir, "http://127.0.0.1:3030/api/flux", &yaml),
        keys,
    )
}

#[test]
fn a_table_in_a_debug_line_shows_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let (config, keys) = every_source(dir.path());
    let loaded = Table::load(&config, None);
    let table = loaded
        .table
        .unwrap_or_else(|| panic!("{:#?}", loaded.problems));
    for shown in [format!("{table:?}"), format!("{table:#?}")] {
        for key in &keys {
            assert!(!shown.contains(key.as_str()), "{key} in {shown}");
        }
        // The keys are there, as their lengths.
        let length = format!("Secret(<{} bytes>)", keys[0].len());
        assert!(shown.contains(&length), "{shown}");
    }
}

#[test]
fn endpoints_and_check_print_no_key() {
    let dir = tempfile::tempdir().unwrap();
    let (config, keys) = every_source(dir.path());
    let config = config.to_str().unwrap();
    for args in [
        &["endpoints", "--config", config][..],
        &["endpoints", "--config", config, "--output", "json"],
        &["check", "--config", config],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_flux-recv"))
            .args(args)
            .env_remove("FLUXRECV_API")
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!said.is_empty(), "{args:?}");
        for key in &keys {
            assert!(!said.contains(key.as_str()), "{args:?}: {key} in {said}");
        }
    }
}
