//! Google Container Registry (and Artifact Registry) notifications, delivered
//! by a Cloud Pub/Sub push subscription on the `gcr` topic.
//!
//! - Verification: not here. With a `gcr:` block on the endpoint, the
//!   Google-signed token in `Authorization: Bearer` is checked before this
//!   source runs ([`crate::hook`]), because that needs
//!   Google's published keys and sources never touch the network. Without
//!   one, the unguessable hook URL is the only protection.
//! - Event: the Pub/Sub envelope `{"message": {"data": …, "messageId": …},
//!   "subscription": …}` carries, base64-encoded (standard alphabet) in
//!   `message.data`, the registry's own JSON: `{"action": "INSERT", "digest":
//!   "<image>@sha256:…", "tag": "<image>:<tag>"}`. `INSERT` (a push) notifies;
//!   any other action (`DELETE`) is acknowledged and ignored.
//! - Body: JSON. As with Go's decoder, bytes after the envelope are ignored.
//! - Notification: image, from `tag`; for a push without a tag, from
//!   `digest` with everything from its `@` removed, unread: the digest
//!   plays no part, so its shape is never a reason to refuse (Artifact
//!   Registry's documented example abbreviates it, `@sha256:6ec128e26cd5...`,
//!   and Pub/Sub re-sends a refused push for days). The name is split the
//!   way fluxd splits image names.

use base64::Engine;
use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{self, SampleRequest, DIGEST, OWNER, TAG, TIME};
use super::{
    json, required, Extra, HookError, HookResult, Kinds, Outcome, Proof, Provider, SampleHook,
    Settings,
};
use crate::image;
use crate::notification::Change;

/// Google Container Registry, as the config names it. Pub/Sub puts the
/// message id in the body, not in a header.
pub const PROVIDER: Provider = Provider {
    name: "GoogleContainerRegistry",
    proof: Proof::HookUrl,
    event_header: None,
    delivery_header: None,
    handle,
    sample_events: &["push"],
    sample,
    changes: Kinds::Image,
    extras: &[Extra::PubSubToken],
};

#[derive(Deserialize)]
struct Envelope {
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    data: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    action: Option<String>,
    digest: Option<String>,
    tag: Option<String>,
}

/// Parse one Pub/Sub push delivery.
pub fn handle(_headers: &HeaderMap, body: &[u8], _settings: &Settings) -> HookResult {
    let envelope: Envelope = json(body)?;
    let encoded = required(envelope.message.and_then(|m| m.data), "message.data")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .map_err(|_| HookError::BadPayload("message.data is not base64".into()))?;
    let data: Data = json(&decoded)?;

    let action = required(data.action, "action")?;
    // The Go original compared case-insensitively.
    if !action.eq_ignore_ascii_case("INSERT") {
        return Ok(Outcome::Ignore(format!(
            "{} action",
            crate::printable(&action)
        )));
    }

    // `image::parse` drops the tag, or the digest's `@sha256:…`.
    let reference = match (data.tag, data.digest) {
        (Some(tag), _) if !tag.is_empty() => tag,
        (_, Some(digest)) if !digest.is_empty() => digest,
        _ => return Err(HookError::BadPayload("tag and digest are missing".into())),
    };
    Ok(Outcome::Notify(vec![Change::image(image::parse(
        &reference,
    )?)]))
}

