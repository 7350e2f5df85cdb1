//! What a provider needs beside its file and its line in `providers!`,
//! checked for every source, so that no one has to remember it: a payload
//! fixture under `testdata/`, a section in docs/providers.md and a row in
//! its table, and a place in README's table of sources. (The fuzz target,
//! `bad_input`, the benchmarks and `--help` draw from `Source::all()` and
//! need nothing.)

use std::path::Path;

use flux_recv::source::{Extra, Source};

fn read(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The payload fixtures of the provider in `src/source/<file>.rs`, as the
/// tree names them: `testdata/<file>_payload` (the Go original's, with
/// `<file>_key`) or the files in `testdata/<file>/` (one per event).
fn fixtures(file: &str) -> Vec<String> {
    let testdata = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut found = Vec::new();
    if testdata.join(format!("{file}_payload")).is_file() {
        found.push(format!("{file}_payload"));
    }
    if let Ok(dir) = std::fs::read_dir(testdata.join(file)) {
        for entry in dir {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                found.push(format!("{file}/{}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// Every source whose deliveries say what changed has a real one under
/// `testdata/` for its unit tests to parse. The sources that take a
/// `notify:` block (Generic, GenericHMAC, StandardWebhooks) read nothing
/// of the payload, so no payload of theirs would be more real than
/// another: their tests use bodies of every shape instead.
#[test]
fn every_source_that_reads_its_payload_has_a_fixture() {
    let mut missing = Vec::new();
    for source in Source::all() {
        if source.takes(Extra::Notify) {
            continue;
        }
        let file = source.file();
        if fixtures(file).is_empty() {
            missing.push(format!(
                "{source}: neither testdata/{file}_payload nor a file in testdata/{file}/"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// The fixture a source's own unit tests parse is one of those: a fixture
/// nothing reads would prove nothing.
#[test]
fn every_fixture_found_is_read_by_its_source_tests() {
    for source in Source::all().filter(|s| !s.takes(Extra::Notify)) {
        let file = source.file();
        let found = fixtures(file);
        if found.is_empty() {
            continue; // the test above says so
        }
        let code = read(&format!("src/source/{file}.rs"));
        assert!(
            found.iter().any(|f| code.contains(&format!("\"{f}\""))),
            "{source}: src/source/{file}.rs reads none of {found:?}"
        );
    }
}

/// docs/providers.md has a `###` section for every source, starting with
/// the config's spelling (`source: GitHub`), and a row in "At a glance".
#[test]
fn every_source_has_a_section_in_the_providers_guide() {
    let guide = read("docs/providers.md");
    let lines: Vec<&str> = guide.lines().collect();
    // The first non-blank line of each `###` section.
    let opening: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.starts_with("### "))
        .filter_map(|(i, _)| lines[i + 1..].iter().find(|l| !l.trim().is_empty()))
        .copied()
        .collect();
    let rows: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("| `"))
        .map(|l| l.split('|').nth(1).unwrap_or(""))
        .collect();
    let mut missing = Vec::new();
    for source in Source::all() {
        let name = source.name();
        if !opening.contains(&format!("`source: {name}`").as_str()) {
            missing.push(format!(
                "{name}: no `### ` section in docs/providers.md opening with `source: {name}`"
            ));
        }
        if !rows.iter().any(|cell| cell.contains(&format!("`{name}`"))) {
            missing.push(format!(
                "{name}: no row in docs/providers.md's \"At a glance\" table"
            ));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// README's table of sources names every one as the config spells it.
#[test]
fn every_source_is_in_the_readme() {
    let readme = read("README.md");
    let sources = readme
        .split("## Sources")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("README.md has a Sources section");
    let missing: Vec<&str> = Source::all()
        .map(Source::name)
        .filter(|name| {
            !sources.contains(&format!("(`{name}`)")) && !sources.contains(&format!("`{name}` ("))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "not in README.md's Sources: {missing:?}"
    );
}
