//! A stand-in fluxd on 127.0.0.1 that records every request and answers
//! as each test's script says: a status, a redirect, silence, or a status
//! held back until the test opens a gate.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use warp::Filter;

use crate::{eventually, notify_url, serve};

/// How the stand-in answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// This status with a `Location` header.
    Redirect(u16, String),
    /// Never answer.
    Hang,
    /// This status once the gate is opened.
    Gated(u16),
    /// This status with a `Retry-After` header of this value.
    RetryAfter(u16, String),
}

type Script = Arc<dyn Fn(usize, &serde_json::Value) -> Reply + Send + Sync>;

/// A stand-in HTTP server that records every request (any method, any
/// path) and answers as its script says, given the request's number and
/// JSON body.
pub struct Fluxd {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: watch::Sender<bool>,
    _stop: oneshot::Sender<()>,
}

#[derive(Debug, Clone)]
pub struct Seen {
    method: String,
    path: String,
    body: serde_json::Value,
    /// When it arrived.
    pub at: std::time::Instant,
}

impl Fluxd {
    pub async fn start(
        script: impl Fn(usize, &serde_json::Value) -> Reply + Send + Sync + 'static,
    ) -> Fluxd {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Fluxd::on(listener, script).await
    }

    /// Accept every request with 202.
    pub async fn accepting() -> Fluxd {
        Fluxd::start(|_, _| Reply::Status(202)).await
    }

    /// Accept every request with 202, but hold back the answer to the
    /// first until the gate is opened.
    pub async fn holding_the_first() -> Fluxd {
        Fluxd::start(|n, _| match n {
            0 => Reply::Gated(202),
            _ => Reply::Status(202),
        })
        .await
    }

    /// Accept every request with 202, but hold back the answers about
    /// `image` until the gate is opened.
    pub async fn holding_image(image: &'static str) -> Fluxd {
        Fluxd::start(
            move |_, body| match body["Source"]["Name"]["Image"] == image {
                true => Reply::Gated(202),
                false => Reply::Status(202),
            },
        )
        .await
    }

    pub async fn on(
        listener: tokio::net::TcpListener,
        script: impl Fn(usize, &serde_json::Value) -> Reply + Send + Sync + 'static,
    ) -> Fluxd {
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (gate, _) = watch::channel(false);
        let script: Script = Arc::new(script);
        let (s, g) = (seen.clone(), gate.clone());
        let route = warp::method()
            .and(warp::path::full())
            .and(warp::body::bytes())
            .then(
                move |method: warp::http::Method,
                      path: warp::path::FullPath,
                      body: bytes::Bytes| {
                    let (s, g, script) = (s.clone(), g.clone(), script.clone());
                    async move {
                        let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                        let n = {
                            let mut seen = s.lock().unwrap();
                            seen.push(Seen {
                                method: method.to_string(),
                                path: path.as_str().to_string(),
                                body: body.clone(),
                                at: std::time::Instant::now(),
                            });
                            seen.len() - 1
                        };
                        let reply = script(n, &body);
                        let (status, location, retry_after) = match reply {
                            Reply::Status(s) => (s, None, None),
                            Reply::Redirect(s, l) => (s, Some(l), None),
                            Reply::RetryAfter(s, after) => (s, None, Some(after)),
                            Reply::Hang => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                (500, None, None)
                            }
                            Reply::Gated(s) => {
                                let _ = g.subscribe().wait_for(|open| *open).await;
                                (s, None, None)
                            }
                        };
                        let mut response = warp::http::Response::builder().status(status);
                        if let Some(l) = location {
                            response = response.header("Location", l);
                        }
                        if let Some(after) = retry_after {
                            response = response.header("Retry-After", after);
                        }
                        response.body(String::new()).unwrap()
                    }
                },
            );
        Fluxd {
            addr,
            seen,
            gate,
            _stop: serve(route, listener),
        }
    }

    pub fn url(&self) -> Arc<str> {
        notify_url(self.addr)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The notifications POSTed to the notify path.
    pub fn notified(&self) -> Vec<serde_json::Value> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path == "/api/flux/v11/notify")
            .map(|s| s.body)
            .collect()
    }

    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// Wait (bounded) until `n` requests have arrived.
    pub async fn arrived(&self, n: usize) {
        eventually("requests to arrive", crate::BUDGET, || {
            self.seen().len() >= n
        })
        .await;
    }
}
