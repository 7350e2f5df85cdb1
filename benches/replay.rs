//! The memory of signed delivery ids (`flux_recv::replay`): what it holds
//! at its bound, and what a check costs with it full.
//!
//! Pushes 300,000 distinct ids through one memory of the default size (more
//! than it holds, so that it forgets the oldest as it goes), counting the
//! heap bytes the memory holds with a counting allocator, then times
//! accepting a new id and acknowledging a repeated one while it is full.
//!
//! Run with `cargo bench --bench replay`; it prints its figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flux_recv::replay::{Replays, MAX_IDS};
use flux_recv::source::Stamp;

/// The system allocator, counting the bytes held.
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            HELD.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        HELD.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NOW: u64 = 1_760_000_000;
const DELIVERIES: u64 = 300_000;

fn stamp(i: u64) -> Stamp {
    Stamp {
        // As long as a GitLab id (a UUID); length does not change what is held.
        id: format!("4b5d2d0f-3f52-4b4c-a4b9-{i:012}"),
        // A thousand deliveries a second, each signed as it is sent.
        timestamp: NOW + i / 1000,
    }
}

fn main() {
    let stamps: Vec<Stamp> = (0..DELIVERIES).map(stamp).collect();
    let before = HELD.load(Ordering::Relaxed);
    let replays = Replays::new(Duration::from_secs(300), MAX_IDS);
    let mut peak = 0;
    for s in &stamps {
        replays.first("fingerprint", s, NOW, || Ok::<(), ()>(()));
        peak = peak.max(HELD.load(Ordering::Relaxed) - before);
    }
    println!(
        "replay memory: {} ids held after {DELIVERIES} accepted, {} forgotten early; \
         heap held at most {peak} bytes ({:.2} MiB)",
        replays.len(),
        replays.forgotten_early(),
        peak as f64 / (1024.0 * 1024.0)
    );

    // Full: each new id forgets one; each repeat is found.
    let fresh: Vec<Stamp> = (DELIVERIES..2 * DELIVERIES).map(stamp).collect();
    let started = Instant::now();
    for s in &fresh {
        replays.first("fingerprint", s, NOW, || Ok::<(), ()>(()));
    }
    let accept = started.elapsed() / fresh.len() as u32;
    let started = Instant::now();
    let mut repeats = 0;
    for s in &fresh[fresh.len() - 10_000..] {
        repeats += usize::from(
            replays
                .first("fingerprint", s, NOW, || Ok::<(), ()>(()))
                .is_none(),
        );
    }
    let repeat = started.elapsed() / 10_000;
    assert_eq!(repeats, 10_000, "the last ids accepted are remembered");
    println!("with the memory full: {accept:?} to accept a new id, {repeat:?} to find a repeat");
}
