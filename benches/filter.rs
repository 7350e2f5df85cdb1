//! Endpoint filters against names crafted to make a backtracking matcher
//! work: `v` and n dots, then `/1`, against `branches: ["v*.*.*"]` (a
//! release-tag filter). No star may take the `/`, so a backtracking matcher
//! tries every way of sharing the dots among the three stars before it
//! gives up: time cubic in n.
//!
//! - `filter/glob-0.3/<n>`: the matcher filters used before (`glob` 0.3,
//!   literal separators), one name of n bytes;
//! - `filter/linear/<n>`: `Filter::admits` now, one name of n bytes;
//! - `filter/linear-delivery`: `Filter::admits` on the 256 names of one
//!   crafted delivery (the `--max-changes` default), each 1 KiB, the most a
//!   source relays.
//!
//! Then, timed once outside criterion, the old matcher on one 1 KiB name,
//! and what one crafted delivery would cost it (256 such names).
//!
//! Run with `cargo bench --bench filter`.

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion};
use flux_recv::filter::{Filter, FilterConfig, MAX_FILTERED};
use flux_recv::notification::Change;

const PATTERN: &str = "v*.*.*";

fn crafted(len: usize, i: usize) -> String {
    let tail = format!("/{i}");
    format!("v{}{tail}", ".".repeat(len - 1 - tail.len()))
}

fn old_matches(pattern: &glob::Pattern, name: &str) -> bool {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    pattern.matches_with(name, options)
}

fn filter() -> Filter {
    let config = FilterConfig {
        branches: Some(vec![PATTERN.to_string()]),
        images: None,
    };
    Filter::build(&config, "BitbucketCloud", true, false).expect("a valid filter")
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("filter");
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(500));
    let old = glob::Pattern::new(PATTERN).expect("a valid glob");
    for n in [64, 128, 256, 512] {
        let name = crafted(n, 1);
        assert!(!old_matches(&old, &name));
        group.bench_with_input(BenchmarkId::new("glob-0.3", n), &name, |b, name| {
            b.iter(|| old_matches(&old, name))
        });
    }
    let filter = filter();
    for n in [64, 512, MAX_FILTERED] {
        let change = Change::git("git@bitbucket.org:a/b.git", &crafted(n, 1));
        assert!(!filter.admits(&change));
        group.bench_with_input(BenchmarkId::new("linear", n), &change, |b, change| {
            b.iter(|| filter.admits(change))
        });
    }
    let delivery: Vec<Change> = (0..256)
        .map(|i| Change::git("git@bitbucket.org:a/b.git", &crafted(MAX_FILTERED, i)))
        .collect();
    group.bench_function("linear-delivery", |b| {
        b.iter(|| delivery.iter().filter(|c| filter.admits(c)).count())
    });
    group.finish();
}

/// The old matcher on one name of the crafted delivery, timed once.
fn old_on_one_delivery() {
    let old = glob::Pattern::new(PATTERN).expect("a valid glob");
    let name = crafted(MAX_FILTERED, 1);
    let started = Instant::now();
    assert!(!old_matches(&old, &name));
    let one = started.elapsed();
    println!(
        "glob 0.3, one crafted {MAX_FILTERED}-byte name: {:.3} s; one delivery of 256: about {:.0} s \
         of one core",
        one.as_secs_f64(),
        one.as_secs_f64() * 256.0
    );
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
    old_on_one_delivery();
}
