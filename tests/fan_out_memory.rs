//! A payload that lists many refs against one repository cannot make the
//! receiver build far more than it was sent: each git change holds its own
//! copy of the repository URL, so the URL's length is checked, and the
//! number of changes bounded, before they are built.
//!
//! Counted with an allocator that tracks the most bytes held at once, in a
//! test binary of its own (one test, so nothing else allocates meanwhile).
//! Bitbucket Cloud is the source under test: its deliveries may come
//! unsigned, so anyone who knows the hook URL can send them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use flux_recv::source::{HookError, Secret, Settings, Source, MAX_CHANGES, MAX_FIELD};

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

/// A `repo:push` of `refs` to the repository `full_name`.
fn push(full_name: &str, refs: impl Iterator<Item = String>) -> Vec<u8> {
    let changes: Vec<String> = refs
        .map(|r| format!(r#"{{"new":{{"name":"{r}"}}}}"#))
        .collect();
    format!(
        r#"{{"repository":{{"full_name":"{full_name}"}},"push":{{"changes":[{}]}}}}"#,
        changes.join(",")
    )
    .into_bytes()
}

/// What handling `body` returns, and the most bytes held at once while
/// handling it, beyond what was held before.
fn handle(body: &[u8]) -> (Result<usize, HookError>, usize) {
    let mut headers = http::HeaderMap::new();
    headers.insert("X-Event-Key", "repo:push".parse().unwrap());
    let settings = Settings {
        key: Secret::new(b"0123456789abcdef".to_vec()),
        ..Settings::default()
    };
    let source = Source::named("BitbucketCloud");
    let before = HELD.load(Relaxed);
    PEAK.store(before, Relaxed);
    let outcome = source.handle(&headers, body, &settings).map(|o| match o {
        flux_recv::source::Outcome::Notify(changes) => changes.len(),
        flux_recv::source::Outcome::Ignore(_) => 0,
    });
    (outcome, PEAK.load(Relaxed) - before)
}

#[test]
fn many_refs_of_one_long_url_do_not_fan_out_in_memory() {
    // A 32 KiB repository name and 1,000 distinct short refs (distinct, so
    // that de-duplicating refs cannot hide the fan-out): 60 KiB sent. Built
    // as changes, that was one copy of the URL per ref, 32 MiB.
    let name = format!("o/{}", "a".repeat(32 * 1024));
    let body = push(&name, (0..1000).map(|i| format!("m{i}")));
    let (outcome, peak) = handle(&body);
    assert!(
        matches!(&outcome, Err(HookError::BadPayload(why)) if why.contains("repository URL")),
        "{outcome:?}"
    );
    assert!(
        peak < 8 * body.len(),
        "{} bytes sent, {peak} held",
        body.len()
    );

    // A URL just within the limit and 100,000 distinct refs (2.3 MB sent):
    // refused once past the cap, with the changes built so far a small
    // part of what was sent.
    let name = format!(
        "o/{}",
        "a".repeat(MAX_FIELD - "git@bitbucket.org:o/.git".len())
    );
    let body = push(&name, (0..100_000).map(|i| format!("b{i}")));
    let (outcome, peak) = handle(&body);
    assert_eq!(outcome, Err(HookError::TooManyChanges(MAX_CHANGES)));
    assert!(
        peak < 8 * body.len(),
        "{} bytes sent, {peak} held",
        body.len()
    );

    // The same URL and as many refs as the cap: every change built.
    let body = push(&name, (0..MAX_CHANGES).map(|i| format!("b{i}")));
    let (outcome, peak) = handle(&body);
    assert_eq!(outcome, Ok(MAX_CHANGES));
    // Each change holds the 1 KiB URL: held is about MAX_CHANGES KiB,
    // bounded by the cap, whatever the payload.
    assert!(peak < 4 * MAX_CHANGES * MAX_FIELD, "{peak} held");
}
