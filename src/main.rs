//! The flux-recv binary: flags in, server out. Everything else is in the
//! library, where the tests can reach it.

/// musl's allocator is compact but slow under contention; the static
/// binary the container image ships uses mimalloc instead (figures in
/// `docs/performance.md`).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tune_glibc_malloc();
    flux_recv::commands::run(<flux_recv::cli::Cli as clap::Parser>::parse())
}

/// Two glibc malloc settings, each unless the operator's environment sets
/// it (`MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_`). The container image's
/// static build uses mimalloc, which needs neither.
///
/// - Arenas: glibc gives threads that allocate at the same time their own
///   heaps, up to eight per core, and each keeps memory it has freed. As
///   tokio's blocking pool starts and retires the threads that reload the
///   config and fetch Google's keys, a sidecar's RSS creeps up arena by
///   arena (12 % over the 10-minute soak, 3.5 % with one arena; measured
///   when the relay ran there too). Two are plenty for a webhook receiver.
/// - Large blocks: glibc maps blocks of 128 KiB and more on their own and
///   unmaps them when freed, but each time one is freed it raises that
///   threshold to the block's size, up to 32 MiB. After a few large bodies
///   (up to `--max-body`, 3 MiB), later ones come from the heap, where
///   freed space stays resident and fragments: 1,024 clients sending
///   large bodies at once (`scripts/attack --kinds big-body`) peaked at 34
///   to 56 MiB from run to run. A fixed threshold of 256 KiB keeps every
///   large body in its own mapping, given back when it is freed: 28.0 to
///   30.0 MiB in three runs. A webhook's own bodies are a few KiB, so no
///   hook pays for a mapping.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_glibc_malloc() {
    // SAFETY: runs first in main, before any other thread exists, and only
    // sets allocator tunables; mallopt has no other effect.
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_glibc_malloc() {}
