//! Shared test harness: a stand-in fluxd that records what it receives, a
//! flux-recv started on 127.0.0.1:0 through the library's [`Service`], as
//! the binary starts it, reload task included (or as a process, in
//! `process`), and small clients.
#![allow(dead_code)]

pub mod argocd;
pub mod controller;
pub mod gcr_token;
pub mod kubelet;
pub mod process;
pub mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flux_recv::logging::Captured;
use flux_recv::options::Options;
use flux_recv::service::{Config, Service};
use tokio::sync::oneshot;
use warp::{Filter, Reply as _};

/// The conformance fixtures copied from the Go original.
pub fn testdata() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// How the stand-in fluxd answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// 202, as fluxd does.
    Accept,
    /// This status.
    Status(u16),
    /// Never answer.
    Hang,
    /// Answer 202 after this many milliseconds.
    Delay(u64),
    /// Answer this (3xx) status with a Location naming the notify path at
    /// this address: another stand-in, which records it if it is followed.
    Redirect(u16, SocketAddr),
}

/// A stand-in for fluxd's API on loopback.
pub struct FakeFluxd {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<serde_json::Value>>>,
    /// The status of each answer given, in order.
    pub answered: Arc<Mutex<Vec<u16>>>,
    pub behaviour: Arc<Mutex<Behaviour>>,
    stop: Option<oneshot::Sender<()>>,
}

impl FakeFluxd {
    pub async fn start() -> FakeFluxd {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        FakeFluxd::on(listener).await
    }

    /// Serve on an already bound listener (to come up on a known port).
    pub async fn on(listener: tokio::net::TcpListener) -> FakeFluxd {
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let answered = Arc::new(Mutex::new(Vec::new()));
        let behaviour = Arc::new(Mutex::new(Behaviour::Accept));
        let (r, a, b) = (received.clone(), answered.clone(), behaviour.clone());
        let notify = warp::path!("api" / "flux" / "v11" / "notify")
            .and(warp::post())
            .and(warp::header::exact("content-type", "application/json"))
            .and(warp::body::bytes())
            .then(move |body: bytes::Bytes| {
                let (r, a, b) = (r.clone(), a.clone(), b.clone());
                async move {
                    let behaviour = *b.lock().unwrap();
                    match behaviour {
                        Behaviour::Hang => tokio::time::sleep(Duration::from_secs(3600)).await,
                        Behaviour::Delay(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
                        _ => {}
                    }
                    r.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).expect("relay sends JSON"));
                    let status = match behaviour {
                        Behaviour::Status(s) | Behaviour::Redirect(s, _) => s,
                        _ => 202,
                    };
                    a.lock().unwrap().push(status);
                    let mut reply = warp::reply::with_status(
                        "",
                        warp::http::StatusCode::from_u16(status).unwrap(),
                    )
                    .into_response();
                    if let Behaviour::Redirect(_, to) = behaviour {
                        let location = format!("http://{to}/api/flux/v11/notify");
                        reply
                            .headers_mut()
                            .insert("location", location.parse().unwrap());
                    }
                    reply
                }
            });
        let stop = serve(notify, listener);
        FakeFluxd {
            addr,
            received,
            answered,
            behaviour,
            stop: Some(stop),
        }
    }

    pub fn api(&self) -> String {
        format!("http://{}/api/flux", self.addr)
    }

    pub fn set(&self, b: Behaviour) {
        *self.behaviour.lock().unwrap() = b;
    }

    /// Take what was received so far, sorted: relay workers send a
    /// delivery's changes in parallel, so the order they arrive in is free
    /// (fluxd treats each as a trigger to look, in any order).
    pub fn take(&self) -> Vec<serde_json::Value> {
        sorted(std::mem::take(&mut *self.received.lock().unwrap()))
    }

    /// The statuses answered so far, in order.
    pub fn answered(&self) -> Vec<u16> {
        self.answered.lock().unwrap().clone()
    }

    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Drop for FakeFluxd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serve `filter` on `listener` until the returned sender is used or
/// dropped.
pub fn serve<F, R>(filter: F, listener: tokio::net::TcpListener) -> oneshot::Sender<()>
where
    F: Filter<Extract = (R,), Error = warp::Rejection> + Clone + Send + Sync + 'static,
    R: warp::Reply,
{
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        warp::serve(filter)
            .incoming(listener)
            .graceful(async {
                let _ = stopped.await;
            })
            .run(),
    );
    stop
}

