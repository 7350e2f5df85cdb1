//! Structured logs: slog key-value pairs, one event per line, on stderr,
//! either for people ([`Format::Text`], the default) or for log pipelines
//! ([`Format::Json`]).
//!
//! Logging never waits for stderr: [`stderr_as`] formats each line where it
//! is logged and hands it to a writer thread through a bounded queue. When
//! whoever reads stderr falls behind and the queue is full, lines are
//! dropped and counted ([`dropped`]), and the next line that gets through
//! is preceded by one saying how many were lost. A hook is never held up
//! by its log line. Before the process exits, [`Queue::flush`] has what is
//! queued written out (for at most [`FLUSH_TIMEOUT`]), whichever threads
//! still hold a logger; dropping the last logger does the same.
//!
//! In the text format a value that holds the format's own separators
//! (`, ` and `: `), a quote or a control character is written quoted, with
//! Rust's escapes, so a request value can never read as extra fields.
//!
//! Nothing secret is ever passed to a logger: sources and the table hand out
//! only fingerprints, paths and [`crate::printable`] request values.
//!
//! The queue is in `queue.rs`, the text format's quoting in `quote.rs`.

mod queue;
mod quote;

pub use queue::{dropped, Queue, FLUSH_TIMEOUT};

use std::io::{self, LineWriter, Write};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::{Arc, Mutex};

use slog::{o, Drain, FnValue, Level, Logger, Never};
use slog::{PushFnValue, Record};

use queue::{QueueWriter, ReportDrops};
use quote::Quoting;

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

/// Logs in `format` on stderr at `level` and above, through a queue of
/// [`QUEUE_LINES`] lines, so that logging never blocks (see the module
/// documentation); and the queue, to [flush](Queue::flush) before exiting.
pub fn stderr_as(format: Format, level: Level) -> (Logger, Queue) {
    nonblocking_as(format, level, io::stderr(), QUEUE_LINES).unwrap_or_else(|_| {
        // No thread to spare at start: log as before rather than not at
        // all (each line written before the call returns; nothing queued).
        (to_writer_as(format, level, io::stderr()), Queue::default())
    })
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
    let (writer, queue) = QueueWriter::start(w, capacity)?;
    Ok((root(format, level, writer, Some(queue.clone())), queue))
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
            // UTC, as the JSON format and the container have it; local time
            // would also cost a time-zone lookup per line.
            let text = slog_term::FullFormat::new(Quoting::new(w))
                .use_original_order()
                .use_custom_timestamp(slog_term::timestamp_utc)
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
    let drain = ReportDrops::new(drain, queue);
    Logger::root(drain.filter_level(level).fuse(), o!())
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

    /// A logger in the text format, at `level` and above, writing here.
    pub fn logger(&self, level: Level) -> Logger {
        to_writer_as(Format::Text, level, self.clone())
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
    fn every_level_can_be_switched_on_at_run_time() {
        let out = Captured::default();
        let log = to_writer_as(Format::Text, Level::Trace, out.clone());
        slog::trace!(log, "a trace line");
        slog::debug!(log, "a debug line");
        let text = out.text();
        assert!(text.contains("TRCE a trace line"), "{text}");
        assert!(text.contains("DEBG a debug line"), "{text}");
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
