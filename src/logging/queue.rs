//! The bounded queue between the loggers and stderr: each line is formatted
//! where it is logged and handed to one writer thread, and a line that does
//! not fit is dropped and counted instead of holding up the caller.
//!
//! [`ReportDrops`] says how many lines were lost once a line gets through
//! again. [`LineQueue::flush`] waits until every line queued so far is
//! written, for at most [`FLUSH_TIMEOUT`]: before the process exits, and
//! when the last logger is dropped.
//!
//! Lines tagged [`KEEP`] (the hook URLs at start and on reload, what
//! shutdown leaves undelivered) are not dropped: when the queue is full,
//! the logging thread waits for room, after the format's lock is released
//! (so other threads' lines are never held up by it), for as long as the
//! writer makes progress. Only a stderr that takes nothing for
//! [`KEEP_TIMEOUT`] has them dropped (and counted), and then no later kept
//! line waits until it takes some again.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use slog::{b, o, record, Drain, Level, Never, OwnedKVList, Record};

/// How long a flush waits for queued lines to be written: time enough for
/// thousands of lines, and short enough that a stderr nobody reads cannot
/// hold up the process's exit.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Log lines dropped by every queue in this process since it started: the
/// figure for a metric.
pub fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The tag of lines that wait for room in the queue rather than be dropped
/// (`info!(log, #KEEP, "endpoint"; …)`): for the few lines an operator must
/// see, never for a line a request can cause.
pub const KEEP: &str = "keep";

/// How long a kept line waits for stderr to take a line before it is
/// dropped after all.
pub const KEEP_TIMEOUT: Duration = Duration::from_secs(5);

thread_local! {
    /// Set while this thread formats a kept line.
    static KEEPING: Cell<bool> = const { Cell::new(false) };
    /// A kept line the queue had no room for, to be sent once the format's
    /// lock is released.
    static HELD: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
}

/// A nonblocking logger's queue of formatted lines (not to be confused
/// with the delivery queue, [`crate::delivery::Queue`]).
#[derive(Debug, Clone)]
pub struct LineQueue {
    dropped: Arc<AtomicU64>,
    /// Whether the last line offered was taken.
    last_taken: Arc<AtomicBool>,
    /// Lines taken into the queue, and lines written out of it.
    taken: Arc<AtomicU64>,
    written: Arc<(Mutex<u64>, Condvar)>,
    /// Lines written when a kept line last gave up waiting; `u64::MAX`
    /// when none did.
    stalled_at: Arc<AtomicU64>,
}

