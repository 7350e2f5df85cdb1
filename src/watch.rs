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
//! Only events about what the table reads call for a re-read: the files it
//! reads (by the names it reads them by), a directory on the way to one
//! that does not exist yet, a watched directory itself, and the kubelet's
//! `..data` swap. Anything else written beside them (a debug log, an
//! editor's swap file) is let go, or a busy file would reload all the time.
//!
//! Events carry no meaning here beyond "look again": the reload reads
//! everything from disk, so a missed or spurious event costs at most one
//! re-read, and the periodic resync (see [`crate::reload`]) covers events
//! the kernel dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};
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
    /// For each watched directory, the names in it whose changes matter:
    /// the files read there, or the next directory down towards one that
    /// does not exist yet. `None`: every name (none could be worked out).
    names: BTreeMap<PathBuf, Option<BTreeSet<OsString>>>,
    debounce: Debounce,
}

/// The link the kubelet renames into place on every Secret update: its
/// change is the update, whatever files it brings.
const KUBELET_DATA: &str = "..data";

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
            names: BTreeMap::new(),
            debounce,
        })
    }

    /// The directories watched right now (canonical paths).
    pub fn watched(&self) -> BTreeSet<PathBuf> {
        self.watched.keys().cloned().collect()
    }

    /// Watch the directories `files` are in, and only changes to those
    /// files there: watch the new directories, stop watching the ones no
    /// longer named. Paths are canonicalised first, so
    /// `/etc/fluxrecv/../fluxrecv-keys` and `/etc/fluxrecv-keys` are one
    /// watch. A directory that does not exist has its nearest existing
    /// ancestor watched instead (one watch however many missing directories
    /// share it), for the name that leads down to it, so there are never
    /// more watches than directories.
    pub fn follow(&mut self, files: &BTreeSet<PathBuf>) -> Followed {
        let mut followed = Followed::default();
        // Each canonical directory, with a path that named it.
        let mut wanted = BTreeMap::new();
        let mut names: BTreeMap<PathBuf, Option<BTreeSet<OsString>>> = BTreeMap::new();
        let mut read = |dir: PathBuf, name: Option<&OsStr>| {
            let entry = names.entry(dir).or_insert_with(|| Some(BTreeSet::new()));
            match (entry.as_mut(), name) {
                (Some(set), Some(name)) => {
                    set.insert(name.to_os_string());
                }
                _ => *entry = None,
            }
        };
        let mut failed_dirs = BTreeSet::new();
        for file in files {
            let dir = crate::table::directory_of(file);
            match std::fs::canonicalize(&dir) {
                Ok(canonical) => {
                    read(canonical.clone(), file.file_name());
                    wanted.insert(canonical, dir);
                }
                Err(e) => {
                    if e.kind() == std::io::ErrorKind::NotFound {
                        if let Some((ancestor, canonical)) = nearest_existing(&dir) {
                            read(canonical.clone(), first_below(&dir, &ancestor));
                            followed.stand_ins.insert(dir.clone(), canonical.clone());
                            wanted.entry(canonical).or_insert(ancestor);
                        }
                    }
                    if failed_dirs.insert(dir.clone()) {
                        let error = notify::Error::io(e).add_path(dir.clone());
                        followed.failed.push((dir, error));
                    }
                }
            }
        }
        self.names = names;
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
        if !matters(&event.kind) || !event.paths.iter().any(|p| self.concerns(p)) {
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

impl DirWatcher {
    /// Whether a change at `path` can change what the table reads (see
    /// the module's introduction). Paths in no directory watched now (an
    /// event queued before a `follow`) count, to be safe.
    fn concerns(&self, path: &Path) -> bool {
        if self.watched.contains_key(path) {
            return true;
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return true;
        };
        if name == KUBELET_DATA {
            return true;
        }
        match self.names.get(dir) {
            Some(Some(names)) => names.contains(name),
            Some(None) | None => true,
        }
    }
}

/// The name in `ancestor` on the way down to `dir`: `keys` for
/// `/etc/keys/github` below `/etc`.
fn first_below<'a>(dir: &'a Path, ancestor: &Path) -> Option<&'a OsStr> {
    let below = match dir.strip_prefix(ancestor) {
        Ok(below) => below,
        // `.` stands for the working directory a relative `dir` starts in.
        Err(_) if ancestor == Path::new(".") => dir,
        Err(_) => return None,
    };
    match below.components().next() {
        Some(Component::Normal(name)) => Some(name),
        _ => None,
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
        let in_dirs =
            |dirs: &[PathBuf]| -> BTreeSet<PathBuf> { dirs.iter().map(|d| d.join("f")).collect() };
        let followed = w.follow(&in_dirs(&[a.clone(), a.join("../b"), b.clone()]));
        assert_eq!(followed.added.len(), 2, "{followed:?}");
        assert!(followed.failed.is_empty());
        let b_canonical = std::fs::canonicalize(&b).unwrap();
        assert!(w.watched().contains(&b_canonical));

        // A missing directory: its parent is watched in its place.
        let followed = w.follow(&in_dirs(&[b.clone(), root.path().join("missing")]));
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
        w.follow(&(0..5).map(|i| dir.path().join(format!("f{i}"))).collect());
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

    /// A log written beside the config, line by line: none of its events
    /// is a change; a write to a file the table reads still is, and so is
    /// the kubelet's `..data` rename.
    #[tokio::test]
    async fn only_changes_to_what_the_table_reads_count() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let (config, key) = (dir.path().join("fluxrecv.yaml"), dir.path().join("a.key"));
        std::fs::write(&config, b"x").unwrap();
        let mut w = DirWatcher::new(Debounce {
            quiet: Duration::from_millis(500),
            max_wait: Duration::from_secs(10),
        })
        .unwrap();
        w.follow(&BTreeSet::from([config.clone(), key.clone()]));
        let mut log = std::fs::File::create(dir.path().join("debug.log")).unwrap();
        for i in 0..200 {
            writeln!(log, "line {i}").unwrap();
            log.sync_data().unwrap();
        }
        std::fs::write(dir.path().join(".fluxrecv.yaml.swp"), b"x").unwrap();
        std::fs::write(&key, b"k").unwrap();
        let burst = tokio::time::timeout(Duration::from_secs(20), w.changed())
            .await
            .expect("a change")
            .expect("watcher running");
        // The key's creation, write and close: not the log's 400 events.
        assert!(burst.events <= 5, "{burst:?}");

        std::os::unix::fs::symlink("..2", dir.path().join("..data_tmp")).unwrap();
        std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data")).unwrap();
        let burst = tokio::time::timeout(Duration::from_secs(20), w.changed()).await;
        assert!(burst.is_ok(), "no event for the kubelet's ..data rename");
    }

    #[test]
    fn the_name_below_a_stand_in_is_the_one_that_counts() {
        let keys = Path::new("/etc/fluxrecv/../keys/github");
        let name = first_below(keys, Path::new("/etc/fluxrecv/.."));
        assert_eq!(name, Some(OsStr::new("keys")));
        assert_eq!(
            first_below(Path::new("keys/github"), Path::new(".")),
            Some(OsStr::new("keys"))
        );
        assert_eq!(first_below(keys, Path::new("/elsewhere")), None);
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
        let key = BTreeSet::from([keys.join("b.key")]);
        w.follow(&key);
        std::fs::rename(root.path().join("a"), root.path().join("old")).unwrap();
        std::fs::create_dir_all(&keys).unwrap();
        let followed = w.follow(&key);
        assert!(followed.failed.is_empty(), "{followed:?}");
        assert_eq!(followed.added, vec![std::fs::canonicalize(&keys).unwrap()]);
        std::fs::write(keys.join("b.key"), b"x").unwrap();
        let burst = tokio::time::timeout(Duration::from_secs(3), w.changed()).await;
        assert!(burst.is_ok(), "no event for a write in {}", keys.display());
        // Nothing changed since: the next follow keeps the watch as it is.
        let followed = w.follow(&key);
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
        let dirs = BTreeSet::from([keys.join("a.key"), keys.join("github/b.key")]);
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
