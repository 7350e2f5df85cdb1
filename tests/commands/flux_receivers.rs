//! `check` and `endpoints` on a config with Flux v2 Receivers: token files
//! checked as keys are, targets listed by kind, no digest or token shown
//! whole.

use crate::common::write_config;
use crate::{path_str, run, stdout};

const DIGEST: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[test]
fn check_reads_token_files_and_endpoints_lists_receivers_without_their_digest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.key"), "0123456789abcdef0123").unwrap();
    std::fs::write(dir.path().join("b.key"), "0123456789abcdef0123-b").unwrap();
    std::fs::write(dir.path().join("receiver.token"), "s3cr3t-receiver-token").unwrap();
    let endpoints = format!(
        "- source: GitHub\n  keyPath: a.key\n  fluxReceivers:\n  \
         - url: http://nc.flux-system.svc/hook/{DIGEST}\n    tokenPath: receiver.token\n\
         - source: GitLab\n  keyPath: b.key\n  fluxReceivers:\n  \
         - url: http://nc.flux-system.svc/hook/{DIGEST}\n    tokenPath: missing.token\n"
    );
    let config = write_config(dir.path(), "http://localhost:3030/api/flux", &endpoints);
    let o = run(&["check", "--config", path_str(&config)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    let missing = dir.path().join("missing.token");
    assert!(
        out.contains(&format!(
            "error: {}: endpoints[1].fluxReceivers[0].tokenPath: cannot read token file",
            missing.display()
        )),
        "{out}"
    );
    assert!(
        !out.contains(&DIGEST[..12]) && !out.contains("s3cr3t"),
        "{out}"
    );

    std::fs::write(dir.path().join("missing.token"), "another-token").unwrap();
    let o = run(&["check", "--config", path_str(&config)]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = run(&["endpoints", "--config", path_str(&config)]);
    let out = stdout(&o);
    assert!(
        out.contains("http://nc.flux-system.svc/hook/01234567…"),
        "{out}"
    );
    assert!(
        !out.contains(&DIGEST[..12]) && !out.contains("s3cr3t"),
        "{out}"
    );
}

#[test]
fn send_dry_run_shows_what_each_target_would_be_sent_and_posts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.key"), "0123456789abcdef0123").unwrap();
    std::fs::write(dir.path().join("receiver.token"), "s3cr3t-receiver-token").unwrap();
    // Nothing listens on either: a dry run posts nothing.
    let endpoints = format!(
        "- source: GitHub\n  keyPath: a.key\n  api: http://127.0.0.1:9/api/flux\n  \
         fluxReceivers:\n  - url: http://127.0.0.1:9/hook/{DIGEST}\n    \
         tokenPath: receiver.token\n"
    );
    let config = write_config(dir.path(), "http://localhost:3030/api/flux", &endpoints);
    let o = run(&[
        "send",
        "--config",
        path_str(&config),
        "--endpoint",
        "1",
        "--dry-run",
    ]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("endpoint 1 (GitHub): a push"), "{out}");
    assert!(
        lines[0].ends_with("not sent; flux-recv would send:"),
        "{out}"
    );
    assert!(
        lines[1]
            .starts_with("  fluxd http://127.0.0.1:9/api/flux/v11/notify: POST {\"Kind\":\"git\""),
        "{out}"
    );
    assert!(
        lines[2].starts_with("  flux-receiver http://127.0.0.1:9/hook/01234567…: POST "),
        "{out}"
    );
    assert!(
        lines[2].contains("bytes (application/json); POST of the delivery's body"),
        "{out}"
    );
    assert!(lines[2].contains("X-Signature"), "{out}");
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        !out.contains(&DIGEST[..12]) && !out.contains("s3cr3t"),
        "{out}"
    );
}
