//! The examples rendered with kubectl's kustomize over the stand-in Flux
//! install: what each adds, where each config finds its keys, and the
//! Service, Ingress, NetworkPolicy and PodMonitor reaching flux-recv.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_yaml::{Mapping, Value};

use crate::objects::{
    assert_only_flux_recv_added, assert_sidecar_locked_down, by_id, get, pod, sidecar, Objects,
    ADDED,
};
use crate::workspace::{can_render, Workspace};
use crate::{at, container, named, parse_docs, read_docs, selects, seq, str_list};

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

#[test]
fn the_monitoring_component_adds_the_alerts_and_the_dashboard() {
    if !can_render("the_monitoring_component_adds_the_alerts_and_the_dashboard") {
        return;
    }
    let ws = Workspace::new();
    let dir = ws.path("kubernetes/with-monitoring");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        "resources: [../example]\ncomponents: [../../monitoring]\n",
    )
    .unwrap();
    let rendered = by_id(ws.render("kubernetes/with-monitoring"));
    let mut added = ADDED.to_vec();
    added.extend([
        ("PrometheusRule", "flux-recv"),
        ("ConfigMap", "flux-recv-dashboard"),
    ]);
    let base = by_id(ws.render("kubernetes/flux"));
    assert_only_flux_recv_added(&base, &rendered, &added);

    let monitoring = container().join("monitoring");
    let rule = get(&rendered, "PrometheusRule", "flux", "flux-recv");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    // The rules as written (and as promtool tests them: rules.yaml is the
    // same, see tests/observability/monitoring.rs).
    assert_eq!(
        rule["spec"],
        read_docs(&monitoring.join("prometheusrule.yaml"))[0]["spec"]
    );
    assert!(!seq(at(rule, &["spec", "groups"])).is_empty());

    let dashboard = get(&rendered, "ConfigMap", "flux", "flux-recv-dashboard");
    assert_eq!(
        at(dashboard, &["metadata", "labels", "grafana_dashboard"]),
        "1"
    );
    let json = at(dashboard, &["data", "flux-recv.json"]).as_str().unwrap();
    let served: serde_json::Value = serde_json::from_str(json).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(monitoring.join("dashboard.json")).unwrap())
            .unwrap();
    assert_eq!(served, written);
    assert_eq!(served["uid"], "flux-recv");
}
