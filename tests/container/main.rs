//! The deployment files under `container/`.
//!
//! Every YAML file parses and every kustomization names files that exist.
//! Where `kubectl` is installed, each example is rendered with kubectl's own
//! kustomize over a stand-in of an operator's Flux v1 install
//! (`testdata/flux-v1/`, in the shape of Flux's deploy manifests), and the
//! rendered objects are checked: flux-recv's container, Secret volume,
//! Service, Ingress and NetworkPolicy are added, fluxd and everything else
//! are left exactly as they were, and each config finds its keys where the
//! pod mounts them. The Helm chart's values are checked against the
//! Component's container and against Flux v1's own chart, rendered by helm
//! from a pinned copy (`testdata/flux-v1-chart/`). The configs are also run through
//! `flux-recv check` and `endpoints` from a checkout, as an operator would.
//! Last, the image the smoke script builds is the Dockerfile's final stage.
//!
//! - `files`: the YAML files and kustomizations as files;
//! - `workspace`: a copy of container/ beside a stand-in Flux install, and
//!   rendering it with kubectl;
//! - `objects`: the rendered objects, and what flux-recv must add to them;
//! - `kustomize`: the examples rendered and checked;
//! - `helm`: the Helm route, against Flux v1's chart as helm renders it;
//! - `standalone`: the standalone base for Flux v2, with its example
//!   Receiver;
//! - `checkout`: `check` and `endpoints` on each example's config;
//! - `image`: the Dockerfile and the smoke image.

mod checkout;
mod files;
mod helm;
mod image;
mod kustomize;
mod objects;
mod standalone;
mod workspace;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn container() -> PathBuf {
    root().join("container")
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn parse_docs(text: &str, what: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            Value::deserialize(doc).unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn read_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    parse_docs(&text, &path.display().to_string())
}

/// Every YAML file under container/, with its documents.
fn yaml_files() -> BTreeMap<PathBuf, Vec<Value>> {
    let mut files = Vec::new();
    files_under(&container(), &mut files);
    files
        .into_iter()
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .map(|p| {
            let docs = read_docs(&p);
            (p, docs)
        })
        .collect()
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .map(|x| x.as_str().expect("a list of strings").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Walk a path of mapping keys.
fn at<'v>(v: &'v Value, path: &[&str]) -> &'v Value {
    path.iter().fold(v, |v, k| &v[*k])
}

fn seq(v: &Value) -> &Vec<Value> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
}

fn named<'v>(list: &'v Value, name: &str) -> &'v Value {
    seq(list)
        .iter()
        .find(|x| x["name"] == name)
        .unwrap_or_else(|| panic!("nothing named {name} in {list:?}"))
}

/// Whether every label a selector asks for is on `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_mapping().expect("a label selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// A Secret volume's mode as Kubernetes reads the file: YAML 1.1, where the
/// `0444` written in the files is octal. (serde_yaml reads YAML 1.2; the
/// rendered output already says 292.)
fn mode_as_written(v: &Value) -> u64 {
    // serde_yaml keeps `0444` as a string rather than guess.
    let digits = match v {
        Value::String(s) => s.clone(),
        other => other.as_u64().expect("a mode").to_string(),
    };
    u64::from_str_radix(&digits, 8).expect("octal digits")
}
