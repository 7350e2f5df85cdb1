//! Structured logs: slog key-value pairs, one event per line, on stderr,
//! either for people ([`Format::Text`], the default) or for log pipelines
//! ([`Format::Json`]).
//!
//! Logging never waits for stderr: [`stderr_as`] formats each line where it
//! is logged and hands it to a writer thread through a bounded queue. When
//! whoever reads stderr falls behind and the queue is full, lines are
//! dropped and counted ([`dropped`]), and the next line that gets through
//! is preceded by one saying how many were lost. A hook is never held up
//! by its log line. When the last logger is dropped, what is queued is
//! written out before the process goes on (for at most [`FLUSH_TIMEOUT`]).
//!
//! In the text format a value that holds the format's own separators
//! (`, ` and `: `), a quote or a control character is written quoted, with
//! Rust's escapes, so a request value can never read as extra fields.
//!
//! Nothing secret is ever passed to a logger: sources and the table hand out
//! only fingerprints, paths and [`crate::printable`] request values.

use std::io::{self, LineWriter, Write};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use slog::{b, o, record, Drain, FnValue, Level, Logger, Never, OwnedKVList};
use slog::{PushFnValue, Record};
use slog_term::{Decorator, RecordDecorator};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// For people: `Nov 28 17:34:00.123 INFO hook, source: GitHub, …`.
    #[default]
    Text,
    /// For log pipelines: one JSON object per line, with `time` (RFC 3339,
    /// UTC), `level`, `msg` and every key-value of the event.
    Json,
}

/// Parse a `--log-level` value.
pub fn parse_level(s: &str) -> Result<Level, String> {
    match s.to_ascii_lowercase().as_str() {
        "trace" => Ok(Level::Trace),
        "debug" => Ok(Level::Debug),
        "info" => Ok(Level::Info),
        "warn" | "warning" => Ok(Level::Warning),
        "error" => Ok(Level::Error),
        _ => Err(format!(
            "unknown log level {s:?}; use error, warn, info, debug or trace"
        )),
    }
}

/// Parse a `--log-format` value.
pub fn parse_format(s: &str) -> Result<Format, String> {
    match s.to_ascii_lowercase().as_str() {
        "text" => Ok(Format::Text),
        "json" => Ok(Format::Json),
        _ => Err(format!("unknown log format {s:?}; use text or json")),
    }
}

/// Lines the stderr queue holds while stderr is not taking them: a few
/// seconds of the busiest logging (refusals are held to
/// `--refusal-logs-per-second`), and at most a few MiB.
pub const QUEUE_LINES: usize = 4096;

/// How long dropping the last logger waits for queued lines to be written:
/// time enough for thousands of lines, and short enough that a stderr
/// nobody reads cannot hold up the process's exit.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Log lines dropped by every queue in this process since it started: the
/// figure for a metric.
pub fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Logs in `format` on stderr at `level` and above, through a queue of
/// [`QUEUE_LINES`] lines, so that logging never blocks (see the module
/// documentation).
pub fn stderr_as(format: Format, level: Level) -> Logger {
    match nonblocking_as(format, level, io::stderr(), QUEUE_LINES) {
        Ok((logger, _)) => logger,
        // No thread to spare at start: log as before rather than not at all.
        Err(_) => to_writer_as(format, level, io::stderr()),
    }
}

/// Logs in `format` written to `w`, at `level` and above, each line written
/// before the logging call returns: for tests that read the logs, and for
/// commands that log a few lines and exit.
pub fn to_writer_as<W: Write + Send + 'static>(format: Format, level: Level, w: W) -> Logger {
    root(format, level, w, None)
}

