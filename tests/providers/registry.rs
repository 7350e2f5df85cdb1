//! End to end, through the real server on 127.0.0.1:0 in front of a stand-in
//! fluxd: the registry providers (Azure Container Registry, distribution)
//! and the generic hooks, with the deliveries `flux-recv send` makes.

use crate::common;

use std::path::{Path, PathBuf};

use common::*;
use flux_recv::options::Options;
use flux_recv::source::{SampleHook, SampleRequest, Source};
use flux_recv::table::Table;
use serde_json::Value;

/// One endpoint per new source, each with its own key.
const ENDPOINTS: &[(&str, &str)] = &[
    ("AzureContainerRegistry", ""),
    ("Distribution", ""),
    (
        "Generic",
        "  notify:\n    git: {url: \"git@github.com:org/app.git\", branch: main}\n    image: registry.example.com/team/app\n",
    ),
    (
        "GenericHMAC",
        "  notify:\n    git: {url: \"git@github.com:org/app.git\", branch: main}\n",
    ),
];

fn key(source: &str) -> String {
    format!("0123456789abcdef-{source}")
}

fn hook(source: &str) -> String {
    hook_path(key(source).as_bytes())
}

fn config(dir: &Path, api: &str) -> PathBuf {
    let mut yaml = String::new();
    for (source, extra) in ENDPOINTS {
        let file = format!("{}.key", source.to_lowercase());
        std::fs::write(dir.join(&file), key(source)).unwrap();
        yaml.push_str(&format!("- source: {source}\n  keyPath: {file}\n{extra}"));
    }
    write_config(dir, api, &yaml)
}

/// The sample of `event` for `source`, signed with its endpoint's key.
fn sample(source: &str, event: &str) -> SampleHook {
    let key = key(source);
    Source::named(source)
        .sample(&SampleRequest {
            event,
            ..SampleRequest::push(key.as_bytes())
        })
        .unwrap()
}

