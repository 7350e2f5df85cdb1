//! `flux-recv check`: every problem in a config listed, and the exit
//! status saying whether any is an error.

use crate::common::{testdata, write_config};
use crate::{flux_recv, path_str, run, stderr, stdout};

#[test]
fn check_exits_1_on_errors_and_lists_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.key"), "0123456789abcdef0123").unwrap();
    std::fs::write(dir.path().join("empty.key"), "").unwrap();
    std::fs::write(dir.path().join("newline.key"), "0123456789abcdef-nl\n").unwrap();
    let config = write_config(
        dir.path(),
        "http://localhost:3030/api/flux",
        "- source: Github\n  keyPath: good.key\n\
         - source: GitLab\n  keyPath: missing.key\n\
         - source: Harbor\n  keyPath: empty.key\n\
         - source: GitHub\n  keyPath: newline.key\n\
         - source: Quay\n  keyPath: good.key\n",
    );
    let o = run(&["check", "--config", path_str(&config)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    let config_file = path_str(&config);
    let expect = [
        format!("error: {config_file}: endpoints[0].source: unknown source \"Github\""),
        format!("error: {config_file}: endpoints[1].keyPath: cannot read key file"),
        format!(
            "error: {}: endpoints[2].keyPath: the key file is empty",
            dir.path().join("empty.key").display()
        ),
        format!(
            "warning: {}: endpoints[3].keyPath: the key ends in whitespace",
            dir.path().join("newline.key").display()
        ),
        format!("warning: {config_file}: endpoints[4].source: Quay requests carry no signature"),
    ];
    assert_eq!(lines.len(), expect.len() + 1, "{out}");
    for (line, want) in lines.iter().zip(&expect) {
        assert!(
            line.starts_with(want.as_str()),
            "{line}\n  should start with\n{want}"
        );
    }
    assert_eq!(lines[5], "5 endpoints, 3 errors, 2 warnings");
}

#[test]
fn check_exits_0_with_warnings_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.key"), "short").unwrap();
    std::fs::write(dir.path().join("hub.key"), "0123456789abcdef-hub").unwrap();
    std::fs::write(dir.path().join("good.key"), "0123456789abcdef-good").unwrap();
    let config = write_config(
        dir.path(),
        "http://localhost:3030/api/flux",
        "- source: GitHub\n  keyPath: short.key\n\
         - source: DockerHub\n  keyPath: hub.key\n\
         - source: GitLab\n  keyPath: good.key\n",
    );
    let o = run(&["check", "--config", path_str(&config)]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let out = stdout(&o);
    assert!(
        out.contains("endpoints[0].keyPath: the key is only 5 bytes"),
        "{out}"
    );
    assert!(
        out.contains("the unguessable URL is its only protection"),
        "{out}"
    );
    assert_eq!(
        out.lines().last(),
        Some("3 endpoints, 0 errors, 2 warnings")
    );

    // The config can come from the environment, as for serving; other
    // serve variables set for the container do not get in the way.
    let o = flux_recv(&["check"])
        .env("FLUXRECV_CONFIG", &config)
        .env("FLUXRECV_LISTEN", ":9999")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().last(),
        Some("3 endpoints, 0 errors, 2 warnings")
    );
}

#[test]
fn check_passes_the_demo_config() {
    let demo = testdata().join("demo").join("fluxrecv.yaml");
    let o = run(&["check", "--config", path_str(&demo)]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(
        stdout(&o).lines().last(),
        Some("2 endpoints, 0 errors, 1 warning")
    );
}

/// A key mounted as the config (`--from-file=fluxrecv.yaml=github.key`):
/// `check` and the server's start-up both say the config is not one, and
/// neither repeats the key.
#[test]
fn a_key_file_as_the_config_is_refused_without_repeating_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let config = dir.path().join("fluxrecv.yaml");
    std::fs::write(&config, format!("{key}\n")).unwrap();

    let o = run(&["check", "--config", path_str(&config)]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!out.contains(key), "the key in the output:\n{out}");
    assert!(out.contains("not a valid flux-recv config"), "{out}");
    assert!(
        out.contains("is a key file mounted as the config?"),
        "{out}"
    );

    let o = run(&["--config", path_str(&config), "--listen", "127.0.0.1:0"]);
    assert!(!o.status.success());
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!out.contains(key), "the key in the log:\n{out}");
    assert!(out.contains("not a valid flux-recv config"), "{out}");
}