/// Logs in `format` written to `w` by a thread of its own, at `level` and
/// above, through a queue of `capacity` lines that drops (and counts) what
/// does not fit. Returns the logger and a handle on its queue; fails only
/// if the thread cannot start.
pub fn nonblocking_as<W: Write + Send + 'static>(
    format: Format,
    level: Level,
    w: W,
    capacity: usize,
) -> io::Result<(Logger, Queue)> {
    let queue = Queue::default();
    let (lines, incoming) = std::sync::mpsc::sync_channel(capacity);
    let (finished, done) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("flux-recv-log".into())
        .spawn(move || write_lines(w, incoming, finished))?;
    let writer = QueueWriter {
        lines: Some(lines),
        pending: Vec::new(),
        queue: queue.clone(),
        done: Some(done),
    };
    Ok((root(format, level, writer, Some(queue.clone())), queue))
}

/// A nonblocking logger's queue.
#[derive(Debug, Clone, Default)]
pub struct Queue {
    dropped: Arc<AtomicU64>,
    /// Whether the last line offered was taken.
    last_taken: Arc<AtomicBool>,
}

impl Queue {
    /// Lines this queue dropped because it was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }

    fn had_room(&self) -> bool {
        self.last_taken.load(Relaxed)
    }

    fn offered(&self, taken: bool) {
        self.last_taken.store(taken, Relaxed);
        if !taken {
            self.dropped.fetch_add(1, Relaxed);
            DROPPED.fetch_add(1, Relaxed);
        }
    }
}

/// The logger for `format` and `level`, writing to `w`; with `queue`, one
/// line says how many lines the queue dropped before the next that gets
/// through.
fn root<W: Write + Send + 'static>(
    format: Format,
    level: Level,
    w: W,
    queue: Option<Queue>,
) -> Logger {
    match format {
        Format::Text => {
            let text = slog_term::FullFormat::new(Quoting(Arc::new(Mutex::new(w))))
                .use_original_order()
                .build();
            finish(text.fuse(), level, queue)
        }
        Format::Json => {
            // slog-json writes a line in many small pieces: the LineWriter
            // makes it one write, so lines from different threads (the
            // Mutex takes them in turn) never mix, even on a pipe.
            let json = slog_json::Json::new(LineWriter::with_capacity(16 * 1024, w))
                .add_key_value(o!(
                    "time" => FnValue(|_: &Record| now_rfc3339()),
                    "level" => FnValue(|r: &Record| level_name(r.level())),
                    "msg" => PushFnValue(|r: &Record, s| s.emit(r.msg())),
                ))
                .build();
            finish(Mutex::new(json).fuse(), level, queue)
        }
    }
}

fn finish<D>(drain: D, level: Level, queue: Option<Queue>) -> Logger
where
    D: Drain<Ok = (), Err = Never> + Send + Sync + RefUnwindSafe + UnwindSafe + 'static,
{
    let drain = ReportDrops {
        inner: drain,
        queue,
        reported: AtomicU64::new(0),
    };
    Logger::root(drain.filter_level(level).fuse(), o!())
}

/// After a line that got into the queue, says how many lines the queue
/// dropped since it last said so: once there is room again, not on every
/// line while it is full. The line goes to the format's drain directly, so
/// it is written at any `--log-level`.
struct ReportDrops<D> {
    inner: D,
    queue: Option<Queue>,
    /// The queue's count when it was last reported.
    reported: AtomicU64,
}

impl<D: Drain<Ok = (), Err = Never>> Drain for ReportDrops<D> {
    type Ok = ();
    type Err = Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), Never> {
        self.inner.log(record, values)?;
        let Some(queue) = &self.queue else {
            return Ok(());
        };
        let dropped = queue.dropped();
        let reported = self.reported.load(Relaxed);
        // One thread reports; if its line is dropped too, that is counted
        // and reported after the next line that gets through.
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
        }
        Ok(())
    }
}

/// Where a nonblocking logger's drain writes: complete lines go into the
/// queue if it has room, and are dropped otherwise.
struct QueueWriter {
    /// Taken when the writer is dropped, which lets the thread finish.
    lines: Option<SyncSender<Vec<u8>>>,
    /// The line being formatted.
    pending: Vec<u8>,
    queue: Queue,
    /// Closed by the writer thread when it has written everything.
    done: Option<Receiver<()>>,
}

