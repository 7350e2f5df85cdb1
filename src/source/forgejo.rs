//! Forgejo push webhooks. Forgejo is a fork of Gitea and sends Gitea's
//! payload, signed the same way; [`super::gitea`] reads it.
//!
//! - Verification: `X-Forgejo-Signature`, the bare hex HMAC-SHA256 of the
//!   payload keyed with the webhook's secret. Forgejo sends the same value
//!   in Gitea's `X-Gitea-Signature` too, which is checked instead when
//!   `X-Forgejo-Signature` is absent (older Forgejo releases send only
//!   Gitea's headers). A wrong `X-Forgejo-Signature` is not rescued by a
//!   right `X-Gitea-Signature`.
//! - Event: `X-Forgejo-Event`, or `X-Gitea-Event` for a delivery checked
//!   by `X-Gitea-Signature`. `push` notifies; every other event is
//!   acknowledged and ignored.
//! - Body and notification: as for Gitea: `repository.ssh_url`, and
//!   `repository.clone_url` where fluxd would take it for another
//!   repository; tag pushes and deleted branches are acknowledged.

use super::gitea::{self, Forge, Headers};
use super::Provider;

/// Forgejo: its own headers first, then Gitea's, which it sends as well.
struct Forgejo;

impl Forge for Forgejo {
    const NAME: &'static str = "Forgejo";
    const HEADERS: &'static [Headers] = &[
        Headers {
            signature: "X-Forgejo-Signature",
            event: "X-Forgejo-Event",
            delivery: "X-Forgejo-Delivery",
        },
        gitea::HEADERS,
    ];
    const SAMPLE_HOST: &'static str = "forgejo.example.com";
}

/// Forgejo, as the config names it.
pub const PROVIDER: Provider = gitea::provider::<Forgejo>();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Change;
    use crate::source::testing::{fixture, headers, settings};
    use crate::source::verify::{sign_hex, Algorithm};
    use crate::source::{HookError, HookResult, Outcome, SampleRequest};

    const KEY: &[u8] = b"forgejo-webhook-secret-012345678";

    /// The documented push (ssh and https URLs naming one repository) with
    /// these headers, to an endpoint keyed with `KEY`.
    fn push_with(pairs: &[(&str, &str)]) -> HookResult {
        let h = headers(pairs);
        (PROVIDER.handle)(&h, &fixture("forgejo/push.json"), &settings(KEY))
    }

    /// The push's signature with `key`.
    fn signed_with(key: &[u8]) -> String {
        sign_hex(Algorithm::Sha256, key, &fixture("forgejo/push.json"))
    }

    fn notified() -> HookResult {
        let change = Change::git("git@forge.example.net:infra/cluster.git", "main");
        Ok(Outcome::Notify(vec![change]))
    }

    #[test]
    fn a_documented_push_with_both_forges_headers() {
        let sig = signed_with(KEY);
        let id = "f6266f16-1bf3-46a5-9ea4-602e06ead473";
        let outcome = push_with(&[
            ("Content-Type", "application/json"),
            ("X-Forgejo-Delivery", id),
            ("X-Forgejo-Event", "push"),
            ("X-Forgejo-Event-Type", "push"),
            ("X-Forgejo-Signature", &sig),
            ("X-Gitea-Delivery", id),
            ("X-Gitea-Event", "push"),
            ("X-Gitea-Event-Type", "push"),
            ("X-Gitea-Signature", &sig),
        ]);
        assert_eq!(outcome, notified());
    }

    #[test]
    fn either_forges_headers_will_do() {
        let sig = signed_with(KEY);
        for pairs in [
            [("X-Forgejo-Event", "push"), ("X-Forgejo-Signature", &sig)],
            [("X-Gitea-Event", "push"), ("X-Gitea-Signature", &sig)],
        ] {
            assert_eq!(push_with(&pairs), notified(), "{pairs:?}");
        }
        // The event comes from the set of headers the signature came from.
        let outcome = push_with(&[
            ("X-Forgejo-Event", "delete"),
            ("X-Gitea-Event", "push"),
            ("X-Forgejo-Signature", &sig),
            ("X-Gitea-Signature", &sig),
        ]);
        assert_eq!(outcome, Ok(Outcome::Ignore("delete event".into())));
    }

    #[test]
    fn forgejos_signature_is_the_one_checked() {
        let (good, bad) = (signed_with(KEY), signed_with(b"another key"));
        let cases: [(&[(&str, &str)], HookError); 6] = [
            // A wrong Forgejo signature is not rescued by a right Gitea one.
            (
                &[("X-Forgejo-Signature", &bad), ("X-Gitea-Signature", &good)],
                HookError::BadSignature("X-Forgejo-Signature"),
            ),
            (
                &[("X-Gitea-Signature", &bad)],
                HookError::BadSignature("X-Gitea-Signature"),
            ),
            // Gogs's header, or none: unsigned, named as Forgejo names it.
            (
                &[("X-Gogs-Signature", &good)],
                HookError::Unsigned("X-Forgejo-Signature"),
            ),
            (&[], HookError::Unsigned("X-Forgejo-Signature")),
            // Verified, but without the event header that goes with the
            // signature.
            (
                &[("X-Forgejo-Signature", &good), ("X-Gitea-Event", "push")],
                HookError::MissingEvent("X-Forgejo-Event"),
            ),
            (
                &[("X-Gitea-Signature", &good), ("X-Forgejo-Event", "push")],
                HookError::MissingEvent("X-Gitea-Event"),
            ),
        ];
        for (pairs, want) in cases {
            let mut pairs = pairs.to_vec();
            if !pairs.iter().any(|(name, _)| name.ends_with("-Event")) {
                pairs.push(("X-Forgejo-Event", "push"));
            }
            assert_eq!(push_with(&pairs), Err(want), "{pairs:?}");
        }
    }

    #[test]
    fn the_sample_carries_both_forges_headers() {
        let d = (PROVIDER.sample)(&SampleRequest::push(KEY));
        let sig = sign_hex(Algorithm::Sha256, KEY, &d.body);
        for name in ["X-Forgejo-Signature", "X-Gitea-Signature"] {
            assert_eq!(d.header(name), Some(sig.as_str()), "{name}");
        }
        for name in ["X-Forgejo-Event", "X-Gitea-Event"] {
            assert_eq!(d.header(name), Some("push"), "{name}");
        }
        let change = Change::git("git@forgejo.example.com:example/app.git", "main");
        assert_eq!(
            (PROVIDER.handle)(&d.header_map(), &d.body, &settings(KEY)),
            Ok(Outcome::Notify(vec![change]))
        );
    }
}
