//! Every case of the Go original's own tests (`testdata/cases.json`), sent
//! through the real HTTP stack to a stand-in fluxd: same hook URLs, same
//! statuses, same notifications.

use crate::common;

use std::collections::BTreeMap;

use common::{post, sorted, testdata, write_config, FakeFluxd, Recv};
use flux_recv::options::Options;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_of_the_go_original() {
    let cases: Value =
        serde_json::from_slice(&std::fs::read(testdata().join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 19);

    // One endpoint per distinct (source, key, registryHost).
    let mut endpoints = BTreeMap::new();
    for case in cases {
        let ep = &case["endpoint"];
        let key = testdata().join(ep["keyPath"].as_str().unwrap());
        let mut yaml = format!(
            "- source: {}\n  keyPath: {}\n",
            ep["source"].as_str().unwrap(),
            key.display()
        );
        if let Some(host) = ep["registryHost"].as_str() {
            yaml.push_str(&format!("  registryHost: {host}\n"));
        }
        endpoints.insert(case["fingerprint"].as_str().unwrap().to_string(), yaml);
    }

    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &fluxd.api(),
        &endpoints.values().cloned().collect::<String>(),
    );
    let recv = Recv::start(&config, Options::default()).await;

    for case in cases {
        let name = case["name"].as_str().unwrap();
        let req = &case["request"];
        let body = match (req["body"].as_str(), req["bodyFile"].as_str()) {
            (Some(body), _) => body.as_bytes().to_vec(),
            (None, Some(file)) => std::fs::read(testdata().join(file)).unwrap(),
            _ => panic!("{name}: no body"),
        };
        let headers = req["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
            .collect();
        let url = recv.url(&format!("/hook/{}", case["fingerprint"].as_str().unwrap()));
        let reply = post(url, headers, body).await;

        assert_eq!(
            reply.status as u64,
            case["expect"]["status"].as_u64().unwrap(),
            "{name}: {}",
            reply.body
        );
        let expected = case["expect"]["notify"].as_array().unwrap().clone();
        assert_eq!(fluxd.take(), sorted(expected), "{name}: notifications");
    }
}
