//! Azure Container Registry webhooks.
//!
//! - Verification: ACR signs nothing; it sends only `Content-Type` and the
//!   custom headers configured on the webhook. Configure the custom header
//!   `Authorization: Bearer <key>` (or the bare key); it is compared with
//!   the key in constant time, before the body is read.
//! - Event: the payload's `action`. `push` (an image manifest pushed)
//!   notifies. `ping` (the portal's Ping button, `az acr webhook ping`),
//!   `delete`, `quarantine`, `chart_push`, `chart_delete` and any other
//!   action are acknowledged and ignored: fluxd has nothing to look at.
//! - Body: JSON, one event per request: `{"id", "timestamp", "action",
//!   "target": {"mediaType", "digest", "repository", "tag", …}, "request":
//!   {"id", "host", "method", "useragent"}}`.
//! - Notification: image `<request.host>/<target.repository>`, e.g.
//!   `myregistry.azurecr.io/team/app`; the tag plays no part, so a push by
//!   digest notifies too. An endpoint's `registryHost` replaces
//!   `request.host`, for a registry that workloads pull under another name.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::sample::{self, SampleRequest, DIGEST, OWNER, TAG, TIME};
use super::{
    json, required, verify, HookError, HookResult, Kinds, Outcome, Proof, Provider, SampleHook,
    Settings,
};
use crate::image;
use crate::notification::Change;

const AUTHORIZATION: &str = "Authorization";

/// Azure Container Registry, as the config names it. The event is in the
/// body (`action`), as is its id.
pub const PROVIDER: Provider = Provider {
    name: "AzureContainerRegistry",
    proof: Proof::HeaderToken {
        header: AUTHORIZATION,
        check: check_token,
    },
    event_header: None,
    delivery_header: None,
    handle,
    sample_events: &["push", "ping", "delete", "chart_push"],
    sample,
    changes: Kinds::Image,
    extras: &[],
};

/// The webhook's custom `Authorization` header must carry the key.
fn check_token(headers: &HeaderMap, key: &[u8]) -> Result<(), HookError> {
    verify::bearer_key_in_header(headers, AUTHORIZATION, key)
}

#[derive(Deserialize)]
struct Payload {
    action: Option<String>,
    target: Option<Target>,
    request: Option<Request>,
}

#[derive(Deserialize)]
struct Target {
    repository: Option<String>,
}

#[derive(Deserialize)]
struct Request {
    host: Option<String>,
}

/// Verify and parse one ACR delivery.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    check_token(headers, settings.key.expose())?;

    let payload: Payload = json(body)?;
    let action = required(payload.action, "action")?;
    if action != "push" {
        return Ok(Outcome::Ignore(format!(
            "{} action",
            crate::printable(&action)
        )));
    }

    let repository = required(
        payload.target.and_then(|t| t.repository),
        "target.repository",
    )?;
    let host = match &settings.registry_host {
        Some(host) => host.clone(),
        None => required(payload.request.and_then(|r| r.host), "request.host")?,
    };
    Ok(Outcome::Notify(vec![Change::image(image::in_registry(
        &host,
        &repository,
    )?)]))
}

