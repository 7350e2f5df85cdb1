//! The Helm route: the values add the Component's container to the chart's
//! pod (a stand-in of the chart's Deployment, and Flux v1's own chart where
//! `FLUX_V1_CHART` points at a copy).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_yaml::{Mapping, Value};

use crate::objects::{by_id, get, id, pod, sidecar, ADDED};
use crate::workspace::{can_render, Workspace};
use crate::{at, container, mode_as_written, named, parse_docs, read_docs, root, selects, seq};

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
