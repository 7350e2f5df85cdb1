//! Any sender that signs by the Standard Webhooks specification
//! (standardwebhooks.com; Svix and the services built on it, GitLab's
//! signing tokens, a CI job using one of the spec's libraries).
//!
//! - Verification: `webhook-signature: v1,<base64>`, an HMAC-SHA256 of
//!   `{webhook-id}.{webhook-timestamp}.{body}` keyed with the decoded bytes
//!   of the endpoint's signing secret (`whsec_<base64>`); several
//!   space-separated signatures may be sent, and one valid `v1` is enough
//!   (see [`super::stamped`]). The timestamp must lie within
//!   `--signature-tolerance` of flux-recv's clock, and a `webhook-id`
//!   accepted within that window is acknowledged without sending anything
//!   again (both checked on the request path, [`crate::replay`]).
//! - Event: every signed POST is one; the payload's `type` is not read.
//! - Body: anything, even nothing; only its signature is checked.
//! - Notification: what the endpoint's required `notify:` block names (a
//!   git repository and branch, an image, or both), the same for every
//!   delivery.
//! - Delivery id: `webhook-id`, for the log line.

use http::HeaderMap;
use serde_json::json;

use super::sample::{self, SampleRequest, AFTER, BRANCH, OWNER, TIME};
use super::stamped::{self, Stamp};
use super::{Extra, HookResult, Kinds, Outcome, Proof, Provider, SampleHook, Settings};

/// StandardWebhooks, as the config names it.
pub const PROVIDER: Provider = Provider {
    name: "StandardWebhooks",
    proof: Proof::Stamped,
    event_header: None,
    delivery_header: Some(stamped::ID),
    handle,
    sample_events: &["push"],
    sample,
    changes: Kinds::GitAndImage,
    extras: &[Extra::Notify],
};

/// A POST whose signature matches sends the endpoint's `notify:` changes.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    stamped::verify(headers, body, settings.key.expose())?;
    Ok(Outcome::Notify(settings.notify.clone()))
}

/// An event in the shape the spec recommends (`type`, `timestamp`,
/// `data`), from a CI job, signed with the endpoint's secret at
/// `sent_at`. flux-recv reads none of the body.
fn sample(s: &SampleRequest) -> SampleHook {
    let body = s.body_or(&json!({
        "type": "pipeline.succeeded",
        "timestamp": TIME,
        "data": {
            "pipeline": format!("{OWNER}/{}", s.name),
            "ref": format!("refs/heads/{BRANCH}"),
            "commit": AFTER,
        },
    }));
    let stamp = Stamp {
        id: s.delivery_id.to_string(),
        timestamp: s.sent_at,
    };
    let mut headers = sample::json_headers();
    headers.extend(stamped::headers(s.key, &stamp, &body));
    SampleHook {
        headers,
        body,
        summary: "a signed event from a CI job".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Change;
    use crate::source::testing::{headers, settings};
    use crate::source::HookError;

    /// The Rust library's test secret (standard-webhooks/standard-webhooks,
    /// `libraries/rust/src/lib.rs`).
    const SECRET: &[u8] = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    fn notifying(key: &[u8]) -> Settings {
        Settings {
            notify: vec![
                Change::git("git@github.com:org/app.git", "main"),
                Change::image(crate::image::parse("registry.example.com/team/app").unwrap()),
            ],
            ..settings(key)
        }
    }

    fn signed(body: &[u8], signature: Option<&str>) -> HeaderMap {
        let stamp = Stamp {
            id: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W".into(),
            timestamp: 1_674_087_231,
        };
        let mut pairs = stamped::headers(SECRET, &stamp, body);
        if let Some(signature) = signature {
            pairs[2].1 = signature.to_string();
        }
        headers(
            &pairs
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn a_signed_post_sends_the_notify_block() {
        for body in [b"".as_slice(), b"{\"type\":\"x\"}", b"\xff\x00"] {
            assert_eq!(
                handle(&signed(body, None), body, &notifying(SECRET)),
                Ok(Outcome::Notify(notifying(SECRET).notify)),
                "{body:?}"
            );
        }
    }

    #[test]
    fn a_wrong_or_missing_signature_is_401() {
        let body = b"{\"type\":\"x\"}";
        assert_eq!(
            handle(&headers(&[]), body, &notifying(SECRET)),
            Err(HookError::Unsigned(stamped::SIGNATURE))
        );
        let good = stamped::headers(
            SECRET,
            &Stamp {
                id: "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W".into(),
                timestamp: 1_674_087_231,
            },
            body,
        )[2]
        .1
        .clone();
        for bad in [
            "",
            "v1,",
            "v1a,abc",
            &good[3..],
            &good.replace("v1,", "v2,"),
        ] {
            assert_eq!(
                handle(&signed(body, Some(bad)), body, &notifying(SECRET)),
                Err(HookError::BadSignature(stamped::SIGNATURE)),
                "{bad:?}"
            );
        }
        // The right signature for another body.
        assert_eq!(
            handle(&signed(body, None), b"{\"type\":\"y\"}", &notifying(SECRET)),
            Err(HookError::BadSignature(stamped::SIGNATURE))
        );
        // A key that is no signing secret (which endpoints refuse to load)
        // verifies nothing, not even a signature made with its own bytes.
        let plain = b"0123456789abcdef0123456789abcdef";
        let request = SampleRequest::push(plain);
        let d = sample(&request);
        assert_eq!(
            handle(&d.header_map(), &d.body, &notifying(plain)),
            Err(HookError::BadSignature(stamped::SIGNATURE))
        );
    }

    #[test]
    fn the_sample_is_signed_at_its_time_with_its_id() {
        let request = SampleRequest {
            sent_at: 1_700_000_000,
            delivery_id: "msg_1",
            ..SampleRequest::push(SECRET)
        };
        let d = sample(&request);
        assert_eq!(d.header(stamped::ID), Some("msg_1"));
        assert_eq!(d.header(stamped::TIMESTAMP), Some("1700000000"));
        assert_eq!(
            stamped::verify(&d.header_map(), &d.body, SECRET),
            Ok(Stamp {
                id: "msg_1".into(),
                timestamp: 1_700_000_000
            })
        );
    }
}
