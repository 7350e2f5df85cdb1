//! Room in bytes: the bodies of pending requests add up to at most
//! `--max-pending-bytes`, shared per endpoint as entries are, so that one
//! endpoint's large bodies (a sender's choice on an unsigned source) can
//! neither pin the memory nor refuse another endpoint's pushes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use flux_recv::delivery::{Acceptance, Full, Item, Queue, QueueSettings};
use flux_recv::targets::{Body, Changes, Outgoing};

use crate::fluxd::Fluxd;
use crate::{dead_addr, eventually, from, image, notify_url, options, start, BUDGET};

/// A request of `size` bytes (distinct by `name`) for the fluxd at `url`,
/// from `endpoint`: a body as large as a Receiver's would be.
fn big(endpoint: &str, url: &Arc<str>, name: &str, size: usize) -> Item {
    let change = image(name);
    // A JSON string, padded to its size, for the stand-in fluxd to read.
    let bytes = format!("\"{name}{:1$}\"", "", size - name.len() - 2);
    Item {
        outgoing: Outgoing {
            body: Body {
                bytes: Bytes::from(bytes),
                content_type: None,
            },
            changes: Changes::of(std::slice::from_ref(&change)),
        },
        ..from(endpoint, url, &change, "")
    }
}

/// 1,000 bytes in all, plenty of entries.
fn thousand_bytes() -> QueueSettings {
    QueueSettings {
        max_pending: 64,
        max_pending_bytes: 1000,
        ..options()
    }
}

/// Submit distinct 100-byte requests from `endpoint` until one is refused;
/// how many were queued, and the refusal.
fn fill(queue: &Queue, endpoint: &str, url: &Arc<str>) -> (usize, Full) {
    for queued in 0..64 {
        let name = format!("{endpoint}-{queued}");
        if let Err(full) = queue.submit(vec![big(endpoint, url, &name, 100)]) {
            return (queued, full);
        }
    }
    panic!("more than the queue holds");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoints_big_bodies_are_refused_past_its_share_of_the_bytes() {
    // fluxd is down: nothing leaves the queue.
    let url = notify_url(dead_addr());
    let (queue, _) = start(thousand_bytes());
    // The flood takes half the bytes (5 of its 100-byte bodies), far from
    // the 32 entries its share of 64 would allow.
    let (queued, refused) = fill(&queue, "flood", &url);
    assert_eq!(queued, 5);
    assert_eq!(
        refused,
        Full::NoBytes {
            needed: 100,
            held: 500,
            pending: 500,
            max: 1000
        }
    );
    assert_eq!(queue.snapshot().pending_bytes, 500);
    // Another endpoint still gets in: half of what is left (250 bytes).
    assert_eq!(fill(&queue, "genuine", &url).0, 2);
    // A copy of a queued body joins it and costs nothing more.
    assert!(queue
        .submit(vec![big("flood", &url, "flood-0", 100)])
        .is_ok());
    let s = queue.snapshot();
    assert_eq!((s.pending, s.pending_bytes), (7, 700));
    assert_eq!(s.max_pending_bytes, 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_are_returned_when_entries_are_delivered_or_expire() {
    let fluxd = Fluxd::accepting().await;
    let (queue, _) = start(QueueSettings {
        delivery_max_age: Duration::from_millis(300),
        ..thousand_bytes()
    });
    let url = fluxd.url();
    // Delivered: its bytes are free again.
    let ticket = queue.submit(vec![big("e", &url, "one", 400)]).unwrap();
    assert_eq!(ticket.wait(BUDGET).await, Acceptance::Accepted);
    assert_eq!(queue.snapshot().pending_bytes, 0);

    // Expired while fluxd is down: its bytes are free again, and the
    // endpoint's share takes as much anew.
    let down = notify_url(dead_addr());
    let _pending = queue.submit(vec![big("e", &down, "two", 500)]).unwrap();
    assert!(matches!(
        queue.submit(vec![big("e", &down, "three", 10)]),
        Err(Full::NoBytes { .. })
    ));
    eventually("the expiry", BUDGET * 2, || queue.snapshot().pending == 0).await;
    assert_eq!(queue.snapshot().pending_bytes, 0);
    assert!(queue.submit(vec![big("e", &down, "four", 500)]).is_ok());
}
