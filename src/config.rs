//! The flux-recv config file, as the Go original reads it.
//!
//! ```yaml
//! fluxRecvVersion: 1
//! api: http://localhost:3030/api/flux   # optional
//! endpoints:
//! - source: GitHub
//!   keyPath: github.key                 # `key:` means the same
//! - source: Nexus
//!   keyPath: nexus.key
//!   registryHost: registry.example.com  # optional
//! ```
//!
//! This module only parses and checks the file's shape; turning it into an
//! endpoint table (reading keys, fingerprints) is [`crate::table`]'s job.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::gcr_auth::GcrAuth;

mod unknown;
mod yaml_errors;
use crate::filter::FilterConfig;
use crate::targets::argocd::ArgoCdConfig;
use crate::targets::flux_receiver::ReceiverConfig;
use crate::targets::fluxd::{ApiConfig, DEFAULT_API};
use yaml_errors::yaml_problem;

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConfigFile {
    /// Must be 1.
    pub flux_recv_version: Option<i64>,
    /// Base URL of fluxd's API.
    pub api: Option<String>,
    /// One entry per hook URL.
    #[serde(default)]
    pub endpoints: Vec<EndpointConfig>,
}

/// One `endpoints:` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EndpointConfig {
    /// Provider name, e.g. `GitHub`.
    pub source: String,
    /// Key file, relative to the config file's directory or absolute.
    /// `key` is the design document's spelling of the same field.
    #[serde(alias = "key")]
    pub key_path: String,
    /// Registry host: appended to the key for the fingerprint, and used by
    /// Nexus to complete image names.
    pub registry_host: Option<String>,
    /// The fluxd API (or APIs) this endpoint's changes go to, instead of
    /// the top-level `api`.
    pub api: Option<ApiConfig>,
    /// Flux v2 notification-controller Receivers this endpoint's hooks go
    /// to, besides `api`'s fluxd (see [`crate::targets::flux_receiver`]).
    pub flux_receivers: Option<Vec<ReceiverConfig>>,
    /// The Argo CD webhooks this endpoint's git changes go to, as pushes.
    pub argocd: Option<Vec<ArgoCdConfig>>,
    /// Which changes are sent; all without one.
    pub filter: Option<FilterConfig>,
    /// GoogleContainerRegistry only: verify the Google-signed token on each
    /// Pub/Sub push. Without it, GCR pushes are accepted unverified.
    pub gcr: Option<GcrAuth>,
    /// For sources whose deliveries name nothing fluxd can use (`Generic`,
    /// `GenericHMAC`): what to notify fluxd of.
    pub notify: Option<NotifyConfig>,
    /// For sources whose signature is optional (`BitbucketCloud`): refuse
    /// deliveries that carry none.
    pub require_signature: Option<bool>,
}

/// An endpoint's `notify:` block: the changes every accepted delivery
/// sends.
///
/// ```yaml
/// notify:
///   git: {url: "git@github.com:org/app.git", branch: main}
///   image: registry.example.com/team/app
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// A git repository and branch, as fluxd is configured with them.
    pub git: Option<GitNotify>,
    /// An image repository, as fluxd names it.
    pub image: Option<String>,
}

/// `notify.git`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitNotify {
    /// The repository URL, as fluxd's `--git-url`.
    pub url: String,
    /// The branch, as fluxd's `--git-branch`.
    pub branch: String,
}

/// How bad a problem is: errors stop a table from loading, warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Serving goes on; the operator should look.
    Warning,
    /// The table cannot be built.
    Error,
}

/// Something wrong with the config or a key, naming the file and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file the problem is in.
    pub file: PathBuf,
    /// The field, e.g. `endpoints[2].source`; empty for the file as a whole.
    pub field: String,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
    /// The file this problem is about is not there: a reload waits a
    /// while for a file a new config names (see [`crate::reload`]).
    pub absent: Option<PathBuf>,
}

