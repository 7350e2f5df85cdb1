//! The files under `container/`: every YAML file parses (a typo fails CI
//! rather than an operator's `kubectl apply -k`), and the examples hang
//! together: kustomizations name files that exist, each config loads and
//! finds its keys where the Secrets are mounted, the probes and the
//! Ingress point where flux-recv answers, and the image is built as the
//! script builds it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use flux_recv::config::ConfigFile;
use serde::Deserialize;
use serde_yaml::Value;

fn container() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("container")
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

/// Every YAML file under container/, with its documents.
fn yaml_files() -> BTreeMap<PathBuf, Vec<Value>> {
    let mut files = Vec::new();
    files_under(&container(), &mut files);
    let mut parsed = BTreeMap::new();
    for path in files {
        let ext = path.extension().and_then(|e| e.to_str());
        if !matches!(ext, Some("yaml" | "yml")) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|doc| {
                Value::deserialize(doc)
                    .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
            })
            .filter(|v| !v.is_null())
            .collect();
        parsed.insert(path, docs);
    }
    parsed
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

#[test]
fn every_yaml_file_parses() {
    let files = yaml_files();
    // The main kustomization, its shared part and the two-Secrets example.
    assert!(files.len() >= 10, "{:#?}", files.keys());
    for (path, docs) in &files {
        assert!(!docs.is_empty(), "{} is empty", path.display());
    }
}

/// Operator-made keys (`flux-recv keygen --out …`) are not shipped, and a
/// remote base (Flux's own manifests) is fetched by kustomize.
fn shipped(entry: &str) -> bool {
    !entry.ends_with(".key") && !entry.contains("://") && !entry.starts_with("github.com/")
}

struct Kustomization {
    dir: PathBuf,
    doc: Value,
}

fn kustomizations() -> Vec<Kustomization> {
    yaml_files()
        .into_iter()
        .filter(|(path, _)| path.file_name().unwrap() == "kustomization.yaml")
        .map(|(path, docs)| Kustomization {
            dir: path.parent().unwrap().to_path_buf(),
            doc: docs.into_iter().next().unwrap(),
        })
        .collect()
}

#[test]
fn kustomizations_name_files_that_exist() {
    let all = kustomizations();
    assert_eq!(all.len(), 3, "main, common, two-secrets");
    for k in &all {
        assert_eq!(k.doc["kind"], "Kustomization", "{}", k.dir.display());
        let mut entries = str_list(&k.doc["resources"]);
        for generator in k.doc["secretGenerator"].as_sequence().into_iter().flatten() {
            for file in str_list(&generator["files"]) {
                // `name=path` names the key in the Secret differently.
                entries.push(file.rsplit('=').next().unwrap().to_string());
            }
        }
        for patch in k.doc["patches"].as_sequence().into_iter().flatten() {
            entries.push(patch["path"].as_str().unwrap().to_string());
        }
        for entry in entries.iter().filter(|e| shipped(e)) {
            let path = k.dir.join(entry);
            assert!(
                path.exists(),
                "{}/kustomization.yaml names {entry}, which does not exist",
                k.dir.display()
            );
        }
        if k.doc["secretGenerator"].is_sequence() {
            assert_eq!(
                at(&k.doc, &["generatorOptions", "disableNameSuffixHash"]),
                &Value::Bool(true),
                "{}: the Secret must keep its name for hot reload",
                k.dir.display()
            );
            assert_eq!(k.doc["namespace"], "flux");
        }
    }
}

/// The flux-recv container in a sidecar patch.
fn sidecar(patch: &Value) -> &Value {
    assert_eq!(patch["kind"], "Deployment");
    assert_eq!(at(patch, &["metadata", "name"]), "flux");
    at(patch, &["spec", "template", "spec", "containers"])
        .as_sequence()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "flux-recv")
        .expect("a flux-recv container")
}

