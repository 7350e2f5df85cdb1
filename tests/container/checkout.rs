//! From a checkout, without a cluster: `flux-recv check` and `endpoints`
//! on each example's config, as an operator runs them.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::workspace::Workspace;

fn flux_recv(args: &[&str], config: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flux-recv"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("FLUXRECV_CONFIG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_and_endpoints_run_on_each_example_from_a_checkout() {
    let ws = Workspace::new();
    for (config, key) in [
        (
            "kubernetes/example/fluxrecv.yaml",
            "kubernetes/example/github.key",
        ),
        (
            "kubernetes/example-two-secrets/fluxrecv/fluxrecv.yaml",
            "kubernetes/example-two-secrets/fluxrecv-keys/github.key",
        ),
        ("helm/fluxrecv.yaml", "helm/github.key"),
    ] {
        let config = ws.path(config);
        let (ok, out, err) = flux_recv(&["check"], &config);
        assert!(ok, "check {}:\n{out}{err}", config.display());

        // The hook URL is the one of the key beside the config, the one the
        // Secret will carry.
        let key = std::fs::read(ws.path(key)).unwrap();
        let url = format!(
            "https://hooks.example.com/hook/{}",
            hex::encode(Sha256::digest(&key))
        );
        let (ok, out, err) = flux_recv(
            &["endpoints", "--base-url", "https://hooks.example.com"],
            &config,
        );
        assert!(ok, "endpoints {}:\n{out}{err}", config.display());
        assert!(out.contains(&url), "{}: {out}", config.display());
    }
}
