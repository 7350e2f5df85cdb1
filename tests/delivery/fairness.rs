//! Sharing the queue: room per endpoint, turns per endpoint and per API,
//! workers per API, so that one endpoint's flood (an unsigned one, say)
//! can neither refuse another endpoint's changes nor hold them up.

use std::time::Duration;

use flux_recv::delivery::{Acceptance, Full, QueueSettings};

use crate::fluxd::{Fluxd, Reply};
use crate::{dead_addr, from, image, json, notify_url, options, start, with_workers, BUDGET};

/// Submit distinct changes from `endpoint`, one per submit, until one is
/// refused; how many were queued.
fn fill(queue: &flux_recv::delivery::Queue, endpoint: &str, url: &std::sync::Arc<str>) -> usize {
    let mut queued = 0;
    loop {
        let change = image(&format!("{endpoint}-{queued}"));
        match queue.submit(vec![from(endpoint, url, &change, "")]) {
            Ok(_) => queued += 1,
            Err(Full::NoRoom { .. }) => return queued,
            Err(e) => panic!("{e}"),
        }
        assert!(queued <= 64, "more than the queue holds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_may_hold_half_the_room_the_others_leave() {
    // fluxd is down: nothing leaves the queue.
    let url = notify_url(dead_addr());
    let (queue, _) = start(QueueSettings {
        max_pending: 64,
        ..options()
    });
    // The flood takes half, and the next endpoint still gets in: half of
    // what is left, and so on.
    assert_eq!(fill(&queue, "flood", &url), 32);
    assert_eq!(fill(&queue, "genuine", &url), 16);
    assert_eq!(fill(&queue, "third", &url), 8);
    assert_eq!(queue.snapshot().pending, 56);
    // What is refused says whose share it is.
    let refused = queue
        .submit(vec![from("flood", &url, &image("more"), "")])
        .err()
        .unwrap();
    assert_eq!(
        refused,
        Full::NoRoom {
            needed: 1,
            held: 32,
            pending: 56,
            max: 64
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_too_big_for_any_share_is_refused_for_good() {
    let url = notify_url(dead_addr());
    let (queue, _) = start(QueueSettings {
        max_pending: 8,
        ..options()
    });
    let items = |n: usize| {
        (0..n)
            .map(|i| from("e", &url, &image(&format!("i{i}")), ""))
            .collect::<Vec<_>>()
    };
    // Five notifications can never fit an endpoint's share of 8 (4), even
    // in an empty queue: not "retry later".
    assert_eq!(
        queue.submit(items(5)).err(),
        Some(Full::NeverFits { needed: 5, most: 4 })
    );
    assert_eq!(queue.most_per_endpoint(), 4);
    assert!(queue.submit(items(4)).is_ok());
    assert_eq!(queue.snapshot().pending, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_change_is_not_sent_behind_a_flood_to_the_same_fluxd() {
    // One worker, held on the flood's first change while the rest of the
    // flood and then a genuine change arrive for the same fluxd.
    let fluxd = Fluxd::holding_the_first().await;
    let (queue, _) = start(with_workers(1));
    let url = fluxd.url();
    let _first = queue
        .submit(vec![from("flood", &url, &image("flood-0"), "")])
        .unwrap();
    fluxd.arrived(1).await;
    let _flood: Vec<_> = (1..20)
        .map(|i| {
            queue
                .submit(vec![from("flood", &url, &image(&format!("flood-{i}")), "")])
                .unwrap()
        })
        .collect();
    let genuine = queue
        .submit(vec![from("genuine", &url, &image("genuine"), "")])
        .unwrap();
    fluxd.open_gate();
    assert_eq!(genuine.wait(BUDGET).await, Acceptance::Accepted);
    // The endpoints take turns: the genuine change goes second or third,
    // not after the 19 queued before it.
    let sent = fluxd.notified();
    let at = sent.iter().position(|n| *n == json(&image("genuine")));
    assert!(
        matches!(at, Some(1 | 2)),
        "sent at {at:?} of {}",
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fluxd_holds_at_most_half_the_workers_before_it_ever_fails() {
    // Slow, not failing: it answers nothing until the gate opens, well
    // within the attempt timeout, so nothing marks it as failing.
    let slow = Fluxd::start(|_, _| Reply::Gated(202)).await;
    let up = Fluxd::accepting().await;
    let (queue, _) = start(QueueSettings {
        max_relays: 4,
        relay_timeout: Duration::from_secs(60),
        ..options()
    });
    let s = slow.url();
    let _held: Vec<_> = (0..8)
        .map(|i| {
            queue
                .submit(vec![from("flood", &s, &image(&format!("s{i}")), "")])
                .unwrap()
        })
        .collect();
    slow.arrived(2).await;
    // Two workers are left for the other fluxd, at once.
    let t = queue
        .submit(vec![from("genuine", &up.url(), &image("a"), "")])
        .unwrap();
    assert_eq!(t.wait(BUDGET).await, Acceptance::Accepted);
    assert_eq!(slow.seen().len(), 2, "the slow fluxd holds more than half");
    assert_eq!(queue.snapshot().sending, 2);
    slow.open_gate();
}
