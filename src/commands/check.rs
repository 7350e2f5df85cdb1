//! `flux-recv check`: load the config and every key as the server would, and
//! report every problem at once, each with its file and field.
//!
//! Errors (the server would refuse to start, or a reload would be refused)
//! exit 1. Warnings exit 0: a key ending in whitespace, a key shorter than
//! [`crate::endpoint::SHORT_KEY`] bytes, a config with no endpoints, an
//! endpoint whose source verifies nothing, so that its unguessable URL is
//! all that keeps others from triggering fluxd, and what a target says of
//! itself ([`crate::targets::TargetKind::warnings`]: a fluxd API whose path
//! does not end in `/api/flux`).

use std::path::Path;
use std::process::ExitCode;

use crate::cli::CheckArgs;
use crate::config::{ConfigFile, Problem, Severity};
use crate::endpoint::targets_named;
use crate::source::{Extra, Source};
use crate::table::{default_target, read_config, Table};

/// What `check` found.
#[derive(Debug)]
pub struct Findings {
    /// How many endpoints the config lists (whether or not they load).
    pub endpoints: usize,
    /// Every problem: the config's own first, then each endpoint's in
    /// config order.
    pub problems: Vec<Problem>,
}

impl Findings {
    /// How many problems are errors.
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    /// How many problems are warnings.
    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.problems
            .iter()
            .filter(|p| p.severity == severity)
            .count()
    }

    /// `3 endpoints, 0 errors, 2 warnings`.
    pub fn summary(&self) -> String {
        format!(
            "{}, {}, {}",
            plural(self.endpoints, "endpoint"),
            plural(self.errors(), "error"),
            plural(self.warnings(), "warning")
        )
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Check the config at `config_path` and the keys it names; `api` is the
/// `--api` flag.
pub fn check(config_path: &Path, api: Option<&str>) -> Findings {
    let config = match read_config(config_path) {
        Ok(config) => config,
        Err(problems) => {
            return Findings {
                endpoints: 0,
                problems,
            }
        }
    };
    let mut problems = Table::build(config_path, &config, api).problems;
    problems.extend(unprotected(config_path, &config));
    problems.extend(target_warnings(config_path, &config, api));
    if config.endpoints.is_empty() {
        problems.push(Problem::warning(
            config_path,
            "endpoints",
            "the config has no endpoints; every hook URL will answer 404",
        ));
    }
    // Stable: within one endpoint, the table's order is kept.
    problems.sort_by_key(|p| endpoint_index(&p.field));
    Findings {
        endpoints: config.endpoints.len(),
        problems,
    }
}

/// A warning for each endpoint that accepts any request sent to its URL:
/// [`crate::endpoint::verifies_sender`] asked of the config, so it is
/// reported even when other endpoints fail to load.
fn unprotected(config_path: &Path, config: &ConfigFile) -> Vec<Problem> {
    let mut warnings = Vec::new();
    for (i, ep) in config.endpoints.iter().enumerate() {
        let Some(source) = Source::from_name(&ep.source) else {
            continue; // already an error
        };
        let require_signature = ep.require_signature == Some(true);
        if crate::endpoint::verifies_sender(source, ep.gcr.is_some(), require_signature) {
            continue;
        }
        let (what, how) = if source.takes(Extra::PubSubToken) {
            (
                "carry no signature or token",
                "add a `gcr:` block (audience, email) to verify the token Google signs \
                 each Pub/Sub push with",
            )
        } else if source.takes(Extra::RequireSignature) {
            (
                "need not be signed",
                "give the webhook the key as its secret and set `requireSignature: true` \
                 to refuse unsigned requests",
            )
        } else {
            (
                "carry no signature or token",
                "keep the key secret and long, and the URL out of logs and tickets",
            )
        };
        warnings.push(Problem::warning(
            config_path,
            format!("endpoints[{i}].source"),
            format!(
                "{source} requests {what}, so this endpoint is exposed without a secret: \
                 the unguessable URL is its only protection; {how}"
            ),
        ));
    }
    warnings
}

/// What each target the config names is warned of (a fluxd API whose
/// path does not end in `/api/flux`, say), named by the field that names
/// it: `--api` or the top-level `api` for the default, then each
/// endpoint's. Read from the config, so that it is said even when another
/// endpoint does not build.
fn target_warnings(config_path: &Path, config: &ConfigFile, flag: Option<&str>) -> Vec<Problem> {
    let default = match flag {
        Some(_) => "--api",
        None => "api",
    };
    let mut named = vec![(default.to_string(), default_target(config, flag))];
    for (i, ep) in config.endpoints.iter().enumerate() {
        let dir = crate::endpoint::config_dir(config_path);
        named.extend(targets_named(dir, &format!("endpoints[{i}]"), ep).targets);
    }
    named
        .into_iter()
        .flat_map(|(field, target)| {
            target
                .warnings()
                .into_iter()
                .map(move |message| Problem::warning(config_path, field.clone(), message))
        })
        .collect()
}

/// `endpoints[3].keyPath` → `Some(3)`; problems with the file as a whole
/// (`fluxRecvVersion`, `api`) → `None`, which sorts first.
fn endpoint_index(field: &str) -> Option<usize> {
    let rest = field.strip_prefix("endpoints[")?;
    rest[..rest.find(']')?].parse().ok()
}

/// Run `flux-recv check`: print every problem and a summary on stdout.
pub fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let report = check(&args.config, args.fluxd.api.as_deref());
    for p in &report.problems {
        println!("{}", super::problem_line(p));
    }
    println!("{}", report.summary());
    Ok(if report.errors() > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn report(config: &str, keys: &[(&str, &[u8])]) -> (tempfile::TempDir, Findings) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("fluxrecv.yaml"), config).unwrap();
        for (name, key) in keys {
            fs::write(dir.path().join(name), key).unwrap();
        }
        let report = check(&dir.path().join("fluxrecv.yaml"), None);
        (dir, report)
    }

    const GOOD: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_clean_config_has_nothing_to_say() {
        let (_dir, r) = report(
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a.key\n- source: GoogleContainerRegistry\n  keyPath: b.key\n  gcr:\n    audience: https://hooks.example.com/hook/x\n    email: push@p.iam.gserviceaccount.com\n",
            &[("a.key", GOOD), ("b.key", b"0123456789abcdef-b")],
        );
        assert_eq!(r.problems, vec![]);
        assert_eq!(r.summary(), "2 endpoints, 0 errors, 0 warnings");
    }

    #[test]
    fn sources_that_verify_nothing_are_warned_about_in_config_order() {
        let (_dir, r) = report(
            "fluxRecvVersion: 1\nendpoints:\n- source: DockerHub\n  keyPath: a.key\n- source: GitHub\n  keyPath: short.key\n- source: Quay\n  keyPath: b.key\n- source: BitbucketCloud\n  keyPath: c.key\n- source: GoogleContainerRegistry\n  keyPath: d.key\n",
            &[
                ("a.key", b"0123456789abcdef-a"),
                ("short.key", b"short"),
                ("b.key", b"0123456789abcdef-b"),
                ("c.key", b"0123456789abcdef-c"),
                ("d.key", b"0123456789abcdef-d"),
            ],
        );
        let fields: Vec<&str> = r.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "endpoints[0].source",
                "endpoints[1].keyPath",
                "endpoints[2].source",
                "endpoints[3].source",
                "endpoints[4].source"
            ]
        );
        assert!(r.problems[0]
            .message
            .contains("the unguessable URL is its only protection"));
        assert!(r.problems[3]
            .message
            .contains("set `requireSignature: true` to refuse unsigned requests"));
        assert!(r.problems[4].message.contains("add a `gcr:` block"));
        assert_eq!(r.errors(), 0);
        assert_eq!(r.summary(), "5 endpoints, 0 errors, 5 warnings");
    }

    #[test]
    fn a_required_signature_protects_an_endpoint() {
        let (_dir, r) = report(
            "fluxRecvVersion: 1\nendpoints:\n- source: BitbucketCloud\n  keyPath: a.key\n  requireSignature: true\n- source: BitbucketCloud\n  keyPath: b.key\n  requireSignature: false\n",
            &[("a.key", GOOD), ("b.key", b"0123456789abcdef-b")],
        );
        let fields: Vec<&str> = r.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["endpoints[1].source"]);
    }

    /// As the Go original, a Nexus endpoint without `registryHost` relays
    /// Docker Hub names; it still loads, and `check` says how to fix it.
    #[test]
    fn a_nexus_endpoint_without_registry_host_is_warned_about() {
        let (_dir, r) = report(
            "fluxRecvVersion: 1\nendpoints:\n- source: Nexus\n  keyPath: a.key\n- source: Nexus\n  keyPath: b.key\n  registryHost: nexus.example.com:8443\n- source: GitHub\n  keyPath: c.key\n",
            &[("a.key", GOOD), ("b.key", GOOD), ("c.key", b"0123456789abcdef-c")],
        );
        let fields: Vec<&str> = r.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["endpoints[0].registryHost"]);
        let message = &r.problems[0].message;
        assert!(
            message.contains("relayed as a Docker Hub image"),
            "{message}"
        );
        assert!(message.contains("Set `registryHost:`"), "{message}");
        assert_eq!(r.summary(), "3 endpoints, 0 errors, 1 warning");
    }

    #[test]
    fn errors_and_warnings_are_reported_together() {
        let (_dir, r) = report(
            "fluxRecvVersion: 1\nendpoints:\n- source: Github\n  keyPath: a.key\n- source: DockerHub\n  keyPath: missing.key\n- source: GitLab\n  keyPath: nl.key\n",
            &[("a.key", GOOD), ("nl.key", b"0123456789abcdef\n")],
        );
        let lines: Vec<String> = r.problems.iter().map(super::super::problem_line).collect();
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains("endpoints[0].source"));
        assert!(lines[1].starts_with("error: ") && lines[1].contains("endpoints[1].keyPath"));
        assert!(lines[2].starts_with("warning: ") && lines[2].contains("endpoints[1].source"));
        assert!(lines[3].starts_with("warning: ") && lines[3].contains("nl.key: endpoints[2]"));
        assert_eq!(r.summary(), "3 endpoints, 2 errors, 2 warnings");
    }

    #[test]
    fn an_unparsable_or_empty_config() {
        let (_dir, r) = report("fluxRecvVersion: 2\n", &[]);
        assert_eq!(r.errors(), 1);
        assert_eq!(r.problems[0].field, "fluxRecvVersion");
        let (_dir, r) = report("fluxRecvVersion: 1\nendpoints: []\n", &[]);
        assert_eq!(r.summary(), "0 endpoints, 0 errors, 1 warning");
    }

    #[test]
    fn every_unknown_field_is_an_error_of_its_own() {
        let (_dir, r) = report(
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPth: a.key\n- source: GitLab\n  keyPath: b.key\n  filter: {brnches: [main]}\n  requireSignatur: true\n",
            &[],
        );
        let fields: Vec<&str> = r.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["endpoints[0]", "endpoints[1].filter", "endpoints[1]"],
            "{:#?}",
            r.problems
        );
        assert_eq!(r.summary(), "0 endpoints, 3 errors, 0 warnings");
    }

    #[test]
    fn targets_are_warned_about_by_the_field_that_names_them() {
        let config = "fluxRecvVersion: 1\napi: http://fluxd:3030\nendpoints:\n- source: GitHub\n  keyPath: a.key\n  api: [http://a:3030/api/flux, http://b:3030/flux/]\n- source: GitHub\n  keyPath: b.key\n  api: http://c:3030/api/flux\n";
        let (dir, r) = report(config, &[("a.key", GOOD), ("b.key", b"0123456789abcdef-b")]);
        let fields: Vec<&str> = r.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["api", "endpoints[0].api[1]"], "{:#?}", r.problems);
        assert!(
            r.problems[1]
                .message
                .starts_with("\"http://b:3030/flux\" does not end in /api/flux"),
            "{}",
            r.problems[1].message
        );
        assert_eq!(r.warnings(), 2);
        // `--api` replaces the top-level api, and is named as the flag.
        let flagged = check(
            &dir.path().join("fluxrecv.yaml"),
            Some("http://flag:3030/api/v1"),
        );
        let fields: Vec<&str> = flagged.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["--api", "endpoints[0].api[1]"]);
    }

    #[test]
    fn endpoint_indexes() {
        assert_eq!(endpoint_index("endpoints[12].gcr.email"), Some(12));
        assert_eq!(endpoint_index("endpoints[0]"), Some(0));
        assert_eq!(endpoint_index("api"), None);
        assert_eq!(endpoint_index(""), None);
    }
}
