//! Structured logs: slog key-value pairs, one event per line, on stderr,
//! either for people ([`Format::Text`], the default) or for log pipelines
//! ([`Format::Json`]).
//!
//! Logging never waits for stderr: [`stderr_as`] formats each line where it
//! is logged and hands it to a writer thread through a bounded queue. When
//! whoever reads stderr falls behind and the queue is full, lines are
//! dropped and counted ([`dropped`]), and the next line that gets through
//! is preceded by one saying how many were lost. A hook is never held up
//! by its log line. Before the process exits, [`LineQueue::flush`] has what
//! is queued written out (for at most [`FLUSH_TIMEOUT`]), whichever threads
//! still hold a logger; dropping the last logger does the same.
//!
//! In the text format a value that holds the format's own separators
//! (`, ` and `: `), a quote, a control character or another character a
//! reader cannot see as it is (U+2028, U+202E, …) is written quoted, with
//! Rust's escapes, so a request value can never read as extra fields; the
//! JSON format writes those characters as `\u` escapes.
//!
//! Nothing secret is ever passed to a logger: sources and the table hand out
//! only fingerprints, paths and [`crate::printable`] request values.
//!
//! Lines a remote client can cause are logged within a [`Budget`] a second
//! (the rest counted, and summed up in one line); lines an operator must
//! see are tagged [`KEEP`] and never dropped by the queue.
//!
//! The queue is in `queue.rs`, the formats' escaping in `quote.rs`, the
//! budgets in `budget.rs`, and the lines about the endpoint table that
//! start-up and reload share in `table.rs`.

mod budget;
mod queue;
mod quote;
mod table;

pub use budget::{Admit, Budget, Throttle};
pub use queue::{dropped, LineQueue, FLUSH_TIMEOUT, KEEP, KEEP_TIMEOUT};
pub use table::{log_endpoint, log_endpoints, log_problem};

use std::io::{self, LineWriter, Write};
use std::panic::{RefUnwindSafe, UnwindSafe};
use std::sync::{Arc, Mutex};

use slog::{o, Drain, FnValue, Level, Logger, Never};
use slog::{PushFnValue, Record};

use queue::{Outlet, QueueWriter, ReportDrops};
use quote::{JsonEscaping, Quoting};

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
/// documentation); and the queue, to [flush](LineQueue::flush) before exiting.
pub fn stderr_as(format: Format, level: Level) -> (Logger, LineQueue) {
    nonblocking_as(format, level, io::stderr(), QUEUE_LINES).unwrap_or_else(|_| {
        // No thread to spare at start: log as before rather than not at
        // all (each line written before the call returns; nothing queued).
        (
            to_writer_as(format, level, io::stderr()),
            LineQueue::default(),
        )
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
) -> io::Result<(Logger, LineQueue)> {
    let (writer, queue) = QueueWriter::start(w, capacity)?;
    let outlet = writer.outlet();
    Ok((root(format, level, writer, Some(outlet)), queue))
}

/// The logger for `format` and `level`, writing to `w`; with `queue`, one
/// line says how many lines the queue dropped before the next that gets
/// through.
fn root<W: Write + Send + 'static>(
    format: Format,
    level: Level,
    w: W,
    queue: Option<Outlet>,
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
            // Characters a reader cannot see as they are, escaped (see
            // quote.rs).
            let w = JsonEscaping::new(w);
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

fn finish<D>(drain: D, level: Level, queue: Option<Outlet>) -> Logger
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
    fn json_lines_escape_what_a_reader_cannot_see() {
        let out = Captured::default();
        let log = to_writer_as(Format::Json, Level::Info, out.clone());
        let value = "a\u{2028}b\u{2029}c\u{202e}d\u{feff}e\u{85}f\u{e0001}g é\u{1f600}";
        info!(log, "hook"; "value" => value);
        let text = out.text();
        // Escaped where unseen; printable non-ASCII (é, an emoji) as is.
        let expected = r#""value":"a\u2028b\u2029c\u202ed\ufeffe\u0085f\udb40\udc01g "#;
        assert!(text.contains(&format!("{expected}é\u{1f600}\"")), "{text}");
        let line: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(line["value"], value);
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
}
