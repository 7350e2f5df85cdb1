//! Structured logs: slog key-value pairs, one event per line, on stderr.
//!
//! Nothing secret is ever passed to a logger: sources and the table hand out
//! only fingerprints, paths and [`crate::printable`] request values.

use std::io::Write;
use std::sync::{Arc, Mutex};

use slog::{o, Drain, Level, Logger};

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

/// Human-readable logs on stderr at `level` and above.
pub fn stderr(level: Level) -> Logger {
    to_writer(level, std::io::stderr())
}

/// Human-readable logs written to `w` (tests capture them this way).
pub fn to_writer<W: Write + Send + 'static>(level: Level, w: W) -> Logger {
    let decorator = slog_term::PlainSyncDecorator::new(w);
    let drain = slog_term::FullFormat::new(decorator)
        .use_original_order()
        .build()
        .filter_level(level)
        .fuse();
    Logger::root(drain, o!())
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