fn patches() -> Vec<(PathBuf, Value)> {
    kustomizations()
        .into_iter()
        .flat_map(|k| {
            let dir = k.dir.clone();
            k.doc["patches"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |p| {
                    let path = dir.join(p["path"].as_str().unwrap());
                    let docs = &yaml_files()[&path];
                    (dir.clone(), docs[0].clone())
                })
        })
        .collect()
}

#[test]
fn the_sidecar_is_probed_where_flux_recv_answers_and_runs_locked_down() {
    let patches = patches();
    assert_eq!(patches.len(), 2);
    for (dir, patch) in &patches {
        let c = sidecar(patch);
        let here = dir.display();
        assert_eq!(
            at(c, &["readinessProbe", "httpGet", "path"]),
            "/ready",
            "{here}"
        );
        assert_eq!(
            at(c, &["readinessProbe", "httpGet", "port"]),
            8080,
            "{here}"
        );
        assert_eq!(
            at(c, &["livenessProbe", "httpGet", "path"]),
            "/health",
            "{here}"
        );
        assert_eq!(at(c, &["livenessProbe", "httpGet", "port"]), 8080, "{here}");
        assert!(str_list(&c["args"]).contains(&"--listen=:8080".to_string()));
        assert_eq!(at(c, &["ports"])[0]["containerPort"], 8080);

        let sc = &c["securityContext"];
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{here}");
        assert_eq!(sc["runAsNonRoot"], true, "{here}");
        assert_eq!(sc["runAsUser"], 65532, "{here}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{here}");
        assert_eq!(str_list(&sc["capabilities"]["drop"]), ["ALL"], "{here}");

        assert_eq!(at(c, &["resources", "requests", "memory"]), "16Mi");
        assert_eq!(at(c, &["resources", "limits", "memory"]), "64Mi");

        for mount in c["volumeMounts"].as_sequence().unwrap() {
            assert_eq!(mount["readOnly"], true, "{here}");
            // A subPath mount never sees a Secret update.
            assert!(mount["subPath"].is_null(), "{here}");
        }
    }
}

#[test]
fn each_config_loads_and_finds_its_keys_where_the_secrets_are_mounted() {
    let files = yaml_files();
    let mut checked = 0;
    for k in kustomizations() {
        let Some(generators) = k.doc["secretGenerator"].as_sequence() else {
            continue;
        };
        // Secret name → the file names it holds.
        let secrets: BTreeMap<String, BTreeSet<String>> = generators
            .iter()
            .map(|g| {
                let files = str_list(&g["files"])
                    .into_iter()
                    .map(|f| f.split('=').next().unwrap().to_string())
                    .collect();
                (g["name"].as_str().unwrap().to_string(), files)
            })
            .collect();
        // Mount path → Secret name, from this kustomization's patch.
        let (_, patch) = patches().into_iter().find(|(d, _)| *d == k.dir).unwrap();
        let volumes = at(&patch, &["spec", "template", "spec", "volumes"]);
        let mounts: BTreeMap<String, String> = sidecar(&patch)["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|m| {
                let volume = volumes
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|v| v["name"] == m["name"])
                    .expect("the mounted volume is declared");
                (
                    m["mountPath"].as_str().unwrap().to_string(),
                    at(volume, &["secret", "secretName"])
                        .as_str()
                        .unwrap()
                        .to_string(),
                )
            })
            .collect();

        // The config, where the server will read it.
        let config_path = "/etc/fluxrecv/fluxrecv.yaml";
        let config_dir = Path::new(config_path).parent().unwrap();
        assert!(str_list(&sidecar(&patch)["args"]).contains(&format!("--config={config_path}")));
        let config_secret = &mounts[config_dir.to_str().unwrap()];
        assert!(secrets[config_secret].contains("fluxrecv.yaml"));
        let local = k.dir.join("fluxrecv.yaml");
        assert!(files.contains_key(&local));
        let text = std::fs::read(&local).unwrap();
        let config = ConfigFile::parse(&local, &text)
            .unwrap_or_else(|p| panic!("{} does not load: {p}", local.display()));
        assert!(!config.endpoints.is_empty());
        assert_eq!(config.api(), flux_recv::routing::DEFAULT_API);

        for ep in &config.endpoints {
            assert!(flux_recv::source::Source::from_name(&ep.source).is_some());
            // Resolved as the server resolves it (`..` included).
            let key = normalize(&config_dir.join(&ep.key_path));
            let dir = key.parent().unwrap().to_str().unwrap();
            let file = key.file_name().unwrap().to_str().unwrap();
            let secret = mounts
                .get(dir)
                .unwrap_or_else(|| panic!("{}: nothing is mounted at {dir}", local.display()));
            assert!(
                secrets[secret].contains(file),
                "{}: {} is not in Secret {secret}",
                local.display(),
                key.display()
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 2, "one key in each example");
}