impl Problem {
    /// An error in `file` at `field`.
    pub fn error(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Error,
            file: file.to_path_buf(),
            field: field.into(),
            message: message.into(),
            absent: None,
        }
    }

    /// This problem, about `path`, which is not there.
    pub fn absent(self, path: &Path) -> Problem {
        Problem {
            absent: Some(path.to_path_buf()),
            ..self
        }
    }

    /// A warning in `file` at `field`.
    pub fn warning(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(file, field, message)
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if !self.field.is_empty() {
            write!(f, ": {}", self.field)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl ConfigFile {
    /// Parse and check a config file's text. `file` is only used in messages.
    pub fn parse(file: &Path, text: &[u8]) -> Result<ConfigFile, Problem> {
        let config: ConfigFile =
            serde_yaml::from_slice(text).map_err(|e| yaml_problem(file, &e))?;
        match config.flux_recv_version {
            Some(1) => {}
            None => {
                return Err(Problem::error(
                    file,
                    "fluxRecvVersion",
                    "missing; a flux-recv config starts with `fluxRecvVersion: 1`",
                ))
            }
            Some(v) => {
                return Err(Problem::error(
                    file,
                    "fluxRecvVersion",
                    format!("is {v}, but this flux-recv reads version 1"),
                ))
            }
        }
        if let Some(api) = &config.api {
            crate::targets::fluxd::check_api(api).map_err(|m| Problem::error(file, "api", m))?;
        }
        Ok(config)
    }

    /// [`ConfigFile::parse`], and when it fails, every unknown field after
    /// the first problem too: a run of `check` (or a reload) names them
    /// all, each by its place and never by what it holds.
    pub fn parse_all(file: &Path, text: &[u8]) -> Result<ConfigFile, Vec<Problem>> {
        ConfigFile::parse(file, text).map_err(|first| {
            let mut problems = vec![first];
            for p in unknown::fields(file, text) {
                if !problems.contains(&p) {
                    problems.push(p);
                }
            }
            problems
        })
    }

    /// The API base URL, without a trailing slash.
    pub fn api(&self) -> String {
        match &self.api {
            Some(api) if !api.is_empty() => api.trim_end_matches('/').to_string(),
            _ => DEFAULT_API.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigFile, Problem> {
        ConfigFile::parse(Path::new("/etc/fluxrecv/fluxrecv.yaml"), text.as_bytes())
    }

    #[test]
    fn reads_the_go_originals_format() {
        let c = parse(
            "fluxRecvVersion: 1\napi: http://fluxd:3030/api/flux/\nendpoints:\n- source: GitHub\n  keyPath: github.key\n- source: Nexus\n  key: nexus.key\n  registryHost: registry.example.com\n",
        )
        .unwrap();
        assert_eq!(c.api(), "http://fluxd:3030/api/flux");
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!(c.endpoints[1].key_path, "nexus.key");
        assert_eq!(
            c.endpoints[1].registry_host.as_deref(),
            Some("registry.example.com")
        );
    }

    #[test]
    fn api_defaults_to_fluxd_in_the_same_pod() {
        let c = parse("fluxRecvVersion: 1\nendpoints: []\n").unwrap();
        assert_eq!(c.api(), DEFAULT_API);
    }

    #[test]
    fn version_is_required_and_must_be_1() {
        let e = parse("endpoints: []\n").unwrap_err();
        assert_eq!(e.field, "fluxRecvVersion");
        assert!(e
            .to_string()
            .contains("/etc/fluxrecv/fluxrecv.yaml: fluxRecvVersion: missing"));
        let e = parse("fluxRecvVersion: 2\n").unwrap_err();
        assert_eq!(e.field, "fluxRecvVersion");
        assert!(e.message.contains("is 2"));
    }

    #[test]
    fn misspelt_fields_are_refused_with_their_place() {
        let e =
            parse("fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPth: k\n").unwrap_err();
        assert_eq!(e.field, "endpoints[0]");
        // Named by place, not repeated: a key's text can be a YAML key.
        assert!(
            e.message
                .contains("unknown field, expected one of `source`, `key`"),
            "{e}"
        );
        assert!(e.message.ends_with(" at line 4 column 3"), "{e}");
        let e = parse("fluxRecvVersion: 1\napis: x\n").unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
        assert!(!e.message.contains("apis"), "{e}");
    }

    #[test]
    fn every_unknown_field_is_named_by_its_place_without_its_text() {
        let text = "fluxRecvVersion: 1\napis: x\nendpoints:\n- source: GitHub\n  keyPth: k\n\
                    - source: Nexus\n  keyPath: n\n  filter:\n    branch: [main]\n    images: [a]\n\
                    \n  gcr: {audience: a, emial: e}\n  notify: {git: {url: u, brnch: b, s3cr3t: x}}\n";
        let problems = ConfigFile::parse_all(Path::new("c.yaml"), text.as_bytes()).unwrap_err();
        let places: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| {
                let at = p.message.rsplit_once(" at ").map_or("", |(_, at)| at);
                (p.field.as_str(), at)
            })
            .collect();
        assert_eq!(
            places,
            [
                ("", "line 2 column 1"),
                ("endpoints[0]", "line 5 column 3"),
                ("endpoints[1].filter", "line 9 column 5"),
                ("endpoints[1].gcr", "line 12 column 22"),
                ("endpoints[1].notify.git", "line 13 column 26"),
                ("endpoints[1].notify.git", "line 13 column 36"),
            ],
            "{problems:#?}"
        );
        for p in &problems {
            assert!(p.message.contains("unknown field, expected "), "{p}");
            for written in ["apis", "keyPth", "branch:", "emial", "brnch", "s3cr3t"] {
                assert!(!p.to_string().contains(written), "{p}");
            }
        }
        // The first problem is what `parse` says; a clean file has none.
        let first = ConfigFile::parse(Path::new("c.yaml"), text.as_bytes()).unwrap_err();
        assert_eq!(problems[0], first);
        assert!(unknown::fields(Path::new("c.yaml"), b"fluxRecvVersion: 1\n").is_empty());
    }

    #[test]
    fn other_errors_come_first_and_unknown_fields_after() {
        let text =
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: [k]\n  colour: red\n";
        let problems = ConfigFile::parse_all(Path::new("c.yaml"), text.as_bytes()).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[0].message.contains("invalid type: a list"),
            "{}",
            problems[0]
        );
        assert_eq!(problems[1].field, "endpoints[0]");
        assert!(
            problems[1].message.contains("unknown field"),
            "{}",
            problems[1]
        );
    }

    #[test]
    fn key_and_key_path_together_are_refused() {
        let e = parse("fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  key: a\n  keyPath: b\n")
            .unwrap_err();
        assert!(e.message.contains("duplicate field"), "{e}");
        assert!(
            e.message
                .contains("`key` and `keyPath` are two names for the key file: give one"),
            "{e}"
        );
    }

    #[test]
    fn api_must_be_http() {
        for bad in ["https://fluxd/api", "fluxd:3030", "http:///x"] {
            let e = parse(&format!("fluxRecvVersion: 1\napi: {bad}\n")).unwrap_err();
            assert_eq!(e.field, "api", "{bad}");
        }
    }

    #[test]
    fn yaml_syntax_errors_name_the_file() {
        let e = parse("fluxRecvVersion: 1\nendpoints: [\n").unwrap_err();
        assert_eq!(e.severity, Severity::Error);
        assert!(
            e.to_string().starts_with("/etc/fluxrecv/fluxrecv.yaml: "),
            "{e}"
        );
    }

    #[test]
    fn a_key_file_as_the_config_is_named_as_such_without_its_text() {
        let key = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let e = parse(&format!("{key}\n")).unwrap_err();
        assert_eq!(e.field, "");
        assert_eq!(
            e.message,
            "not a valid flux-recv config: the document is a single string, not a mapping: \
             is a key file mounted as the config?"
        );
        let e = parse("12345678901234567890\n").unwrap_err();
        assert!(e.message.contains("a single number, not a mapping"), "{e}");
        let e = parse("- a\n- b\n").unwrap_err();
        assert!(
            e.message.contains("the document is a list, not a mapping"),
            "{e}"
        );
    }

    #[test]
    fn no_problem_repeats_what_the_file_holds() {
        // Every way serde_yaml could quote the file, each around a text
        // that must not come back.
        let s = "s3cr3tvalue";
        let configs = [
            s.to_string(),
            format!("\"{s}"),
            format!("{s}: 1\n"),
            format!("fluxRecvVersion: {s}\n"),
            format!("fluxRecvVersion: 1\napi: [{s}]\n"),
            format!("fluxRecvVersion: 1\nendpoints: {s}\n"),
            format!("fluxRecvVersion: 1\nendpoints:\n- {s}\n"),
            format!("fluxRecvVersion: 1\nendpoints:\n- {s}: x\n"),
            format!("fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: [{s}]\n"),
            format!("fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: k\n  requireSignature: {s}\n"),
            format!("fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: k\n  api: {{{s}: 1}}\n"),
            format!("fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: k\n  filter: {{branches: {s}}}\n"),
            format!("fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: k\n  gcr: {{audience: [{s}], email: e}}\n"),
            format!("fluxRecvVersion: 1\nendpoints: !{s} x\n"),
            format!("fluxRecvVersion: 1\nendpoints:\n- !{s} {{source: GitHub}}\n"),
            format!("fluxRecvVersion: 1\n---\n{s}\n"),
            format!("fluxRecvVersion: *{s}\n"),
            format!("{s}: [\n"),
            format!("fluxRecvVersion: 1\n{s}\n"),
            format!("fluxRecvVersion: 1\napi: '{s}\n"),
        ];
        for config in &configs {
            let all = ConfigFile::parse_all(Path::new("c.yaml"), config.as_bytes());
            for e in all.expect_err(config) {
                assert!(!e.to_string().contains(s), "{config:?}: {e}");
            }
            let e = parse(config).expect_err(config);
            assert!(!e.to_string().contains(s), "{config:?}: {e}");
            assert!(
                e.message.starts_with("not a valid flux-recv config: "),
                "{config:?}: {e}"
            );
        }
    }

    #[test]
    fn problems_keep_the_field_the_kind_and_the_place() {
        let e = parse("fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: k\n  requireSignature: yes please\n")
            .unwrap_err();
        assert_eq!(e.field, "endpoints[0].requireSignature");
        assert_eq!(
            e.message,
            "not a valid flux-recv config: invalid type: a string, expected a boolean \
             at line 5 column 21"
        );
        let e = parse("fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n").unwrap_err();
        assert_eq!(e.field, "endpoints[0]");
        assert!(e.message.contains("missing field `keyPath`"), "{e}");
        // YAML syntax: libyaml's words are kept.
        let e = parse("endpoints: [{source: GitHub, keyPath: k}\n").unwrap_err();
        assert_eq!(
            e.message,
            "not a valid flux-recv config: did not find expected ',' or ']' at line 2 column 1"
        );
    }
}
