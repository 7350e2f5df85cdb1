//! The Helm route: Flux v1's own chart (a pinned copy of the templates it
//! needs, `testdata/flux-v1-chart/`) rendered by `helm template` with and
//! without the values, so that what the values add is checked against the
//! chart's real templates, and everything else is seen to stay as it was.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_yaml::Value;

use crate::objects::{by_id, get, id, pod, sidecar, ADDED};
use crate::workspace::{can_render, Workspace};
use crate::{at, container, mode_as_written, named, parse_docs, read_docs, root, selects, seq};

fn helm_found() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        Command::new("helm")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// False, after saying so, where helm is not installed. Under `.ci/run`
/// (`FLUXRECV_CI` set), which installs it (`scripts/install-helm`), its
/// absence fails the test rather than passing it unchecked.
fn can_template(test: &str) -> bool {
    if !helm_found() {
        assert!(
            std::env::var_os("FLUXRECV_CI").is_none(),
            "{test}: helm is not installed, and FLUXRECV_CI is set (.ci/run installs it \
             with scripts/install-helm)"
        );
        eprintln!(
            "SKIPPED {test}: helm is not installed, so Flux v1's chart was not rendered \
             (scripts/install-helm DIR installs it)"
        );
    }
    helm_found()
}

/// `helm template flux <the vendored chart> --namespace flux`, with the
/// values files given.
fn template(values: &[&Path]) -> Vec<Value> {
    let mut cmd = Command::new("helm");
    cmd.args(["template", "flux"])
        .arg(root().join("testdata/flux-v1-chart"))
        .args(["--namespace", "flux"]);
    for v in values {
        cmd.arg("-f").arg(v);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_docs(&String::from_utf8(out.stdout).unwrap(), "helm template")
}

fn deployment(docs: &[Value]) -> &Value {
    docs.iter()
        .find(|d| d["kind"] == "Deployment" && at(d, &["metadata", "name"]) == "flux")
        .expect("the chart's Deployment flux")
}

/// `d` with what the values add taken out again: the containers after the
/// chart's own, the volumes after its own, and the pod's labels and
/// annotations the values name. An empty map of annotations is the chart's
/// `annotations:` with nothing under it.
fn without_the_values(d: &Value, values: &Value, own: (usize, usize)) -> Value {
    let mut d = d.clone();
    let template = &mut d["spec"]["template"];
    for (field, value_key) in [("labels", "podLabels"), ("annotations", "annotations")] {
        let meta = template["metadata"].as_mapping_mut().unwrap();
        if let Some(map) = meta.get_mut(field).and_then(Value::as_mapping_mut) {
            for k in values[value_key].as_mapping().unwrap().keys() {
                map.remove(k);
            }
            if map.is_empty() {
                meta.insert(field.into(), Value::Null);
            }
        }
    }
    let spec = &mut template["spec"];
    spec["containers"]
        .as_sequence_mut()
        .unwrap()
        .truncate(own.0);
    spec["volumes"].as_sequence_mut().unwrap().truncate(own.1);
    d
}

#[test]
fn the_helm_values_add_the_components_sidecar_to_flux_v1s_chart() {
    const TEST: &str = "the_helm_values_add_the_components_sidecar_to_flux_v1s_chart";
    if !can_template(TEST) {
        return;
    }
    let values_path = container().join("helm/values-flux-recv.yaml");
    let values = &read_docs(&values_path)[0];
    let plain = template(&[]);
    let with = template(&[&values_path]);

    // The values change the Deployment only, and only by what they add.
    assert_eq!(plain.len(), with.len());
    for (a, b) in plain.iter().zip(&with) {
        if a["kind"] != "Deployment" {
            assert_eq!(a, b);
        }
    }
    let chart = deployment(&plain);
    let deployment = deployment(&with);
    let spec = |d: &Value, list: &str| seq(at(pod(d), &["spec", list])).len();
    let own = (spec(chart, "containers"), spec(chart, "volumes"));
    assert_eq!(&without_the_values(deployment, values, own), chart);

    // fluxd first, as the chart has it, then flux-recv as the values give it.
    let pod_spec = at(pod(deployment), &["spec"]);
    let containers = seq(&pod_spec["containers"]);
    let names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["flux", "flux-recv"]);
    let c = &containers[1];
    assert_eq!(c, &seq(&values["extraContainers"])[0]);
    let labels = at(pod(deployment), &["metadata", "labels"]);
    assert_eq!(labels["flux-recv"], "sidecar");
    assert_eq!(
        at(pod(deployment), &["metadata", "annotations"])
            ["kubectl.kubernetes.io/default-container"],
        "flux"
    );
    // Port names are the pod's: flux-recv's must not shadow the chart's
    // `http`, which its Service selects by name.
    let mut port_names = BTreeSet::new();
    for c in containers {
        for p in c["ports"].as_sequence().into_iter().flatten() {
            if let Some(name) = p["name"].as_str() {
                assert!(
                    port_names.insert(name.to_string()),
                    "port name {name} twice"
                );
            }
        }
    }
    let service = with
        .iter()
        .find(|d| d["kind"] == "Service" && at(d, &["metadata", "name"]) == "flux")
        .expect("the chart's Service flux");
    let target = at(service, &["spec", "ports"])[0]["targetPort"]
        .as_str()
        .unwrap();
    assert_eq!(
        named(&containers[0]["ports"], target)["containerPort"],
        3030
    );
    assert!(selects(at(service, &["spec", "selector"]), labels));
    // Every volume flux-recv mounts is in the pod, and mounted whole.
    for mount in seq(&c["volumeMounts"]) {
        let volume = named(&pod_spec["volumes"], mount["name"].as_str().unwrap());
        assert_eq!(at(volume, &["secret", "defaultMode"]), 0o444);
        assert!(mount["subPath"].is_null());
        assert_eq!(mount["readOnly"], true);
    }

    if !can_render(&format!("{TEST} (the kustomize side)")) {
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
}

/// The vendored chart is the release its notes name, and says where it
/// came from.
#[test]
fn the_vendored_chart_is_flux_v1s_last_release() {
    let dir = root().join("testdata/flux-v1-chart");
    let chart = &read_docs(&dir.join("Chart.yaml"))[0];
    assert_eq!(chart["name"], "flux");
    assert_eq!(chart["version"], "1.13.3");
    assert_eq!(chart["appVersion"], "1.25.4");
    let source = std::fs::read_to_string(dir.join("SOURCE.md")).unwrap();
    for said in [
        "c2317f813d94474579aab0827a7f746c7674b199",
        "1.13.3",
        "Apache",
    ] {
        assert!(source.contains(said), "SOURCE.md does not say {said}");
    }
    assert!(std::fs::read_to_string(dir.join("LICENSE"))
        .unwrap()
        .contains("Apache License"));
}