/// `/etc/fluxrecv/../fluxrecv-keys/k` → `/etc/fluxrecv-keys/k`.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[test]
fn the_ingress_routes_hook_urls_to_the_service_and_the_service_to_8080() {
    let files = yaml_files();
    let docs: Vec<&Value> = files.values().flatten().collect();
    let ingress = docs.iter().find(|d| d["kind"] == "Ingress").unwrap();
    let paths = &at(ingress, &["spec", "rules"])[0]["http"]["paths"];
    let paths = paths.as_sequence().unwrap();
    assert_eq!(paths.len(), 1, "only /hook/ faces the internet");
    assert_eq!(paths[0]["path"], "/hook/");
    assert_eq!(paths[0]["pathType"], "Prefix");
    assert_eq!(at(&paths[0], &["backend", "service", "name"]), "flux-recv");
    let port = at(&paths[0], &["backend", "service", "port", "number"]);

    let service = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    assert_eq!(at(service, &["metadata", "name"]), "flux-recv");
    assert_eq!(at(service, &["spec", "selector", "name"]), "flux");
    let ports = at(service, &["spec", "ports"]).as_sequence().unwrap();
    assert_eq!(&ports[0]["port"], port);
    assert_eq!(ports[0]["port"], 80);
    assert_eq!(ports[0]["targetPort"], 8080);
}

#[test]
fn the_dockerfile_builds_what_the_script_builds_and_runs_it_as_nonroot() {
    let dockerfile = std::fs::read_to_string(container().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(root.join("scripts/build-musl")).unwrap();
    let target = "x86_64-unknown-linux-musl";
    assert!(dockerfile.contains(&format!("cargo build --release --locked --target {target}")));
    // The static build's allocator is tuned for a small footprint; without
    // these it idles at 13 MiB instead of 4 (README, "Performance").
    assert!(
        dockerfile.contains("ENV MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0"),
        "mimalloc settings missing from the image"
    );
    assert!(script.contains(&format!("target={target}")));
    assert!(script.contains("cargo build --release --locked --target \"$target\""));

    let from: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "multi-stage");
    assert_eq!(*from[1], "FROM gcr.io/distroless/static-debian12:nonroot");
    assert!(lines.contains(&"USER 65532:65532"));
    assert!(lines.contains(&"EXPOSE 8080"));
    // `kubectl exec … /flux-recv check` reads the mounted config.
    assert!(lines.contains(&"ENV FLUXRECV_CONFIG=/etc/fluxrecv/fluxrecv.yaml"));
    assert!(lines.contains(&r#"ENTRYPOINT ["/flux-recv"]"#));
    assert!(lines.contains(&r#"CMD ["--config", "/etc/fluxrecv/fluxrecv.yaml"]"#));

    // The build context keeps what cargo needs (the manifest names the
    // benches) and leaves out build output and keys.
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["src", "benches", "Cargo.toml", "Cargo.lock"] {
        assert!(
            !ignored.iter().any(|i| i.trim_end_matches('/') == needed),
            "{needed} is needed to build"
        );
    }
    for excluded in [".git", "target", "**/*.key"] {
        assert!(ignored.contains(&excluded), "{excluded} should be ignored");
    }
}
