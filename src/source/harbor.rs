//! Harbor webhooks (Harbor 1.x and 2.x).
//!
//! - Verification: the policy's "Auth Header" value, which Harbor sends
//!   verbatim in `Authorization`, must equal the key (compared in constant
//!   time). Harbor does not sign the body.
//! - Event: the payload's `type` must be `pushImage` (Harbor 1.x) or
//!   `PUSH_ARTIFACT` (Harbor 2.x); anything else is refused with 400, as the
//!   Go original did. Configure the policy for push events only.
//! - Body: JSON.
//! - Notification: image, from the first `event_data.resources[].resource_url`
//!   (e.g. `harbor.example.com/project/app:tag`; all resources of one event
//!   belong to the same repository), split the way fluxd splits image names.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{self, SampleRequest, DIGEST, EPOCH, TAG};
use super::{
    json, required, verify, HookError, HookResult, Kinds, Outcome, Proof, Provider, SampleHook,
    Settings,
};
use crate::image;
use crate::notification::Change;

const AUTHORIZATION: &str = "Authorization";
const TYPE: &str = "type";

/// Harbor, as the config names it. The event is in the body (`type`); it
/// sends no delivery id.
pub const PROVIDER: Provider = Provider {
    name: "Harbor",
    proof: Proof::HeaderToken {
        header: AUTHORIZATION,
        check: check_token,
    },
    event_header: None,
    delivery_header: None,
    handle,
    sample_events: &["push"],
    sample,
    changes: Kinds::Image,
    extras: &[],
};

/// The policy's auth header value, verbatim, must equal the key.
fn check_token(headers: &HeaderMap, key: &[u8]) -> Result<(), HookError> {
    verify::key_in_header(headers, AUTHORIZATION, key)
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "type")]
    kind: Option<String>,
    event_data: Option<EventData>,
}

#[derive(Deserialize)]
struct EventData {
    resources: Option<Vec<Resource>>,
}

#[derive(Deserialize)]
struct Resource {
    resource_url: Option<String>,
}

/// Verify and parse one Harbor delivery.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    check_token(headers, settings.key.expose())?;

    let payload: Payload = json(body)?;
    let kind = payload.kind.unwrap_or_default();
    if kind != "pushImage" && kind != "PUSH_ARTIFACT" {
        return Err(HookError::wrong_event(TYPE, &kind));
    }

    let first = payload
        .event_data
        .and_then(|d| d.resources)
        .unwrap_or_default()
        .into_iter()
        .next()
        .ok_or_else(|| HookError::BadPayload("event_data.resources is empty".into()))?;
    let url = required(first.resource_url, "event_data.resources[0].resource_url")?;
    Ok(Outcome::Notify(vec![Change::image(image::parse(&url)?)]))
}

