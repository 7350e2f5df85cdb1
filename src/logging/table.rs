//! The lines about the endpoint table that start-up and every reload log
//! alike, with the same fields, so that one `grep` finds both: one per
//! endpoint (how operators learn each hook URL and where its changes go)
//! and one per problem with the config or a key. All are tagged [`KEEP`]:
//! they wait for room in the log queue rather than be dropped.

use slog::{error, info, warn, Logger};

use super::KEEP;
use crate::config::{Problem, Severity};
use crate::endpoint::Endpoint;
use crate::table::Table;

/// One line about an endpoint: `what` (`endpoint` at start-up; `endpoint
/// added`, `endpoint removed`, … on reload), its source, key file,
/// fingerprint, hook URL, APIs and filter.
pub fn log_endpoint(log: &Logger, what: &str, e: &Endpoint) {
    let api = match &e.targets {
        Some(own) => crate::targets::names(own),
        None => "default".to_string(),
    };
    info!(log, #KEEP, "{}", what;
          "source" => e.source.name(),
          "key" => %e.key_path.display(),
          "fingerprint" => &e.fingerprint,
          "url" => e.url_path(),
          "api" => api,
          "filter" => %e.filter);
}

/// One line per endpoint of the table served at start-up, or a warning
/// that there is none.
pub fn log_endpoints(log: &Logger, table: &Table) {
    for e in table.endpoints() {
        log_endpoint(log, "endpoint", e);
    }
    if table.endpoints().is_empty() {
        warn!(
            log,
            #KEEP,
            "the config has no endpoints; every hook URL will answer 404"
        );
    }
}

/// One line per problem with a config or key: a warning or an error,
/// naming the file and field.
pub fn log_problem(log: &Logger, p: &Problem) {
    match p.severity {
        Severity::Warning => {
            warn!(log, #KEEP, "{}", p.message;
                  "file" => %p.file.display(), "field" => &p.field)
        }
        Severity::Error => {
            error!(log, #KEEP, "{}", p.message;
                   "file" => %p.file.display(), "field" => &p.field)
        }
    }
}
