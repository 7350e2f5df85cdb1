//! The memory of signed delivery ids stays within its bound however many
//! deliveries pass through it and however long their ids are: at most
//! `MAX_IDS` ids, each a fixed-size digest, in room taken once: about 2 MiB.
//!
//! Counted with an allocator that tracks the most bytes held at once, in a
//! test binary of its own (one test, so nothing else allocates meanwhile).
//! `cargo bench --bench replay` prints the figure.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use flux_recv::replay::{Replays, MAX_IDS};
use flux_recv::source::Stamp;

struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let held = HELD.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(held, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        HELD.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NOW: u64 = 1_760_000_000;

#[test]
fn the_id_memory_holds_at_most_its_bound() {
    // Ids of 256 bytes (a sender's choice: the spec sets no limit), ten
    // times as many as the memory holds, made before counting starts.
    let pad = "x".repeat(256);
    let stamps: Vec<Stamp> = (0..10 * MAX_IDS as u64)
        .map(|i| Stamp {
            id: format!("{i}-{pad}"),
            timestamp: NOW + i / 100,
        })
        .collect();
    let before = HELD.load(Relaxed);
    PEAK.store(before, Relaxed);
    let replays = Replays::new(Duration::from_secs(300), MAX_IDS);
    for s in &stamps {
        let accepted = replays.first("fingerprint", s, NOW, || Ok::<(), ()>(()));
        assert!(accepted.is_some());
    }
    assert_eq!(replays.len(), MAX_IDS);
    assert_eq!(replays.forgotten_early(), 9 * MAX_IDS as u64);
    let peak = PEAK.load(Relaxed) - before;
    // 16-byte digests and their end times, in a hash map of 65,536 buckets
    // of 25 bytes and a heap of 16,384 entries of 24 bytes: 2,031,632 bytes,
    // taken at once and never grown, where the ids would be 40 MiB.
    assert!(peak <= 2_100_000, "the memory held {peak} bytes");
    // The last ids accepted are the ones remembered.
    let last = &stamps[stamps.len() - 1];
    assert!(replays
        .first("fingerprint", last, NOW, || Ok::<(), ()>(()))
        .is_none());
}
