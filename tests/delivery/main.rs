//! The delivery queue against a stand-in fluxd on 127.0.0.1: what a waiting
//! reply is told, what reaches fluxd (and how often), and what happens when
//! fluxd is down, flapping, refusing, redirecting, slow or gone for good.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flux_recv::delivery::{Backoff, Confirmation, Full, Item, Options, Queue, Snapshot};
use flux_recv::logging::{Captured, Format};
use flux_recv::notification::{Change, ImageName};
use tokio::sync::{oneshot, watch};
use warp::Filter;

/// How the stand-in answers one request.
#[derive(Debug, Clone)]
enum Reply {
    Status(u16),
    /// This status with a `Location` header.
    Redirect(u16, String),
    /// Never answer.
    Hang,
    /// This status once the gate is opened.
    Gated(u16),
}

type Script = Arc<dyn Fn(usize, &serde_json::Value) -> Reply + Send + Sync>;

/// A stand-in HTTP server that records every request (any method, any
/// path) and answers as its script says, given the request's number and
/// JSON body.
struct Fluxd {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: watch::Sender<bool>,
    _stop: oneshot::Sender<()>,
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    body: serde_json::Value,
}

impl Fluxd {
    async fn start(
        script: impl Fn(usize, &serde_json::Value) -> Reply + Send + Sync + 'static,
    ) -> Fluxd {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Fluxd::on(listener, script).await
    }

    /// Accept every request with 202.
    async fn accepting() -> Fluxd {
        Fluxd::start(|_, _| Reply::Status(202)).await
    }

    async fn on(
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
                            });
                            seen.len() - 1
                        };
                        let reply = script(n, &body);
                        let (status, location) = match reply {
                            Reply::Status(s) => (s, None),
                            Reply::Redirect(s, l) => (s, Some(l)),
                            Reply::Hang => {
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                                (500, None)
                            }
                            Reply::Gated(s) => {
                                let _ = g.subscribe().wait_for(|open| *open).await;
                                (s, None)
                            }
                        };
                        let mut response = warp::http::Response::builder().status(status);
                        if let Some(l) = location {
                            response = response.header("Location", l);
                        }
                        response.body(String::new()).unwrap()
                    }
                },
            );
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(route)
                .incoming(listener)
                .graceful(async {
                    let _ = stopped.await;
                })
                .run(),
        );
        Fluxd {
            addr,
            seen,
            gate,
            _stop: stop,
        }
    }

    fn url(&self) -> Arc<str> {
        notify_url(self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The notifications POSTed to the notify path.
    fn notified(&self) -> Vec<serde_json::Value> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path == "/api/flux/v11/notify")
            .map(|s| s.body)
            .collect()
    }

    fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    /// Wait (bounded) until `n` requests have arrived.
    async fn arrived(&self, n: usize) {
        eventually(|| self.seen().len() >= n, "requests to arrive").await;
    }
}

fn notify_url(addr: SocketAddr) -> Arc<str> {
    format!("http://{addr}/api/flux/v11/notify").into()
}

/// An address nothing listens on (until a test starts something there).
fn dead_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn image(name: &str) -> Change {
    Change::image(ImageName {
        domain: "registry.example.com".into(),
        image: name.into(),
    })
}

fn json(change: &Change) -> serde_json::Value {
    serde_json::from_slice(&change.to_json()).unwrap()
}

fn item(url: &Arc<str>, change: &Change, delivery: &str) -> Item {
    Item {
        url: url.clone(),
        change: change.clone(),
        delivery: delivery.into(),
    }
}

/// Quick retries, so that no test runs longer than a few seconds.
fn options() -> Options {
    Options {
        workers: 2,
        max_pending: 64,
        max_age: Duration::from_secs(60),
        attempt_timeout: Duration::from_secs(5),
        backoff: Backoff {
            first: Duration::from_millis(20),
            max: Duration::from_millis(200),
        },
    }
}

