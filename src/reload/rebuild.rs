//! One reload: the table rebuilt from disk and, if it differs, swapped in
//! and logged. The reload task ([`super`]) decides when.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use slog::{debug, info, Logger};

use crate::config::Problem;
use crate::logging::{log_endpoint, log_problem};
use crate::metrics::{self, Metrics};
use crate::table::{EndpointChanges, Table, TableHandle};

/// What one reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadResult {
    /// The files on disk build the table already served; nothing swapped.
    Unchanged,
    /// A new table is being served.
    Swapped {
        /// Endpoints served now that were not before.
        added: usize,
        /// Endpoints no longer served.
        removed: usize,
    },
    /// The files do not build a table; the previous one is still served.
    Failed {
        /// Every problem found (errors and warnings), for the reload task
        /// to log: it tells a new failure from the one it logged already.
        problems: Vec<Problem>,
        /// The files the broken config names, so the watch can cover them
        /// too: when a config names a key that is not there yet, the key's
        /// arrival is what fixes it.
        files: BTreeSet<PathBuf>,
    },
}

/// Rebuild the table from disk and, if it builds and differs from the one
/// served, swap it in and log what changed. The one reload path; the
/// reload task also waits for files not there yet (see the module's
/// introduction), which a single call cannot.
///
/// A failure is returned, not logged: the reload task logs it, once while
/// it stays the same (see [`ReloadResult::Failed`]).
///
/// Blocking (it reads files): call it from the blocking pool. Reloads must
/// not run concurrently; the reload task is the only caller in the binary.
pub fn reload(table: &TableHandle, metrics: &Metrics, log: &Logger) -> ReloadResult {
    let result = rebuild(table, log);
    metrics.reloaded(result.metric(), &table.load());
    result
}

impl ReloadResult {
    /// The `result` label of the reloads metric.
    pub(super) fn metric(&self) -> metrics::Reload {
        match self {
            ReloadResult::Swapped { .. } => metrics::Reload::Changed,
            ReloadResult::Unchanged => metrics::Reload::Unchanged,
            ReloadResult::Failed { .. } => metrics::Reload::Failed,
        }
    }
}

/// The work of [`reload`].
pub(super) fn rebuild(served: &TableHandle, log: &Logger) -> ReloadResult {
    let started = Instant::now();
    let current = served.load_full();
    let config_path = current.config_path.clone();
    let loaded = Table::load(&config_path, current.api_flag.as_deref());

    let Some(table) = loaded.table else {
        return ReloadResult::Failed {
            problems: loaded.problems,
            files: loaded.files,
        };
    };

    if table == *current {
        debug!(log, "reload: nothing changed";
               "endpoints" => current.endpoints().len(),
               "duration_ms" => crate::logging::elapsed_ms(started));
        return ReloadResult::Unchanged;
    }

    let table = Arc::new(table);
    served.store(table.clone());

    // Warnings (a short key, trailing whitespace) are logged when the table
    // they belong to comes in, not on every re-read that finds it unchanged.
    for problem in &loaded.problems {
        log_problem(log, problem);
    }
    let EndpointChanges {
        added,
        removed,
        changed,
    } = table.changes_from(&current);
    for e in &removed {
        log_endpoint(log, "endpoint removed", e);
    }
    for e in &added {
        log_endpoint(log, "endpoint added", e);
    }
    for e in changed {
        log_endpoint(log, "endpoint settings changed", e);
    }
    info!(log, "reloaded";
          "endpoints_before" => current.endpoints().len(),
          "endpoints_after" => table.endpoints().len(),
          "added" => added.len(),
          "removed" => removed.len(),
          "api" => %table.default_target(),
          "duration_ms" => crate::logging::elapsed_ms(started));
    ReloadResult::Swapped {
        added: added.len(),
        removed: removed.len(),
    }
}
