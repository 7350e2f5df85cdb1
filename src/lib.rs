//! flux-recv: a webhook receiver for Flux v1.
//!
//! Providers (GitHub, Docker Hub, …) POST a webhook to `/hook/<fingerprint>`.
//! flux-recv finds the endpoint in the current [`table::Table`], lets the
//! endpoint's [`source::Source`] verify and parse the delivery, and queues
//! the resulting [`notification::Change`]s for fluxd's `POST /v11/notify`
//! ([`delivery`]), answering the provider within a reply budget.
//!
//! The map of the parts, what flows through them and the rules between them
//! is `docs/architecture.md`: read it first. Everything serving needs is
//! assembled in one place, [`service::Service`]; the binary in `main.rs`
//! only parses flags and calls into this library, and the end-to-end tests
//! start the same service, so they drive exactly what runs in production.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod cli;
pub mod commands;
pub mod config;
pub mod conn;
pub mod delivery;
pub mod endpoint;
pub mod fd_limit;
pub mod files;
pub mod filter;
pub mod gcr_auth;
pub mod globs;
pub mod hook;
pub mod image;
pub mod logging;
pub mod metrics;
pub mod notification;
pub mod options;
pub mod push;
pub mod reload;
pub mod replay;
pub mod reply;
pub mod routes;
pub mod server;
pub mod service;
pub(crate) mod signals;
pub mod slots;
pub mod source;
pub mod table;
pub mod target_files;
pub mod targets;
pub mod tls;
pub mod watch;

/// Make untrusted text safe for a log line or a reply: printable ASCII,
/// with everything else (control characters, line and paragraph
/// separators, bidirectional overrides, any non-ASCII) and quotes and
/// backslashes shown as Rust escapes, at most 100 characters as shown.
pub fn printable(s: &str) -> String {
    printable_within(s, 100)
}

/// [`printable`], at most `max` characters as shown (escapes count), and
/// `…` after them when the text was cut.
pub fn printable_within(s: &str, max: usize) -> String {
    // Most values (event names, delivery ids) need no escape: one copy.
    let as_is = |b: &u8| (b' '..=b'~').contains(b) && !matches!(b, b'\\' | b'\'' | b'"');
    if s.len() <= max && s.as_bytes().iter().all(as_is) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len().min(max) + 8);
    for c in s.chars() {
        let escaped = c.escape_default();
        if out.len() + escaped.len() > max {
            out.push('…');
            break;
        }
        out.extend(escaped);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{printable, printable_within};

    #[test]
    fn printable_escapes_and_truncates() {
        assert_eq!(printable("push"), "push");
        assert_eq!(printable("a\nb"), "a\\nb");
        // Quotes and backslashes, printable ASCII, are still escaped.
        assert_eq!(printable(r#"a"b'c\d"#), r#"a\"b\'c\\d"#);
        assert_eq!(printable("~ x"), "~ x");
        assert_eq!(printable("é"), "\\u{e9}");
        assert_eq!(printable(&"x".repeat(100)), "x".repeat(100));
        let long = "x".repeat(500);
        assert_eq!(printable(&long).chars().count(), 101);
    }

    #[test]
    fn printable_escapes_what_hides_or_reorders_text_and_bounds_what_it_shows() {
        for c in [
            '\u{2028}', '\u{2029}', '\u{202e}', '\u{200f}', '\u{feff}', '\u{85}',
        ] {
            let shown = printable(&format!("a{c}b"));
            assert!(shown.is_ascii(), "{shown}");
            assert_eq!(shown, format!("a\\u{{{:x}}}b", c as u32));
        }
        // Escapes count: 500 escaped characters are cut as 100 plain ones
        // are, never in the middle of an escape.
        let shown = printable(&"\u{202e}".repeat(500));
        assert!(shown.chars().count() <= 101, "{}", shown.len());
        assert!(shown.ends_with("}…"), "{shown}");
        assert_eq!(printable_within("abcdef", 4), "abcd…");
    }
}
