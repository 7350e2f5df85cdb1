//! The image: the Dockerfile builds what `scripts/build-musl` builds and
//! runs it as nonroot, and the smoke image runs as the shipped one does.

use crate::{container, root};

/// The instructions of the Dockerfile's last stage, without comments.
fn final_stage(text: &str) -> Vec<String> {
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let last_from = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    lines[last_from..].to_vec()
}

#[test]
fn the_dockerfile_builds_what_the_script_builds_and_runs_it_as_nonroot() {
    let dockerfile = std::fs::read_to_string(container().join("Dockerfile")).unwrap();
    let lines: Vec<&str> = dockerfile.lines().map(str::trim).collect();
    let script = std::fs::read_to_string(root().join("scripts/build-musl")).unwrap();
    let target = "x86_64-unknown-linux-musl";
    assert!(dockerfile.contains(&format!("cargo build --release --locked --target {target}")));
    // The static build's allocator is tuned for a small footprint; without
    // these it idles at 13 MiB instead of 4 (README, "Performance").
    assert!(
        dockerfile.contains("ENV MIMALLOC_ARENA_EAGER_COMMIT=0 MIMALLOC_PURGE_DELAY=0"),
        "mimalloc settings missing from the image"
    );
    assert!(script.contains(&format!("target={target}")));
    assert!(script.contains("cargo build --release --locked --target \"$target\""));

    let from: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "multi-stage");
    assert_eq!(*from[1], "FROM gcr.io/distroless/static-debian12:nonroot");
    assert!(lines.contains(&"USER 65532:65532"));
    assert!(lines.contains(&"EXPOSE 8080"));
    // `kubectl exec … /flux-recv check` reads the mounted config.
    assert!(lines.contains(&"ENV FLUXRECV_CONFIG=/etc/fluxrecv/fluxrecv.yaml"));
    assert!(lines.contains(&r#"ENTRYPOINT ["/flux-recv"]"#));
    assert!(lines.contains(&r#"CMD ["--config", "/etc/fluxrecv/fluxrecv.yaml"]"#));

    // The build context keeps what cargo needs (the manifest names the
    // benches) and leaves out build output and keys.
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    let ignored: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["src", "benches", "Cargo.toml", "Cargo.lock"] {
        assert!(
            !ignored.iter().any(|i| i.trim_end_matches('/') == needed),
            "{needed} is needed to build"
        );
    }
    for excluded in [".git", "target", "**/*.key"] {
        assert!(ignored.contains(&excluded), "{excluded} should be ignored");
    }
}

#[test]
fn the_smoke_image_is_the_dockerfiles_final_stage_on_scratch() {
    let dockerfile = std::fs::read_to_string(container().join("Dockerfile")).unwrap();
    let smoke = std::fs::read_to_string(container().join("Containerfile.smoke")).unwrap();
    let shipped = final_stage(&dockerfile);
    let tested = final_stage(&smoke);
    assert_eq!(tested[0], "FROM scratch");
    // Where the binary and distroless's files come from differs (COPY);
    // how the image runs (USER, ENV, EXPOSE, ENTRYPOINT, CMD) must not.
    let runs = |stage: &[String]| -> Vec<String> {
        stage
            .iter()
            .filter(|l| !l.starts_with("FROM ") && !l.starts_with("COPY "))
            .cloned()
            .collect()
    };
    assert_eq!(runs(&tested), runs(&shipped));
    assert!(!runs(&shipped).is_empty());
    assert!(tested.contains(&"COPY flux-recv /flux-recv".to_string()));
    assert!(shipped.contains(&"COPY --from=build /flux-recv /flux-recv".to_string()));
}
