//! The server's flags as docs/operations.md documents them, and the
//! sources as `--help` lists them.

use clap::CommandFactory;
use flux_recv::cli::Cli;
use flux_recv::source::Source;

use super::{run, stderr, stdout};

/// The flags table in docs/operations.md names every server flag with
/// its variable and the default `--help` shows, and nothing else.
#[test]
fn the_operations_guide_lists_every_flag_with_its_default() {
    let guide = include_str!("../../docs/operations.md");
    let documented: Vec<(String, String, String)> = guide
        .lines()
        .filter(|line| line.starts_with("| `--"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let unquote = |c: &str| c.trim_matches('`').to_string();
            (unquote(cells[1]), unquote(cells[2]), unquote(cells[3]))
        })
        .collect();
    let command = Cli::command();
    let flags: Vec<(String, String, String)> = command
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            if long == "help" || long == "version" {
                return None;
            }
            let env = arg.get_env()?.to_string_lossy().into_owned();
            let default = match arg.get_default_values() {
                [] => String::new(),
                [value] if value == "false" => "off".to_string(),
                [value] => value.to_string_lossy().into_owned(),
                more => panic!("--{long} has defaults {more:?}"),
            };
            Some((format!("--{long}"), env, default))
        })
        .collect();
    assert_eq!(documented, flags);
}

/// `--help` names every source as the config spells it: the list comes
/// from the sources themselves, so a new provider is in it at once.
#[test]
fn help_names_every_source() {
    for args in [["--help"], ["-h"]] {
        let out = run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let help = stdout(&out);
        let names: Vec<&str> = Source::all().map(Source::name).collect();
        let listed = format!("Sources (`source:` in the config): {}.", names.join(", "));
        assert!(help.contains(&listed), "{args:?}:\n{help}");
    }
}
