//! Hot reload: take up a changed config or key without a restart.
//!
//! Three things ask for a reload, and all three go down one path,
//! [`reload`]:
//!
//! - file events in the directories the table was read from, settled into
//!   one burst (see [`crate::watch`]);
//! - the periodic re-read (`--resync-interval`), a backstop for events the
//!   kernel dropped or a filesystem that sends none;
//! - SIGHUP (and [`Reloader::request`], which is what the SIGHUP handler
//!   calls).
//!
//! The service makes the task when it starts ([`Reloader::new`], after the
//! SIGHUP handler is installed) and starts it once it serves.
//!
//! A reload builds a whole new table from disk, validates it, and swaps it in
//! only if it differs from the one being served. A request loads the table
//! once and keeps that snapshot to the end, so none ever sees half of an
//! update. A build that fails changes nothing: the last good table keeps
//! serving and the watch goes on. The reload task logs the failure (every
//! problem, with file and field) when it is new or has changed, and again
//! once per resync interval while it lasts; an unchanged failure found again
//! (on any file event in a watched directory) is logged at debug only.
//!
//! A build that fails only because files the new config names are not
//! there yet (the config Secret updated before the keys Secret, as the
//! kubelet may well do) is not a failure at first: the task waits for them
//! up to the reload grace, says so at info, and counts the reload as
//! `waiting`. Their arrival is an event in a watched directory; if the
//! grace runs out first, the failure is reported as any other.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use slog::{debug, error, info, o, warn, Logger};
use tokio::signal::unix::Signal;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::config::{Problem, Severity};
use crate::logging::log_problem;
use crate::metrics::{self, Metrics};
use crate::table::{Table, TableHandle};
use crate::watch::{Debounce, DirWatcher};

/// What asked for a reload; logged with each reload as `trigger`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The reload task started and armed the watch (catches changes made
    /// between the first load and the watch).
    Start,
    /// File events in a watched directory.
    Files,
    /// The periodic re-read.
    Resync,
    /// SIGHUP.
    Hangup,
    /// The reload grace for files not there yet ran out.
    Grace,
}

impl Trigger {
    /// Label used in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Start => "start",
            Trigger::Files => "files",
            Trigger::Resync => "resync",
            Trigger::Hangup => "sighup",
            Trigger::Grace => "grace",
        }
    }
}

mod rebuild;
use rebuild::rebuild;

pub use rebuild::{reload, ReloadResult};

/// When the reload task reloads: each field is named after the flag that
/// sets it; the defaults are [`crate::options::Options`]'s.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Re-read everything this often even when no event arrives; the timer
    /// restarts after every reload.
    pub resync_interval: Duration,
    /// How long a file a new config names may be missing before the reload
    /// counts as failed.
    pub reload_grace: Duration,
    /// How file events are settled into one reload.
    pub debounce: Debounce,
}

/// Files read beside the table and reloaded with it (the TLS pair,
/// [`crate::tls`]): watched with the table's, re-read on every trigger.
pub trait Companion: Send + Sync + 'static {
    /// The files it reads.
    fn files(&self) -> BTreeSet<PathBuf>;
    /// Read them again (blocking: the task calls it on the blocking pool);
    /// `asked`: log a failure even if it is the one logged last.
    fn reload(&self, trigger: Trigger, asked: bool);
}

/// The reload task: made when the service starts ([`Reloader::new`]),
/// running once serving begins ([`Reloader::start`]), stopped when the last
/// handle is dropped. Cheap to clone.
#[derive(Clone)]
pub struct Reloader(Arc<Handle>);

struct Handle {
    requests: mpsc::UnboundedSender<Trigger>,
    /// The task, until it starts.
    made: Mutex<Option<Box<Made>>>,
    /// The task, once started.
    running: OnceLock<tokio::task::JoinHandle<()>>,
}

/// A reload task not started yet, and what it starts with.
struct Made {
    task: ReloadTask,
    debounce: Debounce,
    hangups: Option<Signal>,
    incoming: mpsc::UnboundedReceiver<Trigger>,
}

