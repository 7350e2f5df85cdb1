//! The endpoint table on the request and reload paths, with 10 and 100
//! endpoints:
//!
//! - `build`: `Table::load` from disk (config and key files), what a reload
//!   does before it swaps;
//! - `swap`: `ArcSwap::store` of a prebuilt table, old table dropped
//!   included (nothing else holds it);
//! - `load+get`: what every request does, `load_full` then a lookup by
//!   fingerprint.
//!
//! Run with `cargo bench --bench table`.

use std::sync::Arc;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use flux_recv::table::Table;

/// A config with `n` GitHub endpoints, each with its own key file.
fn config(dir: &std::path::Path, n: usize) -> std::path::PathBuf {
    let mut yaml = String::from("fluxRecvVersion: 1\nendpoints:\n");
    for i in 0..n {
        let key = format!("key-{i:03}");
        std::fs::write(
            dir.join(&key),
            format!("bench-secret-{i:03}-0123456789abcdef"),
        )
        .expect("write key");
        yaml += &format!("- source: GitHub\n  keyPath: {key}\n");
    }
    let path = dir.join("fluxrecv.yaml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

fn table(c: &mut Criterion) {
    let mut group = c.benchmark_group("table");
    for n in [10, 100] {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = config(dir.path(), n);
        let table = Table::load(&path, None)
            .table
            .expect("the bench config has no errors");
        assert_eq!(table.endpoints().len(), n);
        let last = table.endpoints()[n - 1].fingerprint.clone();

        group.bench_with_input(BenchmarkId::new("build", n), &path, |b, path| {
            b.iter(|| Table::load(path, None).table.expect("loads"))
        });

        let swap = ArcSwap::from_pointee(table.clone());
        group.bench_with_input(BenchmarkId::new("swap", n), &table, |b, table| {
            b.iter_batched(
                || Arc::new(table.clone()),
                |new| swap.store(new),
                BatchSize::SmallInput,
            )
        });

        group.bench_with_input(BenchmarkId::new("load+get", n), &last, |b, fingerprint| {
            b.iter(|| {
                let current = swap.load_full();
                current.get(std::hint::black_box(fingerprint)).is_some()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, table);
criterion_main!(benches);
