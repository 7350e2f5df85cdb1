//! Room in the queue and identical changes: a submit that does not fit
//! takes nothing, and a change already waiting (or being sent) for the same
//! API is joined rather than sent again.

use flux_recv::delivery::{Acceptance, Full, QueueSettings};

use crate::fluxd::{Fluxd, Reply};
use crate::{api, dead_addr, image, item, json, notify_url, options, start, with_workers, BUDGET};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_takes_nothing_of_a_submit_that_does_not_fit() {
    let url = notify_url(dead_addr());
    // An endpoint alone has half of the room: two.
    let (queue, _) = start(QueueSettings {
        max_pending: 4,
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
            held: 2,
            pending: 2,
            max: 4
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
    let fluxd = Fluxd::holding_the_first().await;
    let (queue, _) = start(with_workers(1));
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
    assert_eq!(t0.wait(BUDGET).await, Acceptance::Accepted);
    for t in tickets {
        assert_eq!(t.wait(BUDGET).await, Acceptance::Accepted);
    }
    assert_eq!(fluxd.notified(), vec![json(&first), json(&dup)]);
    let s = queue.snapshot();
    let f = api(&s, &url);
    assert_eq!((f.delivered, f.attempts, f.joined), (2, 2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identical_change_arriving_during_the_send_gets_exactly_one_more() {
    let fluxd = Fluxd::holding_the_first().await;
    let (queue, _) = start(with_workers(4));
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
        assert_eq!(t.wait(BUDGET).await, Acceptance::Accepted);
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
            Acceptance::Refused { reason, .. } if reason == "fluxd answered 404 Not Found"
        ));
    }
    assert_eq!(fluxd.seen().len(), 1);
    assert_eq!(queue.snapshot().pending, 0);
}
