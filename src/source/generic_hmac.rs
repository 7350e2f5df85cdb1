//! Generic hooks signed with an HMAC, for CI systems and scripts that can
//! sign what they send.
//!
//! - Verification: `X-Signature: sha256=<hex>`, an HMAC-SHA256 of the raw
//!   body keyed with the endpoint's key (`sha1=` and `sha512=` are accepted
//!   too), compared in constant time.
//! - Event: every signed POST is one; there is nothing to tell apart.
//! - Body: anything, even nothing; only its signature is checked.
//! - Notification: what the endpoint's required `notify:` block names (a
//!   git repository and branch, an image, or both), the same for every
//!   delivery.
//! - Delivery id: `X-Request-Id`, if the sender sets one, for the log line.
//!
//! A signature proves who sent the body, not when: a recorded delivery can
//! be replayed. Here that costs nothing, since a replay only asks fluxd to
//! look again at what the endpoint names.

use http::HeaderMap;
use serde_json::json;

use super::sample::{self, SampleRequest, AFTER, BRANCH, OWNER, TIME};
use super::verify::{self, Algorithm};
use super::{Extra, HookResult, Kinds, Outcome, Proof, Provider, SampleHook, Settings};

const SIGNATURE: &str = "X-Signature";
/// A request id many senders set.
const REQUEST_ID: &str = "X-Request-Id";

/// GenericHMAC, as the config names it.
pub const PROVIDER: Provider = Provider {
    name: "GenericHMAC",
    proof: Proof::Signature {
        header: SIGNATURE,
        prefixed: true,
    },
    event_header: None,
    delivery_header: Some(REQUEST_ID),
    handle,
    sample_events: &["push"],
    sample,
    changes: Kinds::GitAndImage,
    extras: &[Extra::Notify],
};

/// A POST whose signature matches sends the endpoint's `notify:` changes.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    verify::prefixed_hmac_in_header(headers, SIGNATURE, settings.key.expose(), body)?;
    Ok(Outcome::Notify(settings.notify.clone()))
}

/// A POST from a CI job, signed with HMAC-SHA256. flux-recv reads none
/// of the body.
fn sample(s: &SampleRequest) -> SampleHook {
    let body = s.body_or(&json!({
        "pipeline": format!("{OWNER}/{}", s.name),
        "ref": format!("refs/heads/{BRANCH}"),
        "commit": AFTER,
        "status": "success",
        "finished_at": TIME,
    }));
    let mut headers = sample::json_headers();
    headers.push((SIGNATURE, verify::sign(Algorithm::Sha256, s.key, &body)));
    headers.push((REQUEST_ID, s.delivery_id.to_string()));
    SampleHook {
        headers,
        body,
        summary: "a signed POST from a CI job".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Change;
    use crate::source::testing::{headers, settings};
    use crate::source::HookError;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn notifying() -> Settings {
        Settings {
            notify: vec![
                Change::git("git@github.com:org/app.git", "main"),
                Change::image(crate::image::parse("registry.example.com/team/app").unwrap()),
            ],
            ..settings(KEY)
        }
    }

    fn signed(algo: Algorithm, key: &[u8], body: &[u8]) -> HeaderMap {
        headers(&[(SIGNATURE, &verify::sign(algo, key, body))])
    }

    #[test]
    fn a_signed_post_sends_the_notify_block() {
        for algo in [Algorithm::Sha256, Algorithm::Sha1, Algorithm::Sha512] {
            for body in [b"".as_slice(), b"{\"any\":\"thing\"}", b"\xff\x00"] {
                assert_eq!(
                    handle(&signed(algo, KEY, body), body, &notifying()),
                    Ok(Outcome::Notify(notifying().notify)),
                    "{algo:?} {body:?}"
                );
            }
        }
    }

    #[test]
    fn an_unsigned_post_is_401() {
        assert_eq!(
            handle(&headers(&[]), b"{}", &notifying()),
            Err(HookError::Unsigned(SIGNATURE))
        );
    }

    #[test]
    fn a_wrong_signature_is_401() {
        let body = b"{\"status\":\"success\"}";
        let hex = verify::sign_hex(Algorithm::Sha256, KEY, body);
        for bad in [
            // Another key, another body.
            verify::sign(Algorithm::Sha256, b"another key", body),
            verify::sign(Algorithm::Sha256, KEY, b"{\"status\":\"failure\"}"),
            // Right MAC, wrong or missing algorithm.
            format!("sha512={hex}"),
            format!("md5={hex}"),
            hex,
            String::new(),
            "sha256=".to_string(),
            "sha256=zz".to_string(),
        ] {
            let h = headers(&[(SIGNATURE, &bad)]);
            assert_eq!(
                handle(&h, body, &notifying()),
                Err(HookError::BadSignature(SIGNATURE)),
                "{bad}"
            );
        }
    }
}