/// A Pub/Sub push envelope with the registry's message base64-encoded in
/// `message.data`. The OIDC token an authenticated subscription adds
/// cannot be made here: only Google can sign one.
fn sample(s: &SampleRequest) -> SampleHook {
    let host = s.registry_host.unwrap_or("gcr.io");
    let image = format!("{host}/{OWNER}-project/{}", s.name);
    let data = json!({
        "action": "INSERT",
        "digest": format!("{image}@{DIGEST}"),
        "tag": format!("{image}:{TAG}"),
    });
    let data = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&data).expect("a JSON value serializes"));
    let body = json!({
        "message": {
            "attributes": {},
            "data": data,
            "messageId": "2070443601311540",
            "message_id": "2070443601311540",
            "publishTime": TIME,
            "publish_time": TIME,
        },
        "subscription": format!("projects/{OWNER}-project/subscriptions/flux-recv"),
    });
    SampleHook {
        headers: sample::json_headers(),
        body: s.body_or(&body),
        summary: format!("a push of image {image}:{TAG}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::{fixture, headers, image, settings};

    fn deliver(body: &[u8]) -> HookResult {
        handle(&headers(&[]), body, &settings(&fixture("gcr_key")))
    }

    /// A Pub/Sub envelope around these (unencoded) data bytes.
    fn envelope(data: &[u8]) -> Vec<u8> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(data);
        format!(
            r#"{{"message":{{"data":"{encoded}","messageId":"1","publishTime":"2020-01-30T04:18:04.805Z"}},"subscription":"projects/p/subscriptions/s"}}"#
        )
        .into_bytes()
    }

    /// cases.json "gcr pubsub insert, no auth configured". The fixture ends
    /// with a stray `}`, which must be accepted.
    #[test]
    fn insert_notifies() {
        let body = fixture("gcr_payload");
        assert_eq!(body.trim_ascii_end().last(), Some(&b'}'));
        assert!(serde_json::from_slice::<serde_json::Value>(&body).is_err());
        assert_eq!(deliver(&body), Ok(image("us.gcr.io", "am/am.kebab.api")));
    }

    #[test]
    fn headers_and_key_play_no_part() {
        let h = headers(&[
            ("Authorization", "Bearer x"),
            ("Content-Type", "text/plain"),
        ]);
        assert_eq!(
            handle(&h, &fixture("gcr_payload"), &settings(b"")),
            Ok(image("us.gcr.io", "am/am.kebab.api"))
        );
    }

    #[test]
    fn tag_is_preferred_over_digest() {
        let body = envelope(
            br#"{"action":"INSERT","digest":"gcr.io/p/other@sha256:00","tag":"gcr.io/p/app:v1"}"#,
        );
        assert_eq!(deliver(&body), Ok(image("gcr.io", "p/app")));
    }

    #[test]
    fn digest_is_used_without_a_tag() {
        for data in [
            br#"{"action":"INSERT","digest":"eu.gcr.io/p/app@sha256:6ec128e26cd5"}"#.as_slice(),
            br#"{"action":"INSERT","digest":"eu.gcr.io/p/app@sha256:6ec1","tag":""}"#.as_slice(),
            br#"{"action":"INSERT","digest":"eu.gcr.io/p/app@sha256:6ec1","tag":null}"#.as_slice(),
            br#"{"action":"INSERT","digest":"eu.gcr.io/p/app"}"#.as_slice(),
        ] {
            assert_eq!(
                deliver(&envelope(data)),
                Ok(image("eu.gcr.io", "p/app")),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    /// Artifact Registry, which replaced Container Registry, publishes the
    /// same messages to the same `gcr` topic, naming images
    /// `<location>-docker.pkg.dev/<project>/<repository>/<image>`.
    #[test]
    fn artifact_registry_images_notify() {
        for data in [
            br#"{"action":"INSERT","digest":"us-central1-docker.pkg.dev/my-project/team/app@sha256:6ec128e26cd5","tag":"us-central1-docker.pkg.dev/my-project/team/app:1.4.2"}"#.as_slice(),
            br#"{"action":"INSERT","digest":"us-central1-docker.pkg.dev/my-project/team/app@sha256:6ec128e26cd5"}"#.as_slice(),
        ] {
            assert_eq!(
                deliver(&envelope(data)),
                Ok(image("us-central1-docker.pkg.dev", "my-project/team/app")),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    /// The examples of Artifact Registry's "Configuring Pub/Sub
    /// notifications" page, as written there: the digest abbreviated with
    /// `...`.
    #[test]
    fn artifact_registrys_documented_examples_notify() {
        for data in [
            br#"{"action":"INSERT","digest":"us-west1-docker.pkg.dev/my-project/my-repo/hello-world@sha256:6ec128e26cd5..."}"#.as_slice(),
            br#"{"action":"INSERT","digest":"us-west1-docker.pkg.dev/my-project/my-repo/hello-world@sha256:6ec128e26cd5...","tag":"us-west1-docker.pkg.dev/my-project/my-repo/hello-world:1.1"}"#.as_slice(),
        ] {
            assert_eq!(
                deliver(&envelope(data)),
                Ok(image("us-west1-docker.pkg.dev", "my-project/my-repo/hello-world")),
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn insert_is_matched_case_insensitively() {
        let body = envelope(br#"{"action":"insert","tag":"gcr.io/p/app:v1"}"#);
        assert_eq!(deliver(&body), Ok(image("gcr.io", "p/app")));
    }

    #[test]
    fn other_actions_are_ignored() {
        for data in [
            br#"{"action":"DELETE","digest":"gcr.io/p/app@sha256:00","tag":"gcr.io/p/app:v1"}"#
                .as_slice(),
            br#"{"action":"DELETE","digest":"gcr.io/p/app@sha256:00"}"#.as_slice(),
            br#"{"action":"SOMETHING"}"#.as_slice(),
        ] {
            assert!(matches!(deliver(&envelope(data)), Ok(Outcome::Ignore(_))));
        }
    }

    #[test]
    fn bad_envelopes_are_400() {
        let body = fixture("gcr_payload");
        for bad in [
            &body[..body.len() / 2],
            b"".as_slice(),
            b"\xff\xfe\xfd".as_slice(),
            b"{\"message\":{\"data\":\"\xff\"}}".as_slice(),
            br#"[]"#.as_slice(),
            br#"{}"#.as_slice(),
            br#"{"message":null}"#.as_slice(),
            br#"{"message":"eyJ9"}"#.as_slice(),
            br#"{"message":{}}"#.as_slice(),
            br#"{"message":{"data":""}}"#.as_slice(),
            br#"{"message":{"data":7}}"#.as_slice(),
            // Not standard base64: bad characters, URL-safe alphabet,
            // missing padding.
            br#"{"message":{"data":"not base64!"}}"#.as_slice(),
            br#"{"message":{"data":"_-_-"}}"#.as_slice(),
        ] {
            let err = deliver(bad).unwrap_err();
            assert!(matches!(err, HookError::BadPayload(_)), "{bad:?}: {err:?}");
            assert!(!err.is_unauthorized());
        }
    }

    #[test]
    fn unpadded_or_url_safe_base64_is_400() {
        let data = br#"{"action":"INSERT","tag":"gcr.io/p/app:v1?"}"#;
        let padded = base64::engine::general_purpose::STANDARD.encode(data);
        assert!(padded.ends_with('=') && padded.contains('/'), "{padded}");
        let good = format!(r#"{{"message":{{"data":"{padded}"}}}}"#);
        assert!(deliver(good.as_bytes()).is_ok());
        for bad in [
            padded.trim_end_matches('=').to_string(),
            padded.replace('/', "_"),
        ] {
            let body = format!(r#"{{"message":{{"data":"{bad}"}}}}"#);
            let err = deliver(body.as_bytes()).unwrap_err();
            assert!(matches!(err, HookError::BadPayload(_)), "{bad}: {err:?}");
        }
    }

    #[test]
    fn bad_data_is_400() {
        for data in [
            b"".as_slice(),
            b"not json".as_slice(),
            b"\xff\xfe".as_slice(),
            br#"{"action":"INSERT","tag":"gcr.io/p/a"#.as_slice(),
            br#"["INSERT"]"#.as_slice(),
            br#"{"action":1,"tag":"gcr.io/p/app:v1"}"#.as_slice(),
            br#"{"action":"INSERT","tag":5}"#.as_slice(),
            br#"{"action":"INSERT","digest":["gcr.io/p/app@sha256:00"]}"#.as_slice(),
            // No action.
            br#"{"tag":"gcr.io/p/app:v1"}"#.as_slice(),
            br#"{"action":"","tag":"gcr.io/p/app:v1"}"#.as_slice(),
            // An insert without a name.
            br#"{"action":"INSERT"}"#.as_slice(),
            br#"{"action":"INSERT","tag":"","digest":""}"#.as_slice(),
            br#"{"action":"INSERT","digest":"@sha256:00"}"#.as_slice(),
            // Names fluxd would refuse.
            br#"{"action":"INSERT","tag":"gcr.io/p/app:"}"#.as_slice(),
            br#"{"action":"INSERT","digest":"gcr.io/p/app/@sha256:00"}"#.as_slice(),
        ] {
            let err = deliver(&envelope(data)).unwrap_err();
            assert!(
                matches!(err, HookError::BadPayload(_)),
                "{}: {err:?}",
                String::from_utf8_lossy(data)
            );
            assert!(!err.is_unauthorized());
        }
    }
}
