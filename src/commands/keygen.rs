//! `flux-recv keygen`: a fresh key for a new endpoint.
//!
//! A key is [`KEY_BYTES`] bytes from the operating system's random source,
//! hex-encoded, with no trailing newline: the file's bytes are the secret
//! the provider must be given, verbatim, and a newline would be part of it.
//! Hex keeps it pasteable into every provider's secret field and safe in
//! the headers where GitLab and Harbor send it back.
//!
//! `--format whsec` writes a Standard Webhooks signing secret instead:
//! `whsec_` and the same number of random bytes in base64, as the spec
//! serializes them and GitLab takes them as a signing token.

use std::fs::OpenOptions;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context};

use base64::Engine;

use crate::cli::{KeyFormat, KeygenArgs};
use crate::endpoint::fingerprint;

/// Random bytes in a key: 32, above the 20 GitHub recommends and the 16
/// below which `check` warns.
pub const KEY_BYTES: usize = 32;

/// A new key: [`KEY_BYTES`] random bytes, as lowercase hex or as a
/// signing secret (`whsec_<base64>`).
pub fn new_key(format: KeyFormat) -> anyhow::Result<String> {
    let mut bytes = [0u8; KEY_BYTES];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow!("cannot read random bytes from the operating system: {e}"))?;
    Ok(match format {
        KeyFormat::Hex => hex::encode(bytes),
        KeyFormat::Whsec => format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ),
    })
}

/// Write `key` to a new file at `path`, readable by its owner only. An
/// existing file is an error unless `force`, and is then replaced by a
/// rename, so a running flux-recv never reads a half-written key.
pub fn write_key(path: &Path, key: &str, force: bool) -> anyhow::Result<()> {
    if !force {
        return create_private(path, key).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                anyhow!(
                    "{} exists; keygen does not overwrite a key, because the endpoint's hook URL \
                     is derived from it. Pass --force to replace it (then give the provider the \
                     new key and URL)",
                    path.display()
                )
            } else {
                anyhow!(e).context(format!("cannot create {}", path.display()))
            }
        });
    }
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{} is not a file name", path.display()))?;
    let temp = path.with_file_name(format!(
        ".{}.keygen-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    create_private(&temp, key).with_context(|| format!("cannot create {}", temp.display()))?;
    std::fs::rename(&temp, path).map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        anyhow!(e).context(format!("cannot replace {}", path.display()))
    })
}

fn create_private(path: &Path, key: &str) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(key.as_bytes())?;
    file.sync_all()
}

/// How to use a new key, for a person at a terminal. `out` is the file the
/// key went to; `on_screen` says whether it was printed to the terminal
/// (rather than redirected). The key itself is never repeated.
pub fn advice(
    key: &str,
    format: KeyFormat,
    out: Option<&Path>,
    config: &Path,
    on_screen: bool,
) -> String {
    let fp = fingerprint(key.as_bytes(), None);
    let (example, source, what, paste) = match format {
        KeyFormat::Hex => (
            "github.key",
            "GitHub            # or GitLab, Harbor, …",
            "hex characters",
            "Paste the key into the provider's secret field exactly as it is.",
        ),
        KeyFormat::Whsec => (
            "signing.key",
            "StandardWebhooks  # or GitLab",
            "characters, a whsec_ signing secret",
            "Give it to the sender as its signing secret (GitLab: the webhook's signing \
             token), exactly as it is.",
        ),
    };
    let (key_path, written) = match out {
        Some(path) => (
            relative_to(config, path).display().to_string(),
            format!(
                "Wrote a new key to {} ({} {what}, no trailing newline, mode 0600).\n",
                path.display(),
                key.len()
            ),
        ),
        None => (example.to_string(), String::new()),
    };
    let save = if on_screen {
        format!(
            "Save it without a newline: `flux-recv keygen --out {example}`, or \
             `printf %s \"$key\" > {example}` (never `echo`, which adds one).\n"
        )
    } else {
        String::new()
    };
    let notify = match format {
        KeyFormat::Hex => "",
        KeyFormat::Whsec => {
            "\x20   notify: {image: …}          # StandardWebhooks: what to tell fluxd\n"
        }
    };
    format!(
        "{written}{save}\
         Add an endpoint for it to the config:\n\
         \x20 - source: {source}\n\
         \x20   keyPath: {key_path}\n\
         {notify}\
         Its hook URL is <where providers reach flux-recv>/hook/{fp}\n\
         (with a registryHost the fingerprint differs; `flux-recv endpoints` lists every URL).\n\
         {paste}\n"
    )
}

