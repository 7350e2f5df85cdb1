//! What a source's `handle` returns: an [`Outcome`] (notify fluxd of some
//! changes, or acknowledge and do nothing), or a [`HookError`] saying why
//! the delivery was refused, which the HTTP layer turns into a 401 or a 400.

use crate::notification::Change;

/// A verified, understood delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Tell fluxd about these changes, in this order.
    Notify(Vec<Change>),
    /// A genuine delivery that needs no action (GitHub's ping, a non-push
    /// event, a GCR delete); the text says why, for the log and the reply.
    Ignore(String),
}

/// What a source returns.
pub type HookResult = Result<Outcome, HookError>;

/// Why a delivery was refused. Nothing is sent to fluxd for any of these.
///
/// Values that come from the request are passed through [`crate::printable`]
/// first, so they are short and cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    /// The header that should carry the signature or token is absent.
    #[error("missing {0} header")]
    Unsigned(&'static str),
    /// The signature or token is present but wrong (or uses an algorithm
    /// we do not accept).
    #[error("{0} does not match")]
    BadSignature(&'static str),
    /// A header the signature covers is not in the form it must have (a
    /// `webhook-timestamp` that is not a number).
    #[error("malformed {0} header")]
    Malformed(&'static str),
    /// The signature covers a time too far from now
    /// (`--signature-tolerance`): a recorded delivery replayed, or a clock
    /// far off. Which way, and whether the signature matched, is not said.
    #[error("the signature is stale: webhook-timestamp is outside the accepted window")]
    Stale,
    /// The signature names a hash function this header never carries
    /// (`sha1=` in `X-Hub-Signature-256`): refused whether or not it
    /// matches, so a signature cannot be downgraded to a weaker hash.
    #[error("{header} must be {expected}")]
    WrongAlgorithm {
        /// The header.
        header: &'static str,
        /// What it must carry, e.g. `sha256=<hex>, an HMAC-SHA256 of the body`.
        expected: &'static str,
    },
    /// The header naming the event is absent.
    #[error("missing {0} header")]
    MissingEvent(&'static str),
    /// An event this source does not act on.
    #[error("unexpected event \"{value}\" in {field}")]
    WrongEvent {
        /// Header or payload field the event came from.
        field: &'static str,
        /// What it said.
        value: String,
    },
    /// The body is not the JSON (or form) the provider documents, or lacks a
    /// field we need.
    #[error("bad payload: {0}")]
    BadPayload(String),
    /// The payload names more changes than one delivery is read into
    /// ([`super::MAX_CHANGES`]).
    #[error(
        "too many changes: the delivery names more than {0} distinct changes; nothing was sent"
    )]
    TooManyChanges(usize),
}

impl HookError {
    /// Whether the request failed to prove its sender (a 401), rather than
    /// being a genuine delivery we cannot use (a 400).
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            HookError::Unsigned(_)
                | HookError::BadSignature(_)
                | HookError::WrongAlgorithm { .. }
                | HookError::Malformed(_)
                | HookError::Stale
        )
    }

    /// An unexpected event, its value made safe to print.
    pub fn wrong_event(field: &'static str, value: &str) -> HookError {
        HookError::WrongEvent {
            field,
            value: crate::printable(value),
        }
    }
}

impl From<crate::image::ImageError> for HookError {
    fn from(e: crate::image::ImageError) -> HookError {
        HookError::BadPayload(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unauthorized_errors() {
        assert!(HookError::Unsigned("X").is_unauthorized());
        assert!(HookError::BadSignature("X").is_unauthorized());
        assert!(HookError::Malformed("X").is_unauthorized());
        assert!(HookError::Stale.is_unauthorized());
        let wrong = HookError::WrongAlgorithm {
            header: "X",
            expected: "sha256=<hex>",
        };
        assert!(wrong.is_unauthorized());
        assert!(!HookError::MissingEvent("X").is_unauthorized());
        assert!(!HookError::wrong_event("X", "y").is_unauthorized());
        assert!(!HookError::BadPayload("x".into()).is_unauthorized());
        assert!(!HookError::TooManyChanges(1).is_unauthorized());
    }

    #[test]
    fn an_unexpected_event_is_quoted_once_and_escaped_once() {
        let said = |value: &str| HookError::wrong_event("X-Event", value).to_string();
        assert_eq!(
            said("tag_push"),
            r#"unexpected event "tag_push" in X-Event"#
        );
        assert_eq!(said("a\"b\\c"), r#"unexpected event "a\"b\\c" in X-Event"#);
        assert_eq!(said("x\ny"), r#"unexpected event "x\ny" in X-Event"#);
    }
}
