//! The standalone base (`kubernetes/standalone`), for clusters with no
//! fluxd pod (Flux v2), rendered with its example: two replicas spread
//! over nodes, a PodDisruptionBudget, a Service and a NetworkPolicy that
//! select them, egress only to notification-controller's receiver port
//! and DNS; and the example Receiver's Secret holding the token flux-recv
//! signs with.

use std::process::Command;

use base64::Engine as _;

use crate::objects::{by_id, get, pod};
use crate::workspace::{can_render, Workspace};
use crate::{at, named, selects, seq, str_list};

#[test]
fn the_standalone_example_renders_two_spread_replicas_fenced_to_notification_controller() {
    if !can_render(
        "the_standalone_example_renders_two_spread_replicas_fenced_to_notification_controller",
    ) {
        return;
    }
    let ws = Workspace::new();
    for key in ["github.key", "receiver-token.key"] {
        let out = ws.path(&format!("kubernetes/standalone-example/{key}"));
        let _ = std::fs::remove_file(&out);
        let status = Command::new(env!("CARGO_BIN_EXE_flux-recv"))
            .args(["keygen", "--out"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
    }
    let rendered = by_id(ws.render("kubernetes/standalone-example"));
    let ns = "flux-system";
    let deployment = get(&rendered, "Deployment", ns, "flux-recv");
    assert_eq!(at(deployment, &["spec", "replicas"]), 2);
    let labels = at(pod(deployment), &["metadata", "labels"]);
    assert!(selects(
        at(deployment, &["spec", "selector", "matchLabels"]),
        labels
    ));
    let spread = &seq(at(
        pod(deployment),
        &[
            "spec",
            "affinity",
            "podAntiAffinity",
            "preferredDuringSchedulingIgnoredDuringExecution",
        ],
    ))[0]["podAffinityTerm"];
    assert_eq!(spread["topologyKey"], "kubernetes.io/hostname");
    assert!(selects(
        at(spread, &["labelSelector", "matchLabels"]),
        labels
    ));
    let container = named(at(pod(deployment), &["spec", "containers"]), "flux-recv");
    assert_eq!(
        str_list(&container["args"]),
        ["--config=/etc/fluxrecv/fluxrecv.yaml", "--listen=:8080"]
    );
    assert_eq!(
        at(container, &["securityContext", "readOnlyRootFilesystem"]).as_bool(),
        Some(true)
    );

    let pdb = get(&rendered, "PodDisruptionBudget", ns, "flux-recv");
    assert_eq!(at(pdb, &["spec", "minAvailable"]), 1);
    assert!(selects(
        at(pdb, &["spec", "selector", "matchLabels"]),
        labels
    ));
    let service = get(&rendered, "Service", ns, "flux-recv");
    assert!(selects(at(service, &["spec", "selector"]), labels));

    let policy = get(&rendered, "NetworkPolicy", ns, "flux-recv");
    assert!(selects(
        at(policy, &["spec", "podSelector", "matchLabels"]),
        labels
    ));
    assert_eq!(
        str_list(at(policy, &["spec", "policyTypes"])),
        ["Ingress", "Egress"]
    );
    let egress = seq(at(policy, &["spec", "egress"]));
    assert_eq!(egress.len(), 2);
    let to = &seq(&egress[0]["to"])[0];
    assert_eq!(
        at(to, &["podSelector", "matchLabels"]),
        &serde_yaml::from_str::<serde_yaml::Value>("{app: notification-controller}").unwrap()
    );
    assert_eq!(seq(&egress[0]["ports"])[0]["port"], 9292);
    assert!(egress[1].get("to").is_none());
    assert!(seq(&egress[1]["ports"]).iter().all(|p| p["port"] == 53));

    // The Receiver's token is the file flux-recv signs with.
    let receiver = get(&rendered, "Receiver", ns, "flux-recv");
    assert_eq!(at(receiver, &["spec", "type"]), "generic-hmac");
    let secret = at(receiver, &["spec", "secretRef", "name"])
        .as_str()
        .unwrap();
    let data = |name: &str, key: &str| {
        let secret = get(&rendered, "Secret", ns, name);
        let b64 = at(secret, &["data", key])
            .as_str()
            .unwrap()
            .replace('\n', "");
        base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap()
    };
    let config = String::from_utf8(data("fluxrecv", "fluxrecv.yaml")).unwrap();
    assert!(config.contains("tokenPath: receiver-token.key"), "{config}");
    assert_eq!(
        data(secret, "token"),
        data("fluxrecv", "receiver-token.key")
    );
    let volume = named(at(pod(deployment), &["spec", "volumes"]), "fluxrecv");
    assert_eq!(at(volume, &["secret", "secretName"]), "fluxrecv");
}