impl Default for LineQueue {
    fn default() -> LineQueue {
        LineQueue {
            dropped: Default::default(),
            last_taken: Default::default(),
            taken: Default::default(),
            written: Default::default(),
            stalled_at: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }
}

impl LineQueue {
    /// Lines this queue dropped because it was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    /// Wait until every line queued before this call is written, for at
    /// most `within`. Whoever holds a logger, nothing logged before the
    /// process exits is lost once this has returned in time.
    pub fn flush(&self, within: Duration) {
        let target = self.taken.load(Relaxed);
        let deadline = Instant::now() + within;
        let (written, wrote) = &*self.written;
        let mut n = written.lock().unwrap_or_else(|e| e.into_inner());
        while *n < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            n = wrote
                .wait_timeout(n, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Lines written so far; or, once that is not `seen`, within `within`.
    fn written_after(&self, seen: u64, within: Duration) -> u64 {
        let (written, wrote) = &*self.written;
        let n = written.lock().unwrap_or_else(|e| e.into_inner());
        *wrote
            .wait_timeout_while(n, within, |n| *n == seen)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// Put a kept `line` that found the queue full into it once there is
    /// room (see the module doc).
    fn send_kept(&self, lines: &SyncSender<Vec<u8>>, mut line: Vec<u8>) {
        let mut seen = self.written_after(u64::MAX, Duration::ZERO);
        let mut progress = Instant::now();
        loop {
            match lines.try_send(line) {
                Ok(()) => return self.offered(true),
                Err(TrySendError::Disconnected(_)) => return self.offered(false),
                Err(TrySendError::Full(again)) => line = again,
            }
            if self.stalled_at.load(Relaxed) == seen || progress.elapsed() >= KEEP_TIMEOUT {
                self.stalled_at.store(seen, Relaxed);
                return self.offered(false);
            }
            let now = self.written_after(seen, Duration::from_millis(100));
            if now != seen {
                seen = now;
                progress = Instant::now();
            }
        }
    }

    /// The writer thread wrote `lines` more.
    fn wrote(&self, lines: u64) {
        let (written, wrote) = &*self.written;
        *written.lock().unwrap_or_else(|e| e.into_inner()) += lines;
        wrote.notify_all();
    }

    fn had_room(&self) -> bool {
        self.last_taken.load(Relaxed)
    }

    fn offered(&self, taken: bool) {
        self.last_taken.store(taken, Relaxed);
        if taken {
            self.taken.fetch_add(1, Relaxed);
        } else {
            self.dropped.fetch_add(1, Relaxed);
            DROPPED.fetch_add(1, Relaxed);
        }
    }
}

/// After a line that got into the queue, says how many lines the queue
/// dropped since it last said so: once there is room again, not on every
/// line while it is full. The line goes to the format's drain directly, so
/// it is written at any `--log-level`. Also sees a [`KEEP`] line into the
/// queue.
pub(super) struct ReportDrops<D> {
    inner: D,
    queue: Option<Outlet>,
    /// The queue's count when it was last reported.
    reported: AtomicU64,
}

/// A queue, and a way into it for kept lines.
pub(super) struct Outlet {
    queue: LineQueue,
    lines: SyncSender<Vec<u8>>,
}

impl<D> ReportDrops<D> {
    /// Reports `queue`'s drops (if there is a queue) through `inner`.
    pub(super) fn new(inner: D, queue: Option<Outlet>) -> ReportDrops<D> {
        ReportDrops {
            inner,
            queue,
            reported: AtomicU64::new(0),
        }
    }
}

impl<D: Drain<Ok = (), Err = Never>> Drain for ReportDrops<D> {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
        let Some(Outlet { queue, lines }) = &self.queue else {
            return self.inner.log(record, values);
        };
        if record.tag() == KEEP {
            KEEPING.set(true);
            let logged = self.inner.log(record, values);
            KEEPING.set(false);
            if let Some(line) = HELD.take() {
                queue.send_kept(lines, line);
            }
            logged?;
        } else {
            self.inner.log(record, values)?;
        }
        let dropped = queue.dropped();
        let reported = self.reported.load(Relaxed);
        // One thread reports. If its line is dropped too, the count it
        // carried is taken back, so that the next line that gets through
        // reports it (with the report's own line).
        if queue.had_room()
            && dropped > reported
            && self
                .reported
                .compare_exchange(reported, dropped, Relaxed, Relaxed)
                .is_ok()
        {
            self.inner.log(
                &record!(
                    Level::Warning,
                    "",
                    &format_args!("log lines dropped: stderr was not taking them"),
                    b!("dropped" => dropped - reported)
                ),
                &OwnedKVList::from(o!()),
            )?;
            if !queue.had_room() {
                let _ = self
                    .reported
                    .compare_exchange(dropped, reported, Relaxed, Relaxed);
            }
        }
        Ok(())
    }
}

/// Where a nonblocking logger's drain writes: complete lines go into the
/// queue if it has room, and are dropped otherwise.
pub(super) struct QueueWriter {
    lines: SyncSender<Vec<u8>>,
    /// The line being formatted.
    pending: Vec<u8>,
    queue: LineQueue,
}

impl QueueWriter {
    /// A writer into a new queue of `capacity` lines, and a handle on that
    /// queue, with a thread of its own writing the lines to `w`; fails only
    /// if the thread cannot start.
    pub(super) fn start<W: Write + Send + 'static>(
        w: W,
        capacity: usize,
    ) -> io::Result<(QueueWriter, LineQueue)> {
        let queue = LineQueue::default();
        let (lines, incoming) = std::sync::mpsc::sync_channel(capacity);
        let written = queue.clone();
        std::thread::Builder::new()
            .name("flux-recv-log".into())
            .spawn(move || write_lines(w, incoming, &written))?;
        let writer = QueueWriter {
            lines,
            pending: Vec::new(),
            queue: queue.clone(),
        };
        Ok((writer, queue))
    }

    /// The way in for kept lines, with the queue.
    pub(super) fn outlet(&self) -> Outlet {
        Outlet {
            queue: self.queue.clone(),
            lines: self.lines.clone(),
        }
    }

    fn send(&mut self) {
        let line = std::mem::take(&mut self.pending);
        match self.lines.try_send(line) {
            Ok(()) => self.queue.offered(true),
            // Sent by ReportDrops once the format's lock is released.
            Err(TrySendError::Full(line)) if KEEPING.get() => HELD.set(Some(line)),
            Err(_) => self.queue.offered(false),
        }
    }
}

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(buf);
        // Both formats end a line, and only a line, with a newline (values
        // with newlines are escaped).
        if self.pending.ends_with(b"\n") {
            self.send();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            self.send();
        }
        Ok(())
    }
}