impl Reloader {
    /// A reload task for the table `table` serves, counting reloads in
    /// `metrics`, and reloading on each of `hangups` (SIGHUPs, from
    /// `signals::hangups`) if given, with `companion` after the table.
    /// Nothing runs until [`Reloader::start`]; requests made before are
    /// kept until then.
    pub fn new(
        (table, companion): (TableHandle, Option<Arc<dyn Companion>>),
        metrics: Arc<Metrics>,
        timing: Timing,
        hangups: Option<Signal>,
        swapped: Swapped,
        log: Logger,
    ) -> Reloader {
        let (requests, incoming) = mpsc::unbounded_channel();
        let task = ReloadTask {
            table,
            companion,
            metrics,
            watcher: None,
            unwatchable: BTreeSet::new(),
            failure: None,
            waiting: BTreeMap::new(),
            grace: timing.reload_grace,
            resync_interval: timing.resync_interval,
            swapped,
            log,
        };
        let made = Made {
            task,
            debounce: timing.debounce,
            hangups,
            incoming,
        };
        Reloader(Arc::new(Handle {
            requests,
            made: Mutex::new(Some(Box::new(made))),
            running: OnceLock::new(),
        }))
    }

    /// Start watching and reloading (once; later calls do nothing). If the
    /// file watcher cannot start (e.g. the inotify limits are reached), this
    /// says so and goes on with the periodic re-read and SIGHUP. Call it on
    /// the async runtime.
    pub fn start(&self) {
        // No await under the lock: std's Mutex is right.
        let Some(made) = self.0.made.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let Made {
            mut task,
            debounce,
            hangups,
            incoming,
        } = *made;
        match DirWatcher::new(debounce) {
            Ok(watcher) => task.watcher = Some(watcher),
            Err(e) => {
                warn!(task.log, "cannot watch files; changes are taken up by the periodic re-read and SIGHUP only";
                      "error" => %e, "resync_interval_s" => task.resync_interval.as_secs_f64());
            }
        }
        if let Some(hangups) = hangups {
            forward_hangups(hangups, self.0.requests.clone());
        }
        let _ = self.0.running.set(tokio::spawn(task.run(incoming)));
    }

    /// Ask for a reload now, as SIGHUP does.
    pub fn request(&self, trigger: Trigger) {
        let _ = self.0.requests.send(trigger);
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(task) = self.running.get() {
            task.abort();
        }
    }
}

/// Turn each SIGHUP into a reload request: the same path as
/// [`Reloader::request`]. SIGHUPs that came before this (while the table
/// loaded) are one pending signal, so they become one reload.
fn forward_hangups(mut hangups: Signal, requests: mpsc::UnboundedSender<Trigger>) {
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            if requests.send(Trigger::Hangup).is_err() {
                break;
            }
        }
    });
}

/// The state of the reload loop.
struct ReloadTask {
    table: TableHandle,
    companion: Option<Arc<dyn Companion>>,
    metrics: Arc<Metrics>,
    /// `None` if the watcher could not start.
    watcher: Option<DirWatcher>,
    /// Directories the last `follow` could not watch, so each is warned
    /// about when it becomes unwatchable, not on every re-read. Rebuilt by
    /// every `follow`: it holds only directories the config names now.
    unwatchable: BTreeSet<PathBuf>,
    /// The failure logged last, while the files still build no table.
    failure: Option<Failure>,
    /// Files the new config names that are not there, each with when a
    /// reload first missed it.
    waiting: BTreeMap<PathBuf, Instant>,
    /// How long such a file is waited for.
    grace: Duration,
    /// How often the periodic re-read comes, and how often an unchanged
    /// failure is logged in full again.
    resync_interval: Duration,
    /// Told of each table swapped in (the queue refreshes its targets).
    swapped: Swapped,
    log: Logger,
}

/// What is told of each table a reload swaps in.
pub type Swapped = Box<dyn Fn(&Table) + Send + Sync>;

