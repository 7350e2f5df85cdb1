//! Watching the directories the endpoint table was read from, and turning
//! bursts of file events into "something changed, re-read".
//!
//! We watch *directories*, never the files. A Kubernetes Secret volume never
//! edits a file: the kubelet writes a new `..<timestamp>/` directory, points
//! a `..data_tmp` symlink at it and renames that over `..data`, while the
//! file names users see (`fluxrecv.yaml -> ..data/fluxrecv.yaml`) stay put.
//! A watch on the file follows the link into the old timestamped directory
//! and dies when the kubelet deletes it. A watch on the directory sees the
//! rename of `..data`, an editor's rename-on-save, `mv` over the file and an
//! in-place write alike.
//!
//! A directory that does not exist (a key directory not created yet, or
//! removed) cannot be watched; its nearest existing ancestor is watched in
//! its place (for a Secret, usually its mount point), so that its creation
//! is an event too. The reload that event brings is followed by a `follow`
//! that watches the directory itself. A watched path that leads to another
//! directory than its watch was set on (one above it was moved away and the
//! path made again, which no event reports) is watched anew.
//!
//! Events carry no meaning here beyond "look again": the reload reads
//! everything from disk, so a missed or spurious event costs at most one
//! re-read, and the periodic resync (see [`crate::reload`]) covers events
//! the kernel dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How a burst of events becomes one reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    /// Reload once no event has arrived for this long. One kubelet update
    /// is half a dozen events within a millisecond or two; an editor's save
    /// is similar. Short, because it is most of the time from an update to
    /// the new table serving.
    pub quiet: Duration,
    /// Reload at the latest this long after the first event of a burst, so
    /// a directory that never falls quiet still gets re-read.
    pub max_wait: Duration,
}

impl Default for Debounce {
    fn default() -> Debounce {
        Debounce {
            quiet: Duration::from_millis(20),
            max_wait: Duration::from_millis(250),
        }
    }
}

/// What a settled burst of events amounted to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Burst {
    /// How many events that matter were seen.
    pub events: usize,
    /// The kernel dropped events (inotify queue overflow): nothing is known
    /// about what changed, only that something may have.
    pub overflowed: bool,
    /// Errors the watcher reported, as text, for the log.
    pub errors: Vec<String>,
}

/// What [`DirWatcher::follow`] did.
#[derive(Debug, Default)]
pub struct Followed {
    /// Directories newly watched.
    pub added: Vec<PathBuf>,
    /// Directories no longer watched.
    pub removed: Vec<PathBuf>,
    /// Directories that could not be watched (missing, no permission, out
    /// of inotify watches). The next `follow` tries again.
    pub failed: Vec<(PathBuf, notify::Error)>,
    /// Missing directories, each with the existing ancestor watched in its
    /// place (canonical), so that the directory's creation is seen.
    pub stand_ins: BTreeMap<PathBuf, PathBuf>,
}

/// Watches a set of directories (not recursively) and reports settled
/// bursts of changes in them.
pub struct DirWatcher {
    watcher: RecommendedWatcher,
    events: mpsc::UnboundedReceiver<notify::Result<Event>>,
    /// Canonical paths currently watched, each with the directory it was
    /// when its watch was set.
    watched: BTreeMap<PathBuf, Option<Identity>>,
    debounce: Debounce,
}

/// A directory's device and inode: what its watch is on, whatever path
/// leads there now.
type Identity = (u64, u64);

fn identity(dir: &Path) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

impl DirWatcher {
    /// A watcher with nothing watched yet. Fails when the platform's
    /// watcher cannot start (e.g. the inotify instance limit is reached).
    pub fn new(debounce: Debounce) -> notify::Result<DirWatcher> {
        let (tx, events) = mpsc::unbounded_channel();
        // notify calls this on its own thread; an unbounded send never
        // blocks it, and the reload task drains the channel promptly.
        let watcher = notify::recommended_watcher(move |event| {
            let _ = tx.send(event);
        })?;
        Ok(DirWatcher {
            watcher,
            events,
            watched: BTreeMap::new(),
            debounce,
        })
    }

