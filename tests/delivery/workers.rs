//! The worker pool: each API is served on its own, a failing or slow one
//! holds at most its share of the workers, and at shutdown the queue is
//! drained by a deadline.

use std::time::Duration;

use flux_recv::delivery::{Acceptance, Full, QueueSettings};

use crate::fluxd::{Fluxd, Reply};
use crate::{
    api, dead_addr, eventually, image, item, json, notify_url, options, sorted, start,
    with_workers, BUDGET,
};

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
    assert_eq!(only_up.wait(BUDGET).await, Acceptance::Accepted);
    assert!(matches!(
        both.wait(Duration::from_millis(300)).await,
        Acceptance::Pending { .. }
    ));
    assert_eq!(
        sorted(up.notified()),
        vec![json(&change), json(&image("other"))]
    );
    let s = queue.snapshot();
    assert_eq!(s.pending, 1);
    let (u, d) = (api(&s, &up_url), api(&s, &down_url));
    assert_eq!((u.delivered, u.pending), (2, 0));
    assert_eq!((d.delivered, d.pending), (0, 1));
    eventually("an attempt on the API that is down", BUDGET, || {
        api(&queue.snapshot(), &down_url).attempts >= 1
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_api_holds_at_most_half_the_workers() {
    let hanging = Fluxd::start(|_, _| Reply::Hang).await;
    let up = Fluxd::accepting().await;
    // Each hanging attempt takes 3 s, so that "at once" below (2 s) holds
    // on a loaded machine and still tells a free worker from one that a
    // timeout freed.
    let attempt = Duration::from_secs(3);
    let (queue, _) = start(QueueSettings {
        max_relays: 2,
        relay_timeout: attempt,
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
    // One API may hold half the workers (one of two), failing or not
    // (slow is all anyone knows before its first answer): once it holds
    // it, the other worker is free for another API at once.
    let mut most = 0;
    eventually("an attempt on the hanging API", attempt, || {
        let s = queue.snapshot();
        most = most.max(s.sending);
        s.sending >= 1
    })
    .await;
    let t = queue
        .submit(vec![item(&up.url(), &image("a"), "")])
        .unwrap();
    assert_eq!(
        t.wait(attempt - Duration::from_secs(1)).await,
        Acceptance::Accepted
    );
    // Through its timeouts and the probes after them, the hanging API
    // never holds more than its share.
    eventually("a probe after the first timeout", 4 * attempt, || {
        let s = queue.snapshot();
        most = most.max(s.sending);
        api(&s, &h).attempts >= 2
    })
    .await;
    assert_eq!(most, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fluxd_answer_does_not_block_other_workers() {
    let fluxd = Fluxd::holding_image("slow").await;
    let (queue, _) = start(with_workers(4));
    let url = fluxd.url();
    let slow = queue.submit(vec![item(&url, &image("slow"), "")]).unwrap();
    fluxd.arrived(1).await;
    for i in 0..10 {
        let t = queue
            .submit(vec![item(&url, &image(&format!("fast{i}")), "")])
            .unwrap();
        assert_eq!(t.wait(BUDGET).await, Acceptance::Accepted);
    }
    let s = queue.snapshot();
    assert_eq!((s.pending, s.sending), (1, 1));
    fluxd.open_gate();
    assert_eq!(slow.wait(BUDGET).await, Acceptance::Accepted);
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
    let mut names: Vec<_> = left.iter().map(|l| l.changes.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "image registry.example.com/a",
            "image registry.example.com/b"
        ]
    );
    // The API was probed through one of them; both say why it failed.
    assert!(left.iter().any(|l| l.attempts >= 1), "{left:?}");
    for l in &left {
        assert_eq!(l.target, down);
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

#[test]
fn the_queue_and_a_waiting_reply_can_cross_threads() {
    fn send<T: Send>(_: &T) {}
    fn sync<T: Send + Sync>(_: &T) {}
    let (queue, _) = start(options());
    sync(&queue);
    let t = queue.submit(vec![]).unwrap();
    send(&t.wait(Duration::ZERO));
}
