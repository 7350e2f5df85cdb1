//! What the binary does, one file per command: [`serve`] (the default),
//! [`keygen`], [`endpoints`], [`check`] and [`send`].
//!
//! Arguments are parsed in [`crate::cli`]; a command gets its parsed flags
//! and returns the process's exit code. Errors a person reads go through
//! `anyhow` with context, as everywhere at the edge of the program.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;

use crate::cli::{Cli, Command};
use crate::config::{Problem, Severity};
use crate::table::Table;

pub mod check;
pub mod endpoints;
pub mod keygen;
pub mod send;
pub mod serve;

/// Run the command the command line names (serving when it names none),
/// and return the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        None => return serve::main(cli.serve),
        Some(Command::Keygen(args)) => keygen::run(args),
        Some(Command::Endpoints(args)) => endpoints::run(args),
        Some(Command::Check(args)) => check::run(args),
        Some(Command::Send(args)) => send::run(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("flux-recv: {e:#}");
        ExitCode::FAILURE
    })
}

/// `error: <file>: <field>: <message>`, one problem per line, as `check`
/// and the other commands print them.
pub fn problem_line(p: &Problem) -> String {
    let label = match p.severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    format!("{label}: {p}")
}

/// Build the table as the server would, for a command that needs the
/// endpoints (`endpoints`, `send`), with `api_flag` (`--api`) if the
/// command takes one. Every problem goes to stderr; any error fails the
/// command.
fn load(config: &Path, api_flag: Option<&str>) -> anyhow::Result<Table> {
    let loaded = Table::load(config, api_flag);
    for p in &loaded.problems {
        eprintln!("{}", problem_line(p));
    }
    let errors = loaded.errors().count();
    loaded.table.ok_or_else(|| {
        anyhow!(
            "{} has {errors} error(s), listed above; `flux-recv check --config {}` reports them too",
            config.display(),
            config.display()
        )
    })
}
