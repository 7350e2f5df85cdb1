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
//! Component's container and against a stand-in of the chart's Deployment
//! (`testdata/flux-v1-chart.yaml`). The configs are also run through
//! `flux-recv check` and `endpoints` from a checkout, as an operator would.
//! Last, the image the smoke script builds is the Dockerfile's final stage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use base64::Engine as _;
use serde::Deserialize;
use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};

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

#[test]
fn every_yaml_file_parses() {
    let files = yaml_files();
    // Three Components, the shared network objects, two examples and the
    // Helm route, with their parts.
    assert!(files.len() >= 15, "{:#?}", files.keys());
    for (path, docs) in &files {
        assert!(!docs.is_empty(), "{} is empty", path.display());
    }
}

/// Keys are made by the operator (`flux-recv keygen --out …`), never
/// shipped; `../flux` in the examples stands for the operator's own Flux.
fn shipped(entry: &str) -> bool {
    !entry.ends_with(".key") && entry != "../flux"
}

#[test]
fn kustomizations_name_files_that_exist_and_nothing_remote() {
    let files = yaml_files();
    let kustomizations: Vec<(&PathBuf, &Value)> = files
        .iter()
        .filter(|(p, _)| p.file_name().unwrap() == "kustomization.yaml")
        .map(|(p, docs)| (p, &docs[0]))
        .collect();
    // flux-recv, two-secrets and podmonitor (Components); network, the two
    // examples and helm.
    assert_eq!(kustomizations.len(), 7, "{kustomizations:#?}");
    let kind_of = |dir: &Path| -> String {
        let doc = &read_docs(&dir.join("kustomization.yaml"))[0];
        doc["kind"].as_str().unwrap().to_string()
    };
    for (path, k) in kustomizations {
        let dir = path.parent().unwrap();
        let here = path.display();
        match k["kind"].as_str() {
            Some("Kustomization") => {
                assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1beta1", "{here}")
            }
            Some("Component") => {
                assert_eq!(
                    k["apiVersion"], "kustomize.config.k8s.io/v1alpha1",
                    "{here}"
                )
            }
            other => panic!("{here}: kind {other:?}"),
        }
        let mut entries = str_list(&k["resources"]);
        for generator in k["secretGenerator"].as_sequence().into_iter().flatten() {
            for file in str_list(&generator["files"]) {
                // `name=path` names the key in the Secret differently.
                entries.push(file.rsplit('=').next().unwrap().to_string());
            }
            // Flux's namespace, whatever the kubectl context's is.
            assert_eq!(generator["namespace"], "flux", "{here}");
        }
        for patch in k["patches"].as_sequence().into_iter().flatten() {
            entries.push(patch["path"].as_str().unwrap().to_string());
        }
        // Never someone else's manifests fetched at apply time: applying
        // Flux's example Deployment would replace the operator's fluxd.
        for entry in &entries {
            assert!(
                !entry.contains("://") && !entry.starts_with("github.com/"),
                "{here} names remote {entry}"
            );
        }
        for entry in entries.iter().filter(|e| shipped(e)) {
            assert!(
                dir.join(entry).exists(),
                "{here} names {entry}, which does not exist"
            );
        }
        for component in str_list(&k["components"]) {
            assert_eq!(
                kind_of(&dir.join(&component)),
                "Component",
                "{here}: {component}"
            );
        }
        if k["secretGenerator"].is_sequence() {
            assert_eq!(
                at(k, &["generatorOptions", "disableNameSuffixHash"]),
                &Value::Bool(true),
                "{here}: the Secrets must keep their names for hot reload"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Rendering with kubectl's kustomize.

fn kubectl_found() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        Command::new("kubectl")
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// False, after saying so, where kubectl is not installed.
fn can_render(test: &str) -> bool {
    if !kubectl_found() {
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
struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Workspace {
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

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn render(&self, rel: &str) -> Vec<Value> {
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

/// (kind, namespace, name) → object.
type Objects = BTreeMap<(String, String, String), Value>;

fn by_id(docs: Vec<Value>) -> Objects {
    docs.into_iter()
        .map(|d| {
            let s = |v: &Value| v.as_str().unwrap_or("").to_string();
            let id = (
                s(&d["kind"]),
                s(at(&d, &["metadata", "namespace"])),
                s(at(&d, &["metadata", "name"])),
            );
            (id, d)
        })
        .collect()
}

fn id(kind: &str, namespace: &str, name: &str) -> (String, String, String) {
    (kind.into(), namespace.into(), name.into())
}

fn get<'o>(objects: &'o Objects, kind: &str, namespace: &str, name: &str) -> &'o Value {
    objects
        .get(&id(kind, namespace, name))
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} rendered"))
}

fn pod(deployment: &Value) -> &Value {
    at(deployment, &["spec", "template"])
}

/// The flux-recv container of a rendered Deployment.
fn sidecar(deployment: &Value) -> &Value {
    named(at(pod(deployment), &["spec", "containers"]), "flux-recv")
}

/// A Deployment with everything flux-recv's Components add taken out again.
fn without_flux_recv(deployment: &Value) -> Value {
    let mut d = deployment.clone();
    let template = d["spec"]["template"].as_mapping_mut().unwrap();
    let meta = template
        .get_mut("metadata")
        .and_then(Value::as_mapping_mut)
        .unwrap();
    meta.get_mut("labels")
        .and_then(Value::as_mapping_mut)
        .unwrap()
        .remove("flux-recv");
    if let Some(annotations) = meta.get_mut("annotations").and_then(Value::as_mapping_mut) {
        annotations.remove("kubectl.kubernetes.io/default-container");
        if annotations.is_empty() {
            meta.remove("annotations");
        }
    }
    let spec = template
        .get_mut("spec")
        .and_then(Value::as_mapping_mut)
        .unwrap();
    if let Some(Value::Sequence(containers)) = spec.get_mut("containers") {
        containers.retain(|c| c["name"] != "flux-recv");
    }
    if let Some(Value::Sequence(volumes)) = spec.get_mut("volumes") {
        volumes.retain(|v| !v["name"].as_str().unwrap().starts_with("fluxrecv"));
    }
    d
}

/// The example's objects against the stand-in's alone: what is new is
/// exactly `added`, fluxd's Deployment differs only by what flux-recv adds
/// (its container after fluxd's, its volumes, a label, an annotation), and
/// every other object is unchanged.
fn assert_only_flux_recv_added(base: &Objects, rendered: &Objects, added: &[(&str, &str)]) {
    let new: BTreeSet<_> = rendered
        .keys()
        .filter(|k| !base.contains_key(*k))
        .cloned()
        .collect();
    let expected: BTreeSet<_> = added.iter().map(|(k, n)| id(k, "flux", n)).collect();
    assert_eq!(new, expected, "objects added");

    let fluxd_id = id("Deployment", "flux", "flux");
    for (key, object) in base {
        let after = rendered
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} is gone"));
        if *key != fluxd_id {
            assert_eq!(after, object, "{key:?} changed");
        }
    }

    let before = &base[&fluxd_id];
    let after = &rendered[&fluxd_id];
    assert_eq!(
        without_flux_recv(after),
        *before,
        "Deployment flux changed beyond flux-recv's additions"
    );
    // fluxd's container: first, as it was, to the byte.
    let containers = seq(at(pod(after), &["spec", "containers"]));
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["flux", "flux-recv"]);
    let fluxd_before = &seq(at(pod(before), &["spec", "containers"]))[0];
    assert_eq!(
        serde_yaml::to_string(&containers[0]).unwrap(),
        serde_yaml::to_string(fluxd_before).unwrap()
    );
    assert_eq!(
        at(pod(after), &["metadata", "labels", "flux-recv"]),
        "sidecar"
    );
    assert_eq!(
        at(
            pod(after),
            &[
                "metadata",
                "annotations",
                "kubectl.kubernetes.io/default-container"
            ]
        ),
        "flux"
    );
}

/// The container runs as the image and the README say, probed where
/// flux-recv answers, locked down, and mounts `mounts` (path → Secret).
fn assert_sidecar_locked_down(deployment: &Value, mounts: &[(&str, &str)]) {
    let c = sidecar(deployment);
    assert_eq!(c["image"], "registry.example.com/flux-recv:0.1.0");
    assert_eq!(
        str_list(&c["args"]),
        ["--config=/etc/fluxrecv/fluxrecv.yaml", "--listen=:8080"]
    );
    let port = named(&c["ports"], "flux-recv");
    assert_eq!(port["containerPort"], 8080);
    assert_eq!(at(c, &["readinessProbe", "httpGet", "path"]), "/ready");
    assert_eq!(at(c, &["readinessProbe", "httpGet", "port"]), 8080);
    assert_eq!(at(c, &["livenessProbe", "httpGet", "path"]), "/health");
    assert_eq!(at(c, &["livenessProbe", "httpGet", "port"]), 8080);

    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["runAsGroup"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(str_list(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(at(sc, &["seccompProfile", "type"]), "RuntimeDefault");

    assert_eq!(at(c, &["resources", "requests", "cpu"]), "10m");
    assert_eq!(at(c, &["resources", "requests", "memory"]), "16Mi");
    assert_eq!(at(c, &["resources", "limits", "memory"]), "64Mi");
    assert!(
        at(c, &["resources", "limits", "cpu"]).is_null(),
        "no CPU limit"
    );

    let volumes = at(pod(deployment), &["spec", "volumes"]);
    let mut found = Vec::new();
    for mount in seq(&c["volumeMounts"]) {
        assert_eq!(mount["readOnly"], true, "{mount:?}");
        // A subPath mount never sees a Secret update: hot reload needs the
        // whole directory.
        assert!(mount["subPath"].is_null(), "{mount:?}");
        let volume = named(volumes, mount["name"].as_str().unwrap());
        // Readable by uid 65532; the kubelet writes the files as root.
        assert_eq!(at(volume, &["secret", "defaultMode"]), 0o444);
        found.push((
            mount["mountPath"].as_str().unwrap().to_string(),
            at(volume, &["secret", "secretName"])
                .as_str()
                .unwrap()
                .to_string(),
        ));
    }
    // In any order: a strategic merge puts a later Component's mount first.
    found.sort();
    let mut mounts: Vec<(String, String)> = mounts
        .iter()
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .collect();
    mounts.sort();
    assert_eq!(found, mounts);
}

const ADDED: [(&str, &str); 4] = [
    ("Secret", "fluxrecv"),
    ("Service", "flux-recv"),
    ("Ingress", "flux-recv"),
    ("NetworkPolicy", "flux-recv"),
];

#[test]
fn the_example_adds_flux_recv_beside_fluxd_and_changes_nothing_else() {
    if !can_render("the_example_adds_flux_recv_beside_fluxd_and_changes_nothing_else") {
        return;
    }
    let ws = Workspace::new();
    let base = by_id(ws.render("kubernetes/flux"));
    let rendered = by_id(ws.render("kubernetes/example"));
    assert_only_flux_recv_added(&base, &rendered, &ADDED);
    let deployment = get(&rendered, "Deployment", "flux", "flux");
    assert_sidecar_locked_down(deployment, &[("/etc/fluxrecv", "fluxrecv")]);
}

#[test]
fn the_two_secrets_example_mounts_both_secrets_and_changes_nothing_else() {
    if !can_render("the_two_secrets_example_mounts_both_secrets_and_changes_nothing_else") {
        return;
    }
    let ws = Workspace::new();
    let base = by_id(ws.render("kubernetes/flux"));
    let rendered = by_id(ws.render("kubernetes/example-two-secrets"));
    let mut added = ADDED.to_vec();
    added.push(("Secret", "fluxrecv-keys"));
    assert_only_flux_recv_added(&base, &rendered, &added);
    let deployment = get(&rendered, "Deployment", "flux", "flux");
    assert_sidecar_locked_down(
        deployment,
        &[
            ("/etc/fluxrecv", "fluxrecv"),
            ("/etc/fluxrecv-keys", "fluxrecv-keys"),
        ],
    );
}

/// `/etc/fluxrecv/../fluxrecv-keys/k` → `/etc/fluxrecv-keys/k`, as the
/// kernel resolves it in the pod.
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

/// Each key the config in the rendered Secret names, resolved as flux-recv
/// resolves it in the pod (against /etc/fluxrecv), is a file of a Secret
/// mounted there. Returns how many keys were found.
fn assert_keys_found_in_the_pod(secrets: &Objects, container: &Value, volumes: &Value) -> usize {
    let data = |secret: &str| -> &Mapping {
        at(get(secrets, "Secret", "flux", secret), &["data"])
            .as_mapping()
            .unwrap()
    };
    // Mount path → the file names of the Secret mounted there.
    let mounted: BTreeMap<PathBuf, BTreeSet<String>> = seq(&container["volumeMounts"])
        .iter()
        .map(|m| {
            let volume = named(volumes, m["name"].as_str().unwrap());
            let secret = at(volume, &["secret", "secretName"]).as_str().unwrap();
            let files = data(secret)
                .keys()
                .map(|k| k.as_str().unwrap().to_string())
                .collect();
            (PathBuf::from(m["mountPath"].as_str().unwrap()), files)
        })
        .collect();

    let config_path = Path::new("/etc/fluxrecv/fluxrecv.yaml");
    let config_dir = config_path.parent().unwrap();
    assert!(str_list(&container["args"]).contains(&format!("--config={}", config_path.display())));
    let config_secret = seq(&container["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == "/etc/fluxrecv")
        .map(|m| named(volumes, m["name"].as_str().unwrap()))
        .map(|v| at(v, &["secret", "secretName"]).as_str().unwrap())
        .expect("a Secret at /etc/fluxrecv");
    let encoded = data(config_secret)["fluxrecv.yaml"].as_str().unwrap();
    let text = base64::engine::general_purpose::STANDARD
        .decode(encoded.replace('\n', ""))
        .unwrap();
    let config = &parse_docs(std::str::from_utf8(&text).unwrap(), "fluxrecv.yaml")[0];
    assert_eq!(config["fluxRecvVersion"], 1);

    let mut found = 0;
    for endpoint in seq(&config["endpoints"]) {
        let key_path = endpoint["keyPath"].as_str().unwrap();
        let key = normalize(&config_dir.join(key_path));
        let (dir, file) = (key.parent().unwrap(), key.file_name().unwrap());
        let files = mounted
            .get(dir)
            .unwrap_or_else(|| panic!("{key_path}: nothing is mounted at {}", dir.display()));
        assert!(
            files.contains(file.to_str().unwrap()),
            "{key_path}: the Secret mounted at {} has no {file:?}",
            dir.display()
        );
        found += 1;
    }
    found
}

#[test]
fn each_config_finds_its_keys_where_the_pod_mounts_them() {
    if !can_render("each_config_finds_its_keys_where_the_pod_mounts_them") {
        return;
    }
    let ws = Workspace::new();
    for example in ["kubernetes/example", "kubernetes/example-two-secrets"] {
        let rendered = by_id(ws.render(example));
        let deployment = get(&rendered, "Deployment", "flux", "flux");
        let volumes = at(pod(deployment), &["spec", "volumes"]);
        let found = assert_keys_found_in_the_pod(&rendered, sidecar(deployment), volumes);
        assert_eq!(found, 1, "{example}");
    }
    // The Helm route: the Secret from container/helm/, the mounts from the
    // chart's values.
    let rendered = by_id(ws.render("helm"));
    let values = &read_docs(&container().join("helm/values-flux-recv.yaml"))[0];
    let container = named(&values["extraContainers"], "flux-recv");
    let found = assert_keys_found_in_the_pod(&rendered, container, &values["extraVolumes"]);
    assert_eq!(found, 1, "helm");
}

#[test]
fn the_service_ingress_and_network_policy_reach_flux_recv_and_fence_fluxd() {
    if !can_render("the_service_ingress_and_network_policy_reach_flux_recv_and_fence_fluxd") {
        return;
    }
    let ws = Workspace::new();
    let rendered = by_id(ws.render("kubernetes/example"));
    let flux = get(&rendered, "Deployment", "flux", "flux");
    let flux_labels = at(pod(flux), &["metadata", "labels"]);
    let memcached = get(&rendered, "Deployment", "flux", "memcached");
    let memcached_labels = at(pod(memcached), &["metadata", "labels"]);
    let hooks_port = &named(&sidecar(flux)["ports"], "flux-recv")["containerPort"];

    let service = get(&rendered, "Service", "flux", "flux-recv");
    let selector = at(service, &["spec", "selector"]);
    assert!(selects(selector, flux_labels));
    assert!(!selects(selector, memcached_labels));
    let ports = seq(at(service, &["spec", "ports"]));
    assert_eq!(ports.len(), 1, "only flux-recv's port, never fluxd's API");
    assert_eq!(ports[0]["port"], 80);
    assert_eq!(&ports[0]["targetPort"], hooks_port);
    // flux-recv's own scrape annotations: the pod's point at fluxd's metrics.
    let annotations = at(service, &["metadata", "annotations"]);
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(
        annotations["prometheus.io/port"],
        hooks_port.as_u64().unwrap().to_string()
    );
    assert_eq!(annotations["prometheus.io/path"], "/metrics");

    let ingress = get(&rendered, "Ingress", "flux", "flux-recv");
    let paths = seq(&at(ingress, &["spec", "rules"])[0]["http"]["paths"]);
    assert_eq!(paths.len(), 1, "only /hook/ faces the internet");
    assert_eq!(paths[0]["path"], "/hook/");
    assert_eq!(paths[0]["pathType"], "Prefix");
    assert_eq!(at(&paths[0], &["backend", "service", "name"]), "flux-recv");
    assert_eq!(at(&paths[0], &["backend", "service", "port", "number"]), 80);

    let policy = get(&rendered, "NetworkPolicy", "flux", "flux-recv");
    let spec = &policy["spec"];
    assert!(selects(
        at(spec, &["podSelector", "matchLabels"]),
        flux_labels
    ));
    assert!(!selects(
        at(spec, &["podSelector", "matchLabels"]),
        memcached_labels
    ));
    assert_eq!(str_list(&spec["policyTypes"]), ["Ingress"]);
    let mut admitted = BTreeSet::new();
    for rule in seq(&spec["ingress"]) {
        // From anywhere: the ingress controller and Prometheus run where
        // the operator put them.
        assert!(rule["from"].is_null(), "{rule:?}");
        for port in seq(&rule["ports"]) {
            assert_eq!(port["protocol"], "TCP");
            admitted.insert(port["port"].as_u64().unwrap());
        }
    }
    assert_eq!(admitted, BTreeSet::from([8080, 3031]));
    assert_eq!(hooks_port, 8080);
    // 3031 is where the stand-in, as Flux's deploy manifests, serves fluxd's
    // metrics; fluxd's API port is not admitted.
    let fluxd = named(at(pod(flux), &["spec", "containers"]), "flux");
    assert!(str_list(&fluxd["args"]).contains(&"--listen-metrics=:3031".to_string()));
    assert_eq!(seq(&fluxd["ports"])[0]["containerPort"], 3030);
    assert!(!admitted.contains(&3030));
}

#[test]
fn the_pod_monitor_scrapes_flux_recv() {
    if !can_render("the_pod_monitor_scrapes_flux_recv") {
        return;
    }
    let ws = Workspace::new();
    let dir = ws.path("kubernetes/with-podmonitor");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        "resources: [../flux]\ncomponents: [../flux-recv, ../podmonitor]\n",
    )
    .unwrap();
    let rendered = by_id(ws.render("kubernetes/with-podmonitor"));
    let flux = get(&rendered, "Deployment", "flux", "flux");
    let monitor = get(&rendered, "PodMonitor", "flux", "flux-recv");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert!(selects(
        at(monitor, &["spec", "selector", "matchLabels"]),
        at(pod(flux), &["metadata", "labels"])
    ));
    let endpoints = seq(at(monitor, &["spec", "podMetricsEndpoints"]));
    assert_eq!(endpoints.len(), 1);
    let port = endpoints[0]["port"].as_str().unwrap();
    assert_eq!(named(&sidecar(flux)["ports"], port)["containerPort"], 8080);
    assert_eq!(endpoints[0]["path"], "/metrics");
}

/// The chart's Deployment with the values added where its template adds
/// them: extraContainers after fluxd, extraVolumes after its own volumes,
/// podLabels and annotations on the pod.
fn as_the_chart_renders(chart: &Value, values: &Value) -> Value {
    let mut d = chart.clone();
    let template = &mut d["spec"]["template"];
    for (field, value_key) in [("labels", "podLabels"), ("annotations", "annotations")] {
        let meta = template["metadata"].as_mapping_mut().unwrap();
        let map = meta
            .entry(field.into())
            .or_insert_with(|| Value::Mapping(Mapping::new()))
            .as_mapping_mut()
            .unwrap();
        for (k, v) in values[value_key].as_mapping().unwrap() {
            map.insert(k.clone(), v.clone());
        }
    }
    let spec = &mut template["spec"];
    for (field, value_key) in [
        ("containers", "extraContainers"),
        ("volumes", "extraVolumes"),
    ] {
        let list = spec[field].as_sequence_mut().unwrap();
        list.extend(seq(&values[value_key]).iter().cloned());
    }
    d
}

#[test]
fn the_helm_values_add_the_components_sidecar_to_the_charts_pod() {
    let values = &read_docs(&container().join("helm/values-flux-recv.yaml"))[0];
    let chart = read_docs(&root().join("testdata/flux-v1-chart.yaml"));
    let chart_deployment = chart.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let chart_service = chart.iter().find(|d| d["kind"] == "Service").unwrap();

    let deployment = as_the_chart_renders(chart_deployment, values);
    let pod_spec = at(pod(&deployment), &["spec"]);
    let labels = at(pod(&deployment), &["metadata", "labels"]);
    assert_eq!(labels["flux-recv"], "sidecar");
    assert_eq!(
        at(pod(&deployment), &["metadata", "annotations"])
            ["kubectl.kubernetes.io/default-container"],
        "flux"
    );
    // Port names are the pod's: flux-recv's must not shadow the chart's
    // `http`, which its Service selects by name.
    let mut names = BTreeSet::new();
    for c in seq(&pod_spec["containers"]) {
        for p in c["ports"].as_sequence().into_iter().flatten() {
            if let Some(name) = p["name"].as_str() {
                assert!(names.insert(name.to_string()), "port name {name} twice");
            }
        }
    }
    let target = at(chart_service, &["spec", "ports"])[0]["targetPort"]
        .as_str()
        .unwrap();
    let fluxd = named(&pod_spec["containers"], "flux");
    assert_eq!(named(&fluxd["ports"], target)["containerPort"], 3030);
    // Every volume flux-recv mounts is in the pod, and mounted whole.
    let c = named(&pod_spec["containers"], "flux-recv");
    for mount in seq(&c["volumeMounts"]) {
        let volume = named(&pod_spec["volumes"], mount["name"].as_str().unwrap());
        assert_eq!(
            mode_as_written(at(volume, &["secret", "defaultMode"])),
            0o444
        );
        assert!(mount["subPath"].is_null());
        assert_eq!(mount["readOnly"], true);
    }

    if !can_render("the_helm_values_add_the_components_sidecar_to_the_charts_pod (rendering)") {
        return;
    }
    let ws = Workspace::new();
    // The same container and volume as the kustomize Component's.
    let example = by_id(ws.render("kubernetes/example"));
    let component = get(&example, "Deployment", "flux", "flux");
    assert_eq!(
        c,
        sidecar(component),
        "the chart's sidecar and the Component's differ"
    );
    let mut volume = named(&values["extraVolumes"], "fluxrecv").clone();
    volume["secret"]["defaultMode"] = mode_as_written(&volume["secret"]["defaultMode"]).into();
    assert_eq!(
        &volume,
        named(at(pod(component), &["spec", "volumes"]), "fluxrecv")
    );
    assert_eq!(
        &labels["flux-recv"],
        at(pod(component), &["metadata", "labels", "flux-recv"])
    );

    // container/helm/ makes the Secret and the network objects, and they
    // select the chart's pod.
    let helm = by_id(ws.render("helm"));
    let kinds: BTreeSet<_> = helm.keys().cloned().collect();
    let expected: BTreeSet<_> = ADDED.iter().map(|(k, n)| id(k, "flux", n)).collect();
    assert_eq!(kinds, expected);
    let service = get(&helm, "Service", "flux", "flux-recv");
    assert!(selects(at(service, &["spec", "selector"]), labels));
    let policy = get(&helm, "NetworkPolicy", "flux", "flux-recv");
    assert!(selects(
        at(policy, &["spec", "podSelector", "matchLabels"]),
        labels
    ));

    match (std::env::var_os("FLUX_V1_CHART"), runs("helm")) {
        (Some(chart_dir), true) => render_the_real_chart(Path::new(&chart_dir), c),
        _ => eprintln!(
            "NOTE the_helm_values_add_the_components_sidecar_to_the_charts_pod: checked against \
             testdata/flux-v1-chart.yaml only; set FLUX_V1_CHART to a copy of Flux v1's \
             chart/flux (with helm installed) to render the chart itself"
        ),
    }
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `helm template` of Flux v1's own chart with the values: fluxd first, as
/// the chart has it, and flux-recv's container as the values give it.
fn render_the_real_chart(chart_dir: &Path, expected: &Value) {
    let values = container().join("helm/values-flux-recv.yaml");
    let out = Command::new("helm")
        .args(["template", "flux"])
        .arg(chart_dir)
        .args(["--namespace", "flux", "-f"])
        .arg(&values)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = parse_docs(&String::from_utf8(out.stdout).unwrap(), "helm template");
    let deployment = docs
        .iter()
        .find(|d| d["kind"] == "Deployment" && at(d, &["metadata", "name"]) == "flux")
        .expect("the chart's Deployment flux");
    let containers = seq(at(pod(deployment), &["spec", "containers"]));
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["flux", "flux-recv"]);
    assert_eq!(&containers[1], expected);
    let volume = named(at(pod(deployment), &["spec", "volumes"]), "fluxrecv");
    assert_eq!(at(volume, &["secret", "defaultMode"]), 0o444);
    assert_eq!(
        at(pod(deployment), &["metadata", "labels", "flux-recv"]),
        "sidecar"
    );
}

// ---------------------------------------------------------------------------
// From a checkout, without a cluster.

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

// ---------------------------------------------------------------------------
// The image.

/// The instructions of the Dockerfile's last stage, without comments.
fn final_stage(text: &str) -> Vec<String> {
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    lines[last_from..].to_vec()
}

#[test]
fn the_dockerfile_builds_what_the_script_builds_and_runs_it_as_nonroot() {
    let dockerfile = std::fs::read_to_string(container().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let script = std::fs::read_to_string(root().join("scripts/build-musl")).unwrap();
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
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
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

#[test]
fn the_smoke_image_is_the_dockerfiles_final_stage_on_scratch() {
    let dockerfile = std::fs::read_to_string(container().join("Dockerfile")).unwrap();
    let smoke = std::fs::read_to_string(container().join("Containerfile.smoke")).unwrap();
    let shipped = final_stage(&dockerfile);
    let tested = final_stage(&smoke);
    assert_eq!(tested[0], "FROM scratch");
    // Where the binary and distroless's files come from differs (COPY);
    // how the image runs (USER, ENV, EXPOSE, ENTRYPOINT, CMD) must not.
    let runs = |stage: &[String]| -> Vec<String> {
        stage
            .iter()
            .filter(|l| !l.starts_with("FROM ") && !l.starts_with("COPY "))
            .cloned()
            .collect()
    };
    assert_eq!(runs(&tested), runs(&shipped));
    assert!(!runs(&shipped).is_empty());
    assert!(tested.contains(&"COPY flux-recv /flux-recv".to_string()));
    assert!(shipped.contains(&"COPY --from=build /flux-recv /flux-recv".to_string()));
}
