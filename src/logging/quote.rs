//! The text format's decorator: slog-term's plain one, with each value
//! written quoted, with Rust's escapes, where it would otherwise be
//! ambiguous (it holds the format's own separators `, ` or `: `, starts
//! with a quote, or holds a control character), so a request value can
//! never read as extra fields or as a second event.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use slog::{OwnedKVList, Record};
use slog_term::{Decorator, RecordDecorator};

/// slog-term's plain decorator, with values quoted where they would
/// otherwise be ambiguous: the decorator hears where each value starts and
/// ends, and a record is written in one `write_all`.
pub(super) struct Quoting<W>(Arc<Mutex<W>>);

impl<W> Quoting<W> {
    /// Lines written whole to `w`, one record at a time.
    pub(super) fn new(w: W) -> Quoting<W> {
        Quoting(Arc::new(Mutex::new(w)))
    }
}

impl<W: Write> Decorator for Quoting<W> {
    fn with_record<F>(&self, _: &Record, _: &OwnedKVList, f: F) -> io::Result<()>
    where
        F: FnOnce(&mut dyn RecordDecorator) -> io::Result<()>,
    {
        // Room for a typical line (a hook's is 250 to 400 bytes), so that
        // it is not grown step by step as it is written.
        let mut line = Line {
            buf: Vec::with_capacity(512),
            part: None,
        };
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
        // Most parts need nothing: left as written, no copy.
        let as_written = std::str::from_utf8(&self.buf[start..]).is_ok_and(|text| match part {
            Part::Msg => !text.chars().any(char::is_control),
            Part::Value => !needs_quotes(text),
        });
        if as_written {
            return;
        }
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

#[cfg(test)]
mod tests {
    use crate::logging::{to_writer_as, Captured, Format};
    use slog::{info, Level};

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
}
