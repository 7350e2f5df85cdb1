//! TLS for the tests: certificates made here with rcgen (a root, an
//! intermediate, leaves for 127.0.0.1), so no tool is needed; a rustls
//! client that trusts the root; HTTP/1.1 over it by hand.

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A root and an intermediate that signs the leaves.
pub struct Authority {
    root: CertifiedIssuer<'static, KeyPair>,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf: its chain (leaf, intermediate) and key, PEM, and its DER.
#[derive(Clone)]
pub struct Leaf {
    pub chain_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    pub not_after: i64,
}

fn at(unix: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(unix).unwrap()
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl Authority {
    pub fn new() -> Authority {
        let ca = |name: &str| {
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.not_before = at(now() - 86_400);
            params.not_after = at(now() + 10 * 365 * 86_400);
            params
        };
        let root =
            CertifiedIssuer::self_signed(ca("test root"), KeyPair::generate().unwrap()).unwrap();
        let intermediate = CertifiedIssuer::signed_by(
            ca("test intermediate"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        Authority { root, intermediate }
    }

    /// The root, for a client to trust.
    pub fn root(&self) -> CertificateDer<'static> {
        self.root.der().clone()
    }

    /// A leaf for 127.0.0.1 and localhost, valid from a day ago until
    /// `not_after` (Unix seconds), with its own key.
    pub fn leaf(&self, not_after: i64) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.not_before = at(now() - 86_400);
        params.not_after = at(not_after);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.intermediate).unwrap();
        Leaf {
            chain_pem: cert.pem() + &self.intermediate.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            not_after,
        }
    }
}

/// A client trusting `root`, with the versions given (both when empty),
/// that never resumes a session.
pub fn client(
    root: CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider);
    let builder = match versions {
        [] => builder.with_safe_default_protocol_versions(),
        v => builder.with_protocol_versions(v),
    };
    let mut config = builder
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection a full handshake: a resumed session shows the
    // certificate of the session it resumes, not the one served now.
    config.resumption = rustls::client::Resumption::disabled();
    Arc::new(config)
}

/// A TLS connection to `addr`, handshake done.
pub async fn connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
}

/// The leaf certificate the server presented.
pub fn served(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

/// One HTTP/1.1 request on an open connection, kept alive; the status and
/// body of its reply.
pub async fn request(
    stream: &mut TlsStream<TcpStream>,
    method: &str,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String) {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    stream.flush().await.unwrap();
    // Read the head, then as many body bytes as it says.
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before a reply");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..end]).to_string();
    let status = head[9..12].parse().unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().unwrap())
        })
        .unwrap_or(0);
    while got.len() < end + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed within a reply");
        got.extend_from_slice(&buf[..n]);
    }
    (
        status,
        String::from_utf8_lossy(&got[end..end + length]).to_string(),
    )
}

/// A GET on a new connection: status and body.
pub async fn get(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    path: &str,
) -> (u16, String) {
    let mut stream = connect(addr, config).await.expect("handshake");
    request(&mut stream, "GET", path, &[], b"").await
}
