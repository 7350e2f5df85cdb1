//! serde_yaml's errors as problems that repeat nothing read from the file
//! (a key mounted as the config must not reach a log line): only the field's
//! path, made of the config's own field names, the kind of problem, what
//! was expected, and where.

use std::path::Path;

use super::Problem;

/// The field names a config can hold, at any depth: the only map keys
/// [`yaml_problem`] repeats from serde_yaml's path to an error. Every
/// struct refuses unknown fields, so a path names no other key; this list
/// makes sure of it.
const FIELDS: &[&str] = &[
    "fluxRecvVersion",
    "api",
    "endpoints",
    "source",
    "keyPath",
    "key",
    "registryHost",
    "filter",
    "branches",
    "images",
    "gcr",
    "audience",
    "email",
    "notify",
    "git",
    "url",
    "branch",
    "image",
    "requireSignature",
    "fluxReceivers",
    "tokenPath",
    "caPath",
    "argocd",
    "secretPath",
];

/// serde_yaml's error as a problem that repeats nothing read from the file.
///
/// Its messages quote what they met (`invalid type: string "9f86…",
/// expected struct ConfigFile`), and a key file mounted as the config
/// (`--from-file=fluxrecv.yaml=github.key`) would put the key in the log.
/// So only what our own types wrote is kept: the field's path, the kind of
/// problem, what was expected, and where it is (line and column).
pub(super) fn yaml_problem(file: &Path, e: &serde_yaml::Error) -> Problem {
    let text = e.to_string();
    // serde_yaml writes `<path>: <message> at line L column C` (libyaml adds
    // `, while parsing …` after its mark); the place is taken from
    // `e.location()` instead.
    let text = text.split(" at line ").next().unwrap_or_default();
    let (field, message) = match text.split_once(": ") {
        Some((path, message)) if is_config_path(path) => (path, message),
        _ => ("", text),
    };
    if let Some(found) = message.strip_prefix("invalid type: ") {
        if expected(found) == Some("struct ConfigFile") {
            let what = match kind(found) {
                "a string" => {
                    "a single string, not a mapping: is a key file mounted as the config?"
                }
                "a number" => {
                    "a single number, not a mapping: is a key file mounted as the config?"
                }
                "a list" => "a list, not a mapping of fluxRecvVersion, api and endpoints",
                _ => "not a mapping of fluxRecvVersion, api and endpoints",
            };
            let message = format!("not a valid flux-recv config: the document is {what}");
            return Problem::error(file, "", message);
        }
    }
    let what = safe_message(message);
    let at = match e.location() {
        Some(l) => format!(" at line {} column {}", l.line(), l.column()),
        None => String::new(),
    };
    // `key` is another name for `keyPath`, so serde calls both together a
    // duplicate of the one it knows.
    let hint = match what.starts_with("duplicate field `keyPath`") {
        true => "; `key` and `keyPath` are two names for the key file: give one",
        false => "",
    };
    let message = format!("not a valid flux-recv config: {what}{at}{hint}");
    Problem::error(file, field, message)
}

/// Whether serde_yaml's path to an error (`endpoints[2].gcr`) is made only
/// of [`FIELDS`] and list indices.
fn is_config_path(path: &str) -> bool {
    path.split('.').all(|segment| {
        let name = segment.split('[').next().unwrap_or_default();
        let indices = &segment[name.len()..];
        FIELDS.contains(&name)
            && indices
                .chars()
                .all(|c| c.is_ascii_digit() || c == '[' || c == ']')
    })
}

/// A serde message with whatever it quoted from the file left out.
fn safe_message(message: &str) -> String {
    for quoting in ["invalid type: ", "invalid value: "] {
        if let Some(found) = message.strip_prefix(quoting) {
            return match expected(found) {
                Some(expected) => format!("{quoting}{}, expected {expected}", kind(found)),
                None => format!("{quoting}{}", kind(found)),
            };
        }
    }
    for naming in ["unknown field", "unknown variant"] {
        if message.starts_with(naming) {
            return match expected(message) {
                Some(expected) => format!("{naming}, expected {expected}"),
                None => naming.to_string(),
            };
        }
    }
    // What these name comes from our own types, never from the file.
    let ours = [
        "missing field `",
        "duplicate field `",
        "invalid length ",
        "data did not match any variant of untagged enum ",
    ];
    if ours.iter().any(|prefix| message.starts_with(prefix)) {
        return message.to_string();
    }
    // YAML syntax (libyaml's fixed texts, e.g. `did not find expected ','
    // or ']'`) and serde_yaml's own (`unknown anchor`): kept as they are
    // made of words and quoted marks only, which no quoted or tagged text
    // from the file is.
    let fixed = !message.is_empty()
        && message
            .split('\'')
            .enumerate()
            .all(|(i, part)| match i % 2 {
                0 => part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || " ,;-%<>".contains(c)),
                _ => part.len() == 1 && part.chars().all(|c| c.is_ascii_punctuation()),
            });
    match fixed {
        true => message.to_string(),
        false => "not valid YAML".to_string(),
    }
}

/// What serde says it expected: its words, from our types, after the
/// last `, expected ` (what it found, from the file, comes before).
fn expected(message: &str) -> Option<&str> {
    message
        .rsplit_once(", expected ")
        .map(|(_, expected)| expected)
}

/// The kind of value serde found, without the value: `string "…"` is
/// `a string`.
fn kind(found: &str) -> &'static str {
    let kinds = [
        ("string", "a string"),
        ("integer", "a number"),
        ("floating point", "a number"),
        ("boolean", "a boolean"),
        ("unit value", "an empty value"),
        ("sequence", "a list"),
        ("map", "a mapping"),
    ];
    kinds
        .iter()
        .find(|(serde, _)| found.starts_with(serde))
        .map_or("a value", |(_, ours)| ours)
}
