//! Hot reload against files that are not what they claim: a key replaced by
//! a FIFO that nothing ever writes, or a symlink to `/dev/zero`. The reload
//! must fail with a clear error while the last good table serves, later
//! updates must still be taken up, and SIGTERM must still stop the process.
//!
//! Without the safe reads in `flux_recv::files`, the FIFO blocks the reload
//! task (and the process's exit) for good. The tests unblock such a FIFO
//! when they end, so that a regression fails them instead of hanging them.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flux_recv::reload::Trigger;

use crate::common::process::Running;
use crate::common::{get, post, write_config, FakeFluxd};
use crate::{
    hook, push, start, status, until_logged, until_status, KEY_A, KEY_B, KEY_C, NO_RESYNC,
};

/// A config naming `a.key` and `b.key` in `dir`, both written.
fn plain_config(dir: &Path, api: &str) -> PathBuf {
    std::fs::write(dir.join("a.key"), KEY_A).unwrap();
    std::fs::write(dir.join("b.key"), KEY_B).unwrap();
    write_config(
        dir,
        api,
        "- source: GitHub\n  keyPath: a.key\n- source: GitHub\n  keyPath: b.key\n",
    )
}

/// Put a FIFO at `path` in one rename, as a hostile writer of the Secret
/// would.
fn replace_with_fifo(path: &Path) -> Unblock {
    let tmp = path.with_extension("fifo-tmp");
    let made = Command::new("mkfifo").arg(&tmp).status().unwrap();
    assert!(made.success());
    std::fs::rename(&tmp, path).unwrap();
    Unblock(path.to_path_buf())
}

/// Replace `path` with a regular file holding `bytes`, in one rename.
fn replace_with_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// On drop, opens the FIFO for writing (without blocking) and closes it: a
/// reader stuck opening or reading it gets end-of-file, so a regression
/// fails the test rather than hanging it.
struct Unblock(PathBuf);

impl Drop for Unblock {
    fn drop(&mut self) {
        let _ = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&self.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_replaced_by_a_fifo_fails_the_reload_and_later_updates_are_taken_up() {
    let fluxd = FakeFluxd::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = plain_config(dir.path(), &fluxd.api());
    let (mut recv, reloader) = start(&config, NO_RESYNC).await;

    let b = dir.path().join("b.key");
    let _unblock = replace_with_fifo(&b);
    let fifo_error = format!(
        "cannot read key file {}: is a FIFO, not a regular file",
        b.display()
    );
    // The FIFO is refused by name, and the reload says it failed.
    until_logged(
        &recv,
        &["ERRO", fifo_error.as_str(), "field: endpoints[1].keyPath"],
    )
    .await;
    until_logged(&recv, &["WARN", "reload failed; still serving"]).await;
    assert_eq!(status(&recv, KEY_B).await, 200, "the last good table");
    assert_eq!(status(&recv, KEY_A).await, 200);
    assert_eq!(get(recv.url("/ready")).await.status, 200);

    // The task still takes requests: a SIGHUP re-reads and fails again.
    reloader.request(Trigger::Hangup);
    until_logged(&recv, &[fifo_error.as_str(), "trigger: sighup"]).await;

    // A symlink to /dev/zero: refused before a byte is read.
    let zero = dir.path().join("zero.tmp");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    std::fs::rename(&zero, &b).unwrap();
    until_logged(&recv, &["ERRO", "b.key: is a character device"]).await;
    assert_eq!(status(&recv, KEY_B).await, 200);

    // The next good write is taken up.
    replace_with_file(&b, KEY_C);
    until_status(&recv, KEY_C, 200, "the good key taken up").await;
    assert_eq!(status(&recv, KEY_B).await, 404);
    assert!(!recv
        .logs
        .text()
        .contains(std::str::from_utf8(KEY_C).unwrap()));

    // And the server stops as SIGTERM asks.
    recv.shutdown();
    recv.wait_stopped().await;
    drop(reloader);
}

/// Without safe reads, the reload's blocking thread waits on the FIFO for
/// ever, and the runtime waits for that thread at exit: SIGTERM never ends
/// the process.
#[test]
fn the_binary_exits_on_sigterm_while_a_key_is_a_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let config = plain_config(dir.path(), "http://127.0.0.1:9/api/flux");
    let mut running = Running::serving(&config);
    let addr = running.address();
    running.wait_for("watching for changes");

    let b = dir.path().join("b.key");
    let unblock = replace_with_fifo(&b);
    running.wait_for("is a FIFO, not a regular file");
    running.wait_for("reload failed; still serving the previous table");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (headers, body) = push(KEY_A);
    let reply = rt.block_on(post(format!("http://{addr}{}", hook(KEY_A)), headers, body));
    assert_eq!(reply.status, 200);

    running.signal("TERM");
    let Some(exit) = running.exited(Duration::from_secs(12)) else {
        // Let the test fail, not hang: unblock the FIFO, then look.
        drop(unblock);
        panic!("still running 12 s after SIGTERM: {:#?}", running.seen);
    };
    assert!(exit.success(), "{exit}");
    // Every line logged before exit was written out, the last included.
    running.wait_for("stopped");
}
