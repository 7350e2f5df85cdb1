//! A certificate and its key, read from their files and checked before
//! anything serves them: both PEM, the key one rustls can sign with, the
//! key the certificate's, the certificate not expired. The chain is served
//! as the file gives it (leaf first, then intermediates), unchanged.
//!
//! Errors name the file and the reason, never key material: a key file
//! that does not parse is "not a PEM private key", without the parser's
//! words about its bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::files::{self, Cap};

/// The most a certificate or key file may hold. A leaf and two
/// intermediates are 5 to 10 KiB of PEM; 256 KiB is far beyond any chain.
pub const PEM: Cap = Cap {
    bytes: 256 * 1024,
    what: "certificate and key files",
};

/// The files a pair is read from (`--tls-cert`, `--tls-key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairFiles {
    /// The certificate chain, PEM: leaf first (`tls.crt` of a
    /// `kubernetes.io/tls` Secret).
    pub cert: PathBuf,
    /// The leaf's private key, PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC)
    /// (`tls.key`).
    pub key: PathBuf,
}

/// A pair that passed every check, ready to serve.
#[derive(Clone)]
pub struct Pair {
    /// The chain and the signing key, as rustls serves them.
    pub certified: Arc<CertifiedKey>,
    /// The leaf's notAfter.
    pub not_after: SystemTime,
    /// SHA-256 over both files' bytes: a re-read that finds the same files
    /// changes nothing.
    pub digest: [u8; 32],
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("chain", &self.certified.cert.len())
            .field("not_after", &unix_seconds(self.not_after))
            .finish_non_exhaustive()
    }
}

/// Why a pair cannot be served. Each names the file at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PairError {
    /// Missing, unreadable, not a regular file, too large.
    #[error("{0}")]
    Read(String),
    /// No `CERTIFICATE` block, or one that does not decode.
    #[error("{}: not a PEM certificate chain ({reason})", file.display())]
    NotCertificate {
        /// The certificate file.
        file: PathBuf,
        /// What was wrong, in the PEM reader's or X.509 parser's words.
        reason: String,
    },
    /// No private key block, or one that does not decode.
    #[error("{}: not a PEM private key (PKCS#8, PKCS#1 or SEC1)", file.display())]
    NotKey {
        /// The key file.
        file: PathBuf,
    },
    /// A key rustls cannot sign with (an algorithm it does not support).
    #[error("{}: the key cannot be used: {reason}", file.display())]
    UnusableKey {
        /// The key file.
        file: PathBuf,
        /// rustls's reason (it says nothing of the key's bytes).
        reason: String,
    },
    /// The key is not the certificate's.
    #[error("{}: the key does not match the certificate in {}", key.display(), cert.display())]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The leaf's notAfter has passed.
    #[error("{}: the certificate expired (notAfter {not_after} in Unix time)", file.display())]
    Expired {
        /// The certificate file.
        file: PathBuf,
        /// The leaf's notAfter, in Unix seconds.
        not_after: u64,
    },
}

/// Read and check the pair in `files`, as of `now`.
pub fn load(files: &PairFiles, now: SystemTime) -> Result<Pair, PairError> {
    let read =
        |path: &Path| files::read_regular(path, PEM).map_err(|e| PairError::Read(e.to_string()));
    let cert_pem = read(&files.cert)?;
    let key_pem = read(&files.key)?;
    let not_certificate = |reason: String| PairError::NotCertificate {
        file: files.cert.clone(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| not_certificate(e.to_string()))?;
    let Some(leaf) = chain.first() else {
        return Err(not_certificate("no CERTIFICATE block".into()));
    };
    let not_after = not_after(leaf).map_err(not_certificate)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| PairError::NotKey {
        file: files.key.clone(),
    })?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| PairError::UnusableKey {
            file: files.key.clone(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    // `Unknown`: the key cannot tell its public half; rustls serves it and
    // a mismatch would fail every handshake, which the tests cover for the
    // kinds of key it can tell (RSA, ECDSA, Ed25519: all ring loads).
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(PairError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        });
    }
    if not_after <= now {
        return Err(PairError::Expired {
            file: files.cert.clone(),
            not_after: unix_seconds(not_after),
        });
    }
    let mut digest = Sha256::new();
    digest.update(&cert_pem);
    digest.update(&key_pem);
    Ok(Pair {
        certified: Arc::new(certified),
        not_after,
        digest: digest.finalize().into(),
    })
}

