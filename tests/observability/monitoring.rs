//! The alerts and the dashboard under `container/monitoring/`: every alert
//! unit-tested by `promtool test rules`, firing and not firing; the
//! PrometheusRule the same rules as the plain rules file; the docs' list
//! the same alerts; and every metric the alerts and the dashboard's
//! queries name served in a real scrape of a running flux-recv, with the
//! labels they group by, select on and draw, and the values they select.

use crate::common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use flux_recv::options::Options;
use serde_yaml::Value;

/// The scrape's HTTP client (the test's `client` is the TLS one).
fn client_for_scrape() -> ureq::Agent {
    client(None)
}

fn monitoring() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("container/monitoring")
}

fn yaml(name: &str) -> Value {
    let path = monitoring().join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every rule of a rules file's `groups:`.
fn rules(groups: &Value) -> Vec<&Value> {
    groups["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules"))
        .collect()
}

fn alert_names(groups: &Value) -> BTreeSet<String> {
    rules(groups)
        .iter()
        .map(|r| r["alert"].as_str().expect("only alerts").to_string())
        .collect()
}

/// Where promtool is not installed: false after saying so, or a failure
/// under `.ci/run` (`FLUXRECV_CI` set), which installs it.
fn promtool_found(test: &str) -> bool {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        std::env::var_os("FLUXRECV_CI").is_none(),
        "{test}: promtool is not installed, and FLUXRECV_CI is set (.ci/run): CI installs \
         Debian's prometheus package for this test"
    );
    eprintln!("SKIPPED {test}: promtool is not installed (apt-get install prometheus)");
    false
}

#[test]
fn promtool_unit_tests_pass_and_cover_every_alert_firing_and_not() {
    let alerts = alert_names(&yaml("rules.yaml"));
    assert!(alerts.len() >= 10, "{alerts:?}");
    // Each alert has an evaluation that expects it to fire, and one that
    // expects it not to.
    let tests = yaml("rules.test.yaml");
    assert_eq!(tests["rule_files"][0], "rules.yaml");
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for test in tests["tests"].as_sequence().unwrap() {
        for eval in test["alert_rule_test"].as_sequence().unwrap() {
            let name = eval["alertname"].as_str().unwrap().to_string();
            let expected = eval["exp_alerts"].as_sequence().map_or(0, Vec::len);
            if expected > 0 {
                firing.insert(name);
            } else {
                quiet.insert(name);
            }
        }
    }
    assert_eq!(firing, alerts, "alerts tested firing");
    assert_eq!(quiet, alerts, "alerts tested not firing");

    if !promtool_found("promtool_unit_tests_pass_and_cover_every_alert_firing_and_not") {
        return;
    }
    let out = Command::new("promtool")
        .args(["test", "rules", "rules.test.yaml"])
        .current_dir(monitoring())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("promtool")
        .args(["check", "rules", "rules.yaml"])
        .current_dir(monitoring())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_prometheus_rule_holds_the_rules_file() {
    let rule = yaml("prometheusrule.yaml");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["spec"], yaml("rules.yaml"));
}

/// The alerts table of docs/operations.md: the first column's names.
fn documented_alerts() -> BTreeSet<String> {
    let docs =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/operations.md"))
            .unwrap();
    docs.lines()
        .filter_map(|l| l.strip_prefix("| `FluxRecv"))
        .map(|rest| format!("FluxRecv{}", rest.split('`').next().unwrap()))
        .collect()
}

#[test]
fn the_docs_list_every_alert() {
    assert_eq!(documented_alerts(), alert_names(&yaml("rules.yaml")));
}

/// Every `fluxrecv_…` name in `text`.
fn metric_names(text: &str, out: &mut BTreeSet<String>) {
    let mut rest = text;
    while let Some(at) = rest.find("fluxrecv_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        out.insert(name);
    }
}

/// A query of the dashboard or an alert's expression, and the legend it is
/// drawn with (`{{label}}`), if any.
struct Query {
    expr: String,
    legend: String,
}

/// The queries of the dashboard (panels, rows' panels, variables) and the
/// alerts' expressions.
fn queries() -> Vec<Query> {
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring().join("dashboard.json")).unwrap(),
    )
    .expect("dashboard.json is JSON");
    let mut queries = Vec::new();
    let mut panels: Vec<&serde_json::Value> =
        dashboard["panels"].as_array().unwrap().iter().collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            queries.push(Query {
                expr: target["expr"].as_str().expect("a PromQL expr").to_string(),
                legend: target["legendFormat"].as_str().unwrap_or("").to_string(),
            });
        }
    }
    assert!(queries.len() >= 15, "{} queries", queries.len());
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["definition"].as_str() {
            queries.push(Query {
                expr: query.to_string(),
                legend: String::new(),
            });
        }
    }
    for rule in rules(&yaml("rules.yaml")) {
        queries.push(Query {
            expr: rule["expr"].as_str().unwrap().to_string(),
            legend: String::new(),
        });
    }
    for query in &queries {
        assert!(
            query.expr.contains("fluxrecv_"),
            "a query of no metric: {}",
            query.expr
        );
    }
    queries
}

/// Labels Prometheus adds to every series it scrapes (`instance`, `job`)
/// or that Kubernetes service discovery usually adds: not in a scrape.
const TARGET_LABELS: [&str; 5] = ["instance", "job", "namespace", "pod", "container"];