/// One event of each kind ACR sends, with the custom header a webhook
/// configured for flux-recv carries. The event's id is the delivery id.
fn sample(s: &SampleRequest) -> SampleHook {
    let host = s.registry_host.unwrap_or("example.azurecr.io");
    let repository = format!("{OWNER}/{}", s.name);
    let request = |method: &str, useragent: &str| {
        json!({
            "id": "b4a5e8c2-51d0-4a4e-9f1c-0c6f2d9e7a31",
            "host": host,
            "method": method,
            "useragent": useragent,
        })
    };
    let manifest = "application/vnd.docker.distribution.manifest.v2+json";
    let (body, summary): (Value, String) = match s.event {
        "ping" => (
            json!({"id": s.delivery_id, "timestamp": TIME, "action": "ping"}),
            "a ping".to_string(),
        ),
        "delete" => (
            json!({
                "id": s.delivery_id,
                "timestamp": TIME,
                "action": "delete",
                "target": {"mediaType": manifest, "digest": DIGEST, "repository": repository},
                "request": request("DELETE", "azure-cli/2.60.0"),
            }),
            format!("a delete of image {host}/{repository}@{DIGEST}"),
        ),
        "chart_push" => (
            json!({
                "id": s.delivery_id,
                "timestamp": TIME,
                "action": "chart_push",
                "target": {
                    "mediaType": "application/vnd.acr.helm.chart",
                    "size": 4_096,
                    "digest": DIGEST,
                    "repository": repository,
                    "tag": format!("{}-{TAG}.tgz", s.name),
                    "name": s.name,
                    "version": format!("{TAG}.tgz"),
                },
            }),
            format!("a push of Helm chart {}-{TAG} to {host}", s.name),
        ),
        _ => (
            json!({
                "id": s.delivery_id,
                "timestamp": TIME,
                "action": "push",
                "target": {
                    "mediaType": manifest,
                    "size": 528,
                    "digest": DIGEST,
                    "length": 528,
                    "repository": repository,
                    "tag": TAG,
                },
                "request": request("PUT", "docker/26.1.0 go/go1.21.9 os/linux arch/amd64"),
            }),
            format!("a push of image {host}/{repository}:{TAG}"),
        ),
    };
    let mut headers = sample::json_headers();
    headers.push((AUTHORIZATION, format!("Bearer {}", s.key_text())));
    SampleHook {
        headers,
        body: s.body_or(&body),
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::{fixture, headers, image, settings};

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn deliver(body: &[u8]) -> HookResult {
        let bearer = format!("Bearer {KEY}");
        let h = headers(&[(AUTHORIZATION, &bearer)]);
        handle(&h, body, &settings(KEY.as_bytes()))
    }

    /// A push event with the fields the ACR webhook reference lists.
    #[test]
    fn push_notifies() {
        assert_eq!(
            deliver(&fixture("acr/push.json")),
            Ok(image("myregistry.azurecr.io", "hello-world"))
        );
    }

    #[test]
    fn the_key_may_be_sent_bare_or_as_a_bearer_token() {
        for value in [
            KEY.to_string(),
            format!("Bearer {KEY}"),
            format!("bearer {KEY}"),
        ] {
            let h = headers(&[(AUTHORIZATION, &value)]);
            assert_eq!(
                handle(&h, &fixture("acr/push.json"), &settings(KEY.as_bytes())),
                Ok(image("myregistry.azurecr.io", "hello-world")),
                "{value}"
            );
        }
    }

    #[test]
    fn nested_repositories_and_pushes_by_digest_notify() {
        let body =
            br#"{"action":"push","target":{"mediaType":"application/vnd.oci.image.index.v1+json",
            "digest":"sha256:00ff","repository":"team/tools/app"},
            "request":{"host":"myregistry.azurecr.io","method":"PUT"}}"#;
        assert_eq!(
            deliver(body),
            Ok(image("myregistry.azurecr.io", "team/tools/app"))
        );
    }

    #[test]
    fn registry_host_replaces_the_reported_host() {
        let bearer = format!("Bearer {KEY}");
        let h = headers(&[(AUTHORIZATION, &bearer)]);
        let s = Settings {
            registry_host: Some("registry.example.com".into()),
            ..settings(KEY.as_bytes())
        };
        assert_eq!(
            handle(&h, &fixture("acr/push.json"), &s),
            Ok(image("registry.example.com", "hello-world"))
        );
        // And stands in for a missing one.
        let body = br#"{"action":"push","target":{"repository":"app"}}"#;
        assert_eq!(
            handle(&h, body, &s),
            Ok(image("registry.example.com", "app"))
        );
    }

    #[test]
    fn other_actions_are_acknowledged() {
        for (fixture_name, action) in [
            ("acr/ping.json", "ping"),
            ("acr/delete.json", "delete"),
            ("acr/chart_push.json", "chart_push"),
            ("acr/chart_delete.json", "chart_delete"),
        ] {
            assert_eq!(
                deliver(&fixture(fixture_name)),
                Ok(Outcome::Ignore(format!("{action} action"))),
                "{fixture_name}"
            );
        }
        for action in ["quarantine", "PUSH", "pull", "something new"] {
            let body = format!(r#"{{"action":"{action}"}}"#);
            assert!(
                matches!(deliver(body.as_bytes()), Ok(Outcome::Ignore(_))),
                "{action}"
            );
        }
    }

    #[test]
    fn missing_credentials_are_401() {
        assert_eq!(
            handle(
                &headers(&[]),
                &fixture("acr/push.json"),
                &settings(KEY.as_bytes())
            ),
            Err(HookError::Unsigned(AUTHORIZATION))
        );
    }

    #[test]
    fn wrong_credentials_are_401() {
        let basic = format!("Basic {KEY}");
        let short = format!("Bearer {}", &KEY[1..]);
        let longer = format!("Bearer {KEY}x");
        for bad in ["", "Bearer", "Bearer other", &basic, &short, &longer] {
            let h = headers(&[(AUTHORIZATION, bad)]);
            assert_eq!(
                handle(&h, &fixture("acr/push.json"), &settings(KEY.as_bytes())),
                Err(HookError::BadSignature(AUTHORIZATION)),
                "{bad}"
            );
        }
    }

    #[test]
    fn verification_comes_before_parsing() {
        for body in [b"".as_slice(), br#"{"action":"ping"}"#.as_slice()] {
            let h = headers(&[(AUTHORIZATION, "Bearer wrong")]);
            assert!(handle(&h, body, &settings(KEY.as_bytes()))
                .unwrap_err()
                .is_unauthorized());
        }
    }

    #[test]
    fn bad_payloads_are_400() {
        let body = fixture("acr/push.json");
        for bad in [
            &body[..body.len() / 2],
            b"".as_slice(),
            b"\xff\xfe".as_slice(),
            br#"[]"#.as_slice(),
            br#"{}"#.as_slice(),
            br#"{"action":""}"#.as_slice(),
            br#"{"action":7}"#.as_slice(),
            br#"{"action":"push"}"#.as_slice(),
            br#"{"action":"push","target":{},"request":{"host":"r.azurecr.io"}}"#.as_slice(),
            br#"{"action":"push","target":{"repository":""},"request":{"host":"r.azurecr.io"}}"#
                .as_slice(),
            br#"{"action":"push","target":{"repository":"app"}}"#.as_slice(),
            br#"{"action":"push","target":{"repository":"app"},"request":{}}"#.as_slice(),
            br#"{"action":"push","target":"app","request":{"host":"r.azurecr.io"}}"#.as_slice(),
            // Names fluxd could not use.
            br#"{"action":"push","target":{"repository":"app:1"},"request":{"host":"r.azurecr.io"}}"#
                .as_slice(),
            br#"{"action":"push","target":{"repository":"/app"},"request":{"host":"r.azurecr.io"}}"#
                .as_slice(),
            br#"{"action":"push","target":{"repository":"app"},"request":{"host":"r.azurecr.io/x"}}"#
                .as_slice(),
        ] {
            let err = deliver(bad).unwrap_err();
            assert!(matches!(err, HookError::BadPayload(_)), "{bad:?}: {err:?}");
        }
    }
}