impl QueueWriter {
    fn send(&mut self) {
        let line = std::mem::take(&mut self.pending);
        let taken = self
            .lines
            .as_ref()
            .is_some_and(|lines| lines.try_send(line).is_ok());
        self.queue.offered(taken);
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
    /// The last logger is gone: let the thread write what is queued, and
    /// wait for it, within bounds.
    fn drop(&mut self) {
        let _ = self.flush();
        // The thread finishes once its only sender is gone.
        self.lines = None;
        if let Some(done) = self.done.take() {
            let _ = done.recv_timeout(FLUSH_TIMEOUT);
        }
    }
}

/// The writer thread: write lines as they come, several at once when they
/// queue up, until every sender is gone; then say so by dropping `finished`.
fn write_lines<W: Write>(
    mut w: W,
    lines: Receiver<Vec<u8>>,
    finished: std::sync::mpsc::Sender<()>,
) {
    let mut batch = Vec::new();
    while let Ok(line) = lines.recv() {
        batch.clear();
        batch.extend_from_slice(&line);
        while batch.len() < 64 * 1024 {
            match lines.try_recv() {
                Ok(line) => batch.extend_from_slice(&line),
                Err(_) => break,
            }
        }
        // Nowhere to report a failing stderr; keep going, it may recover.
        let _ = w.write_all(&batch).and_then(|()| w.flush());
    }
    drop(finished);
}

/// slog-term's plain decorator, with values quoted where they would
/// otherwise be ambiguous: the decorator hears where each value starts and
/// ends, and a record is written in one `write_all`.
struct Quoting<W>(Arc<Mutex<W>>);

impl<W: Write> Decorator for Quoting<W> {
    fn with_record<F>(&self, _: &Record, _: &OwnedKVList, f: F) -> io::Result<()>
    where
        F: FnOnce(&mut dyn RecordDecorator) -> io::Result<()>,
    {
        let mut line = Line::default();
        f(&mut line)?;
        line.end_part();
        let mut w = self
            .0
            .lock()
            .map_err(|_| io::Error::other("a thread panicked while logging"))?;
        w.write_all(&line.buf)?;
        w.flush()
    }
}

/// One text line being formatted.
#[derive(Default)]
struct Line {
    buf: Vec<u8>,
    /// Where the value or message being written started.
    part: Option<(Part, usize)>,
}

#[derive(Clone, Copy)]
enum Part {
    Msg,
    Value,
}

impl Line {
    /// The message or value being written is complete: escape it.
    fn end_part(&mut self) {
        let Some((part, start)) = self.part.take() else {
            return;
        };
        let text = String::from_utf8_lossy(&self.buf[start..]).into_owned();
        self.buf.truncate(start);
        match part {
            // Messages are the code's own words (with paths and the like
            // in them): control characters escaped, so one event stays
            // one line, and nothing else changed.
            Part::Msg => {
                for c in text.chars() {
                    if c.is_control() {
                        self.buf.extend(c.escape_default().to_string().bytes());
                    } else {
                        let mut utf8 = [0; 4];
                        self.buf.extend(c.encode_utf8(&mut utf8).bytes());
                    }
                }
            }
            Part::Value if needs_quotes(&text) => {
                self.buf.extend(format!("{text:?}").bytes());
            }
            Part::Value => self.buf.extend(text.bytes()),
        }
    }

    fn start(&mut self, part: Part) -> io::Result<()> {
        self.end_part();
        self.part = Some((part, self.buf.len()));
        Ok(())
    }
}

/// Whether a text-format value must be quoted to read as one value: it
/// holds a separator of the format (`, ` between fields, `: ` between key
/// and value) or a control character (a newline would start a new event),
/// or it starts with a quote (so a value that starts with one is always one
/// we quoted). Quotes elsewhere, as in compact JSON, are left alone.
fn needs_quotes(value: &str) -> bool {
    value.contains(", ")
        || value.contains(": ")
        || value.starts_with('"')
        || value.chars().any(char::is_control)
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Written whole by `Quoting::with_record`.
        Ok(())
    }
}

