//! Backoff is the API's, not each notification's: a fluxd that fails is
//! probed by one attempt at a time, and one that says `Retry-After` is left
//! alone until then (capped by the notification's max age).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use flux_recv::delivery::{Acceptance, QueueSettings};

use crate::fluxd::{Fluxd, Reply};
use crate::{api, eventually, image, item, options, start, with_workers, BUDGET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fluxd_is_probed_not_retried_by_every_notification() {
    let up = Arc::new(AtomicBool::new(false));
    let u = up.clone();
    let fluxd = Fluxd::start(move |_, _| match u.load(Ordering::SeqCst) {
        true => Reply::Status(202),
        false => Reply::Status(503),
    })
    .await;
    let (queue, _) = start(with_workers(2));
    let url = fluxd.url();
    let tickets: Vec<_> = (0..20)
        .map(|i| {
            queue
                .submit(vec![item(&url, &image(&format!("i{i}")), "")])
                .unwrap()
        })
        .collect();
    fluxd.arrived(12).await;
    // The first answers tell the queue fluxd is failing: from then on one
    // notification at a time probes it, however many wait.
    let mut tried = fluxd.notified();
    tried.sort_by_key(|n| n.to_string());
    tried.dedup();
    assert!(tried.len() <= 2, "{} notifications tried", tried.len());

    up.store(true, Ordering::SeqCst);
    for t in tickets {
        assert_eq!(t.wait(BUDGET).await, Acceptance::Accepted);
    }
    assert_eq!(api(&queue.snapshot(), &url).delivered, 20);
}

/// The gap between the first request and the second one.
fn gap(fluxd: &Fluxd) -> Duration {
    let seen = fluxd.seen();
    seen[1].at - seen[0].at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_in_seconds_is_honoured() {
    let fluxd = Fluxd::start(|n, _| match n {
        0 => Reply::RetryAfter(503, "1".into()),
        _ => Reply::Status(202),
    })
    .await;
    // One worker: nothing else is in flight when fluxd says to wait.
    let (queue, _) = start(with_workers(1));
    let url = fluxd.url();
    let tickets: Vec<_> = (0..3)
        .map(|i| {
            queue
                .submit(vec![item(&url, &image(&format!("i{i}")), "")])
                .unwrap()
        })
        .collect();
    for t in tickets {
        assert_eq!(t.wait(BUDGET).await, Acceptance::Accepted);
    }
    assert_eq!(fluxd.seen().len(), 4);
    // Not before the second fluxd asked for (a backoff would be 20 ms).
    assert!(
        gap(&fluxd) >= Duration::from_millis(950),
        "{:?}",
        gap(&fluxd)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_as_an_http_date_is_honoured() {
    let fluxd = Fluxd::start(|n, _| match n {
        0 => {
            let when = SystemTime::now() + Duration::from_secs(2);
            Reply::RetryAfter(429, httpdate::fmt_http_date(when))
        }
        _ => Reply::Status(202),
    })
    .await;
    let (queue, _) = start(with_workers(1));
    let url = fluxd.url();
    let t = queue.submit(vec![item(&url, &image("a"), "")]).unwrap();
    assert_eq!(t.wait(BUDGET).await, Acceptance::Accepted);
    assert_eq!(fluxd.seen().len(), 2);
    // The date has whole seconds: two seconds ahead is at least one.
    assert!(
        gap(&fluxd) >= Duration::from_millis(950),
        "{:?}",
        gap(&fluxd)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_longer_than_the_max_age_still_ends_in_time() {
    let fluxd = Fluxd::start(|_, _| Reply::RetryAfter(503, "3600".into())).await;
    let (queue, _) = start(QueueSettings {
        delivery_max_age: Duration::from_millis(500),
        ..options()
    });
    let url = fluxd.url();
    let t = queue.submit(vec![item(&url, &image("a"), "")]).unwrap();
    let Acceptance::Refused { reason, .. } = t.wait(BUDGET).await else {
        panic!("expired while waiting");
    };
    assert!(reason.contains("did not accept it within"), "{reason}");
    assert_eq!(fluxd.seen().len(), 1);
    eventually("the expiry counted", BUDGET, || {
        let s = queue.snapshot();
        s.pending == 0 && api(&s, &url).expired == 1
    })
    .await;
}