/// Each series of a scrape: its name, and its labels with their values.
fn series(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let label = regex::Regex::new(r#"([A-Za-z0-9_]+)="((?:[^"\\]|\\.)*)""#).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let name = l.split(['{', ' ']).next().expect("a sample's name");
            let labels = match l.split_once('{') {
                Some((_, rest)) => {
                    let inside = rest.rsplit_once('}').expect("labels closed").0;
                    label
                        .captures_iter(inside)
                        .map(|c| (c[1].to_string(), c[2].to_string()))
                        .collect()
                }
                None => Vec::new(),
            };
            (name.to_string(), labels)
        })
        .collect()
}

/// The labels a query groups by, selects on or draws in its legend exist
/// on the series of the metrics it names, and the values it selects
/// (`label="value"`, or `label=~"a|b"` of plain words) are values they
/// take. A misspelt outcome would otherwise draw nothing, silently.
fn assert_labels_served(
    query: &Query,
    names: &BTreeSet<String>,
    served: &[(String, Vec<(String, String)>)],
) {
    let labels: BTreeSet<(&str, &str)> = served
        .iter()
        .filter(|(name, _)| names.contains(name))
        .flat_map(|(_, labels)| labels.iter().map(|(l, v)| (l.as_str(), v.as_str())))
        .collect();
    let has =
        |label: &str| TARGET_LABELS.contains(&label) || labels.iter().any(|(l, _)| *l == label);
    let by = regex::Regex::new(r"(?:^|[^A-Za-z0-9_])(?:by|without)[ \t\n]*\(([^)]*)\)").unwrap();
    for clause in by.captures_iter(&query.expr) {
        for label in clause[1]
            .split(',')
            .map(str::trim)
            .filter(|l| !l.is_empty())
        {
            assert!(has(label), "{}: no label {label} on {names:?}", query.expr);
        }
    }
    let legend = regex::Regex::new(r"\{\{[ \t\n]*([A-Za-z0-9_]+)[ \t\n]*\}\}").unwrap();
    for used in legend.captures_iter(&query.legend) {
        assert!(
            has(&used[1]),
            "{}: legend {}: no label {} on {names:?}",
            query.expr,
            query.legend,
            &used[1]
        );
    }
    let matcher = regex::Regex::new(r#"([A-Za-z0-9_]+)[ \t\n]*(=~|=)[ \t\n]*"([^"]*)""#).unwrap();
    for m in matcher.captures_iter(&query.expr) {
        let (label, op, value) = (&m[1], &m[2], &m[3]);
        if TARGET_LABELS.contains(&label) {
            continue;
        }
        assert!(has(label), "{}: no label {label} on {names:?}", query.expr);
        let values: Vec<&str> = match op {
            "=" => vec![value],
            _ if value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '|') =>
            {
                value.split('|').collect()
            }
            _ => Vec::new(),
        };
        for value in values {
            assert!(
                labels.contains(&(label, value)),
                "{}: {label} is never {value:?} on {names:?}",
                query.expr
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_and_label_the_alerts_and_the_dashboard_use_is_served() {
    let queries = queries();
    let mut names = BTreeSet::new();
    for query in &queries {
        metric_names(&query.expr, &mut names);
    }
    // The dashboard shows what the issue of it asks for, at least.
    for needed in [
        "fluxrecv_hooks_total",
        "fluxrecv_reply_duration_seconds_bucket",
        "fluxrecv_delivery_pending",
        "fluxrecv_delivery_oldest_age_seconds",
        "fluxrecv_delivered_total",
        "fluxrecv_delivery_expired_total",
        "fluxrecv_reloads_total",
        "fluxrecv_tls_certificate_expiry_timestamp_seconds",
    ] {
        assert!(names.contains(needed), "{needed} is not queried");
    }

    // A running flux-recv serving TLS, with its admin address (the TLS
    // metrics exist only then), that has relayed a hook over TLS, so that
    // the per-API series exist; scraped on the admin address.
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (config, hook) = github_config(dir.path(), &fluxd.api());
    let ca = common::tls::Authority::new();
    let leaf = ca.leaf(common::tls::now() + 30 * 86_400);
    std::fs::write(dir.path().join("tls.crt"), &leaf.chain_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &leaf.key_pem).unwrap();
    let options = Options {
        tls: Some(flux_recv::tls::PairFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("tls.key"),
        }),
        ..Options::default()
    };
    let recv = Recv::start_with_admin(flux_recv::service::Config::new(config, options)).await;
    let client = common::tls::client(ca.root(), &[]);
    let mut stream = common::tls::connect(recv.addr, &client).await.unwrap();
    let body = github_body("org/app", "main");
    let (status, _) =
        common::tls::request(&mut stream, "POST", &hook, &github_push(&body), &body).await;
    assert_eq!(status, 200);
    let url = format!("http://{}/metrics", recv.admin.unwrap());
    let text = tokio::task::spawn_blocking(move || {
        client_for_scrape()
            .get(&url)
            // As Prometheus asks.
            .header("Accept", "application/openmetrics-text; version=1.0.0")
            .call()
            .expect("scrape")
            .body_mut()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();
    let all = series(&text);
    let served: BTreeSet<String> = all.iter().map(|(name, _)| name.clone()).collect();

    let missing: Vec<&String> = names.iter().filter(|n| !served.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "queried, and not in the scrape: {missing:?}\n{text}"
    );
    for query in &queries {
        let mut used = BTreeSet::new();
        metric_names(&query.expr, &mut used);
        assert_labels_served(query, &used, &all);
    }
}