/// `d` with header `name` set to `value`, or removed when `value` is `None`.
fn with_header(d: &SampleHook, name: &str, value: Option<&str>) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = headers_of(d)
        .into_iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case(name))
        .collect();
    if let Some(value) = value {
        h.push((name.to_string(), value.to_string()));
    }
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_push_sample_reaches_fluxd() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let recv = Recv::start(&config(dir.path(), &fluxd.api()), Options::default()).await;

    for (source, expected) in [
        (
            "AzureContainerRegistry",
            vec![image_change("example.azurecr.io", "example/app")],
        ),
        (
            "Distribution",
            vec![image_change("registry.example.com:5000", "example/app")],
        ),
        (
            "Generic",
            vec![
                git_change("git@github.com:org/app.git", "main"),
                image_change("registry.example.com", "team/app"),
            ],
        ),
        (
            "GenericHMAC",
            vec![git_change("git@github.com:org/app.git", "main")],
        ),
    ] {
        let d = sample(source, "push");
        let reply = post(recv.url(&hook(source)), headers_of(&d), d.body.clone()).await;
        assert_eq!(reply.status, 200, "{source}: {}", reply.body);
        assert_eq!(
            reply.body,
            format!("ok: notified fluxd of {} change(s)\n", expected.len()),
            "{source}"
        );
        assert_eq!(fluxd.take(), sorted(expected), "{source}");
    }

    // The generic hooks' request id is logged; no key ever is.
    let logs = recv.logs.text();
    let line = logs
        .lines()
        .find(|l| l.contains("source: GenericHMAC") && l.contains(" hook,"))
        .expect("hook log line");
    assert!(
        line.contains("delivery: 72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        "{line}"
    );
    for (source, _) in ENDPOINTS {
        assert!(!logs.contains(&key(source)), "{source}'s key is logged");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_need_no_action_are_200_and_send_nothing() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let recv = Recv::start(&config(dir.path(), &fluxd.api()), Options::default()).await;

    for (source, event, why) in [
        ("AzureContainerRegistry", "ping", "ping action"),
        ("AzureContainerRegistry", "delete", "delete action"),
        ("AzureContainerRegistry", "chart_push", "chart_push action"),
        ("Distribution", "pull", "no manifest push among 2 event(s)"),
    ] {
        let d = sample(source, event);
        let reply = post(recv.url(&hook(source)), headers_of(&d), d.body.clone()).await;
        assert_eq!(reply.status, 200, "{source} {event}: {}", reply.body);
        assert_eq!(
            reply.body,
            format!("ok: nothing to do ({why})\n"),
            "{source} {event}"
        );
    }
    // Blob pushes alone (a push whose manifest comes in a later envelope).
    let d = sample("Distribution", "push");
    let mut envelope: Value = serde_json::from_slice(&d.body).unwrap();
    envelope["events"].as_array_mut().unwrap().pop();
    let reply = post(
        recv.url(&hook("Distribution")),
        headers_of(&d),
        serde_json::to_vec(&envelope).unwrap(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.body,
        "ok: nothing to do (no manifest push among 1 event(s))\n"
    );
    assert!(fluxd.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_401_and_send_nothing() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let recv = Recv::start(&config(dir.path(), &fluxd.api()), Options::default()).await;

    for source in ["AzureContainerRegistry", "Distribution"] {
        let d = sample(source, "push");
        let other = format!("Bearer {}", key("another endpoint"));
        for (value, reply_text) in [
            (None, "missing Authorization header"),
            (Some(other.as_str()), "Authorization does not match"),
            (Some("Bearer "), "Authorization does not match"),
        ] {
            let h = with_header(&d, "Authorization", value);
            let reply = post(recv.url(&hook(source)), h, d.body.clone()).await;
            assert_eq!(reply.status, 401, "{source} {value:?}");
            assert_eq!(reply.body, format!("{reply_text}\n"), "{source} {value:?}");
        }
    }

    let d = sample("GenericHMAC", "push");
    let forged = flux_recv::source::verify::sign(
        flux_recv::source::verify::Algorithm::Sha256,
        b"not the key",
        &d.body,
    );
    for value in [None, Some(forged.as_str())] {
        let h = with_header(&d, "X-Signature", value);
        let reply = post(recv.url(&hook("GenericHMAC")), h, d.body.clone()).await;
        assert_eq!(reply.status, 401, "{value:?}: {}", reply.body);
    }
    // A genuine signature over another body.
    let reply = post(
        recv.url(&hook("GenericHMAC")),
        headers_of(&d),
        b"{\"status\":\"failure\"}".to_vec(),
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.body);

    assert!(fluxd.take().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_payloads_are_400_and_send_nothing() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let recv = Recv::start(&config(dir.path(), &fluxd.api()), Options::default()).await;

    for (source, body, reply_text) in [
        (
            "AzureContainerRegistry",
            &br#"{"action":"push","target":{"repository":"app"}}"#[..],
            "bad payload: request.host is missing",
        ),
        (
            "Distribution",
            br#"{"events":[{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"app"}}]}"#,
            "bad payload: events[0].request.host is missing",
        ),
        ("Distribution", b"{}", "bad payload: events is missing"),
    ] {
        let d = Source::named(source)
            .sample(&SampleRequest {
                body: Some(body),
                ..SampleRequest::push(key(source).as_bytes())
            })
            .unwrap();
        let reply = post(recv.url(&hook(source)), headers_of(&d), d.body.clone()).await;
        assert_eq!(reply.status, 400, "{source}: {}", reply.body);
        assert_eq!(reply.body, format!("{reply_text}\n"), "{source}");
    }
    assert!(fluxd.take().is_empty());
}

#[test]
fn generic_endpoints_need_a_notify_block_and_others_refuse_one() {
    for (yaml, field, says) in [
        (
            "- source: Generic\n  keyPath: a.key\n",
            "endpoints[0].notify",
            "is required for Generic endpoints",
        ),
        (
            "- source: GenericHMAC\n  keyPath: a.key\n",
            "endpoints[0].notify",
            "is required for GenericHMAC endpoints",
        ),
        (
            "- source: GitHub\n  keyPath: a.key\n  notify:\n    image: registry.example.com/team/app\n",
            "endpoints[0].notify",
            "only Generic, GenericHMAC and StandardWebhooks endpoints take it; remove it from this \
             GitHub endpoint",
        ),
        (
            "- source: Distribution\n  keyPath: a.key\n  notify:\n    image: registry.example.com/team/app\n",
            "endpoints[0].notify",
            "remove it from this Distribution endpoint",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.key"), "0123456789abcdef").unwrap();
        let config = write_config(dir.path(), "http://localhost:3030/api/flux", yaml);
        let loaded = Table::load(&config, None);
        assert!(loaded.table.is_none(), "{yaml}");
        let problem = loaded
            .problems
            .iter()
            .find(|p| p.field == field)
            .unwrap_or_else(|| panic!("{yaml}: {:#?}", loaded.problems));
        assert!(problem.message.contains(says), "{}", problem.message);
    }
}

#[test]
fn a_generic_endpoint_with_a_notify_block_loads() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "http://localhost:3030/api/flux");
    let loaded = Table::load(&config, None);
    let table = loaded
        .table
        .unwrap_or_else(|| panic!("{:#?}", loaded.problems));
    assert_eq!(table.endpoints().len(), ENDPOINTS.len());
}
