//! Docker Hub repository webhooks.
//!
//! - Verification: none. Docker Hub does not sign its webhooks, so the
//!   unguessable hook URL is the only protection.
//! - Event: Docker Hub sends only pushes, with no event header; every
//!   delivery is treated as one.
//! - Body: JSON.
//! - Notification: image, from `repository.repo_name` (`owner/name`, or
//!   `library/name` for official images), split the way fluxd splits image
//!   names: Docker Hub images have an empty domain.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{self, SampleRequest, EPOCH, OWNER, TAG};
use super::{json, required, HookResult, Kinds, Outcome, Proof, Provider, SampleHook, Settings};
use crate::image;
use crate::notification::Change;

/// Docker Hub, as the config names it. It sends no event and no delivery
/// id.
pub const PROVIDER: Provider = Provider {
    name: "DockerHub",
    proof: Proof::HookUrl,
    event_header: None,
    delivery_header: None,
    handle,
    sample_events: &["push"],
    sample,
    changes: Kinds::Image,
    extras: &[],
};

#[derive(Deserialize)]
struct Payload {
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Repository {
    repo_name: Option<String>,
}

/// Parse one Docker Hub delivery.
pub fn handle(_headers: &HeaderMap, body: &[u8], _settings: &Settings) -> HookResult {
    let payload: Payload = json(body)?;
    let name = required(
        payload.repository.and_then(|r| r.repo_name),
        "repository.repo_name",
    )?;
    Ok(Outcome::Notify(vec![Change::image(image::parse(&name)?)]))
}

/// A push of one tag.
fn sample(s: &SampleRequest) -> SampleHook {
    let repo_name = format!("{OWNER}/{}", s.name);
    let body = json!({
        "callback_url": format!("https://registry.hub.docker.com/u/{repo_name}/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/"),
        "push_data": {"pushed_at": EPOCH, "pusher": OWNER, "tag": TAG},
        "repository": {
            "comment_count": 0,
            "date_created": EPOCH - 86_400,
            "description": "",
            "full_description": "",
            "is_official": false,
            "is_private": true,
            "is_trusted": false,
            "name": s.name,
            "namespace": OWNER,
            "owner": OWNER,
            "repo_name": repo_name,
            "repo_url": format!("https://hub.docker.com/r/{repo_name}"),
            "star_count": 0,
            "status": "Active",
        },
    });
    SampleHook {
        headers: sample::json_headers(),
        body: s.body_or(&body),
        summary: format!("a push of image {repo_name}:{TAG}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::{fixture, headers, image, settings};
    use crate::source::HookError;

    fn deliver(body: &[u8]) -> HookResult {
        handle(&headers(&[]), body, &settings(&fixture("dockerhub_key")))
    }

    /// cases.json "dockerhub push".
    #[test]
    fn push_notifies() {
        assert_eq!(
            deliver(&fixture("dockerhub_payload")),
            Ok(image("", "svendowideit/testhook"))
        );
    }

    #[test]
    fn headers_and_key_play_no_part() {
        let h = headers(&[("Content-Type", "text/plain"), ("X-Anything", "x")]);
        assert_eq!(
            handle(&h, &fixture("dockerhub_payload"), &settings(b"")),
            Ok(image("", "svendowideit/testhook"))
        );
    }

    #[test]
    fn repo_names_are_split_like_fluxd() {
        for (name, domain, img) in [
            ("library/nginx", "", "library/nginx"),
            ("nginx", "", "nginx"),
            ("localhost:5000/app", "localhost:5000", "app"),
        ] {
            let body = format!(r#"{{"repository":{{"repo_name":"{name}"}}}}"#);
            assert_eq!(deliver(body.as_bytes()), Ok(image(domain, img)), "{name}");
        }
    }

    #[test]
    fn bad_payloads_are_400() {
        let body = fixture("dockerhub_payload");
        for bad in [
            &body[..body.len() / 2],
            b"".as_slice(),
            b"\xff\xfe\xfd".as_slice(),
            b"{\"repository\":{\"repo_name\":\"a/\xff\"}}".as_slice(),
            br#"[]"#.as_slice(),
            br#"{"repository":{"repo_name":42}}"#.as_slice(),
            br#"{"repository":"svendowideit/testhook"}"#.as_slice(),
            br#"{}"#.as_slice(),
            br#"{"repository":{}}"#.as_slice(),
            br#"{"repository":{"repo_name":null}}"#.as_slice(),
            br#"{"repository":{"repo_name":""}}"#.as_slice(),
            // Names fluxd would refuse.
            br#"{"repository":{"repo_name":"/a"}}"#.as_slice(),
            br#"{"repository":{"repo_name":"a/"}}"#.as_slice(),
            br#"{"repository":{"repo_name":"a:b:c"}}"#.as_slice(),
        ] {
            let err = deliver(bad).unwrap_err();
            assert!(matches!(err, HookError::BadPayload(_)), "{bad:?}: {err:?}");
            assert!(!err.is_unauthorized());
        }
    }
}