/// A failed reload as last logged in full.
struct Failure {
    problems: Vec<Problem>,
    logged: Instant,
}

impl ReloadTask {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Trigger>) {
        let resync_interval = self.resync_interval;
        let mut resync = tokio::time::interval_at(
            tokio::time::Instant::now() + resync_interval,
            resync_interval,
        );
        resync.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Watch what the served table was read from before reading it again:
        // a change made since the first load is then either read by this
        // reload or reported by the watch, and the reload finds no directory
        // newly watched to look at once more (one read, not two).
        self.follow(&ReloadResult::Unchanged);
        self.reload_and_follow(Trigger::Start).await;
        if let Some(w) = &self.watcher {
            info!(self.log, "watching for changes";
                  "directories" => w.watched().len(),
                  "resync_interval_s" => resync_interval.as_secs_f64());
        }
        loop {
            let grace_ends = self.grace_ends();
            let trigger = tokio::select! {
                Some(burst) = changed(&mut self.watcher) => {
                    if burst.overflowed {
                        warn!(self.log, "file events were lost (the kernel's queue overflowed); re-reading everything");
                    }
                    for e in &burst.errors {
                        warn!(self.log, "file watcher error"; "error" => e);
                    }
                    debug!(self.log, "files changed"; "events" => burst.events);
                    Trigger::Files
                }
                _ = resync.tick() => Trigger::Resync,
                Some(trigger) = requests.recv() => trigger,
                _ = until(grace_ends) => Trigger::Grace,
            };
            self.reload_and_follow(trigger).await;
            resync.reset();
        }
    }

    /// Reload, then make the watch set follow what the config now names.
    async fn reload_and_follow(&mut self, trigger: Trigger) {
        // An operator who sends SIGHUP is told how it went, even when it
        // is the failure logged already.
        let asked = trigger == Trigger::Hangup;
        let result = self.reload(trigger, asked).await;
        if self.follow(&result) {
            // A directory watched only from now on may have changed before
            // the watch began; look once more rather than wait for the resync.
            // A failure found again is the same one: logged at debug only.
            let result = self.reload(trigger, false).await;
            self.follow(&result);
        }
    }

    /// Reload on the blocking pool and log how it went; `asked`: log a
    /// failure in full even if it is the one logged last.
    async fn reload(&mut self, trigger: Trigger, asked: bool) -> ReloadResult {
        let started = Instant::now();
        let table = self.table.clone();
        let log = self.log.new(o!("trigger" => trigger.as_str()));
        let reload_log = log.clone();
        // Reading files blocks: run it on the blocking pool.
        let result = match tokio::task::spawn_blocking(move || rebuild(&table, &reload_log)).await {
            Ok(result @ ReloadResult::Swapped { .. }) => {
                (self.swapped)(&self.table.load());
                result
            }
            Ok(result) => result,
            Err(e) => {
                error!(log, "reload crashed; still serving the previous table"; "error" => %e);
                ReloadResult::Failed {
                    problems: Vec::new(),
                    files: BTreeSet::new(),
                }
            }
        };
        if let Some(companion) = self.companion.clone() {
            let _ = tokio::task::spawn_blocking(move || companion.reload(trigger, asked)).await;
        }
        match self.wait_for(&result) {
            Some(new) => {
                self.metrics
                    .reloaded(metrics::Reload::Waiting, &self.table.load());
                for p in new {
                    info!(log, "waiting for a file the config names; it is not there yet";
                          "file" => %p.absent.as_deref().unwrap_or(&p.file).display(),
                          "field" => &p.field,
                          "grace_s" => self.grace.as_secs_f64());
                }
            }
            None => {
                self.metrics.reloaded(result.metric(), &self.table.load());
                self.report(&result, &log, started, asked);
            }
        }
        result
    }

    /// Whether `result` is a wait for files the new config names that are
    /// not there yet, within the grace: then the problems about files
    /// newly waited for (to be logged at info). Keeps track of since when
    /// each file is missing; anything else ends the wait.
    fn wait_for(&mut self, result: &ReloadResult) -> Option<Vec<Problem>> {
        let ReloadResult::Failed { problems, .. } = result else {
            self.waiting.clear();
            return None;
        };
        // Files the served table reads are not "not there yet": gone.
        let served = self.table.load().files();
        let errors: Vec<&Problem> = problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .collect();
        let new_and_absent = |p: &&Problem| p.absent.as_ref().is_some_and(|f| !served.contains(f));
        if errors.is_empty() || !errors.iter().all(new_and_absent) {
            self.waiting.clear();
            return None;
        }
        let absent: BTreeSet<&PathBuf> = errors.iter().filter_map(|p| p.absent.as_ref()).collect();
        self.waiting.retain(|f, _| absent.contains(f));
        let now = Instant::now();
        let mut new = Vec::new();
        for p in errors {
            let file = p.absent.clone().unwrap_or_default();
            if let std::collections::btree_map::Entry::Vacant(e) = self.waiting.entry(file) {
                e.insert(now);
                new.push(p.clone());
            }
        }
        let within = self
            .waiting
            .values()
            .all(|since| since.elapsed() < self.grace);
        within.then_some(new)
    }

    /// When the grace for the files waited for runs out, while it has not.
    fn grace_ends(&self) -> Option<tokio::time::Instant> {
        let first = self.waiting.values().min()?;
        let ends = *first + self.grace;
        (ends > Instant::now()).then(|| tokio::time::Instant::from_std(ends))
    }

    /// Log how a reload ended, as far as [`reload`] has not: a failure in
    /// full (every problem, then one warning) when it is new, differs from
    /// the last one, was last logged a resync interval ago or `asked` for,
    /// else at debug only; and one line when the files build a table again
    /// after a failure.
    fn report(&mut self, result: &ReloadResult, log: &Logger, started: Instant, asked: bool) {
        let endpoints = self.table.load().endpoints().len();
        let ReloadResult::Failed { problems, .. } = result else {
            if self.failure.take().is_some() {
                info!(log, "the config loads again; the reload failures are over";
                      "endpoints" => endpoints);
            }
            return;
        };
        let errors = problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .count();
        let repeated = !asked
            && self.failure.as_ref().is_some_and(|last| {
                last.problems == *problems && last.logged.elapsed() < self.resync_interval
            });
        if repeated {
            debug!(log, "reload failed as before; still serving the previous table";
                   "errors" => errors,
                   "duration_ms" => crate::logging::elapsed_ms(started));
            return;
        }
        for problem in problems {
            log_problem(log, problem);
        }
        warn!(log, "reload failed; still serving the previous table";
              "config" => %self.table.load().config_path.display(),
              "errors" => errors,
              "endpoints" => endpoints,
              "duration_ms" => crate::logging::elapsed_ms(started));
        self.failure = Some(Failure {
            problems: problems.clone(),
            logged: Instant::now(),
        });
    }

    /// Watch the files of the table being served (and, after a failed
    /// build, those the broken config names). True if a directory was
    /// added.
    fn follow(&mut self, result: &ReloadResult) -> bool {
        let Some(watcher) = &mut self.watcher else {
            return false;
        };
        let mut files = self.table.load().files();
        files.extend(self.companion.iter().flat_map(|c| c.files()));
        if let ReloadResult::Failed { files: named, .. } = result {
            files.extend(named.iter().cloned());
        }
        let followed = watcher.follow(&files);
        for dir in &followed.added {
            debug!(self.log, "watching directory"; "directory" => %dir.display());
        }
        for dir in &followed.removed {
            debug!(self.log, "no longer watching directory"; "directory" => %dir.display());
        }
        let mut unwatchable = BTreeSet::new();
        for (dir, e) in &followed.failed {
            if !self.unwatchable.contains(dir) {
                match followed.stand_ins.get(dir) {
                    Some(ancestor) => {
                        warn!(self.log, "cannot watch directory; watching the nearest existing directory above it for it to appear";
                              "directory" => %dir.display(), "watching" => %ancestor.display(),
                              "error" => %e)
                    }
                    None => {
                        warn!(self.log, "cannot watch directory; changes in it are taken up by the periodic re-read";
                              "directory" => %dir.display(), "error" => %e)
                    }
                }
            }
            unwatchable.insert(dir.clone());
        }
        // Only what this config names: a directory no longer named, or
        // watched now, is warned about again if it fails again.
        self.unwatchable = unwatchable;
        !followed.added.is_empty()
    }
}

