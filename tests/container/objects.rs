//! Rendered objects by (kind, namespace, name), and the checks every
//! example shares: flux-recv's objects added and nothing else changed, and
//! its container locked down.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml::Value;

use crate::{at, named, seq, str_list};

/// (kind, namespace, name) → object.
pub type Objects = BTreeMap<(String, String, String), Value>;

pub fn by_id(docs: Vec<Value>) -> Objects {
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

pub fn id(kind: &str, namespace: &str, name: &str) -> (String, String, String) {
    (kind.into(), namespace.into(), name.into())
}

pub fn get<'o>(objects: &'o Objects, kind: &str, namespace: &str, name: &str) -> &'o Value {
    objects
        .get(&id(kind, namespace, name))
        .unwrap_or_else(|| panic!("no {kind} {namespace}/{name} rendered"))
}

pub fn pod(deployment: &Value) -> &Value {
    at(deployment, &["spec", "template"])
}

/// The flux-recv container of a rendered Deployment.
pub fn sidecar(deployment: &Value) -> &Value {
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
pub fn assert_only_flux_recv_added(base: &Objects, rendered: &Objects, added: &[(&str, &str)]) {
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
pub fn assert_sidecar_locked_down(deployment: &Value, mounts: &[(&str, &str)]) {
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

pub const ADDED: [(&str, &str); 4] = [
    ("Secret", "fluxrecv"),
    ("Service", "flux-recv"),
    ("Ingress", "flux-recv"),
    ("NetworkPolicy", "flux-recv"),
];
