//! The binary's commands, run as an operator runs them: `keygen`,
//! `endpoints`, `check`, `send`, and the Go original's serve invocation.
//!
//! `send` is checked against a real flux-recv in front of a stand-in fluxd:
//! a notification arriving for every source proves the samples are signed
//! exactly as the server verifies.
//!
//! One file per command (`keygen`, `endpoints`, `check`, `send`), `serve`
//! for the server run as a process (the Go original's invocation, and a low
//! open-file limit), and `flags` for the server's flags as the operations
//! guide lists them.

mod check;
#[path = "../common/mod.rs"]
mod common;
mod endpoints;
mod flags;
mod flux_receivers;
mod keygen;
mod send;
mod serve;
mod tls;

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The flux-recv binary, with no FLUXRECV_* variables from the test's
/// environment.
fn flux_recv(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flux-recv"));
    cmd.args(args);
    scrubbed(cmd)
}

/// `cmd` with no stdin and no FLUXRECV_* variables from the test's
/// environment, which would otherwise set flux-recv's options.
fn scrubbed(mut cmd: Command) -> Command {
    cmd.stdin(Stdio::null());
    for (name, _) in std::env::vars() {
        if name.starts_with("FLUXRECV_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn run(args: &[&str]) -> Output {
    flux_recv(args).output().expect("run flux-recv")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}