    /// The directories watched right now (canonical paths).
    pub fn watched(&self) -> BTreeSet<PathBuf> {
        self.watched.keys().cloned().collect()
    }

    /// Make the watched set `dirs`: watch the new ones, stop watching the
    /// ones no longer named. Paths are canonicalised first, so
    /// `/etc/fluxrecv/../fluxrecv-keys` and `/etc/fluxrecv-keys` are one
    /// watch. A directory that does not exist has its nearest existing
    /// ancestor watched instead (one watch however many missing directories
    /// share it), so there are never more watches than directories in `dirs`.
    pub fn follow(&mut self, dirs: &BTreeSet<PathBuf>) -> Followed {
        let mut followed = Followed::default();
        // Each canonical directory, with a path that named it.
        let mut wanted = BTreeMap::new();
        for dir in dirs {
            match std::fs::canonicalize(dir) {
                Ok(canonical) => {
                    wanted.insert(canonical, dir.clone());
                }
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        if let Some((ancestor, canonical)) = nearest_existing(dir) {
                            followed.stand_ins.insert(dir.clone(), canonical.clone());
                            wanted.entry(canonical).or_insert(ancestor);
                        }
                    }
                    let error = notify::Error::io(e).add_path(dir.clone());
                    followed.failed.push((dir.clone(), error));
                }
            }
        }
        let gone: Vec<PathBuf> = (self.watched.keys())
            .filter(|dir| !wanted.contains_key(*dir))
            .cloned()
            .collect();
        for dir in gone {
            // The watch may already be dead (directory deleted); either way
            // it is not watched any more.
            let _ = self.watcher.unwatch(&dir);
            self.watched.remove(&dir);
            followed.removed.push(dir);
        }
        for (dir, named) in wanted {
            if let Some(was) = self.watched.get(&dir) {
                if *was == identity(&dir) {
                    continue;
                }
                // The same path, another directory: one above it was moved
                // away (no event reaches this watch for that) and the path
                // made again. The watch is still on the one moved away.
                let _ = self.watcher.unwatch(&dir);
                self.watched.remove(&dir);
            }
            match self.watch_resolved(dir, &named) {
                Ok(dir) => {
                    self.watched.insert(dir.clone(), identity(&dir));
                    followed.added.push(dir);
                }
                Err(failed) => followed.failed.push(failed),
            }
        }
        followed
    }

    /// Watch `dir`, where `named` led. A Secret update can delete it
    /// between the two (the kubelet removes the timestamped directory a
    /// symlinked subdirectory resolves into): then `named` leads somewhere
    /// new, and that is watched instead, or no event would ever say that
    /// the next update came. Returns the directory watched.
    fn watch_resolved(
        &mut self,
        mut dir: PathBuf,
        named: &Path,
    ) -> Result<PathBuf, (PathBuf, notify::Error)> {
        let mut tries = 3;
        loop {
            let e = match self.watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => return Ok(dir),
                Err(e) => e,
            };
            tries -= 1;
            match std::fs::canonicalize(named) {
                Ok(now) if now != dir && tries > 0 => dir = now,
                _ => return Err((dir, e)),
            }
        }
    }

    /// Wait for a change, then for the burst it starts to settle (see
    /// [`Debounce`]). Returns `None` only if the watcher has stopped.
    ///
    /// Cancel-safe until the first event that matters arrives, so it can sit
    /// in a `select!` next to timers and signals.
    pub async fn changed(&mut self) -> Option<Burst> {
        let mut burst = Burst::default();
        loop {
            let event = self.events.recv().await?;
            if self.take(event, &mut burst) {
                break;
            }
        }
        let deadline = Instant::now() + self.debounce.max_wait;
        loop {
            let quiet_until = (Instant::now() + self.debounce.quiet).min(deadline);
            match tokio::time::timeout_at(quiet_until, self.events.recv()).await {
                Ok(Some(event)) => {
                    self.take(event, &mut burst);
                }
                Ok(None) | Err(_) => return Some(burst),
            }
        }
    }

    /// Account for one event; true if it calls for a re-read.
    fn take(&mut self, event: notify::Result<Event>, burst: &mut Burst) -> bool {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                // Re-read: whatever went wrong, the files may have changed.
                burst.errors.push(e.to_string());
                burst.events += 1;
                return true;
            }
        };
        if event.need_rescan() {
            burst.overflowed = true;
            burst.events += 1;
            return true;
        }
        if !matters(&event.kind) {
            return false;
        }
        // A watched directory itself deleted, moved away or replaced: its
        // watch is dead or points elsewhere. Forget it, so the `follow`
        // after the reload watches whatever is at that path now.
        for path in &event.paths {
            if self.watched.remove(path).is_some() {
                let _ = self.watcher.unwatch(path);
            }
        }
        burst.events += 1;
        true
    }
}