/// `key` as a `keyPath:` in `config`, which the server resolves against
/// the config's directory. Both are taken from the current directory, as
/// the command line gives them; nothing needs to exist.
fn relative_to(config: &Path, key: &Path) -> PathBuf {
    // Lexically, without following links: `a/../b` is `b`.
    let absolute = |p: &Path| -> Vec<std::ffi::OsString> {
        let cwd = std::env::current_dir().unwrap_or_default();
        let mut parts = Vec::new();
        for c in cwd.join(p).components() {
            match c {
                Component::ParentDir => {
                    parts.pop();
                }
                Component::Normal(name) => parts.push(name.to_os_string()),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
        parts
    };
    let mut dir = absolute(config);
    dir.pop();
    let key = absolute(key);
    let common = dir.iter().zip(&key).take_while(|(a, b)| a == b).count();
    let mut relative = PathBuf::new();
    for _ in common..dir.len() {
        relative.push("..");
    }
    for name in &key[common..] {
        relative.push(name);
    }
    relative
}

/// Run `flux-recv keygen`.
pub fn run(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = new_key(args.format)?;
    let mut on_screen = false;
    match &args.out {
        Some(path) => write_key(path, &key, args.force)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            on_screen = stdout.is_terminal();
            // `flux-recv keygen > key` must write the key and nothing else;
            // at a terminal, end the line so the prompt does not run on.
            if on_screen {
                writeln!(stdout, "{key}")?;
            } else {
                write!(stdout, "{key}")?;
            }
            stdout.flush()?;
        }
    }
    if std::io::stderr().is_terminal() {
        eprint!(
            "{}",
            advice(
                &key,
                args.format,
                args.out.as_deref(),
                &args.config,
                on_screen
            )
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_fresh_hex() {
        let a = new_key(KeyFormat::Hex).unwrap();
        let b = new_key(KeyFormat::Hex).unwrap();
        assert_eq!(a.len(), 2 * KEY_BYTES);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }

    #[test]
    fn signing_secrets_are_fresh_and_taken_by_the_sources_that_need_them() {
        let a = new_key(KeyFormat::Whsec).unwrap();
        assert_ne!(a, new_key(KeyFormat::Whsec).unwrap());
        let secret = crate::source::stamped::secret_bytes(a.as_bytes());
        assert_eq!(secret.map(|s| s.map(|b| b.len())), Some(Ok(KEY_BYTES)));
        // `whsec_` and 44 characters of padded base64, as GitLab makes them.
        assert_eq!(a.len(), 6 + 44);
        assert!(a.ends_with('='));
        for source in ["StandardWebhooks", "GitLab"] {
            let source = crate::source::Source::named(source);
            assert_eq!(source.check_key(a.as_bytes()), Ok(None), "{source}");
        }
    }

    #[test]
    fn force_replaces_by_rename_and_keeps_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = write_key(&path, "new", false).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        write_key(&path, "new", true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn advice_names_the_url_but_not_a_written_key() {
        let key = "0123456789abcdef0123456789abcdef";
        let config = Path::new("fluxrecv.yaml");
        let hex = KeyFormat::Hex;
        let text = advice(key, hex, Some(Path::new("github.key")), config, false);
        assert!(text.contains(&format!("/hook/{}", fingerprint(key.as_bytes(), None))));
        assert!(text.contains("keyPath: github.key"));
        assert!(!text.contains(key));
        assert!(advice(key, hex, None, config, true).contains("printf %s"));
        assert!(!advice(key, hex, None, config, false).contains(key));
        let secret = "whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=";
        let text = advice(secret, KeyFormat::Whsec, None, config, true);
        assert!(text.contains("source: StandardWebhooks"), "{text}");
        assert!(text.contains("signing token"), "{text}");
        assert!(!text.contains(secret));
    }

    #[test]
    fn the_key_path_suggested_is_relative_to_the_config() {
        for (config, key, want) in [
            ("fluxrecv.yaml", "github.key", "github.key"),
            (
                "container/kubernetes/fluxrecv.yaml",
                "container/kubernetes/github.key",
                "github.key",
            ),
            (
                "/etc/fluxrecv/fluxrecv.yaml",
                "/etc/fluxrecv-keys/a.key",
                "../fluxrecv-keys/a.key",
            ),
            ("a/b/fluxrecv.yaml", "a/c/./d/k.key", "../c/d/k.key"),
            ("a/fluxrecv.yaml", "k.key", "../k.key"),
        ] {
            assert_eq!(
                relative_to(Path::new(config), Path::new(key)),
                Path::new(want),
                "{config} {key}"
            );
        }
    }
}