/// Sleep until `deadline`, or for ever without one.
async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The next settled burst of file events, or never if there is no watcher.
async fn changed(watcher: &mut Option<DirWatcher>) -> Option<crate::watch::Burst> {
    match watcher {
        Some(w) => w.changed().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::Path;

    fn table(dir: &Path, config: &str, keys: &[(&str, &[u8])]) -> Table {
        let path = dir.join("fluxrecv.yaml");
        fs::write(&path, config).unwrap();
        for (name, key) in keys {
            fs::write(dir.join(name), key).unwrap();
        }
        Table::load(&path, None).table.expect("table")
    }

    #[test]
    fn diff_names_added_removed_and_changed_endpoints() {
        let dir = tempfile::tempdir().unwrap();
        let keys: &[(&str, &[u8])] = &[
            ("a.key", b"0123456789abcdef-a"),
            ("b.key", b"0123456789abcdef-b"),
            ("c.key", b"0123456789abcdef-c"),
        ];
        let before = table(
            dir.path(),
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a.key\n- source: GitLab\n  keyPath: b.key\n",
            keys,
        );
        // b's source changes (same URL, so removed and added), c is new, a
        // only moves in the list.
        let after = table(
            dir.path(),
            "fluxRecvVersion: 1\nendpoints:\n- source: Quay\n  keyPath: c.key\n- source: GitHub\n  keyPath: a.key\n- source: DockerHub\n  keyPath: b.key\n",
            keys,
        );
        let names = |v: Vec<&crate::endpoint::Endpoint>| -> Vec<String> {
            v.iter()
                .map(|e| {
                    format!(
                        "{} {}",
                        e.source,
                        e.key_path.file_name().unwrap().to_string_lossy()
                    )
                })
                .collect()
        };
        let changes = after.changes_from(&before);
        assert_eq!(names(changes.removed), ["GitLab b.key"]);
        assert_eq!(names(changes.added), ["Quay c.key", "DockerHub b.key"]);
        assert!(changes.changed.is_empty());
    }

    #[test]
    fn a_reload_keeps_the_api_flag_and_logs_the_api_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fluxrecv.yaml");
        fs::write(dir.path().join("a.key"), b"0123456789abcdef-a").unwrap();
        fs::write(dir.path().join("b.key"), b"0123456789abcdef-b").unwrap();
        let one = "fluxRecvVersion: 1\napi: http://config/api/flux\nendpoints:\n- source: GitHub\n  keyPath: a.key\n";
        fs::write(&path, one).unwrap();
        let flag = Some("http://flag/api/flux");
        let first = Table::load(&path, flag).table.expect("table");
        let metrics = Metrics::new(&first, Vec::new());
        let served: TableHandle = Arc::new(arc_swap::ArcSwap::from_pointee(first));
        fs::write(&path, format!("{one}- source: GitLab\n  keyPath: b.key\n")).unwrap();
        let logs = crate::logging::Captured::default();
        let log = logs.logger(slog::Level::Info);
        let result = reload(&served, &metrics, &log);
        assert_eq!(
            result,
            ReloadResult::Swapped {
                added: 1,
                removed: 0
            }
        );
        assert_eq!(
            served.load().default_target().to_string(),
            "http://flag/api/flux"
        );
        drop(log);
        let text = logs.text();
        let reloaded = text.lines().find(|l| l.contains("reloaded")).unwrap();
        assert!(reloaded.contains("api: http://flag/api/flux"), "{text}");
    }

    /// A reload task over the table `fluxrecv.yaml` in `dir` builds (one
    /// GitHub endpoint), logging to `log`.
    fn task(dir: &Path, resync_interval: Duration, log: Logger) -> ReloadTask {
        let first = table(
            dir,
            "fluxRecvVersion: 1\nendpoints:\n- source: GitHub\n  keyPath: a.key\n",
            &[("a.key", b"0123456789abcdef-a")],
        );
        ReloadTask {
            metrics: Arc::new(Metrics::new(&first, Vec::new())),
            table: Arc::new(arc_swap::ArcSwap::from_pointee(first)),
            companion: None,
            watcher: Some(DirWatcher::new(Debounce::default()).unwrap()),
            unwatchable: BTreeSet::new(),
            failure: None,
            waiting: BTreeMap::new(),
            // Any grace: these tests wait for no file.
            grace: Duration::from_secs(120),
            resync_interval,
            swapped: Box::new(|_| {}),
            log,
        }
    }

    fn failed(problems: &[&str]) -> ReloadResult {
        let file = Path::new("/etc/fluxrecv/fluxrecv.yaml");
        ReloadResult::Failed {
            problems: problems
                .iter()
                .map(|m| Problem::error(file, "", *m))
                .collect(),
            files: BTreeSet::new(),
        }
    }

    #[test]
    fn a_failure_is_logged_in_full_when_new_changed_or_a_resync_old() {
        let dir = tempfile::tempdir().unwrap();
        let logs = crate::logging::Captured::default();
        let log = logs.logger(slog::Level::Debug);
        let mut task = task(dir.path(), Duration::from_secs(3600), log.clone());
        let started = Instant::now();
        for _ in 0..20 {
            task.report(&failed(&["one"]), &log, started, false);
        }
        task.report(&failed(&["one", "two"]), &log, started, false);
        task.report(&failed(&["one", "two"]), &log, started, false);
        task.report(&ReloadResult::Unchanged, &log, started, false);
        task.report(&ReloadResult::Unchanged, &log, started, false);
        // Failing again after a success is new again.
        task.report(&failed(&["one", "two"]), &log, started, false);
        // SIGHUP: the operator asked.
        task.report(&failed(&["one", "two"]), &log, started, true);
        // With no time between resyncs, each failure is a reminder.
        task.resync_interval = Duration::ZERO;
        task.report(&failed(&["one", "two"]), &log, started, false);
        drop((task, log));
        let text = logs.text();
        let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(count("WARN reload failed; still serving"), 5, "{text}");
        assert_eq!(count("ERRO one"), 5, "{text}");
        assert_eq!(count("ERRO two"), 4, "{text}");
        assert_eq!(count("DEBG reload failed as before"), 20, "{text}");
        assert_eq!(count("INFO the config loads again"), 1, "{text}");
    }

    #[tokio::test]
    async fn directories_no_longer_named_are_forgotten_and_warned_about_once() {
        // A config rewritten again and again, each time naming key
        // directories that do not exist: only the last one's are kept.
        let dir = tempfile::tempdir().unwrap();
        let logs = crate::logging::Captured::default();
        let log = logs.logger(slog::Level::Debug);
        let mut task = task(dir.path(), Duration::from_secs(3600), log);
        let gone = |round: usize| ReloadResult::Failed {
            problems: Vec::new(),
            files: (0..100)
                .map(|i| dir.path().join(format!("gone-{round}-{i}/k")))
                .collect(),
        };
        for round in 0..100 {
            task.follow(&gone(round));
        }
        assert_eq!(task.unwatchable.len(), 100);
        // The same directories again: no new warning. Watched in their
        // place: the one directory above them all (the config's too).
        task.follow(&gone(99));
        let watched = task.watcher.as_ref().unwrap().watched();
        assert_eq!(watched.len(), 1, "{watched:?}");
        task.follow(&ReloadResult::Unchanged);
        assert!(task.unwatchable.is_empty());
        drop(task);
        let text = logs.text();
        let warned = text.matches("WARN cannot watch directory").count();
        assert_eq!(
            warned,
            100 * 100,
            "one warning per directory, when first named"
        );
    }
}
