//! A stand-in for Flux v2's notification-controller receiver server on
//! 127.0.0.1, checking what the real one checks
//! (`internal/server/receiver_handlers.go`), in its order: a body over
//! 3 MiB is 413; the request URI must be a Receiver's webhook path exactly
//! (404); a suspended Receiver is 503; a `generic-hmac` one wants
//! `X-Signature: sha256=<hex HMAC-SHA256 of the body keyed with its
//! token>` (400); then 200, or what the test asks for. Plain HTTP or TLS
//! with `testdata/tls/server.pem` (signed by `testdata/tls/ca.pem`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The controller's `maxRequestSizeBytes`.
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// One Receiver the controller has.
#[derive(Debug, Clone, Default)]
pub struct Receiver {
    /// Its Secret's token for `generic-hmac`; `None` for `generic`.
    pub token: Option<Vec<u8>>,
    /// `spec.suspend`, or not ready: 503.
    pub suspended: bool,
}

/// What one accepted request carried.
#[derive(Debug, Clone)]
pub struct Received {
    pub uri: String,
    pub content_type: Option<String>,
    pub signature: Option<String>,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct State {
    receivers: HashMap<String, Receiver>,
    received: Vec<Received>,
    /// Every status answered, in order.
    answered: Vec<u16>,
    /// Answer this to requests that pass every check, instead of 200.
    status: Option<u16>,
    /// Wait this long before answering.
    delay: Duration,
}

/// The stand-in. Stops serving when dropped (the listener thread ends at
/// its next connection).
pub struct Controller {
    pub addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

impl Controller {
    /// Serve plain HTTP on a new port.
    pub fn start() -> Controller {
        Controller::on(TcpListener::bind("127.0.0.1:0").unwrap(), false)
    }

    /// Serve HTTPS on a new port.
    pub fn start_tls() -> Controller {
        Controller::on(TcpListener::bind("127.0.0.1:0").unwrap(), true)
    }

    /// Serve on `listener` (to come up on a known port).
    pub fn on(listener: TcpListener, tls: bool) -> Controller {
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let config = tls.then(server_config);
        let (s, stop) = (state.clone(), stopped.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(stream) = stream else { return };
                let (s, config, stop) = (s.clone(), config.clone(), stop.clone());
                std::thread::spawn(move || match config {
                    None => serve(stream, &s, &stop),
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config).unwrap();
                        serve(rustls::StreamOwned::new(conn, stream), &s, &stop)
                    }
                });
            }
        });
        Controller {
            addr,
            tls,
            state,
            stopped,
        }
    }

    /// Add a Receiver at `path` (`/hook/<digest>`).
    pub fn add(&self, path: &str, receiver: Receiver) {
        self.state
            .lock()
            .unwrap()
            .receivers
            .insert(path.into(), receiver);
    }

    /// Change the Receiver at `path`.
    pub fn change(&self, path: &str, change: impl FnOnce(&mut Receiver)) {
        change(self.state.lock().unwrap().receivers.get_mut(path).unwrap());
    }

    /// Answer this status to requests that pass every check; `None`: 200.
    pub fn answer(&self, status: Option<u16>) {
        self.state.lock().unwrap().status = status;
    }

    /// Wait this long before each answer.
    pub fn delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    /// The URL of the Receiver at `path`, as `localhost` (the name the
    /// test certificate holds) for TLS.
    pub fn url(&self, path: &str) -> String {
        match self.tls {
            true => format!("https://localhost:{}{path}", self.addr.port()),
            false => format!("http://{}{path}", self.addr),
        }
    }

    /// The requests that passed every check, taken.
    pub fn take(&self) -> Vec<Received> {
        std::mem::take(&mut self.state.lock().unwrap().received)
    }

    /// Every status answered so far.
    pub fn answered(&self) -> Vec<u16> {
        self.state.lock().unwrap().answered.clone()
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn server_config() -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = super::testdata().join("tls");
    let certs: Vec<CertificateDer> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    Arc::new(config)
}

/// Serve requests on one keep-alive connection until it closes.
fn serve<S: Read + Write>(stream: S, state: &Mutex<State>, stop: &std::sync::atomic::AtomicBool) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = request_line.split_whitespace();
        let (method, uri) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let (method, uri) = (method.to_string(), uri.to_string());
        let mut headers = HashMap::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
            }
        }
        let length: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let status = answer(state, &method, &uri, &headers, body);
        let delay = state.lock().unwrap().delay;
        std::thread::sleep(delay);
        let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
        if reader.get_mut().write_all(reply.as_bytes()).is_err() {
            return;
        }
        let _ = reader.get_mut().flush();
    }
}

/// The controller's checks, in its order.
fn answer(
    state: &Mutex<State>,
    method: &str,
    uri: &str,
    headers: &HashMap<String, String>,
    body: Vec<u8>,
) -> u16 {
    let mut st = state.lock().unwrap();
    let status = if method != "POST" {
        405
    } else if body.len() > MAX_BODY {
        413
    } else {
        match st.receivers.get(uri).cloned() {
            None => 404,
            Some(r) if r.suspended => 503,
            Some(Receiver {
                token: Some(token), ..
            }) if headers.get("x-signature") != Some(&signature(&token, &body)) => 400,
            Some(_) => {
                st.received.push(Received {
                    uri: uri.into(),
                    content_type: headers.get("content-type").cloned(),
                    signature: headers.get("x-signature").cloned(),
                    body,
                });
                st.status.unwrap_or(200)
            }
        }
    };
    st.answered.push(status);
    status
}

/// `sha256=<hex>`, as GitHub's ValidateSignature (which the controller
/// calls) expects it.
pub fn signature(token: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(token).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