/// Notifications in the order [`FakeFluxd::take`] gives them.
pub fn sorted(mut notifications: Vec<serde_json::Value>) -> Vec<serde_json::Value> {
    notifications.sort_by_key(|n| n.to_string());
    notifications
}

/// Poll `check` every 10 ms until it holds; fail, naming `what`, once
/// `within` has passed.
pub async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// [`eventually`] for a check that awaits (a request, say).
pub async fn eventually_async<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = std::time::Instant::now();
    while !check().await {
        assert!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An address nothing listens on.
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A flux-recv served from the library on 127.0.0.1:0.
pub struct Recv {
    pub addr: SocketAddr,
    /// The admin address (`--metrics-listen`), when started with one.
    pub admin: Option<SocketAddr>,
    pub service: Arc<Service>,
    pub logs: Captured,
    stop: Option<oneshot::Sender<()>>,
    pub done: Option<tokio::task::JoinHandle<()>>,
}

impl Recv {
    pub async fn start(config: &Path, options: Options) -> Recv {
        Recv::start_with_api(config, None, options).await
    }

    /// As [`Recv::start`], with `--api`.
    pub async fn start_with_api(config: &Path, api: Option<&str>, options: Options) -> Recv {
        let config = Config {
            api: api.map(str::to_string),
            ..Config::new(config, options)
        };
        Recv::start_config(config).await
    }

    /// Start the service as the binary does (without SIGHUP: tests share
    /// one process), logging at debug into [`Recv::logs`], and serve it.
    pub async fn start_config(config: Config) -> Recv {
        Recv::start_serving(config, false).await
    }

    /// As [`Recv::start_config`], with an admin address on 127.0.0.1:0
    /// (`--metrics-listen`).
    pub async fn start_with_admin(config: Config) -> Recv {
        Recv::start_serving(config, true).await
    }

    async fn start_serving(config: Config, with_admin: bool) -> Recv {
        let logs = Captured::default();
        let log = logs.logger(slog::Level::Debug);
        let service = match Service::start(config, log).await {
            Ok(service) => Arc::new(service),
            Err(e) => panic!("the service does not start: {e}\n{}", logs.text()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let admin = match with_admin {
            true => Some(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()),
            false => None,
        };
        let admin_addr = admin.as_ref().map(|l| l.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = service.clone();
        let done = tokio::spawn(async move {
            serving
                .serve_on(listener, admin, async {
                    let _ = stopped.await;
                })
                .await
        });
        Recv {
            addr,
            admin: admin_addr,
            service,
            logs,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Ask the server to stop, as SIGTERM does.
    pub fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// After [`Recv::shutdown`]: wait for the server task to end, then check
    /// that new connections are refused.
    pub async fn wait_stopped(&mut self) {
        tokio::time::timeout(Duration::from_secs(5), self.done.take().unwrap())
            .await
            .expect("server stops")
            .unwrap();
        assert!(TcpStream::connect(self.addr).is_err());
    }
}

impl Drop for Recv {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A reply: status, Retry-After (if any) and body text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

impl Reply {
    fn read(mut resp: ureq::http::Response<ureq::Body>) -> Reply {
        Reply {
            status: resp.status().as_u16(),
            retry_after: resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string()),
            body: resp.body_mut().read_to_string().unwrap_or_default(),
        }
    }
}

/// A blocking client that hands back every status as a reply, each call
/// bounded by `timeout` (none: unbounded).
pub fn client(timeout: Option<Duration>) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(timeout)
        .build()
        .into()
}

/// POST with ureq on the blocking pool.
pub async fn post(url: String, headers: Vec<(String, String)>, body: Vec<u8>) -> Reply {
    tokio::task::spawn_blocking(move || {
        let agent = client(Some(Duration::from_secs(30)));
        let mut req = agent.post(&url);
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        Reply::read(req.send(&body[..]).expect("request"))
    })
    .await
    .unwrap()
}

/// GET with ureq on the blocking pool.
pub async fn get(url: String) -> Reply {
    tokio::task::spawn_blocking(move || {
        Reply::read(client(None).get(&url).call().expect("request"))
    })
    .await
    .unwrap()
}

/// Write raw bytes and read the whole response (the server closes or the
/// read times out), for requests ureq will not make (chunked, malformed).
pub async fn raw(addr: SocketAddr, request: Vec<u8>) -> String {
    tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = s.write_all(&request);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap()
}

/// Write a config file into `dir`.
pub fn write_config(dir: &Path, api: &str, endpoints: &str) -> PathBuf {
    let path = dir.join("fluxrecv.yaml");
    std::fs::write(
        &path,
        format!("fluxRecvVersion: 1\napi: {api}\nendpoints:\n{endpoints}"),
    )
    .unwrap();
    path
}

/// A GitHub endpoint's key, and headers signing `body` for a push.
pub const GITHUB_KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

pub fn github_push(body: &[u8]) -> Vec<(String, String)> {
    use flux_recv::source::verify::{sign, Algorithm};
    vec![
        ("Content-Type".into(), "application/json".into()),
        ("X-GitHub-Event".into(), "push".into()),
        (
            "X-GitHub-Delivery".into(),
            "72d3162e-cc78-11e3-81ab-4c9367dc0958".into(),
        ),
        (
            "X-Hub-Signature-256".into(),
            sign(Algorithm::Sha256, GITHUB_KEY, body),
        ),
    ]
}

/// The hook path of an endpoint keyed with `key` (no registryHost).
pub fn hook_path(key: &[u8]) -> String {
    format!("/hook/{}", flux_recv::endpoint::fingerprint(key, None))
}

/// A push to `main` of `org/app`, signed as GitHub signs it with `key`.
pub fn signed_github_push(key: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    use flux_recv::source::verify::{sign, Algorithm};
    let body = github_body("org/app", "main");
    let headers = vec![
        ("Content-Type".into(), "application/json".into()),
        ("X-GitHub-Event".into(), "push".into()),
        (
            "X-Hub-Signature-256".into(),
            sign(Algorithm::Sha256, key, &body),
        ),
    ];
    (headers, body)
}

/// A push to `branch` of `repo`, as GitHub sends it (trimmed).
pub fn github_body(repo: &str, branch: &str) -> Vec<u8> {
    format!(
        r#"{{"ref":"refs/heads/{branch}","repository":{{"full_name":"{repo}","ssh_url":"git@github.com:{repo}.git"}}}}"#
    )
    .into_bytes()
}

/// An unsigned Bitbucket Cloud push to `org/app` naming `branches`, in
/// order (`X-Event-Key: repo:push`).
pub fn bitbucket_push<S: AsRef<str>>(branches: impl IntoIterator<Item = S>) -> Vec<u8> {
    let changes: Vec<String> = branches
        .into_iter()
        .map(|b| format!(r#"{{"new":{{"name":"{}"}}}}"#, b.as_ref()))
        .collect();
    format!(
        r#"{{"repository":{{"full_name":"org/app"}},"push":{{"changes":[{}]}}}}"#,
        changes.join(",")
    )
    .into_bytes()
}

/// The notification fluxd should get for that push.
pub fn git_notification(repo: &str, branch: &str) -> serde_json::Value {
    git_change(&format!("git@github.com:{repo}.git"), branch)
}

/// The notification fluxd gets for a change to `branch` of the repo at `url`.
pub fn git_change(url: &str, branch: &str) -> serde_json::Value {
    serde_json::json!({"Kind": "git", "Source": {"URL": url, "Branch": branch}})
}

/// The notification fluxd gets for a new tag of `image` at `domain` (empty
/// for Docker Hub).
pub fn image_change(domain: &str, image: &str) -> serde_json::Value {
    serde_json::json!({"Kind": "image", "Source": {"Name": {"Domain": domain, "Image": image}}})
}

/// A sample delivery's headers, as [`post`] takes them.
pub fn headers_of(delivery: &flux_recv::source::SampleHook) -> Vec<(String, String)> {
    delivery
        .headers
        .iter()
        .map(|(name, value)| (name.to_string(), value.clone()))
        .collect()
}

/// A config with one GitHub endpoint keyed with GITHUB_KEY; returns the
/// config path and the hook path.
pub fn github_config(dir: &Path, api: &str) -> (PathBuf, String) {
    std::fs::write(dir.join("github.key"), GITHUB_KEY).unwrap();
    let config = write_config(dir, api, "- source: GitHub\n  keyPath: github.key\n");
    (config, hook_path(GITHUB_KEY))
}
