//! Quay.io repository notifications ("Push to Repository", delivered by
//! webhook).
//!
//! - Verification: none. Quay does not sign its notifications, so the
//!   unguessable hook URL is the only protection.
//! - Event: there is no event header; every delivery is treated as a push.
//! - Body: JSON.
//! - Notification: image, from `docker_url` (e.g. `quay.io/org/repo`), split
//!   the way fluxd splits image names.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{self, SampleRequest, OWNER, TAG};
use super::{json, required, HookResult, Kinds, Outcome, Proof, Provider, SampleHook, Settings};
use crate::image;
use crate::notification::Change;

/// Quay, as the config names it. It sends no event and no delivery id.
pub const PROVIDER: Provider = Provider {
    name: "Quay",
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
    docker_url: Option<String>,
}

/// Parse one Quay delivery.
pub fn handle(_headers: &HeaderMap, body: &[u8], _settings: &Settings) -> HookResult {
    let payload: Payload = json(body)?;
    let name = required(payload.docker_url, "docker_url")?;
    Ok(Outcome::Notify(vec![Change::image(image::parse(&name)?)]))
}

/// A "Push to Repository" notification for one tag.
fn sample(s: &SampleRequest) -> SampleHook {
    let host = s.registry_host.unwrap_or("quay.io");
    let repository = format!("{OWNER}/{}", s.name);
    let docker_url = format!("{host}/{repository}");
    let body = json!({
        "name": s.name,
        "repository": repository,
        "namespace": OWNER,
        "docker_url": docker_url,
        "homepage": format!("https://{host}/repository/{repository}"),
        "updated_tags": [TAG],
    });
    SampleHook {
        headers: sample::json_headers(),
        body: s.body_or(&body),
        summary: format!("a push of image {docker_url}:{TAG}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::{fixture, headers, image, settings};
    use crate::source::HookError;

    fn deliver(body: &[u8]) -> HookResult {
        handle(&headers(&[]), body, &settings(&fixture("quay_key")))
    }

    /// cases.json "quay push".
    #[test]
    fn push_notifies() {
        assert_eq!(
            deliver(&fixture("quay_payload")),
            Ok(image("quay.io", "hiddeco/foo"))
        );
    }

    #[test]
    fn headers_and_key_play_no_part() {
        let h = headers(&[("Content-Type", "text/plain"), ("Authorization", "x")]);
        assert_eq!(
            handle(&h, &fixture("quay_payload"), &settings(b"other")),
            Ok(image("quay.io", "hiddeco/foo"))
        );
    }

    #[test]
    fn other_registries_and_ports() {
        for (url, domain, img) in [
            (
                "quay.example.com:8443/org/app",
                "quay.example.com:8443",
                "org/app",
            ),
            ("quay.io/org/team/app", "quay.io", "org/team/app"),
        ] {
            let body = format!(r#"{{"docker_url":"{url}"}}"#);
            assert_eq!(deliver(body.as_bytes()), Ok(image(domain, img)), "{url}");
        }
    }

    #[test]
    fn bad_payloads_are_400() {
        let body = fixture("quay_payload");
        for bad in [
            &body[..body.len() / 2],
            b"".as_slice(),
            b"\xff\xfe\xfd".as_slice(),
            b"{\"docker_url\":\"quay.io/\xff\"}".as_slice(),
            br#""quay.io/hiddeco/foo""#.as_slice(),
            br#"[]"#.as_slice(),
            br#"{"docker_url":1}"#.as_slice(),
            br#"{"docker_url":["quay.io/hiddeco/foo"]}"#.as_slice(),
            br#"{"repository":"hiddeco/foo"}"#.as_slice(),
            br#"{"docker_url":null}"#.as_slice(),
            br#"{"docker_url":""}"#.as_slice(),
            br#"{"docker_url":"quay.io/hiddeco/foo/"}"#.as_slice(),
            br#"{"docker_url":"quay.io/hiddeco/foo:"}"#.as_slice(),
        ] {
            let err = deliver(bad).unwrap_err();
            assert!(matches!(err, HookError::BadPayload(_)), "{bad:?}: {err:?}");
            assert!(!err.is_unauthorized());
        }
    }
}
