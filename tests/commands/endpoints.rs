//! `flux-recv endpoints`: each endpoint's fingerprint and hook URL, as
//! text or JSON, matching the Go original's fingerprints.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::common::{testdata, write_config};
use crate::{path_str, run, stderr, stdout};

/// A config with one endpoint per fingerprint of the Go original's test
/// cases, keys referenced in testdata/. Returns the config and the
/// (fingerprint → source) the cases expect.
fn conformance_config(dir: &Path) -> (PathBuf, BTreeMap<String, String>) {
    let cases: Value =
        serde_json::from_slice(&std::fs::read(testdata().join("cases.json")).unwrap()).unwrap();
    let mut expected = BTreeMap::new();
    let mut yaml = String::new();
    for case in cases["cases"].as_array().unwrap() {
        let fp = case["fingerprint"].as_str().unwrap().to_string();
        let ep = &case["endpoint"];
        let source = ep["source"].as_str().unwrap().to_string();
        if expected.insert(fp, source.clone()).is_some() {
            continue;
        }
        let key = testdata().join(ep["keyPath"].as_str().unwrap());
        yaml.push_str(&format!(
            "- source: {source}\n  keyPath: {}\n",
            key.display()
        ));
        if let Some(host) = ep["registryHost"].as_str() {
            yaml.push_str(&format!("  registryHost: {host}\n"));
        }
    }
    let config = write_config(dir, "http://localhost:3030/api/flux", &yaml);
    (config, expected)
}

#[test]
fn endpoints_as_json_match_the_conformance_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let (config, expected) = conformance_config(dir.path());
    let o = run(&[
        "endpoints",
        "--config",
        path_str(&config),
        "--output",
        "json",
        "--base-url",
        "https://hooks.example.com/",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).expect("stdout is only JSON");
    assert_eq!(rows.len(), expected.len());
    assert_eq!(rows.len(), 10, "nine sources, Harbor twice");
    let mut got = BTreeMap::new();
    for (i, row) in rows.iter().enumerate() {
        let fp = row["fingerprint"].as_str().unwrap();
        assert_eq!(row["position"], json!(i + 1));
        assert_eq!(row["path"], json!(format!("/hook/{fp}")));
        assert_eq!(
            row["url"],
            json!(format!("https://hooks.example.com/hook/{fp}"))
        );
        assert!(row["keyPath"]
            .as_str()
            .unwrap()
            .starts_with(path_str(&testdata())));
        got.insert(fp.to_string(), row["source"].as_str().unwrap().to_string());
    }
    assert_eq!(got, expected);
    let nexus = rows.iter().find(|r| r["source"] == "Nexus").unwrap();
    assert_eq!(nexus["registryHost"], "container.example.com");
    assert_eq!(
        nexus["fingerprint"],
        "37aea278ec43e68f76dba33f66f39761190f8f3d6e86306c864868dc6063283a"
    );
    let docker = rows.iter().find(|r| r["source"] == "DockerHub").unwrap();
    assert_eq!(docker["verifiesSender"], false);
    // Warnings (the fixtures' keys end in newlines, or are short) go to
    // stderr, keeping stdout parseable.
    assert!(stderr(&o).contains("warning: "), "{}", stderr(&o));
}

#[test]
fn endpoints_as_text_one_row_each() {
    let dir = tempfile::tempdir().unwrap();
    let (config, expected) = conformance_config(dir.path());
    let o = run(&["endpoints", "--config", path_str(&config)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + expected.len(), "{text}");
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["#", "SOURCE", "KEY", "FINGERPRINT", "URL", "API", "FILTER"]
    );
    for (fp, source) in &expected {
        let line = lines
            .iter()
            .find(|l| l.contains(fp.as_str()))
            .unwrap_or_else(|| panic!("{fp} not listed:\n{text}"));
        assert!(line.contains(source.as_str()), "{line}");
        // Without --base-url, the path alone; then where changes go.
        assert!(line.contains(&format!("  /hook/{fp}  ")), "{line}");
        assert!(
            line.ends_with("  http://localhost:3030/api/flux  everything"),
            "{line}"
        );
    }
}

#[test]
fn endpoints_refuses_a_broken_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "http://localhost:3030/api/flux",
        "- source: GitHub\n  keyPath: missing.key\n",
    );
    let o = run(&["endpoints", "--config", path_str(&config)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    let err = stderr(&o);
    assert!(
        err.contains("error: ") && err.contains("endpoints[0].keyPath"),
        "{err}"
    );
}

#[test]
fn endpoints_take_the_api_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("github.key"),
        b"0123456789abcdef0123456789abcdef",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("tenant-b.key"),
        b"fedcba9876543210fedcba9876543210",
    )
    .unwrap();
    let config = write_config(
        dir.path(),
        "http://localhost:3030/api/flux",
        "- source: GitHub\n  keyPath: github.key\n\
         - source: GitHub\n  keyPath: tenant-b.key\n  api: http://tenant-b:3030/api/flux\n",
    );
    let endpoints = |api: &str| {
        crate::flux_recv(&[
            "endpoints",
            "--config",
            path_str(&config),
            "--output",
            "json",
        ])
        .env("FLUXRECV_API", api)
        .output()
        .unwrap()
    };

    let o = endpoints("http://flux-env:3030/api/flux");
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: Vec<Value> = serde_json::from_slice(&o.stdout).unwrap();
    // The variable replaces the config's top-level api; an endpoint's own
    // api still wins.
    assert_eq!(rows[0]["apis"], json!(["http://flux-env:3030/api/flux"]));
    assert_eq!(rows[1]["apis"], json!(["http://tenant-b:3030/api/flux"]));

    let o = endpoints("https://flux-env:3030/api/flux");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains("FLUXRECV_API") || stderr(&o).contains("--api"),
        "{}",
        stderr(&o)
    );
}
