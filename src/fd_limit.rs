//! File descriptors: make room for `--max-connections`, or serve fewer.
//!
//! Every client connection is a descriptor, and so are the listener, the
//! config and key files while a reload reads them, the file watcher, the
//! sockets to fluxd and the fetch of Google's keys. The usual soft
//! `RLIMIT_NOFILE` is 1024, no more than the default `--max-connections`,
//! so without this the process runs out of descriptors before it reaches
//! its own cap: `accept` fails every 100 ms, a reload cannot open a key, and
//! a real hook waits in the accept queue. At start, [`raise`] lifts the soft
//! limit to the hard limit (which needs no privilege), and
//! [`effective_connections`] lowers the connection cap to what still fits.

/// The descriptors a process may have open, as `RLIMIT_NOFILE` says.
/// `u64::MAX` stands for unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The limit in force.
    pub soft: u64,
    /// The most the soft limit may be raised to without privilege.
    pub hard: u64,
}

/// Descriptors kept free for everything but client connections, besides
/// one per relay worker (see [`margin`]): stdin, stdout and stderr; the
/// listener; the async runtime's epoll and wake-up descriptors and the
/// signal pipe; the inotify instance and its waker; the one config or key
/// file a reload has open at a time; the fetch of Google's signing keys;
/// and room for what a later version adds, or a library opens unasked
/// (DNS lookups for the relay, `/etc` files). 64 is several times what is
/// counted here, and a few percent of a raised limit.
pub const FIXED_MARGIN: u64 = 64;

/// Descriptors kept free for everything but client connections when
/// `relay_workers` calls to fluxd may be open at once (`--max-relays`; the
/// relay's idle pool is no larger).
pub fn margin(relay_workers: usize) -> u64 {
    FIXED_MARGIN + relay_workers as u64
}

/// The limits in force now.
pub fn current() -> Limits {
    from_rustix(rustix::process::getrlimit(
        rustix::process::Resource::Nofile,
    ))
}

/// Raise the soft limit to the hard limit, and return the limits in force
/// afterwards. It should not fail: raising the soft limit up to the hard
/// one needs no privilege. If it does, [`current`] still says what to size
/// the connection cap to.
pub fn raise() -> std::io::Result<Limits> {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let before = getrlimit(Resource::Nofile);
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        setrlimit(Resource::Nofile, raised)?;
    }
    Ok(current())
}

/// The connection cap that fits in `soft_limit` descriptors with `margin`
/// left for everything else: `requested` if it fits, otherwise what does
/// (at least 1, so the server still answers something).
pub fn effective_connections(requested: usize, soft_limit: u64, margin: u64) -> usize {
    let room = soft_limit.saturating_sub(margin).max(1);
    usize::try_from(room).map_or(requested, |room| requested.min(room))
}

/// The line to log at start when the cap had to be lowered, `None` when
/// `--max-connections` fits as asked.
pub fn lowered_message(requested: usize, effective: usize, limits: Limits) -> Option<String> {
    (effective < requested).then(|| {
        format!(
            "--max-connections {requested} does not fit in the open-file limit \
             ({} soft, {} hard); serving at most {effective} connections. \
             Raise the limit (`ulimit -n`, the container runtime's nofile) to \
             serve more",
            show(limits.soft),
            show(limits.hard)
        )
    })
}

fn show(limit: u64) -> String {
    if limit == u64::MAX {
        "unlimited".to_string()
    } else {
        limit.to_string()
    }
}

fn from_rustix(r: rustix::process::Rlimit) -> Limits {
    Limits {
        soft: r.current.unwrap_or(u64::MAX),
        hard: r.maximum.unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_kept_when_it_fits() {
        assert_eq!(effective_connections(1024, 1_048_576, margin(64)), 1024);
        assert_eq!(effective_connections(1024, u64::MAX, margin(64)), 1024);
        // Exactly enough.
        assert_eq!(effective_connections(896, 1024, margin(64)), 896);
    }

    #[test]
    fn the_cap_is_lowered_to_what_fits() {
        // The usual soft limit with the defaults: 64 + 64 relay workers.
        assert_eq!(effective_connections(1024, 1024, margin(64)), 896);
        assert_eq!(effective_connections(1024, 1024, margin(8)), 952);
        // A limit smaller than the margin still serves one connection.
        assert_eq!(effective_connections(1024, 100, margin(64)), 1);
    }

    #[test]
    fn the_message_says_what_was_asked_what_is_served_and_what_to_do() {
        let limits = Limits {
            soft: 1024,
            hard: 1024,
        };
        assert_eq!(lowered_message(1024, 1024, limits), None);
        let line = lowered_message(1024, 896, limits).unwrap();
        assert!(
            line.starts_with("--max-connections 1024 does not fit"),
            "{line}"
        );
        assert!(line.contains("(1024 soft, 1024 hard)"), "{line}");
        assert!(line.contains("at most 896 connections"), "{line}");
        let unlimited = Limits {
            soft: 10,
            hard: u64::MAX,
        };
        assert!(lowered_message(5, 1, unlimited)
            .unwrap()
            .contains("(10 soft, unlimited hard)"));
    }
}