fn start(options: Options) -> (Queue, Captured) {
    let logs = Captured::default();
    let log = flux_recv::logging::to_writer_as(Format::Text, slog::Level::Debug, logs.clone());
    (Queue::start(options, log).unwrap(), logs)
}

/// Poll `cond` until it holds; fail after 5 s.
async fn eventually(mut cond: impl FnMut() -> bool, what: &str) {
    let until = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The first log line containing `needle`, waiting for it: workers log
/// after they have told the waiting replies, so a little after.
async fn log_line(logs: &Captured, needle: &str) -> String {
    eventually(|| logs.text().contains(needle), needle).await;
    let text = logs.text();
    text.lines()
        .find(|l| l.contains(needle))
        .unwrap()
        .to_string()
}

fn api<'a>(s: &'a Snapshot, url: &Arc<str>) -> &'a flux_recv::delivery::ApiSnapshot {
    s.apis
        .iter()
        .find(|a| a.api == *url)
        .unwrap_or_else(|| panic!("no figures for {url} in {s:?}"))
}

const BUDGET: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_within_the_budget() {
    let fluxd = Fluxd::accepting().await;
    let (queue, _) = start(options());
    let url = fluxd.url();
    let (a, b) = (image("a"), image("b"));
    let ticket = queue
        .submit(vec![item(&url, &a, "d1"), item(&url, &b, "d1")])
        .unwrap();
    assert_eq!(ticket.wait(BUDGET).await, Confirmation::Accepted);

    let mut got = fluxd.notified();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, vec![json(&a), json(&b)]);
    let s = queue.snapshot();
    assert_eq!((s.pending, s.oldest_age), (0, Duration::ZERO));
    let f = api(&s, &url);
    assert_eq!((f.delivered, f.attempts, f.retries, f.late), (2, 2, 0, 0));

    // Nothing to deliver is accepted at once.
    let ticket = queue.submit(vec![]).unwrap();
    assert_eq!(ticket.wait(Duration::ZERO).await, Confirmation::Accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_carries_json_and_the_user_agent() {
    // A warp filter that only answers 202 when both headers are right.
    let (tx, rx) = oneshot::channel::<()>();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let route = warp::header::<String>("user-agent")
        .and(warp::header::<String>("content-type"))
        .map(move |ua: String, ct: String| {
            *s.lock().unwrap() = Some((ua, ct));
            warp::reply::with_status("", warp::http::StatusCode::ACCEPTED)
        });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = notify_url(listener.local_addr().unwrap());
    tokio::spawn(
        warp::serve(route)
            .incoming(listener)
            .graceful(async {
                let _ = rx.await;
            })
            .run(),
    );
    let (queue, _) = start(options());
    let ticket = queue.submit(vec![item(&url, &image("a"), "")]).unwrap();
    assert_eq!(ticket.wait(BUDGET).await, Confirmation::Accepted);
    let (ua, ct) = seen.lock().unwrap().clone().unwrap();
    assert_eq!(ua, concat!("flux-recv/", env!("CARGO_PKG_VERSION")));
    assert_eq!(ct, "application/json");
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fluxd_down_then_back_is_pending_then_delivered_late() {
    let addr = dead_addr();
    let url = notify_url(addr);
    let (queue, logs) = start(options());
    let change = image("app");
    let ticket = queue
        .submit(vec![item(&url, &change, "delivery-42")])
        .unwrap();
    let Confirmation::Pending { retry_for } = ticket.wait(Duration::from_millis(300)).await else {
        panic!("fluxd is down: pending");
    };
    assert!(
        retry_for > Duration::from_secs(50) && retry_for <= Duration::from_secs(60),
        "{retry_for:?}"
    );
    let s = queue.snapshot();
    assert_eq!(s.pending, 1);
    assert!(s.oldest_age >= Duration::from_millis(300), "{s:?}");
    assert!(api(&s, &url).attempts >= 1);

    // fluxd comes back on the same address: delivered within seconds.
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let fluxd = Fluxd::on(listener, |_, _| Reply::Status(202)).await;
    eventually(
        || queue.snapshot().pending == 0,
        "delivery after fluxd's return",
    )
    .await;
    assert_eq!(fluxd.notified(), vec![json(&change)]);
    let s = queue.snapshot();
    let f = api(&s, &url);
    assert_eq!((f.delivered, f.late, f.expired), (1, 1, 0));
    assert!(f.retries >= 1 && f.retries == f.attempts - 1, "{f:?}");

    // One line for the late delivery, naming it.
    let line = log_line(&logs, "delivered late").await;
    for want in [
        "delivery-42",
        &*url,
        "image registry.example.com/app",
        "attempts:",
        "after_ms:",
    ] {
        assert!(line.contains(want), "{want} not in {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_fluxd_is_retried_until_it_accepts() {
    // 503, 502, 429, 408, then 202.
    let fluxd = Fluxd::start(|n, _| match n {
        0 => Reply::Status(503),
        1 => Reply::Status(502),
        2 => Reply::Status(429),
        3 => Reply::Status(408),
        _ => Reply::Status(202),
    })
    .await;
    let (queue, logs) = start(options());
    let url = fluxd.url();
    let ticket = queue.submit(vec![item(&url, &image("a"), "d")]).unwrap();
    assert_eq!(ticket.wait(BUDGET).await, Confirmation::Accepted);
    assert_eq!(fluxd.notified().len(), 5);
    let s = queue.snapshot();
    let f = api(&s, &url);
    assert_eq!((f.delivered, f.attempts, f.retries, f.late), (1, 5, 4, 0));
    log_line(&logs, "fluxd answered 503 Service Unavailable").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_404_is_refused_at_once_with_the_reason() {
    let fluxd = Fluxd::start(|_, _| Reply::Status(404)).await;
    let (queue, logs) = start(options());
    let url = fluxd.url();
    let ticket = queue
        .submit(vec![item(&url, &image("a"), "d-404")])
        .unwrap();
    let started = Instant::now();
    let answer = ticket.wait(Duration::from_secs(30)).await;
    assert_eq!(
        answer,
        Confirmation::Refused {
            api: url.clone(),
            reason: "fluxd answered 404 Not Found".into()
        }
    );
    // Promptly: not after retries up to the budget.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(fluxd.notified().len(), 1);
    let s = queue.snapshot();
    assert_eq!(s.pending, 0);
    let f = api(&s, &url);
    assert_eq!((f.refused, f.attempts, f.delivered), (1, 1, 0));
    let line = log_line(&logs, "refused").await;
    assert!(
        line.contains("d-404") && line.contains("404 Not Found"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_refused_and_never_followed() {
    let target = Fluxd::accepting().await;
    let location = format!("http://{}/api/flux/v11/notify", target.addr);
    let l = location.clone();
    let statuses = [301, 302, 303, 307, 308];
    let fluxd =
        Fluxd::start(move |n, _| Reply::Redirect(statuses[n % statuses.len()], l.clone())).await;
    let (queue, _) = start(Options {
        workers: 1,
        ..options()
    });
    let url = fluxd.url();
    for (i, status) in statuses.iter().enumerate() {
        let ticket = queue
            .submit(vec![item(&url, &image(&format!("i{i}")), "")])
            .unwrap();
        let Confirmation::Refused { api, reason } = ticket.wait(BUDGET).await else {
            panic!("a {status} is refused");
        };
        assert_eq!(api, url);
        assert!(reason.contains(&status.to_string()), "{reason}");
        assert!(reason.contains(&location), "{reason}");
    }
    assert_eq!(fluxd.notified().len(), statuses.len());
    assert!(target.seen().is_empty(), "followed: {:?}", target.seen());
    assert_eq!(api(&queue.snapshot(), &url).refused, statuses.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_notifications_expire_and_are_counted() {
    let url = notify_url(dead_addr());
    let (queue, logs) = start(Options {
        max_age: Duration::from_millis(300),
        ..options()
    });
    let change = image("old");
    let ticket = queue.submit(vec![item(&url, &change, "d-old")]).unwrap();
    // A reply still waiting when it expires is told so.
    let Confirmation::Refused { api: a, reason } = ticket.wait(BUDGET).await else {
        panic!("expired while waiting");
    };
    assert_eq!(a, url);
    assert!(
        reason.contains("did not accept it within 300ms"),
        "{reason}"
    );
    let s = queue.snapshot();
    assert_eq!(s.pending, 0);
    let f = api(&s, &url);
    assert_eq!((f.expired, f.delivered), (1, 0));
    assert!(f.attempts >= 1, "{f:?}");
    let line = log_line(&logs, "dropped").await;
    for want in [
        "d-old",
        "image registry.example.com/old",
        &*url,
        "attempts:",
        "unreachable",
    ] {
        assert!(line.contains(want), "{want} not in {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_takes_nothing_of_a_submit_that_does_not_fit() {
    let url = notify_url(dead_addr());
    let (queue, _) = start(Options {
        max_pending: 2,
        ..options()
    });
    let (a, b, c) = (image("a"), image("b"), image("c"));
    let _t = queue
        .submit(vec![item(&url, &a, ""), item(&url, &b, "")])
        .unwrap();
    let full = queue
        .submit(vec![item(&url, &a, ""), item(&url, &c, "")])
        .err()
        .expect("c does not fit");
    assert_eq!(
        full,
        Full::NoRoom {
            needed: 1,
            pending: 2,
            max: 2
        }
    );
    // Nothing of it: `a` was not joined, `c` not queued.
    let s = queue.snapshot();
    assert_eq!(s.pending, 2);
    assert_eq!(api(&s, &url).joined, 0);

    // Identical changes need no room, and duplicates in one submit are one.
    let _t = queue
        .submit(vec![
            item(&url, &a, ""),
            item(&url, &b, ""),
            item(&url, &a, ""),
        ])
        .unwrap();
    let s = queue.snapshot();
    assert_eq!((s.pending, api(&s, &url).joined), (2, 2));

    queue.close();
    assert_eq!(
        queue.submit(vec![item(&url, &a, "")]).err(),
        Some(Full::Closed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_changes_waiting_are_sent_once() {
    // One worker, held on a first change, while identical ones pile up.
    let fluxd = Fluxd::start(|n, _| {
        if n == 0 {
            Reply::Gated(202)
        } else {
            Reply::Status(202)
        }
    })
    .await;
    let (queue, _) = start(Options {
        workers: 1,
        ..options()
    });
    let url = fluxd.url();
    let (first, dup) = (image("first"), image("dup"));
    let t0 = queue.submit(vec![item(&url, &first, "")]).unwrap();
    fluxd.arrived(1).await;
    let tickets: Vec<_> = (0..3)
        .map(|i| {
            queue
                .submit(vec![item(&url, &dup, &format!("d{i}"))])
                .unwrap()
        })
        .collect();
    assert_eq!(queue.snapshot().pending, 2);
    fluxd.open_gate();
    assert_eq!(t0.wait(BUDGET).await, Confirmation::Accepted);
    for t in tickets {
        assert_eq!(t.wait(BUDGET).await, Confirmation::Accepted);
    }
    assert_eq!(fluxd.notified(), vec![json(&first), json(&dup)]);
    let s = queue.snapshot();
    let f = api(&s, &url);
    assert_eq!((f.delivered, f.attempts, f.joined), (2, 2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_change_arriving_during_the_send_gets_exactly_one_more() {
    let fluxd = Fluxd::start(|n, _| {
        if n == 0 {
            Reply::Gated(202)
        } else {
            Reply::Status(202)
        }
    })
    .await;
    let (queue, _) = start(Options {
        workers: 4,
        ..options()
    });
    let url = fluxd.url();
    let change = image("app");
    let t0 = queue.submit(vec![item(&url, &change, "d0")]).unwrap();
    fluxd.arrived(1).await;
    // fluxd may already have looked: these need a send of their own, one
    // for both, and not a second one alongside the first.
    let t1 = queue.submit(vec![item(&url, &change, "d1")]).unwrap();
    let t2 = queue.submit(vec![item(&url, &change, "d2")]).unwrap();
    assert_eq!(queue.snapshot().pending, 1);
    assert_eq!(fluxd.seen().len(), 1);
    fluxd.open_gate();
    for t in [t0, t1, t2] {
        assert_eq!(t.wait(BUDGET).await, Confirmation::Accepted);
    }
    assert_eq!(fluxd.notified(), vec![json(&change), json(&change)]);
    let s = queue.snapshot();
    assert_eq!(s.pending, 0);
    let f = api(&s, &url);
    assert_eq!((f.delivered, f.attempts, f.joined), (2, 2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_during_the_send_ends_the_next_one_too() {
    let fluxd = Fluxd::start(|_, _| Reply::Gated(404)).await;
    let (queue, _) = start(options());
    let url = fluxd.url();
    let change = image("app");
    let t0 = queue.submit(vec![item(&url, &change, "")]).unwrap();
    fluxd.arrived(1).await;
    let t1 = queue.submit(vec![item(&url, &change, "")]).unwrap();
    fluxd.open_gate();
    // The same POST would be refused the same way: not sent again.
    for t in [t0, t1] {
        assert!(matches!(
            t.wait(BUDGET).await,
            Confirmation::Refused { reason, .. } if reason == "fluxd answered 404 Not Found"
        ));
    }
    assert_eq!(fluxd.seen().len(), 1);
    assert_eq!(queue.snapshot().pending, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_delivers_to_each_api_independently() {
    let up = Fluxd::accepting().await;
    let (up_url, down_url) = (up.url(), notify_url(dead_addr()));
    let (queue, _) = start(options());
    let change = image("app");
    let both = queue
        .submit(vec![
            item(&up_url, &change, "d"),
            item(&down_url, &change, "d"),
        ])
        .unwrap();
    let only_up = queue
        .submit(vec![item(&up_url, &image("other"), "e")])
        .unwrap();
    assert_eq!(only_up.wait(BUDGET).await, Confirmation::Accepted);
    assert!(matches!(
        both.wait(Duration::from_millis(300)).await,
        Confirmation::Pending { .. }
    ));
    let mut got = up.notified();
    got.sort_by_key(|v| v.to_string());
    assert_eq!(got, vec![json(&change), json(&image("other"))]);
    let s = queue.snapshot();
    assert_eq!(s.pending, 1);
    let (u, d) = (api(&s, &up_url), api(&s, &down_url));
    assert_eq!((u.delivered, u.pending), (2, 0));
    assert_eq!((d.delivered, d.pending), (0, 1));
    eventually(
        || api(&queue.snapshot(), &down_url).attempts >= 1,
        "an attempt on the API that is down",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_api_holds_at_most_half_the_workers() {
    let hanging = Fluxd::start(|_, _| Reply::Hang).await;
    let up = Fluxd::accepting().await;
    let (queue, _) = start(Options {
        workers: 2,
        attempt_timeout: Duration::from_secs(1),
        ..options()
    });
    let h = hanging.url();
    let _held: Vec<_> = (0..4)
        .map(|i| {
            queue
                .submit(vec![item(&h, &image(&format!("h{i}")), "")])
                .unwrap()
        })
        .collect();
    // Before its first answer nothing says it hangs: both workers try.
    // Once one attempt timed out it is failing, and a third attempt means
    // a worker was free to make it.
    eventually(
        || api(&queue.snapshot(), &h).attempts >= 3,
        "an attempt after the first timeouts",
    )
    .await;
    // The other worker is free for another API at once (well within the
    // second a hanging attempt takes).
    let t = queue
        .submit(vec![item(&up.url(), &image("a"), "")])
        .unwrap();
    assert_eq!(
        t.wait(Duration::from_millis(700)).await,
        Confirmation::Accepted
    );
    // And the failing API never holds more than its share (one).
    let mut most = 0;
    eventually(
        || {
            let s = queue.snapshot();
            most = most.max(s.sending);
            api(&s, &h).attempts >= 5
        },
        "more attempts on the hanging API",
    )
    .await;
    assert_eq!(most, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fluxd_answer_does_not_block_other_workers() {
    let fluxd = Fluxd::start(|_, body| {
        if body["Source"]["Name"]["Image"] == "slow" {
            Reply::Gated(202)
        } else {
            Reply::Status(202)
        }
    })
    .await;
    let (queue, _) = start(Options {
        workers: 4,
        ..options()
    });
    let url = fluxd.url();
    let slow = queue.submit(vec![item(&url, &image("slow"), "")]).unwrap();
    fluxd.arrived(1).await;
    for i in 0..10 {
        let t = queue
            .submit(vec![item(&url, &image(&format!("fast{i}")), "")])
            .unwrap();
        assert_eq!(t.wait(BUDGET).await, Confirmation::Accepted);
    }
    let s = queue.snapshot();
    assert_eq!((s.pending, s.sending), (1, 1));
    fluxd.open_gate();
    assert_eq!(slow.wait(BUDGET).await, Confirmation::Accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_delivers_what_it_can_and_returns_the_rest() {
    // Deliverable: drained to empty.
    let fluxd = Fluxd::accepting().await;
    let (queue, _) = start(options());
    let url = fluxd.url();
    let _t = queue
        .submit(
            (0..5)
                .map(|i| item(&url, &image(&format!("i{i}")), ""))
                .collect(),
        )
        .unwrap();
    let left = queue
        .drain(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(fluxd.notified().len(), 5);
    assert_eq!(
        queue.submit(vec![item(&url, &image("late"), "")]).err(),
        Some(Full::Closed)
    );

    // Undeliverable: what is left, by the deadline, and no attempt after.
    let down = notify_url(dead_addr());
    let (queue, _) = start(options());
    let _t = queue
        .submit(vec![
            item(&down, &image("a"), "d-a"),
            item(&down, &image("b"), "d-b"),
        ])
        .unwrap();
    let left = queue
        .drain(tokio::time::Instant::now() + Duration::from_millis(300))
        .await;
    assert_eq!(left.len(), 2, "{left:?}");
    let mut names: Vec<_> = left.iter().map(|l| l.change.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "image registry.example.com/a",
            "image registry.example.com/b"
        ]
    );
    for l in &left {
        assert_eq!(l.api, down);
        assert!(l.attempts >= 1, "{l:?}");
        assert!(
            l.last_error.as_deref().unwrap().contains("unreachable"),
            "{l:?}"
        );
        assert_eq!(l.deliveries.ids().len(), 1);
    }
    let attempts = api(&queue.snapshot(), &down).attempts;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(api(&queue.snapshot(), &down).attempts, attempts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_of_zero_never_waits() {
    let url = notify_url(dead_addr());
    let (queue, logs) = start(options());
    let t = queue.submit(vec![item(&url, &image("a"), "")]).unwrap();
    let Confirmation::Pending { retry_for } = t.wait(Duration::ZERO).await else {
        panic!("pending");
    };
    assert!(retry_for > Duration::from_secs(50), "{retry_for:?}");
    drop(queue);
    assert!(!logs.text().contains("delivered late"));
}

#[test]
fn the_queue_and_a_waiting_reply_can_cross_threads() {
    fn send<T: Send>(_: &T) {}
    fn sync<T: Send + Sync>(_: &T) {}
    let (queue, _) = start(options());
    sync(&queue);
    let t = queue.submit(vec![]).unwrap();
    send(&t.wait(Duration::ZERO));
}

/// The queue's metrics as a scrape shows them: OpenMetrics text from a
/// registry with the prefix `/metrics` uses. (tests/metrics.rs runs promtool
/// over the whole of `/metrics`.)
fn scrape(queue: &Queue) -> Vec<String> {
    let mut registry = prometheus_client::registry::Registry::with_prefix("fluxrecv");
    registry.register_collector(queue.collector());
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
    out.lines().map(String::from).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_per_api_from_the_first_notification() {
    let fluxd = Fluxd::start(|_, body| match body["Source"]["Name"]["Image"] == "held" {
        true => Reply::Gated(202),
        false => Reply::Status(202),
    })
    .await;
    // One worker, so that while it waits on the held POST, b's entry is
    // pending and never tried.
    let (queue, _) = start(Options {
        workers: 1,
        ..options()
    });
    let a = fluxd.url();
    let b: Arc<str> = format!("http://{}/b/api/flux/v11/notify", fluxd.addr).into();
    let got = scrape(&queue);
    assert!(got.contains(&"fluxrecv_delivery_oldest_age_seconds 0.0".to_string()));
    let samples = |got: &[String]| -> Vec<String> {
        got.iter()
            .filter(|l| !l.starts_with('#') && !l.starts_with("fluxrecv_delivery_oldest_age"))
            .cloned()
            .collect()
    };
    assert_eq!(samples(&got), Vec::<String>::new(), "no API yet");

    let t = queue.submit(vec![item(&a, &image("a"), "")]).unwrap();
    assert_eq!(t.wait(BUDGET).await, Confirmation::Accepted);
    let held = queue.submit(vec![item(&a, &image("held"), "")]).unwrap();
    fluxd.arrived(2).await;
    let waiting = queue.submit(vec![item(&b, &image("b"), "")]).unwrap();

    let got = scrape(&queue);
    // Every per-API sample in scrape order, given a's and b's pending,
    // delivered and attempts; the other counters stay 0 here.
    let expected = |a_figures: [u64; 3], b_figures: [u64; 3]| {
        let mut lines = Vec::new();
        for (name, figure) in [
            ("delivery_pending", Some(0)),
            ("delivered_total", Some(1)),
            ("delivered_late_total", None),
            ("delivery_expired_total", None),
            ("delivery_refused_total", None),
            ("relay_attempts_total", Some(2)),
            ("relay_retries_total", None),
            ("relay_coalesced_total", None),
        ] {
            for (url, figures) in [(&a, a_figures), (&b, b_figures)] {
                let n = figure.map_or(0, |at: usize| figures[at]);
                lines.push(format!(r#"fluxrecv_{name}{{api="{url}"}} {n}"#));
            }
        }
        lines
    };
    assert_eq!(samples(&got), expected([1, 1, 2], [1, 0, 0]), "{got:#?}");
    let oldest = got
        .iter()
        .find_map(|l| l.strip_prefix("fluxrecv_delivery_oldest_age_seconds "))
        .expect("the oldest age");
    assert!(oldest.parse::<f64>().unwrap() > 0.0, "{oldest}");
    for line in [
        "# TYPE fluxrecv_delivery_pending gauge",
        "# UNIT fluxrecv_delivery_oldest_age_seconds seconds",
        "# TYPE fluxrecv_delivered counter",
        "# TYPE fluxrecv_relay_coalesced counter",
    ] {
        assert!(got.contains(&line.to_string()), "no {line:?} in {got:#?}");
    }

    fluxd.open_gate();
    assert_eq!(held.wait(BUDGET).await, Confirmation::Accepted);
    assert_eq!(waiting.wait(BUDGET).await, Confirmation::Accepted);
    let got = scrape(&queue);
    assert_eq!(samples(&got), expected([0, 2, 2], [0, 1, 1]), "{got:#?}");
    assert!(got.contains(&"fluxrecv_delivery_oldest_age_seconds 0.0".to_string()));
}
