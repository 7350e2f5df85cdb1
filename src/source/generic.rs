//! Generic hooks, for CI systems and anything else that can POST to a URL.
//!
//! - Verification: none; the unguessable hook URL is the secret. Use
//!   [`GenericHMAC`](super::generic_hmac) where the sender can sign.
//! - Event: every POST is one; there is nothing to tell apart.
//! - Body: anything, even nothing; it is not read.
//! - Notification: what the endpoint's required `notify:` block names (a
//!   git repository and branch, an image, or both), the same for every
//!   delivery.
//! - Delivery id: `X-Request-Id`, if the sender (or an ingress in front of
//!   flux-recv) sets one, for the log line.

use http::HeaderMap;
use serde_json::json;

use super::sample::{self, SampleRequest, AFTER, BRANCH, OWNER, TIME};
use super::{Extra, HookResult, Kinds, Outcome, Proof, Provider, SampleHook, Settings};

/// A request id many senders and ingress controllers set.
const REQUEST_ID: &str = "X-Request-Id";

/// Generic, as the config names it.
pub const PROVIDER: Provider = Provider {
    name: "Generic",
    proof: Proof::HookUrl,
    event_header: None,
    delivery_header: Some(REQUEST_ID),
    handle,
    sample_events: &["push"],
    sample,
    changes: Kinds::GitAndImage,
    extras: &[Extra::Notify],
};

/// Any POST sends the endpoint's `notify:` changes.
pub fn handle(_headers: &HeaderMap, _body: &[u8], settings: &Settings) -> HookResult {
    Ok(Outcome::Notify(settings.notify.clone()))
}

/// A POST from a CI job, with a request id. flux-recv reads none of the
/// body.
fn sample(s: &SampleRequest) -> SampleHook {
    let body = json!({
        "pipeline": format!("{OWNER}/{}", s.name),
        "ref": format!("refs/heads/{BRANCH}"),
        "commit": AFTER,
        "status": "success",
        "finished_at": TIME,
    });
    let mut headers = sample::json_headers();
    headers.push((REQUEST_ID, s.delivery_id.to_string()));
    SampleHook {
        headers,
        body: s.body_or(&body),
        summary: "a POST from a CI job".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Change;
    use crate::source::testing::{headers, settings};

    fn notifying(changes: &[Change]) -> Settings {
        Settings {
            notify: changes.to_vec(),
            ..settings(b"0123456789abcdef")
        }
    }

    #[test]
    fn any_post_sends_the_notify_block() {
        let git = Change::git("git@github.com:org/app.git", "main");
        let image = Change::image(crate::image::parse("registry.example.com/team/app").unwrap());
        for changes in [vec![git.clone()], vec![image.clone()], vec![git, image]] {
            for body in [
                b"".as_slice(),
                b"{}".as_slice(),
                b"not json at all".as_slice(),
                b"\xff\xfe\x00".as_slice(),
            ] {
                for h in [
                    headers(&[]),
                    headers(&[("Content-Type", "text/plain"), (REQUEST_ID, "42")]),
                ] {
                    assert_eq!(
                        handle(&h, body, &notifying(&changes)),
                        Ok(Outcome::Notify(changes.clone()))
                    );
                }
            }
        }
    }

    #[test]
    fn the_key_plays_no_part() {
        let changes = [Change::git("git@github.com:org/app.git", "main")];
        let mut s = notifying(&changes);
        s.key = crate::source::Secret::new(b"something else".to_vec());
        assert_eq!(
            handle(&headers(&[]), b"", &s),
            Ok(Outcome::Notify(changes.to_vec()))
        );
    }
}
