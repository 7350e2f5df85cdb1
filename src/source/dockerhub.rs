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

use super::{json, required, HookResult, Outcome, Settings};
use crate::image;
use crate::notification::Change;

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
            assert_eq!(err.status(), 400);
        }
    }
}
