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
use crate::routing::{ApiConfig, FilterConfig, DEFAULT_API};

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
}

impl Problem {
    /// An error in `file` at `field`.
    pub fn error(file: &Path, field: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Error,
            file: file.to_path_buf(),
            field: field.into(),
            message: message.into(),
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
        let config: ConfigFile = serde_yaml::from_slice(text).map_err(|e| {
            let field = e.to_string().split(": ").next().unwrap_or("").to_string();
            // serde_yaml puts the field path first when it knows it.
            let field = if field.contains(' ') {
                String::new()
            } else {
                field
            };
            // `key` is another name for `keyPath`, so serde calls both
            // together a duplicate of the one it knows.
            let hint = match e.to_string().contains("duplicate field `keyPath`") {
                true => "; `key` and `keyPath` are two names for the key file: give one",
                false => "",
            };
            Problem::error(
                file,
                field,
                format!("not a valid flux-recv config: {e}{hint}"),
            )
        })?;
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
            crate::routing::check_api(api).map_err(|m| Problem::error(file, "api", m))?;
        }
        Ok(config)
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
        assert!(e.message.contains("unknown field `keyPth`"), "{e}");
        let e = parse("fluxRecvVersion: 1\napis: x\n").unwrap_err();
        assert!(e.message.contains("unknown field `apis`"), "{e}");
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
}
