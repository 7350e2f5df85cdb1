//! How each format keeps a value to one readable field.
//!
//! The text format's decorator: slog-term's plain one, with each value
//! written quoted, with Rust's escapes, where it would otherwise be
//! ambiguous (it holds the format's own separators `, ` or `: `, starts
//! with a quote, or holds a character a reader cannot see as it is), so a
//! request value can never read as extra fields or as a second event.
//!
//! Characters a reader cannot see as they are ([`unseen`]): control
//! characters, and those Rust's `{:?}` escapes because they print as
//! nothing or change how what follows prints: line and paragraph
//! separators (U+2028, U+2029, which some viewers take for a new line),
//! bidirectional overrides and isolates (U+202E shows what follows
//! reversed), zero-width characters and the byte-order mark.
//!
//! The JSON format escapes them too ([`JsonEscaping`]): serde writes them
//! raw, which is valid JSON but not what a person reading it sees.

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
            Part::Msg => !text.chars().any(unseen),
            Part::Value => !needs_quotes(text),
        });
        if as_written {
            return;
        }
        let text = String::from_utf8_lossy(&self.buf[start..]).into_owned();
        self.buf.truncate(start);
        match part {
            // Messages are the code's own words (with paths and the like
            // in them): unseen characters escaped, so one event stays one
            // line that reads as written, and nothing else changed.
            Part::Msg => {
                for c in text.chars() {
                    if unseen(c) {
                        self.buf.extend(c.escape_debug().to_string().bytes());
                    } else {
                        let mut utf8 = [0; 4];
                        self.buf.extend(c.encode_utf8(&mut utf8).bytes());
                    }
                }
            }
            Part::Value if needs_quotes(&text) => {
                self.buf.push(b'"');
                for c in text.chars() {
                    match c {
                        '"' | '\\' => self.buf.extend([b'\\', c as u8]),
                        c if unseen(c) => self.buf.extend(c.escape_debug().to_string().bytes()),
                        c => {
                            let mut utf8 = [0; 4];
                            self.buf.extend(c.encode_utf8(&mut utf8).bytes());
                        }
                    }
                }
                self.buf.push(b'"');
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
/// and value) or an unseen character (a newline would start a new event,
/// U+202E would turn what follows around), or it starts with a quote (so a
/// value that starts with one is always one we quoted). Quotes elsewhere,
/// as in compact JSON, are left alone.
fn needs_quotes(value: &str) -> bool {
    value.contains(", ")
        || value.contains(": ")
        || value.starts_with('"')
        || value.chars().any(unseen)
}

/// A character a reader cannot see as it is (see the module doc): a
/// control character, or one that Rust's `{:?}` escapes.
pub(super) fn unseen(c: char) -> bool {
    c.is_control() || (!c.is_ascii() && c.escape_debug().len() > 1)
}

/// A writer of JSON lines that writes every unseen non-ASCII character as
/// a `\uXXXX` escape (serde escapes only ASCII controls). Such characters
/// only ever occur inside JSON strings, where the escape means the same.
pub(super) struct JsonEscaping<W> {
    inner: W,
    /// The start of a character split across two writes.
    partial: Vec<u8>,
}

impl<W> JsonEscaping<W> {
    pub(super) fn new(inner: W) -> JsonEscaping<W> {
        JsonEscaping {
            inner,
            partial: Vec::new(),
        }
    }
}

impl<W: Write> Write for JsonEscaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.partial.is_empty() && buf.is_ascii() {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut bytes = std::mem::take(&mut self.partial);
        bytes.extend_from_slice(buf);
        let mut out = Vec::with_capacity(bytes.len() + 16);
        let mut rest = &bytes[..];
        loop {
            let (valid, after) = match std::str::from_utf8(rest) {
                Ok(_) => (rest.len(), None),
                Err(e) => (e.valid_up_to(), Some(e.error_len())),
            };
            for c in std::str::from_utf8(&rest[..valid])
                .unwrap_or_default()
                .chars()
            {
                if !c.is_ascii() && unseen(c) {
                    for unit in c.encode_utf16(&mut [0; 2]) {
                        out.extend(format!("\\u{unit:04x}").bytes());
                    }
                } else {
                    out.extend(c.encode_utf8(&mut [0; 4]).bytes());
                }
            }
            match after {
                None => break,
                // A character cut short by the end of the write: kept for
                // the next one.
                Some(None) => {
                    self.partial = rest[valid..].to_vec();
                    break;
                }
                // Not UTF-8 (serde never writes that): passed on as it is.
                Some(Some(n)) => {
                    out.extend_from_slice(&rest[valid..valid + n]);
                    rest = &rest[valid + n..];
                }
            }
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.partial.is_empty() {
            let partial = std::mem::take(&mut self.partial);
            self.inner.write_all(&partial)?;
        }
        self.inner.flush()
    }
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

    #[test]
    fn characters_a_reader_cannot_see_are_escaped_in_messages_and_values() {
        let out = Captured::default();
        let log = to_writer_as(Format::Text, Level::Info, out.clone());
        info!(log, "a message\u{2028}with a separator";
              "v" => "a\u{2028}b\u{2029}c", "w" => "x\u{202e}y\u{200f}z\u{feff}",
              "plain" => "café ü", "c1" => "\u{85}");
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        assert!(
            lines[0].ends_with(
                r#"INFO a message\u{2028}with a separator, v: "a\u{2028}b\u{2029}c", w: "x\u{202e}y\u{200f}z\u{feff}", plain: café ü, c1: "\u{85}""#
            ),
            "{}",
            lines[0]
        );
        assert_eq!(split_fields(lines[0]).len(), 4);
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
