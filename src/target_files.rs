//! Files a target reads besides the config: a secret it signs or proves
//! itself with (a Flux v2 Receiver's token, say) and a private CA that
//! signs its certificate.
//!
//! Both are read as keys are ([`crate::files::read_regular`]: regular files
//! only, bounded, without blocking), resolved against the config file's
//! directory, and held in the table. A rotated file therefore makes the
//! next table differ, reload swaps it in, and the next attempt of a
//! pending request is made with it. A secret is a [`Secret`], whose `Debug`
//! shows only its length; no message here repeats a file's content.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::files::{Cap, ReadErrorKind};
use crate::source::Secret;

/// A target's secret: a token a few dozen bytes long; 64 KiB is far
/// beyond any, as for keys.
pub const SECRET: Cap = Cap {
    bytes: 64 * 1024,
    what: "token files",
};

/// A CA bundle in PEM: one certificate is 1 to 2 KiB, a whole public
/// bundle some 200 KiB; 1 MiB holds any private one.
pub const CA: Cap = Cap {
    bytes: 1024 * 1024,
    what: "CA files",
};

/// What is wrong with a file a target names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// The file, resolved.
    pub file: PathBuf,
    /// What is wrong, never what the file holds.
    pub message: String,
    /// The file is not there (a reload waits a while for it).
    pub absent: bool,
}

/// A secret read from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    /// Where it was read from, resolved: watched by reload.
    pub path: PathBuf,
    /// Its bytes, as the file holds them (a trailing newline included, as
    /// for keys: the other side compares bytes).
    pub secret: Secret,
}

/// Certificates read from a PEM file: the only roots a target that names
/// one trusts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CaFile {
    /// Where they were read from, resolved: watched by reload.
    pub path: PathBuf,
    /// Each certificate, DER-encoded, in file order; at least one.
    pub certs: Arc<[Vec<u8>]>,
}

/// `value` (a `tokenPath:` or `caPath:`) resolved against `dir`, the config
/// file's directory.
pub fn resolve(dir: &Path, value: &str) -> PathBuf {
    dir.join(value)
}

/// Read the secret at `value` (relative to `dir`). An empty file is an
/// error: the other side would take any request, or none.
pub fn secret(dir: &Path, value: &str) -> Result<SecretFile, FileProblem> {
    let path = resolve(dir, value);
    let bytes = read(&path, SECRET, "token file")?;
    if bytes.is_empty() {
        return Err(problem(&path, "the token file is empty".into(), false));
    }
    Ok(SecretFile {
        path,
        secret: Secret::new(bytes),
    })
}

/// Read the CA certificates at `value` (relative to `dir`): PEM, one
/// `CERTIFICATE` block or more; other blocks (a key) are refused.
pub fn ca(dir: &Path, value: &str) -> Result<CaFile, FileProblem> {
    let path = resolve(dir, value);
    let pem = read(&path, CA, "CA file")?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(cert)) => certs.push(cert.der().to_vec()),
            Ok(_) => {
                let message = "holds something other than certificates (a private key?); \
                               give only the CA's certificates, in PEM";
                return Err(problem(&path, message.into(), false));
            }
            Err(e) => {
                let message = format!("is not PEM certificates ({e})");
                return Err(problem(&path, message, false));
            }
        }
    }
    if certs.is_empty() {
        let message = "holds no certificate; give the CA's certificate in PEM \
                       (-----BEGIN CERTIFICATE-----)";
        return Err(problem(&path, message.into(), false));
    }
    Ok(CaFile {
        path,
        certs: certs.into(),
    })
}

fn read(path: &Path, cap: Cap, what: &str) -> Result<Vec<u8>, FileProblem> {
    crate::files::read_regular(path, cap).map_err(|e| {
        let absent = matches!(&e.kind, ReadErrorKind::Io(io) if io.kind() == ErrorKind::NotFound);
        problem(path, format!("cannot read {what} {e}"), absent)
    })
}

fn problem(path: &Path, message: String, absent: bool) -> FileProblem {
    FileProblem {
        file: path.to_path_buf(),
        message,
        absent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_read_whole_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "s3cr3t-token\n").unwrap();
        let read = secret(dir.path(), "t").unwrap();
        assert_eq!(read.secret.expose(), b"s3cr3t-token\n");
        assert_eq!(read.path, dir.path().join("t"));
        assert!(!format!("{read:?}").contains("s3cr3t"));
        std::fs::write(dir.path().join("empty"), "").unwrap();
        assert!(!secret(dir.path(), "empty").unwrap_err().absent);
        let missing = secret(dir.path(), "missing").unwrap_err();
        assert!(missing.absent, "{missing:?}");
        assert_eq!(missing.file, dir.path().join("missing"));
        std::fs::write(dir.path().join("big"), vec![b'a'; 64 * 1024 + 1]).unwrap();
        let big = secret(dir.path(), "big").unwrap_err();
        assert!(big.message.contains("token files are at most"), "{big:?}");
        let fifo = dir.path().join("fifo");
        assert!(std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success());
        let fifo = secret(dir.path(), "fifo").unwrap_err();
        assert!(fifo.message.contains("not a regular file"), "{fifo:?}");
    }

    #[test]
    fn a_ca_file_must_hold_certificates_only() {
        let dir = tempfile::tempdir().unwrap();
        let pem = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/tls/ca.pem"))
            .unwrap();
        std::fs::write(dir.path().join("ca.pem"), &pem).unwrap();
        let ca = ca(dir.path(), "ca.pem").unwrap();
        assert_eq!(ca.certs.len(), 1);
        for (name, text) in [
            ("none.pem", "not pem at all\n"),
            (
                "key.pem",
                "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIE\n-----END PRIVATE KEY-----\n",
            ),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
            let e = super::ca(dir.path(), name).unwrap_err();
            assert!(!e.absent && !e.message.contains("MC4C"), "{e:?}");
        }
    }
}
