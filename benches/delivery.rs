//! Delivery throughput by relay worker count: how fast the queue hands
//! distinct notifications to a stand-in fluxd on loopback, for 1 to 64
//! workers, with fluxd answering at once and after 1 ms. What
//! `--max-relays`' default is chosen from.
//!
//! Each run queues N distinct image notifications, then times
//! [`Queue::drain`] until fluxd has accepted them all. The stand-in is
//! warp on its own two-thread runtime in this process, so on a small
//! machine it competes with the workers for CPU, as a fluxd in the same pod
//! does. CPU is the process's (user + system), stand-in included. Each
//! figure is the best of a few runs (highest rate, lowest CPU). tokio's
//! timer has millisecond resolution, so "after 1ms" is in fact 1–2 ms.
//!
//! Run with `cargo bench --bench delivery` (`DELIVERY_N=…` to change N,
//! `DELIVERY_WORKERS=1,2,4` to choose the counts, `DELIVERY_REPEAT=…` the
//! runs per figure).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flux_recv::delivery::{Item, Queue, QueueSettings};
use flux_recv::notification::{Change, ImageName};
use flux_recv::targets::fluxd::{self, Fluxd};
use flux_recv::targets::Target;
use warp::Filter;

/// A stand-in fluxd answering 202 after `delay`; counts what it accepted.
fn fluxd(delay: Duration) -> (SocketAddr, Arc<AtomicU64>, tokio::runtime::Runtime) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let accepted = Arc::new(AtomicU64::new(0));
    let a = accepted.clone();
    let route = warp::path!("api" / "flux" / "v11" / "notify")
        .and(warp::post())
        .and(warp::body::bytes())
        .then(move |_body: bytes::Bytes| {
            let a = a.clone();
            async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                a.fetch_add(1, Ordering::Relaxed);
                warp::reply::with_status("", warp::http::StatusCode::ACCEPTED)
            }
        });
    let addr = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(warp::serve(route).incoming(listener).run());
        addr
    });
    (addr, accepted, rt)
}

/// User + system CPU time of this process so far.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and
    // stime are the 12th and 13th.
    let rest = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    let ticks = f.iter().sum::<u64>();
    // Linux's USER_HZ is 100 on every architecture it runs on.
    Duration::from_millis(ticks * 10)
}

/// Deliver `n` distinct notifications with `workers` workers; returns
/// notifications a second and CPU µs per notification.
fn run(
    workers: usize,
    n: usize,
    target: &Target,
    accepted: &AtomicU64,
    rt: &tokio::runtime::Runtime,
) -> (f64, f64) {
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let queue = Queue::start(
        QueueSettings {
            max_relays: workers,
            // One endpoint may hold half of the queue.
            max_pending: 2 * n,
            // Bytes are not what this measures.
            max_pending_bytes: usize::MAX / 2,
            ..QueueSettings::default()
        },
        log,
    )
    .expect("start");
    let before = accepted.load(Ordering::Relaxed);
    let items: Vec<Item> = (0..n)
        .map(|i| Item {
            target: target.clone(),
            outgoing: fluxd::notification(&Change::image(ImageName {
                domain: "registry.example.com".into(),
                image: format!("team/app-{i}"),
            })),
            delivery: "".into(),
            endpoint: "bench".into(),
        })
        .collect();
    let (t0, c0) = (Instant::now(), cpu());
    // One submit per notification, as hooks arrive.
    let tickets: Vec<_> = items
        .into_iter()
        .map(|item| queue.submit(vec![item]).expect("room"))
        .collect();
    let left = rt.block_on(queue.drain(tokio::time::Instant::now() + Duration::from_secs(120)));
    let (elapsed, cpu_used) = (t0.elapsed(), cpu() - c0);
    assert!(left.is_empty(), "{} left", left.len());
    assert_eq!(accepted.load(Ordering::Relaxed) - before, n as u64);
    drop(tickets);
    (
        n as f64 / elapsed.as_secs_f64(),
        cpu_used.as_secs_f64() * 1e6 / n as f64,
    )
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not and
    // only wants to know it builds.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: usize = std::env::var("DELIVERY_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let counts: Vec<usize> = std::env::var("DELIVERY_WORKERS")
        .unwrap_or_else(|_| "1,2,4,8,16,64".into())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    let repeat: usize = std::env::var("DELIVERY_REPEAT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!(
        "delivery: {n} distinct notifications, best of {repeat} runs, {} CPU(s)",
        std::thread::available_parallelism().map_or(0, |p| p.get())
    );
    for delay in [Duration::ZERO, Duration::from_millis(1)] {
        let (addr, accepted, rt) = fluxd(delay);
        let target = Target::from(Fluxd::new(&format!("http://{addr}/api/flux")));
        // Smaller runs when each answer takes a millisecond.
        let n = if delay.is_zero() { n } else { n / 4 };
        // Warm up: connections, allocator, page faults.
        run(2, 1000.min(n), &target, &accepted, &rt);
        println!("fluxd answering after {delay:?}:");
        println!("  workers  notifications/s  CPU µs/notification");
        for &w in &counts {
            // The best of a few runs: on a shared machine other load only
            // ever makes a run slower.
            let (rate, cpu) = (0..repeat)
                .map(|_| run(w, n, &target, &accepted, &rt))
                .fold((0.0_f64, f64::MAX), |(r, c), (r2, c2)| {
                    (r.max(r2), c.min(c2))
                });
            println!("  {w:>7}  {rate:>15.0}  {cpu:>19.1}");
        }
    }
}
