//! flux-recv: a webhook receiver for Flux v1.
//!
//! Providers (GitHub, Docker Hub, …) POST a webhook to `/hook/<fingerprint>`.
//! flux-recv finds the endpoint in the current [`table::Table`], lets the
//! endpoint's [`source::Source`] verify and parse the delivery, and queues
//! the resulting [`notification::Change`]s for fluxd's `POST /v11/notify`
//! ([`delivery`]), answering the provider within a reply budget.
//!
//! The map of the parts, what flows through them and the rules between them
//! is `docs/architecture.md`: read it first. The binary in `main.rs` only
//! parses flags and calls into this library, so the tests drive exactly what
//! runs in production.

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
pub mod gcr_auth;
pub mod hook;
pub mod image;
pub mod logging;
pub mod metrics;
pub mod notification;
pub mod options;
pub mod reload;
pub mod routes;
pub mod routing;
pub mod server;
pub(crate) mod signals;
pub mod slots;
pub mod source;
pub mod table;
pub mod watch;

/// Make untrusted text safe for a log line or a reply: at most 100
/// characters, with control characters and non-ASCII shown escaped.
pub fn printable(s: &str) -> String {
    const MAX: usize = 100;
    // Most values (event names, delivery ids) need no escape: one copy.
    let as_is = |b: &u8| (b' '..=b'~').contains(b) && !matches!(b, b'\\' | b'\'' | b'"');
    if s.len() <= MAX && s.as_bytes().iter().all(as_is) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len().min(MAX) + 8);
    out.extend(s.chars().take(MAX).flat_map(char::escape_default));
    if s.chars().nth(MAX).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::printable;

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
}