/// The nearest ancestor of `dir` that exists, as named and canonical.
fn nearest_existing(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    dir.ancestors().skip(1).find_map(|ancestor| {
        // `keys/github` is relative to the working directory: `keys`, then
        // `.`.
        let ancestor = match ancestor.as_os_str().is_empty() {
            true => Path::new("."),
            false => ancestor,
        };
        let canonical = std::fs::canonicalize(ancestor).ok()?;
        canonical
            .is_dir()
            .then(|| (ancestor.to_path_buf(), canonical))
    })
}

/// Whether an event can mean the files changed. Opening and reading do not
/// (and the reload's own reads would otherwise trigger the next reload);
/// closing a file written in place does.
pub fn matters(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange, ModifyKind, RemoveKind, RenameMode};

    #[test]
    fn reads_do_not_matter_writes_and_renames_do() {
        use AccessKind::*;
        assert!(!matters(&EventKind::Access(Open(AccessMode::Any))));
        assert!(!matters(&EventKind::Access(Close(AccessMode::Read))));
        assert!(!matters(&EventKind::Access(Read)));
        assert!(matters(&EventKind::Access(Close(AccessMode::Write))));
        assert!(matters(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(matters(&EventKind::Modify(ModifyKind::Data(
            DataChange::Any
        ))));
        assert!(matters(&EventKind::Create(CreateKind::File)));
        assert!(matters(&EventKind::Remove(RemoveKind::Folder)));
    }

    #[tokio::test]
    async fn follow_watches_each_directory_once_and_drops_the_rest() {
        let root = tempfile::tempdir().unwrap();
        let (a, b) = (root.path().join("a"), root.path().join("b"));
        std::fs::create_dir(&a).unwrap();
        std::fs::create_dir(&b).unwrap();
        let mut w = DirWatcher::new(Debounce::default()).unwrap();

        // `a/../b` and `b` are one directory, so one watch.
        let followed = w.follow(&BTreeSet::from([a.clone(), a.join("../b"), b.clone()]));
        assert_eq!(followed.added.len(), 2, "{followed:?}");
        assert!(followed.failed.is_empty());
        let b_canonical = std::fs::canonicalize(&b).unwrap();
        assert!(w.watched().contains(&b_canonical));

        // A missing directory: its parent is watched in its place.
        let followed = w.follow(&BTreeSet::from([b.clone(), root.path().join("missing")]));
        let root_canonical = std::fs::canonicalize(root.path()).unwrap();
        assert_eq!(followed.added, vec![root_canonical.clone()]);
        assert_eq!(followed.removed, vec![std::fs::canonicalize(&a).unwrap()]);
        assert_eq!(followed.failed.len(), 1);
        assert_eq!(w.watched(), BTreeSet::from([b_canonical, root_canonical]));
    }

    #[tokio::test]
    async fn a_directory_gone_before_its_watch_is_set_is_resolved_again() {
        // `github -> ..data/github`, `..data -> ..2`: the update that
        // replaced `..1` came between resolving `github` and watching it.
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("..2/github")).unwrap();
        std::os::unix::fs::symlink("..2", root.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/github", root.path().join("github")).unwrap();
        let named = root.path().join("github");
        let stale = root.path().join("..1/github");
        let mut w = DirWatcher::new(Debounce::default()).unwrap();

        let watched = w.watch_resolved(stale.clone(), &named).unwrap();
        assert_eq!(watched, std::fs::canonicalize(&named).unwrap());
        // A path that leads nowhere new is a failure naming the directory.
        let (failed, _) = w
            .watch_resolved(stale.clone(), &root.path().join("..1/github"))
            .unwrap_err();
        assert_eq!(failed, stale);
    }

    #[tokio::test]
    async fn a_burst_of_writes_settles_into_one_change() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DirWatcher::new(Debounce {
            quiet: Duration::from_millis(200),
            max_wait: Duration::from_secs(5),
        })
        .unwrap();
        w.follow(&BTreeSet::from([dir.path().to_path_buf()]));
        for i in 0..5 {
            std::fs::write(dir.path().join(format!("f{i}")), b"x").unwrap();
        }
        let burst = tokio::time::timeout(Duration::from_secs(10), w.changed())
            .await
            .expect("a change")
            .expect("watcher running");
        // Five files created and written: one burst, many events.
        assert!(burst.events >= 5, "{burst:?}");
        assert!(!burst.overflowed);
    }

    #[tokio::test]
    async fn a_directory_made_again_after_one_above_it_moved_is_watched_anew() {
        // `a/keys` is watched; `a` is moved aside and a new `a/keys` made
        // (a tool swapping a whole tree). No event reaches the watch on the
        // old `keys`, and the path is the same: the next follow must tell
        // by the directory's identity that the watch is on the old one.
        let root = tempfile::tempdir().unwrap();
        let keys = root.path().join("a/keys");
        std::fs::create_dir_all(&keys).unwrap();
        let mut w = DirWatcher::new(Debounce {
            quiet: Duration::from_millis(50),
            max_wait: Duration::from_millis(200),
        })
        .unwrap();
        w.follow(&BTreeSet::from([keys.clone()]));
        std::fs::rename(root.path().join("a"), root.path().join("old")).unwrap();
        std::fs::create_dir_all(&keys).unwrap();
        let followed = w.follow(&BTreeSet::from([keys.clone()]));
        assert!(followed.failed.is_empty(), "{followed:?}");
        assert_eq!(followed.added, vec![std::fs::canonicalize(&keys).unwrap()]);
        std::fs::write(keys.join("b.key"), b"x").unwrap();
        let burst = tokio::time::timeout(Duration::from_secs(3), w.changed()).await;
        assert!(burst.is_ok(), "no event for a write in {}", keys.display());
        // Nothing changed since: the next follow keeps the watch as it is.
        let followed = w.follow(&BTreeSet::from([keys.clone()]));
        assert!(
            followed.added.is_empty() && followed.removed.is_empty(),
            "{followed:?}"
        );
    }

    #[tokio::test]
    async fn a_missing_directory_has_its_nearest_ancestor_watched_until_it_exists() {
        let root = tempfile::tempdir().unwrap();
        let keys = root.path().join("keys");
        let mut w = DirWatcher::new(Debounce {
            quiet: Duration::from_millis(50),
            max_wait: Duration::from_millis(200),
        })
        .unwrap();
        let root_canonical = std::fs::canonicalize(root.path()).unwrap();
        // Two missing directories, one watch: the ancestor they share.
        let dirs = BTreeSet::from([keys.clone(), keys.join("github")]);
        let followed = w.follow(&dirs);
        assert_eq!(followed.failed.len(), 2, "{followed:?}");
        assert_eq!(followed.stand_ins[&keys.join("github")], root_canonical);
        assert_eq!(w.watched(), BTreeSet::from([root_canonical]));

        std::fs::create_dir(&keys).unwrap();
        let burst = tokio::time::timeout(Duration::from_secs(3), w.changed()).await;
        assert!(burst.is_ok(), "no event for the directory's creation");
        let followed = w.follow(&dirs);
        assert_eq!(followed.failed.len(), 1, "{followed:?}");
        let keys_canonical = std::fs::canonicalize(&keys).unwrap();
        assert_eq!(w.watched(), BTreeSet::from([keys_canonical]));
    }
}