impl Drop for QueueWriter {
    /// The last logger is gone: wait, within bounds, for the thread to
    /// write what is queued (it then finishes, its only sender gone).
    fn drop(&mut self) {
        let _ = self.flush();
        self.queue.flush(FLUSH_TIMEOUT);
    }
}

/// How long the writer lets lines gather after the first of a batch: a
/// line is written at most this late.
const GATHER: Duration = Duration::from_millis(5);

/// The writer thread: write lines as they come, several at once when they
/// queue up, counting them written into `queue`, until every sender is
/// gone.
fn write_lines<W: Write>(mut w: W, lines: Receiver<Vec<u8>>, queue: &LineQueue) {
    let mut batch = Vec::new();
    while let Ok(line) = lines.recv() {
        batch.clear();
        batch.extend_from_slice(&line);
        let mut count = 1;
        // Let lines gather for a moment: while this thread sleeps (rather
        // than waits on the channel), loggers queue lines without waking
        // it, so a busy server pays one wake-up and one write per batch,
        // not per line.
        std::thread::sleep(GATHER);
        while let Ok(line) = lines.try_recv() {
            batch.extend_from_slice(&line);
            count += 1;
            if batch.len() >= 64 * 1024 {
                let _ = w.write_all(&batch).and_then(|()| w.flush());
                batch.clear();
            }
        }
        // Nowhere to report a failing stderr; keep going, it may recover.
        let _ = w.write_all(&batch).and_then(|()| w.flush());
        queue.wrote(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::{nonblocking_as, Captured, Format};
    use slog::info;
    use std::sync::Mutex;

    /// A writer that takes nothing until its gate opens, as a stderr pipe
    /// nobody reads.
    #[derive(Clone)]
    struct Gate {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        /// Whether a write has come to the gate.
        writing: Arc<AtomicBool>,
        out: Captured,
    }

    impl Gate {
        fn closed(out: Captured) -> Gate {
            Gate {
                open: Default::default(),
                writing: Default::default(),
                out,
            }
        }

        fn open(&self) {
            *self.open.0.lock().unwrap() = true;
            self.open.1.notify_all();
        }
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writing.store(true, Relaxed);
            let mut open = self.open.0.lock().unwrap();
            while !*open {
                open = self.open.1.wait(open).unwrap();
            }
            self.out.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Opens the gate when the test ends, so that a regression fails the
    /// test instead of hanging it.
    struct OpenOnDrop(Gate);

    impl Drop for OpenOnDrop {
        fn drop(&mut self) {
            self.0.open();
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_that_blocks_never_blocks_the_logging_call() {
        let out = Captured::default();
        let gate = Gate::closed(out.clone());
        let _open = OpenOnDrop(gate.clone());
        let (log, queue) = nonblocking_as(Format::Text, Level::Info, gate.clone(), 16).unwrap();
        // The writer takes a first line and blocks on it, so that during the
        // flood no line leaves the queue: what fits is queued, the rest is
        // dropped, and no drop report can get in until the gate opens.
        info!(log, "first");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !gate.writing.load(Relaxed) {
            assert!(
                std::time::Instant::now() < deadline,
                "the writer never wrote"
            );
            std::thread::sleep(Duration::from_millis(1));
        }

        let logging = tokio::spawn(async move {
            for i in 0..1000 {
                info!(log, "line"; "i" => i);
            }
            log
        });
        let log = tokio::time::timeout(Duration::from_secs(30), logging)
            .await
            .expect("the logging calls returned though the writer blocks")
            .unwrap();
        let dropped = queue.dropped();
        assert!(dropped > 0);
        assert!(super::dropped() >= dropped);

        // Once the writer takes lines again, what was queued is written,
        // and a line that gets through is followed by the count of those
        // lost (reports may come mid-flood too, whenever a line got in).
        gate.open();
        let reported = |text: &str| -> u64 {
            text.lines()
                .filter_map(|l| {
                    l.split("WARN log lines dropped: stderr was not taking them, dropped: ")
                        .nth(1)
                })
                .map(|n| n.parse::<u64>().unwrap())
                .sum()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while reported(&out.text()) < queue.dropped() {
            assert!(std::time::Instant::now() < deadline, "drops never reported");
            info!(log, "after");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(log);
        let text = out.text();
        assert_eq!(reported(&text), queue.dropped(), "{text}");
        // Lines kept their order, and every line is written or counted.
        let written: Vec<u64> = text
            .lines()
            .filter_map(|l| l.split("INFO line, i: ").nth(1))
            .map(|n| n.parse().unwrap())
            .collect();
        assert!(written.windows(2).all(|w| w[0] < w[1]), "{text}");
        // Each of the flood's lines was either queued and then written, or
        // dropped and counted (nothing else was logged meanwhile).
        assert_eq!(written.len() as u64 + dropped, 1000, "{text}");
        assert!(text.lines().last().unwrap().contains("log lines dropped"));
    }

    #[test]
    fn dropping_the_last_logger_writes_out_the_queue() {
        for format in [Format::Text, Format::Json] {
            let out = Captured::default();
            let (log, queue) = nonblocking_as(format, Level::Info, out.clone(), 4096).unwrap();
            for i in 0..1000 {
                info!(log, "line"; "i" => i);
            }
            let child = log.new(o!("component" => "child"));
            drop(log);
            info!(child, "last");
            drop(child);
            // Nothing dropped, nothing left behind, one write per line.
            assert_eq!(queue.dropped(), 0);
            let text = out.text();
            assert_eq!(text.lines().count(), 1001, "{format:?}");
            assert!(text.lines().last().unwrap().contains("last"));
        }
    }

    #[test]
    fn a_kept_line_waits_for_room_and_holds_up_no_other_line() {
        let out = Captured::default();
        let gate = Gate::closed(out.clone());
        let _open = OpenOnDrop(gate.clone());
        let (log, queue) = nonblocking_as(Format::Text, Level::Info, gate.clone(), 4).unwrap();
        // The writer takes a line and blocks on it; four more fill the
        // queue.
        info!(log, "filler");
        std::thread::sleep(Duration::from_millis(100));
        for i in 0..4 {
            info!(log, "filler"; "i" => i);
        }
        assert_eq!(queue.dropped(), 0);
        let kept = std::thread::spawn({
            let log = log.clone();
            move || info!(log, #KEEP, "endpoint"; "url" => "/hook/1")
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(!kept.is_finished(), "a kept line waits for room");
        // Meanwhile another thread's line is dropped at once, not held up
        // behind the kept one (which waits outside the format's lock).
        let before = queue.dropped();
        let other = std::thread::spawn({
            let log = log.clone();
            move || info!(log, "request line")
        });
        let started = Instant::now();
        while !other.is_finished() {
            assert!(started.elapsed() < Duration::from_secs(10), "held up");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(queue.dropped(), before + 1);
        gate.open();
        kept.join().unwrap();
        drop(log);
        let text = out.text();
        assert!(text.contains("INFO endpoint, url: /hook/1"), "{text}");
        assert!(!text.contains("request line"), "{text}");
    }

    /// A writer that takes its time over every write, as a slow pipe.
    #[derive(Clone)]
    struct Slow(Captured);

    impl Write for Slow {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            std::thread::sleep(Duration::from_millis(20));
            self.0.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_flush_writes_out_what_is_queued_while_loggers_live_on() {
        let out = Captured::default();
        let (log, queue) =
            nonblocking_as(Format::Text, Level::Info, Slow(out.clone()), 64).unwrap();
        for i in 0..10 {
            info!(log, "line"; "i" => i);
            // Lines one write each, not one batch.
            std::thread::sleep(Duration::from_millis(10));
        }
        info!(log, "stopped");
        queue.flush(FLUSH_TIMEOUT * 10);
        let text = out.text();
        assert_eq!(text.lines().count(), 11, "{text}");
        assert!(text.lines().last().unwrap().contains("stopped"), "{text}");
        // The logger, still alive, still logs.
        info!(log, "after");
        drop(log);
        assert!(out.text().lines().last().unwrap().contains("after"));
    }
}