impl RecordDecorator for Line {
    // Every other `start_…` calls `reset`, which ends the part.
    fn reset(&mut self) -> io::Result<()> {
        self.end_part();
        Ok(())
    }

    fn start_msg(&mut self) -> io::Result<()> {
        self.start(Part::Msg)
    }

    fn start_value(&mut self) -> io::Result<()> {
        self.start(Part::Value)
    }
}

/// The time now, as `2026-04-14T09:30:00.123456789Z`.
fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The names log pipelines expect (slog's own are upper case and
/// abbreviated).
fn level_name(level: Level) -> &'static str {
    match level {
        Level::Critical => "critical",
        Level::Error => "error",
        Level::Warning => "warn",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

/// Lets through at most `per_second` events a second and counts the rest, so
/// a flood of junk requests cannot flood the logs (or the disk under them).
/// Approximate under contention, which is all a log budget needs.
#[derive(Debug)]
pub struct Throttle {
    per_second: u64,
    origin: std::time::Instant,
    /// The second (since `origin`) being counted.
    window: std::sync::atomic::AtomicU64,
    /// Events seen in that second.
    seen: std::sync::atomic::AtomicU64,
    /// Events not logged since the last one that was.
    suppressed: std::sync::atomic::AtomicU64,
}

/// What [`Throttle::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Log this event; `suppressed` events were dropped since the last one
    /// logged, and a line should say so.
    Log {
        /// Events dropped before this one.
        suppressed: u64,
    },
    /// Over budget: count it, log nothing.
    Skip,
}

impl Throttle {
    /// A budget of `per_second` events a second.
    pub fn new(per_second: u64) -> Throttle {
        Throttle {
            per_second,
            origin: std::time::Instant::now(),
            window: Default::default(),
            seen: Default::default(),
            suppressed: Default::default(),
        }
    }

    /// Decide about one event.
    pub fn admit(&self) -> Admit {
        use std::sync::atomic::Ordering::Relaxed;
        let now = self.origin.elapsed().as_secs();
        let window = self.window.load(Relaxed);
        if now != window
            && self
                .window
                .compare_exchange(window, now, Relaxed, Relaxed)
                .is_ok()
        {
            self.seen.store(0, Relaxed);
        }
        if self.seen.fetch_add(1, Relaxed) < self.per_second {
            Admit::Log {
                suppressed: self.suppressed.swap(0, Relaxed),
            }
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            Admit::Skip
        }
    }
}

/// Milliseconds since `started`, to the microsecond: the `duration_ms` field
/// of log lines, a number in JSON logs.
pub fn elapsed_ms(started: std::time::Instant) -> f64 {
    (started.elapsed().as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// A buffer that collects log output, for tests that read the logs.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("log buffer")).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use slog::{info, warn};
    use std::time::Duration;

    #[test]
    fn formats() {
        assert_eq!(parse_format("json"), Ok(Format::Json));
        assert_eq!(parse_format("TEXT"), Ok(Format::Text));
        assert!(parse_format("logfmt").is_err());
    }

    #[test]
    fn json_lines_carry_time_level_msg_and_every_key_value() {
        let out = Captured::default();
        let log =
            to_writer_as(Format::Json, Level::Info, out.clone()).new(o!("component" => "test"));
        info!(log, "hook"; "status" => 200, "duration_ms" => 1.5, "reason" => "a \"quoted\"\nline");
        warn!(log, "refused");
        slog::debug!(log, "below the level");
        let text = out.text();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["level"], "info");
        assert_eq!(first["msg"], "hook");
        assert_eq!(first["component"], "test");
        assert_eq!(first["status"], 200);
        assert_eq!(first["duration_ms"], 1.5);
        assert_eq!(first["reason"], "a \"quoted\"\nline");
        let time = first["time"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                .is_ok(),
            "{time}"
        );
        assert_eq!(lines[1]["level"], "warn");
    }

    #[test]
    fn text_values_that_hold_separators_are_quoted() {
        let out = Captured::default();
        let log = to_writer_as(Format::Text, Level::Info, out.clone());
        info!(log, "hook"; "delivery" => "d, outcome: relayed", "outcome" => "ignored");
        info!(log, "hook"; "reason" => "two\nlines \"quoted\"", "url" => "http://127.0.0.1:3030/api");
        info!(log, "a message\nwith a newline"; "n" => 1);
        info!(log, "json"; "notification" => r#"{"Kind":"git"}"#, "quoted" => r#""x""#);
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(
            lines[0].ends_with(r#" INFO hook, delivery: "d, outcome: relayed", outcome: ignored"#),
            "{}",
            lines[0]
        );
        // The fields, read back as a reader splits them: exactly two.
        let fields = split_fields(lines[0]);
        assert_eq!(
            fields,
            [
                ("delivery", r#""d, outcome: relayed""#),
                ("outcome", "ignored")
            ]
        );
        // Escaped as Rust escapes strings; a URL's colons are no separator.
        assert!(
            lines[1]
                .ends_with(r#"reason: "two\nlines \"quoted\"", url: http://127.0.0.1:3030/api"#),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].ends_with(r"INFO a message\nwith a newline, n: 1"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].ends_with(r#"json, notification: {"Kind":"git"}, quoted: "\"x\"""#),
            "{}",
            lines[3]
        );
    }

    /// Key-value pairs of a text line, splitting on the separators outside
    /// quotes.
    fn split_fields(line: &str) -> Vec<(&str, &str)> {
        let mut fields = Vec::new();
        let (mut start, mut quoted, mut escaped) = (0, false, false);
        let bytes = line.as_bytes();
        for i in 0..bytes.len() {
            match bytes[i] {
                _ if escaped => escaped = false,
                b'\\' if quoted => escaped = true,
                b'"' => quoted = !quoted,
                b',' if !quoted && bytes.get(i + 1) == Some(&b' ') => {
                    fields.push(&line[start..i]);
                    start = i + 2;
                }
                _ => {}
            }
        }
        fields.push(&line[start..]);
        fields[1..]
            .iter()
            .map(|f| f.split_once(": ").expect("key: value"))
            .collect()
    }

    #[test]
    fn every_level_can_be_switched_on_at_run_time() {
        let out = Captured::default();
        let log = to_writer_as(Format::Text, Level::Trace, out.clone());
        slog::trace!(log, "a trace line");
        slog::debug!(log, "a debug line");
        let text = out.text();
        assert!(text.contains("TRCE a trace line"), "{text}");
        assert!(text.contains("DEBG a debug line"), "{text}");
    }

    /// A writer that takes nothing until its gate opens, as a stderr pipe
    /// nobody reads.
    #[derive(Clone)]
    struct Gate {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        out: Captured,
    }

    impl Gate {
        fn closed(out: Captured) -> Gate {
            Gate {
                open: Default::default(),
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
        assert!(written.len() as u64 + queue.dropped() >= 1000, "{text}");
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
    fn throttle_keeps_to_its_budget_and_reports_what_it_dropped() {
        let t = Throttle::new(3);
        let decisions: Vec<Admit> = (0..5).map(|_| t.admit()).collect();
        assert_eq!(
            decisions,
            vec![
                Admit::Log { suppressed: 0 },
                Admit::Log { suppressed: 0 },
                Admit::Log { suppressed: 0 },
                Admit::Skip,
                Admit::Skip,
            ]
        );
        // The next second: logging resumes, and says what was dropped.
        std::thread::sleep(std::time::Duration::from_millis(1100));
        assert_eq!(t.admit(), Admit::Log { suppressed: 2 });
        assert_eq!(t.admit(), Admit::Log { suppressed: 0 });
    }
}
