//! `flux-recv keygen`: a key to a file (private, never overwritten unless
//! asked) or to a pipe.

use std::os::unix::fs::PermissionsExt;

use crate::{path_str, run, stderr, stdout};

#[test]
fn keygen_writes_a_private_key_without_a_newline_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("github.key");
    let o = run(&["keygen", "--out", path_str(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout.is_empty(), "the key goes to the file only");

    let first = std::fs::read(&key).unwrap();
    assert_eq!(first.len(), 64, "32 random bytes, hex");
    assert!(first.iter().all(u8::is_ascii_hexdigit), "{first:?}");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    let o = run(&["keygen", "--out", path_str(&key)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&key).unwrap(), first, "left as it was");

    let o = run(&["keygen", "--out", path_str(&key), "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let second = std::fs::read(&key).unwrap();
    assert_eq!(second.len(), 64);
    assert_ne!(second, first);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn keygen_to_a_pipe_prints_only_the_key() {
    let a = run(&["keygen"]);
    let b = run(&["keygen"]);
    assert!(a.status.success());
    assert_eq!(a.stdout.len(), 64, "{:?}", stdout(&a));
    assert!(a.stdout.iter().all(u8::is_ascii_hexdigit));
    assert_ne!(a.stdout, b.stdout);
    // Not a terminal: no advice either.
    assert!(a.stderr.is_empty(), "{}", stderr(&a));
}

/// `--format whsec`: a Standard Webhooks signing secret that `check` takes
/// for a StandardWebhooks endpoint and a GitLab signing token, and never
/// repeats.
#[test]
fn keygen_whsec_makes_a_signing_secret_check_takes() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.key");
    let o = run(&["keygen", "--format", "whsec", "--out", path_str(&key)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let secret = std::fs::read_to_string(&key).unwrap();
    let encoded = secret.strip_prefix("whsec_").expect("whsec_ prefix");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("standard base64");
    assert_eq!(bytes.len(), 32);
    assert_ne!(
        stdout(&run(&["keygen", "--format", "whsec"])),
        stdout(&run(&["keygen", "--format", "whsec"]))
    );

    let token = dir.path().join("gitlab.key");
    let o = run(&["keygen", "--format", "whsec", "--out", path_str(&token)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let config = crate::common::write_config(
        dir.path(),
        "http://localhost:3030/api/flux",
        "- source: StandardWebhooks\n  keyPath: signing.key\n  notify: {image: example/app}\n\
         - source: GitLab\n  keyPath: gitlab.key\n",
    );
    let o = run(&["check", "--config", path_str(&config)]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert_eq!(out.trim(), "2 endpoints, 0 errors, 0 warnings");
    assert!(!stderr(&o).contains(encoded));
    assert_eq!(
        run(&["keygen", "--format", "base32"]).status.code(),
        Some(2)
    );
}