/// A Harbor 2.x `PUSH_ARTIFACT` of one tag, with the auth header value.
fn sample(s: &SampleRequest) -> SampleHook {
    let host = s.registry_host.unwrap_or("harbor.example.com");
    let resource_url = format!("{host}/library/{}:{TAG}", s.name);
    let body = json!({
        "type": "PUSH_ARTIFACT",
        "occur_at": EPOCH,
        "operator": "admin",
        "event_data": {
            "resources": [{"digest": DIGEST, "tag": TAG, "resource_url": resource_url}],
            "repository": {
                "date_created": EPOCH - 86_400,
                "name": s.name,
                "namespace": "library",
                "repo_full_name": format!("library/{}", s.name),
                "repo_type": "private",
            },
        },
    });
    let mut headers = sample::json_headers();
    headers.push((AUTHORIZATION, s.key_text()));
    SampleHook {
        headers,
        body: s.body_or(&body),
        summary: format!("a push of image {resource_url}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::{fixture, headers, image, settings};

    /// testdata/harbor_key, which has no trailing newline.
    const KEY: &str = "vvvwn9icwe1u4xv56ok8gboaatuqlgyua9ucl5nm";
    /// testdata/harborV2_key, which has no trailing newline.
    const KEY_V2: &str = "f4f1e8fcd09bc07a397df58b3a2af9ed9414e39b";

    fn deliver(body: &[u8]) -> HookResult {
        let h = headers(&[(AUTHORIZATION, KEY)]);
        handle(&h, body, &settings(KEY.as_bytes()))
    }

    #[test]
    fn fixture_keys_are_the_ones_the_tests_use() {
        assert_eq!(fixture("harbor_key"), KEY.as_bytes());
        assert_eq!(fixture("harborV2_key"), KEY_V2.as_bytes());
    }

    /// cases.json "harbor push (harbor_payload)".
    #[test]
    fn harbor_1_push_notifies() {
        let h = headers(&[(AUTHORIZATION, KEY)]);
        assert_eq!(
            handle(
                &h,
                &fixture("harbor_payload"),
                &settings(&fixture("harbor_key"))
            ),
            Ok(image("demo.goharbor.io", "test123/alpine"))
        );
    }

    /// cases.json "harbor push (harborV2_payload)".
    #[test]
    fn harbor_2_push_notifies() {
        let h = headers(&[(AUTHORIZATION, KEY_V2)]);
        assert_eq!(
            handle(
                &h,
                &fixture("harborV2_payload"),
                &settings(&fixture("harborV2_key"))
            ),
            Ok(image("hub.harbor.com", "test-webhook/debian"))
        );
    }

    /// cases.json "… bogus token" for both fixtures, and other wrong tokens.
    #[test]
    fn wrong_token_is_401() {
        for (key, payload) in [
            ("harbor_key", "harbor_payload"),
            ("harborV2_key", "harborV2_payload"),
        ] {
            let right = String::from_utf8(fixture(key)).unwrap();
            let other = if key == "harbor_key" { KEY_V2 } else { KEY };
            let bearer = format!("Bearer {right}");
            let extended = format!("{right} ");
            for bad in [
                "BOGUS",
                other,
                "",
                &right[1..],
                bearer.as_str(),
                extended.as_str(),
            ] {
                let h = headers(&[(AUTHORIZATION, bad)]);
                assert_eq!(
                    handle(&h, &fixture(payload), &settings(&fixture(key))),
                    Err(HookError::BadSignature(AUTHORIZATION)),
                    "{key} {bad}"
                );
            }
        }
    }

    #[test]
    fn missing_token_is_401() {
        assert_eq!(
            handle(
                &headers(&[]),
                &fixture("harbor_payload"),
                &settings(KEY.as_bytes())
            ),
            Err(HookError::Unsigned(AUTHORIZATION))
        );
    }

    #[test]
    fn key_with_trailing_newline_must_be_sent_whole() {
        let h = headers(&[(AUTHORIZATION, "secret")]);
        assert_eq!(
            handle(&h, &fixture("harbor_payload"), &settings(b"secret\n")),
            Err(HookError::BadSignature(AUTHORIZATION))
        );
    }

    #[test]
    fn verification_comes_before_parsing() {
        for body in [b"".as_slice(), br#"{"type":"DELETE_ARTIFACT"}"#.as_slice()] {
            let h = headers(&[(AUTHORIZATION, "BOGUS")]);
            assert!(handle(&h, body, &settings(KEY.as_bytes()))
                .unwrap_err()
                .is_unauthorized());
            assert!(handle(&headers(&[]), body, &settings(KEY.as_bytes()))
                .unwrap_err()
                .is_unauthorized());
        }
    }

    #[test]
    fn the_first_resource_is_used() {
        let body = br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[
            {"resource_url":"harbor.example.com/p/app:1"},
            {"resource_url":"other.example.com/q/other:2"}]}}"#;
        assert_eq!(deliver(body), Ok(image("harbor.example.com", "p/app")));
    }

    /// Harbor 2.x names an artifact pushed by digest (no tag) with its
    /// digest; fluxd must be told of the repository, not of `…/alpine@sha256`.
    #[test]
    fn a_push_by_digest_names_the_repository() {
        for url in [
            "demo.goharbor.io/test123/alpine@sha256:9b1e4c7d2a5f8e3b6c0d1a4f7e2b5c8d3a6f9e0b1c4d7a2e5f8b3c6d9a0e1f4b",
            "demo.goharbor.io/test123/alpine:3.19@sha256:9b1e4c7d2a5f8e3b6c0d1a4f7e2b5c8d3a6f9e0b1c4d7a2e5f8b3c6d9a0e1f4b",
        ] {
            let body = format!(
                r#"{{"type":"PUSH_ARTIFACT","event_data":{{"resources":[{{"digest":"sha256:9b1e","resource_url":"{url}"}}]}}}}"#
            );
            assert_eq!(
                deliver(body.as_bytes()),
                Ok(image("demo.goharbor.io", "test123/alpine")),
                "{url}"
            );
        }
    }

    #[test]
    fn other_types_are_400() {
        for kind in [
            "DELETE_ARTIFACT",
            "PULL_ARTIFACT",
            "pullImage",
            "pushimage",
            "",
        ] {
            let body = format!(
                r#"{{"type":"{kind}","event_data":{{"resources":[{{"resource_url":"h.io/p/a:1"}}]}}}}"#
            );
            let err = deliver(body.as_bytes()).unwrap_err();
            assert_eq!(err, HookError::wrong_event(TYPE, kind));
            assert!(!err.is_unauthorized());
        }
        let err = deliver(br#"{"event_data":{"resources":[{"resource_url":"h.io/p/a:1"}]}}"#)
            .unwrap_err();
        assert_eq!(err, HookError::wrong_event(TYPE, ""));
    }

    #[test]
    fn bad_payloads_are_400() {
        let body = fixture("harbor_payload");
        for bad in [
            &body[..body.len() / 2],
            b"".as_slice(),
            b"\xff\xfe\xfd".as_slice(),
            b"{\"type\":\"pushImage\",\"event_data\":{\"resources\":[{\"resource_url\":\"h.io/\xff\"}]}}"
                .as_slice(),
            br#"[]"#.as_slice(),
            br#"{"type":1}"#.as_slice(),
            br#"{"type":"pushImage","event_data":{"resources":{}}}"#.as_slice(),
            br#"{"type":"pushImage","event_data":{"resources":[{"resource_url":3}]}}"#.as_slice(),
            br#"{"type":"pushImage","event_data":{"resources":["h.io/p/a:1"]}}"#.as_slice(),
            // No resources (the Go original panicked here).
            br#"{"type":"pushImage"}"#.as_slice(),
            br#"{"type":"pushImage","event_data":{}}"#.as_slice(),
            br#"{"type":"pushImage","event_data":{"resources":null}}"#.as_slice(),
            br#"{"type":"PUSH_ARTIFACT","event_data":{"resources":[]}}"#.as_slice(),
            // A resource without a usable URL.
            br#"{"type":"pushImage","event_data":{"resources":[{}]}}"#.as_slice(),
            br#"{"type":"pushImage","event_data":{"resources":[{"resource_url":""}]}}"#.as_slice(),
            br#"{"type":"pushImage","event_data":{"resources":[{"resource_url":"h.io/p/a:"}]}}"#
                .as_slice(),
        ] {
            let err = deliver(bad).unwrap_err();
            assert!(matches!(err, HookError::BadPayload(_)), "{bad:?}: {err:?}");
            assert!(!err.is_unauthorized());
        }
    }
}
