//! Google Container Registry authentication (`flux_recv::gcr_auth`),
//! through its public API:
//!
//! - `token`: every check on a Pub/Sub push token, at a fixed clock;
//! - `keys`: reading Google's JWKS, the `--google-jwks-url` rules, and
//!   fetching (lazily, rate limited, never following a redirect);
//! - `server`: pushes to a GCR endpoint with a `gcr:` block, end to end.
//!
//! Tokens are signed with the test-only keys in `testdata/gcr/`; a stand-in
//! JWKS server on 127.0.0.1 publishes their public halves.

#[path = "../common/mod.rs"]
mod common;
mod keys;
mod server;
mod token;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::oneshot;
use warp::{Filter, Reply as _};

use common::gcr_token::google_jwks;

/// What the stand-in JWKS server answers.
#[derive(Clone)]
enum Answer {
    /// 200 with this document.
    Keys(Value),
    /// 302 to this URL.
    Redirect(String),
}

/// A stand-in for Google's JWKS endpoint that counts the fetches.
struct FakeJwks {
    addr: std::net::SocketAddr,
    answer: Arc<Mutex<Answer>>,
    fetches: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl FakeJwks {
    async fn start(answer: Answer) -> FakeJwks {
        let answer = Arc::new(Mutex::new(answer));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (a, f) = (answer.clone(), fetches.clone());
        let certs = warp::path!("oauth2" / "v3" / "certs")
            .and(warp::get())
            .map(move || {
                f.fetch_add(1, Ordering::SeqCst);
                let answer = a.lock().unwrap().clone();
                match answer {
                    Answer::Keys(doc) => warp::reply::json(&doc).into_response(),
                    Answer::Redirect(to) => warp::reply::with_header(
                        warp::reply::with_status("", warp::http::StatusCode::FOUND),
                        "location",
                        to,
                    )
                    .into_response(),
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        FakeJwks {
            addr: listener.local_addr().unwrap(),
            answer,
            fetches,
            _stop: common::serve(certs, listener),
        }
    }

    /// Publishing the first test key as `KID`.
    async fn google() -> FakeJwks {
        FakeJwks::start(Answer::Keys(google_jwks())).await
    }

    /// Serve `doc` from now on.
    fn publish(&self, doc: Value) {
        *self.answer.lock().unwrap() = Answer::Keys(doc);
    }

    fn url(&self) -> String {
        format!("http://{}/oauth2/v3/certs", self.addr)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}
