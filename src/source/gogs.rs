//! Gogs push webhooks. Gitea was forked from Gogs and kept its payload, so
//! [`super::gitea`] reads Gogs's too.
//!
//! - Verification: `X-Gogs-Signature`, the bare hex HMAC-SHA256 of the
//!   payload keyed with the webhook's secret (for a form-encoded hook, of
//!   the JSON in its `payload` field).
//! - Event: `X-Gogs-Event`. `push` notifies; every other event (`create`,
//!   `delete`, `fork`, `issues`, `pull_request`, `release`, …) is
//!   acknowledged and ignored.
//! - Body and notification: as for Gitea: `repository.ssh_url`, and
//!   `repository.clone_url` where fluxd would take it for another
//!   repository (Gogs often serves the web on port 3000); tag pushes and
//!   deleted branches are acknowledged.

use super::gitea::{self, Forge, Headers};
use super::Provider;

struct Gogs;

impl Forge for Gogs {
    const NAME: &'static str = "Gogs";
    const HEADERS: &'static [Headers] = &[Headers {
        signature: "X-Gogs-Signature",
        event: "X-Gogs-Event",
        delivery: "X-Gogs-Delivery",
    }];
    const SAMPLE_HOST: &'static str = "gogs.example.com";
}

/// Gogs, as the config names it.
pub const PROVIDER: Provider = gitea::provider::<Gogs>();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Change;
    use crate::source::testing::{fixture, headers, settings};
    use crate::source::verify::{sign_hex, Algorithm};
    use crate::source::{HookError, HookResult, Outcome, Settings};
    use http::HeaderMap;

    const KEY: &[u8] = b"gogs-webhook-secret-0123456789ab";

    fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
        (PROVIDER.handle)(headers, body, settings)
    }

    fn signed(event: &str, body: &[u8]) -> HeaderMap {
        let sig = sign_hex(Algorithm::Sha256, KEY, body);
        headers(&[
            ("Content-Type", "application/json"),
            ("X-Gogs-Delivery", "f6266f16-1bf3-46a5-9ea4-602e06ead473"),
            ("X-Gogs-Event", event),
            ("X-Gogs-Signature", &sig),
        ])
    }

    /// Gogs's payload (no `head_commit`, fewer repository fields) from an
    /// instance serving the web on port 3000: fluxd hears of both URLs.
    #[test]
    fn a_documented_push_notifies_for_both_urls() {
        let body = fixture("gogs/push.json");
        assert_eq!(
            handle(&signed("push", &body), &body, &settings(KEY)),
            Ok(Outcome::Notify(vec![
                Change::git("git@gogs.example.com:ops/flux-config.git", "production"),
                Change::git(
                    "http://gogs.example.com:3000/ops/flux-config.git",
                    "production"
                ),
            ]))
        );
    }

    #[test]
    fn other_events_are_acknowledged() {
        let body = br#"{"ref":"v1.0","ref_type":"tag","repository":{}}"#;
        for event in ["create", "delete", "fork", "issues", "release"] {
            assert!(matches!(
                handle(&signed(event, body), body, &settings(KEY)),
                Ok(Outcome::Ignore(_))
            ));
        }
    }

    #[test]
    fn only_gogs_headers_count() {
        let body = fixture("gogs/push.json");
        let mut h = signed("push", &body);
        let sig = h.remove("X-Gogs-Signature").unwrap();
        h.insert("X-Gitea-Signature", sig);
        assert_eq!(
            handle(&h, &body, &settings(KEY)),
            Err(HookError::Unsigned("X-Gogs-Signature"))
        );
        let mut h = signed("push", &body);
        h.remove("X-Gogs-Event");
        h.insert("X-Gitea-Event", "push".parse().unwrap());
        assert_eq!(
            handle(&h, &body, &settings(KEY)),
            Err(HookError::MissingEvent("X-Gogs-Event"))
        );
        let e = handle(&signed("push", &body), &body, &settings(b"other")).unwrap_err();
        assert_eq!(e, HookError::BadSignature("X-Gogs-Signature"));
    }
}
