//! Where kubectl renders the kustomizations: a temp copy of container/
//! with the stand-in Flux install and fresh keys, and whether kubectl is
//! there to render it at all.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_yaml::Value;

use crate::{container, parse_docs, root};

fn kubectl_found() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// False, after saying so, where kubectl is not installed. Under `.ci/run`
/// (`FLUXRECV_CI` set) kubectl is part of the machine, so its absence fails
/// the test rather than passing it unchecked.
pub fn can_render(test: &str) -> bool {
    if !kubectl_found() {
        if std::env::var_os("FLUXRECV_CI").is_some() {
            panic!(
                "{test}: kubectl is not installed, and FLUXRECV_CI is set (.ci/run): \
                 CI machines have kubectl (1.21 or later) to render the kustomizations"
            );
        }
        eprintln!(
            "SKIPPED {test}: kubectl is not installed, so the kustomizations were not \
             rendered (install kubectl 1.21 or later to run this test)"
        );
    }
    kubectl_found()
}

/// A temp copy of container/ laid out as an operator would have it: the
/// stand-in Flux install where the examples expect theirs (`../flux`), and
/// a key made by `flux-recv keygen` wherever a config names one.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(&container(), dir.path());
        copy_dir(
            &root().join("testdata/flux-v1"),
            &dir.path().join("kubernetes/flux"),
        );
        let ws = Workspace { dir };
        for key in [
            "kubernetes/example/github.key",
            "kubernetes/example-two-secrets/fluxrecv-keys/github.key",
            "helm/github.key",
        ] {
            let out = ws.path(key);
            // A key left in the source tree by someone trying the example
            // came along with the copy; make a fresh one.
            let _ = std::fs::remove_file(&out);
            let status = Command::new(env!("CARGO_BIN_EXE_flux-recv"))
                .arg("keygen")
                .arg("--out")
                .arg(&out)
                .status()
                .unwrap();
            assert!(status.success(), "keygen --out {}", out.display());
        }
        ws
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn render(&self, rel: &str) -> Vec<Value> {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(self.path(rel))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {rel} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        parse_docs(&String::from_utf8(out.stdout).unwrap(), rel)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}
