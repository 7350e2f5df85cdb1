//! What a waiting reply is told, and what is logged and counted, for each
//! way fluxd can answer: accepted, down then back, flapping, refusing,
//! redirecting, or never answering before the notification expires.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flux_recv::delivery::{Acceptance, QueueSettings};
use warp::Filter;

use crate::fluxd::{Fluxd, Reply};
use crate::{
    api, dead_addr, eventually, image, item, json, log_line, notify_url, options, serve, sorted,
    start, with_workers, BUDGET,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_within_the_budget() {
    let fluxd = Fluxd::accepting().await;
    let (queue, _) = start(options());
    let url = fluxd.url();
    let (a, b) = (image("a"), image("b"));
    let ticket = queue
        .submit(vec![item(&url, &a, "d1"), item(&url, &b, "d1")])
        .unwrap();
    assert_eq!(ticket.wait(BUDGET).await, Acceptance::Accepted);

    assert_eq!(sorted(fluxd.notified()), vec![json(&a), json(&b)]);
    let s = queue.snapshot();
    assert_eq!((s.pending, s.oldest_age), (0, Duration::ZERO));
    let f = api(&s, &url);
    assert_eq!((f.delivered, f.attempts, f.retries, f.late), (2, 2, 0, 0));

    // Nothing to deliver is accepted at once.
    let ticket = queue.submit(vec![]).unwrap();
    assert_eq!(ticket.wait(Duration::ZERO).await, Acceptance::Accepted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_request_carries_json_and_the_user_agent() {
    // A warp filter that only answers 202 when both headers are right.
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
    let stop = serve(route, listener);
    let (queue, _) = start(options());
    let ticket = queue.submit(vec![item(&url, &image("a"), "")]).unwrap();
    assert_eq!(ticket.wait(BUDGET).await, Acceptance::Accepted);
    let (ua, ct) = seen.lock().unwrap().clone().unwrap();
    assert_eq!(ua, concat!("flux-recv/", env!("CARGO_PKG_VERSION")));
    assert_eq!(ct, "application/json");
    drop(stop);
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
    let Acceptance::Pending { retry_for } = ticket.wait(Duration::from_millis(300)).await else {
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
    eventually("delivery after fluxd's return", BUDGET, || {
        queue.snapshot().pending == 0
    })
    .await;
    assert_eq!(fluxd.notified(), vec![json(&change)]);
    let s = queue.snapshot();
    let f = api(&s, &url);
    assert_eq!((f.delivered, f.late, f.expired), (1, 1, 0));
    assert!(f.retries >= 1 && f.retries == f.attempts - 1, "{f:?}");

    // One line for the late delivery, naming it.
    let line = log_line(&logs, "delivered late").await;
    assert_eq!(logs.text().matches("delivered late").count(), 1);
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
    assert_eq!(ticket.wait(BUDGET).await, Acceptance::Accepted);
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
        Acceptance::Refused {
            target: url.clone(),
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
    let (queue, _) = start(with_workers(1));
    let url = fluxd.url();
    for (i, status) in statuses.iter().enumerate() {
        let ticket = queue
            .submit(vec![item(&url, &image(&format!("i{i}")), "")])
            .unwrap();
        let Acceptance::Refused {
            target: api,
            reason,
        } = ticket.wait(BUDGET).await
        else {
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
    let (queue, logs) = start(QueueSettings {
        delivery_max_age: Duration::from_millis(300),
        ..options()
    });
    let change = image("old");
    let ticket = queue.submit(vec![item(&url, &change, "d-old")]).unwrap();
    // A reply still waiting when it expires is told so.
    let Acceptance::Refused { target: a, reason } = ticket.wait(BUDGET).await else {
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
async fn a_budget_of_zero_never_waits() {
    // fluxd holds every answer back until the end of the test, and each
    // attempt may take 30 s: a wait for anything at all would last that
    // long. The bound below is generous (a loaded machine), and an order
    // of magnitude short of it.
    let fluxd = Fluxd::start(|_, _| Reply::Gated(202)).await;
    let url = fluxd.url();
    let (queue, logs) = start(QueueSettings {
        relay_timeout: Duration::from_secs(30),
        ..options()
    });
    let t = queue.submit(vec![item(&url, &image("a"), "")]).unwrap();
    fluxd.arrived(1).await;
    let started = Instant::now();
    let reply = tokio::time::timeout(Duration::from_secs(10), t.wait(Duration::ZERO))
        .await
        .expect("a zero budget waited for fluxd");
    let waited = started.elapsed();
    let Acceptance::Pending { retry_for } = reply else {
        panic!("pending, not {reply:?}");
    };
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    assert!(retry_for > Duration::from_secs(50), "{retry_for:?}");
    drop(queue);
    assert!(!logs.text().contains("delivered late"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_logged_within_the_budget_and_summed_up() {
    let fluxd = Fluxd::start(|_, _| Reply::Status(404)).await;
    let (queue, logs) = start(QueueSettings {
        refusal_logs_per_second: 5,
        max_pending: 512,
        ..options()
    });
    let url = fluxd.url();
    let started = Instant::now();
    for i in 0..200 {
        let t = queue
            .submit(vec![item(&url, &image(&format!("i{i}")), "")])
            .unwrap();
        drop(t);
    }
    eventually("every refusal", BUDGET, || {
        api(&queue.snapshot(), &url).refused == 200
    })
    .await;
    let lines = |logs: &flux_recv::logging::Captured| {
        logs.text()
            .lines()
            .filter(|l| l.contains("fluxd refused a notification"))
            .count()
    };
    // Five a second, for each second of the budget's this run touched.
    let seconds = started.elapsed().as_secs() as usize + 2;
    assert!(lines(&logs) <= 5 * seconds, "{} lines", lines(&logs));
    // The rest are summed up, once the second is over.
    eventually("the summary", BUDGET, || {
        logs.text().contains("not logged: over the log budget")
    })
    .await;
    let text = logs.text();
    let summaries: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("not logged: over the log budget"))
        .collect();
    let suppressed: usize = summaries
        .iter()
        .map(|l| {
            let n = l.split("refused: ").nth(1).expect("a count of refusals");
            n.split(',')
                .next()
                .unwrap()
                .trim()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(lines(&logs) + suppressed, 200, "{text}");
    // Each summary names the API and what fluxd said.
    for s in summaries {
        assert!(s.contains(&*url), "{s}");
        assert!(s.contains("404 Not Found"), "{s}");
    }
}
