//! The flux-recv binary run as a process, as an operator runs it: its
//! stderr read line by line on a thread of its own, so that every wait is
//! bounded, and the process killed when the test ends, however it ends.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// A running process and what it has logged.
pub struct Running {
    pub child: Child,
    lines: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Running {
    /// Spawn `cmd` with its stderr piped to the test.
    pub fn start(mut cmd: Command) -> Running {
        let mut child = cmd.stderr(Stdio::piped()).spawn().expect("spawn");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                if tx.send(line.unwrap_or_default()).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The binary serving `config` on 127.0.0.1:0 in a dry run, as in a
    /// pod, re-reading its files on events and SIGHUP only (the periodic
    /// re-read is an hour away).
    pub fn serving(config: &Path) -> Running {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_flux-recv"));
        cmd.args([
            "--listen",
            "127.0.0.1:0",
            "--dry-run",
            "--resync-interval",
            "60m",
        ])
        .arg("--config")
        .arg(config);
        Running::start(cmd)
    }

    /// The next line containing `needle`, waiting up to 10 s.
    pub fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no {needle:?} in the logs ({e}): {:#?}", self.seen),
            }
        }
    }

    /// The address the server says it listens on (`--listen 127.0.0.1:0`).
    pub fn address(&mut self) -> SocketAddr {
        let listening = self.wait_for("listening");
        listening
            .split("address: ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .expect("address in the listening line")
            .parse()
            .unwrap()
    }

    /// Send the signal `name` (`TERM`, `HUP`) as an operator does.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    /// How the process ended, if it did within `within`.
    pub fn exited(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return Some(exit);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every line the process logged, once it has ended and its stderr is
    /// closed (waiting up to 10 s for that).
    pub fn all_lines(&mut self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return self.seen.clone(),
                Err(e) => panic!("stderr still open ({e}): {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
