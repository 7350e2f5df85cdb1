//! The flux-recv binary: flags in, server out. Everything else is in the
//! library, where the tests can reach it.

/// musl's allocator is compact but slow under contention; the static
/// binary the container image ships uses mimalloc instead (figures in
/// `docs/performance.md`).
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    flux_recv::commands::run(<flux_recv::cli::Cli as clap::Parser>::parse())
}

/// glibc gives threads that allocate at the same time their own heaps
/// ("arenas"), up to eight per core, and each keeps memory it has freed. As
/// tokio's blocking pool starts and retires the threads that reload the
/// config and fetch Google's keys, a sidecar's RSS creeps up arena by arena
/// (12 % over the 10-minute soak, 3.5 % with one arena; measured when the
/// relay ran there too). Two arenas are plenty for a webhook receiver. An
/// operator's own `MALLOC_ARENA_MAX` wins. The container image's static
/// build uses mimalloc, which needs no such limit.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: runs first in main, before any other thread exists, and
        // only sets an allocator tunable; mallopt has no other effect.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