/// The notAfter of a DER certificate.
fn not_after(cert: &CertificateDer<'_>) -> Result<SystemTime, String> {
    use x509_cert::der::Decode;
    let parsed = x509_cert::Certificate::from_der(cert).map_err(|e| format!("X.509: {e}"))?;
    let since_epoch = parsed.tbs_certificate.validity.not_after.to_unix_duration();
    Ok(UNIX_EPOCH + since_epoch)
}

/// `t` in whole seconds since the Unix epoch (0 before it).
pub fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A self-signed certificate for `localhost` valid until `not_after`
    /// (Unix seconds), and its key, both PEM.
    fn pair_pem(not_after: i64) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = time::OffsetDateTime::from_unix_timestamp(0).unwrap();
        params.not_after = time::OffsetDateTime::from_unix_timestamp(not_after).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn write(dir: &Path, cert: &str, key: &str) -> PairFiles {
        fs::write(dir.join("tls.crt"), cert).unwrap();
        fs::write(dir.join("tls.key"), key).unwrap();
        PairFiles {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        }
    }

    const NOW: u64 = 2_000_000_000;

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(NOW)
    }

    #[test]
    fn a_good_pair_loads_with_its_not_after() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair_pem(2_100_000_000);
        let pair = load(&write(dir.path(), &cert, &key), now()).unwrap();
        assert_eq!(unix_seconds(pair.not_after), 2_100_000_000);
        assert_eq!(pair.certified.cert.len(), 1);
    }

    #[test]
    fn the_chain_is_kept_as_given() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair_pem(2_100_000_000);
        let (other, _) = pair_pem(2_200_000_000);
        let pair = load(&write(dir.path(), &(cert + &other), &key), now()).unwrap();
        assert_eq!(pair.certified.cert.len(), 2);
        // The leaf's date, not the second certificate's.
        assert_eq!(unix_seconds(pair.not_after), 2_100_000_000);
    }

    #[test]
    fn broken_pairs_name_the_file_and_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = pair_pem(2_100_000_000);
        let (_, other_key) = pair_pem(2_100_000_000);
        let (old, old_key) = pair_pem(NOW as i64 - 1);
        let e = load(&write(dir.path(), &cert, &other_key), now()).unwrap_err();
        assert!(matches!(e, PairError::Mismatch { .. }), "{e}");
        let e = load(&write(dir.path(), "garbage", &key), now()).unwrap_err();
        assert!(
            e.to_string()
                .contains("tls.crt: not a PEM certificate chain"),
            "{e}"
        );
        let e = load(&write(dir.path(), &cert, "garbage"), now()).unwrap_err();
        assert!(
            e.to_string().contains("tls.key: not a PEM private key"),
            "{e}"
        );
        let e = load(&write(dir.path(), &old, &old_key), now()).unwrap_err();
        assert_eq!(
            e,
            PairError::Expired {
                file: dir.path().join("tls.crt"),
                not_after: NOW - 1
            }
        );
        fs::remove_file(dir.path().join("tls.key")).unwrap();
        let e = load(&write(dir.path(), &cert, &key), now()).map(|_| ());
        assert_eq!(e, Ok(()));
        let files = PairFiles {
            cert: dir.path().join("tls.crt"),
            key: dir.path().join("absent.key"),
        };
        let e = load(&files, now()).unwrap_err();
        assert!(e.to_string().contains("absent.key"), "{e}");
    }
}
