//! Sonatype Nexus Repository Manager webhooks (repository component events).
//!
//! - Verification: `X-Nexus-Webhook-Signature` is the lowercase hex
//!   HMAC-SHA1 of the raw body, keyed with the webhook's secret key.
//! - Event: `X-Nexus-Webhook-Id` must be `rm:repository:component` (a
//!   repository webhook for the "component" event type); any other is
//!   refused with 400.
//! - Body: JSON. Only a docker component being created is relayed: `action`
//!   must be `CREATED` and `component.format` must be `docker`, else the
//!   delivery is refused with 400, as the Go original did.
//! - Notification: image, `component.name`. Nexus does not say which host
//!   its docker connector listens on, so the endpoint's `registryHost` (if
//!   set; trailing `/` removed) is put in front: with `registryHost:
//!   container.example.com` and component `app1/alpine` the image is
//!   `container.example.com/app1/alpine`. The result is split the way fluxd
//!   splits image names.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{SampleRequest, OWNER, TAG};
use super::verify::{self, sign_hex, Algorithm};
use super::{
    header, json, required, HookError, HookResult, Kinds, Outcome, Proof, Provider, SampleHook,
    Settings,
};
use crate::image;
use crate::notification::Change;

const SIGNATURE: &str = "X-Nexus-Webhook-Signature";
const EVENT: &str = "X-Nexus-Webhook-Id";
const DELIVERY: &str = "X-Nexus-Webhook-Delivery";

/// Nexus, as the config names it.
pub const PROVIDER: Provider = Provider {
    name: "Nexus",
    proof: Proof::Signature {
        header: SIGNATURE,
        prefixed: false,
    },
    event_header: Some(EVENT),
    delivery_header: Some(DELIVERY),
    handle,
    sample_events: &["push"],
    sample,
    changes: Kinds::Image,
    extras: &[],
};

#[derive(Deserialize)]
struct Payload {
    action: Option<String>,
    component: Option<Component>,
}

#[derive(Deserialize)]
struct Component {
    format: Option<String>,
    name: Option<String>,
}

/// What goes wrong without `registryHost`, for `check` and the server's
/// warning: the Go original's behaviour, kept, but said.
pub(super) const WITHOUT_REGISTRY_HOST: &str =
    "is not set, so every push is relayed as a Docker Hub image: Nexus names the \
     image without its registry host (component `app1/alpine` is told to fluxd as \
     `docker.io/app1/alpine`, which is not the image it tracks). Set `registryHost:` to \
     the host (and port) of Nexus's docker connector, e.g. `registryHost: \
     nexus.example.com:8443`; it is part of the hook URL, so give Nexus the new URL \
     (`flux-recv endpoints`)";

/// Verify and parse one Nexus delivery.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    verify::hex_hmac_in_header(
        headers,
        SIGNATURE,
        Algorithm::Sha1,
        settings.key.expose(),
        body,
    )?;

    let event = header(headers, EVENT).ok_or(HookError::MissingEvent(EVENT))?;
    if event != "rm:repository:component" {
        return Err(HookError::wrong_event(EVENT, event));
    }

    let payload: Payload = json(body)?;
    let action = payload.action.unwrap_or_default();
    if action != "CREATED" {
        return Err(HookError::wrong_event("action", &action));
    }
    let component = payload
        .component
        .ok_or_else(|| HookError::BadPayload("component is missing".into()))?;
    let format = component.format.unwrap_or_default();
    if format != "docker" {
        return Err(HookError::wrong_event("component.format", &format));
    }
    let name = required(component.name, "component.name")?;

    let reference = full_name(settings.registry_host.as_deref(), name);
    Ok(Outcome::Notify(vec![Change::image(image::parse(
        &reference,
    )?)]))
}

/// The image `name` under the endpoint's `registryHost`, which Nexus's
/// payloads leave out; `name` alone without one.
fn full_name(registry_host: Option<&str>, name: String) -> String {
    match registry_host {
        Some(host) if !host.is_empty() => format!("{}/{name}", host.trim_end_matches('/')),
        _ => name,
    }
}

/// A docker component created, signed with bare hex HMAC-SHA1.
fn sample(s: &SampleRequest) -> SampleHook {
    let name = format!("{OWNER}/{}", s.name);
    let body = json!({
        "timestamp": "2024-05-01T12:00:00.000+0000",
        "nodeId": "8C4F3E91-CD46AFE0-61B8403D-94526884-19AC4E06",
        "initiator": "admin/10.0.0.1",
        "repositoryName": "docker-hosted",
        "action": "CREATED",
        "component": {
            "id": "c770169c0b2e3ed8357368b43d4da3d8",
            "componentId": "ZG9ja2VyLWhvc3RlZDpjNzcwMTY5YzBiMmUzZWQ4MzU3MzY4YjQzZDRkYTNkOA",
            "format": "docker",
            "name": name,
            "version": TAG,
        },
    });
    let body = s.body_or(&body);
    let signature = sign_hex(Algorithm::Sha1, s.key, &body);
    let headers = vec![
        (
            "Content-Type",
            "application/json; charset=UTF-8".to_string(),
        ),
        (EVENT, "rm:repository:component".to_string()),
        (DELIVERY, s.delivery_id.to_string()),
        (SIGNATURE, signature),
    ];
    let image = full_name(s.registry_host, name);
    SampleHook {
        headers,
        body,
        summary: format!("a push of image {image}:{TAG}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::{fixture, headers, image, settings};

    /// testdata/nexus_key, which has no trailing newline.
    const KEY: &[u8] = b"gk0qp4u98xy0vntojv81i8zcjr4zw7xd6c4ugzad";
    const COMPONENT: &str = "rm:repository:component";
    /// The signature cases.json gives for testdata/nexus_payload.
    const FIXTURE_SIG: &str = "d06eea380d4631e8c1180b689d10d9ba83ab68f6";

    fn with_host(host: Option<&str>) -> Settings {
        Settings {
            registry_host: host.map(str::to_string),
            ..settings(KEY)
        }
    }

    /// Bare hex HMAC-SHA1, as Nexus sends it.
    fn nexus_sign(key: &[u8], body: &[u8]) -> String {
        verify::sign_hex(Algorithm::Sha1, key, body)
    }

    fn deliver(body: &[u8], host: Option<&str>) -> HookResult {
        let sig = nexus_sign(KEY, body);
        let h = headers(&[(SIGNATURE, &sig), (EVENT, COMPONENT)]);
        handle(&h, body, &with_host(host))
    }

    fn created(name: &str) -> Vec<u8> {
        format!(r#"{{"action":"CREATED","component":{{"format":"docker","name":"{name}","version":"1"}}}}"#)
            .into_bytes()
    }

    #[test]
    fn fixture_key_is_the_one_the_tests_use() {
        assert_eq!(fixture("nexus_key"), KEY);
        assert_eq!(nexus_sign(KEY, &fixture("nexus_payload")), FIXTURE_SIG);
    }

    /// cases.json "nexus component created".
    #[test]
    fn component_created_notifies() {
        let h = headers(&[
            (EVENT, COMPONENT),
            (
                "X-Nexus-Webhook-Delivery",
                "bd9e6aef-0e27-4570-980d-f639c49ab5ed",
            ),
            (SIGNATURE, FIXTURE_SIG),
        ]);
        let s = Settings {
            registry_host: Some("container.example.com".into()),
            ..settings(&fixture("nexus_key"))
        };
        assert_eq!(
            handle(&h, &fixture("nexus_payload"), &s),
            Ok(image("container.example.com", "app1/alpine"))
        );
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let h = headers(&[(SIGNATURE, &FIXTURE_SIG.to_uppercase()), (EVENT, COMPONENT)]);
        assert_eq!(
            handle(
                &h,
                &fixture("nexus_payload"),
                &with_host(Some("container.example.com"))
            ),
            Ok(image("container.example.com", "app1/alpine"))
        );
    }

    #[test]
    fn registry_host_is_prefixed() {
        let body = fixture("nexus_payload");
        for (host, domain, img) in [
            (None, "", "app1/alpine"),
            (Some(""), "", "app1/alpine"),
            (
                Some("container.example.com/"),
                "container.example.com",
                "app1/alpine",
            ),
            (
                Some("container.example.com//"),
                "container.example.com",
                "app1/alpine",
            ),
            (
                Some("nexus.example.com:8443"),
                "nexus.example.com:8443",
                "app1/alpine",
            ),
            (Some("localhost"), "localhost", "app1/alpine"),
        ] {
            assert_eq!(deliver(&body, host), Ok(image(domain, img)), "{host:?}");
        }
        // Without a host, fluxd's rules decide whether the first element is
        // a registry.
        assert_eq!(
            deliver(&created("reg.example.com/team/app"), None),
            Ok(image("reg.example.com", "team/app"))
        );
        assert_eq!(deliver(&created("alpine"), None), Ok(image("", "alpine")));
        assert_eq!(
            deliver(&created("alpine"), Some("h.example.com")),
            Ok(image("h.example.com", "alpine"))
        );
    }

    #[test]
    fn the_sample_names_the_image_as_the_handler_reads_it() {
        for (host, domain, summary) in [
            (None, "", "example/app"),
            (Some(""), "", "example/app"),
            (
                Some("h.example.com/"),
                "h.example.com",
                "h.example.com/example/app",
            ),
        ] {
            let request = SampleRequest {
                registry_host: host,
                ..SampleRequest::push(KEY)
            };
            let d = sample(&request);
            assert_eq!(
                handle(&d.header_map(), &d.body, &with_host(host)),
                Ok(image(domain, "example/app")),
                "{host:?}"
            );
            assert_eq!(d.summary, format!("a push of image {summary}:{TAG}"));
        }
    }

    /// cases.json "nexus, bogus signature", and other bad signatures.
    #[test]
    fn bad_signatures_are_401() {
        let body = fixture("nexus_payload");
        let mut extended_key = KEY.to_vec();
        extended_key.push(b'\n');
        for bad in [
            "BOGUS".to_string(),
            String::new(),
            // Signature of a different body.
            nexus_sign(KEY, b"{}"),
            // The key with a newline the key file does not have.
            nexus_sign(&extended_key, &body),
            // GitHub-style prefix, or another algorithm.
            format!("sha1={FIXTURE_SIG}"),
            verify::sign_hex(Algorithm::Sha256, KEY, &body),
            FIXTURE_SIG[..38].to_string(),
        ] {
            let h = headers(&[(SIGNATURE, &bad), (EVENT, COMPONENT)]);
            assert_eq!(
                handle(&h, &body, &with_host(Some("container.example.com"))),
                Err(HookError::BadSignature(SIGNATURE)),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_with_trailing_newline_must_be_used_whole() {
        let body = fixture("nexus_payload");
        let sig = nexus_sign(b"secret", &body);
        let h = headers(&[(SIGNATURE, &sig), (EVENT, COMPONENT)]);
        let s = Settings {
            registry_host: None,
            ..settings(b"secret\n")
        };
        assert_eq!(
            handle(&h, &body, &s),
            Err(HookError::BadSignature(SIGNATURE))
        );
    }

    #[test]
    fn missing_signature_is_401() {
        let h = headers(&[(EVENT, COMPONENT)]);
        assert_eq!(
            handle(&h, &fixture("nexus_payload"), &with_host(None)),
            Err(HookError::Unsigned(SIGNATURE))
        );
    }

    #[test]
    fn verification_comes_before_the_event() {
        for event in [Some("rm:repository:asset"), None] {
            let mut pairs = vec![(SIGNATURE, "00")];
            pairs.extend(event.map(|e| (EVENT, e)));
            assert_eq!(
                handle(&headers(&pairs), b"{}", &with_host(None)),
                Err(HookError::BadSignature(SIGNATURE))
            );
            let pairs: Vec<_> = event.map(|e| (EVENT, e)).into_iter().collect();
            assert_eq!(
                handle(&headers(&pairs), b"{}", &with_host(None)),
                Err(HookError::Unsigned(SIGNATURE))
            );
        }
    }

    #[test]
    fn webhook_id_must_be_component() {
        let body = fixture("nexus_payload");
        let h = headers(&[(SIGNATURE, FIXTURE_SIG)]);
        assert_eq!(
            handle(&h, &body, &with_host(None)),
            Err(HookError::MissingEvent(EVENT))
        );
        for event in [
            "rm:repository:asset",
            "rm:global:repository",
            "RM:REPOSITORY:COMPONENT",
        ] {
            let h = headers(&[(SIGNATURE, FIXTURE_SIG), (EVENT, event)]);
            let err = handle(&h, &body, &with_host(None)).unwrap_err();
            assert_eq!(err, HookError::wrong_event(EVENT, event));
            assert!(!err.is_unauthorized());
        }
    }

    #[test]
    fn only_created_docker_components_are_relayed() {
        for (body, field, value) in [
            (
                r#"{"action":"DELETED","component":{"format":"docker","name":"a/b"}}"#,
                "action",
                "DELETED",
            ),
            (
                r#"{"action":"UPDATED","component":{"format":"docker","name":"a/b"}}"#,
                "action",
                "UPDATED",
            ),
            (
                r#"{"action":"created","component":{"format":"docker","name":"a/b"}}"#,
                "action",
                "created",
            ),
            (
                r#"{"component":{"format":"docker","name":"a/b"}}"#,
                "action",
                "",
            ),
            (
                r#"{"action":"CREATED","component":{"format":"maven2","name":"a"}}"#,
                "component.format",
                "maven2",
            ),
            (
                r#"{"action":"CREATED","component":{"name":"a/b"}}"#,
                "component.format",
                "",
            ),
        ] {
            let err = deliver(body.as_bytes(), None).unwrap_err();
            assert_eq!(err, HookError::wrong_event(field, value), "{body}");
            assert!(!err.is_unauthorized());
        }
    }

    #[test]
    fn bad_payloads_are_400() {
        let body = fixture("nexus_payload");
        for bad in [
            &body[..body.len() / 2],
            b"".as_slice(),
            b"\xff\xfe\xfd".as_slice(),
            b"{\"action\":\"CREATED\",\"component\":{\"format\":\"docker\",\"name\":\"a/\xff\"}}"
                .as_slice(),
            br#"[]"#.as_slice(),
            br#"{"action":1,"component":{"format":"docker","name":"a/b"}}"#.as_slice(),
            br#"{"action":"CREATED","component":"a/b"}"#.as_slice(),
            br#"{"action":"CREATED","component":{"format":"docker","name":["a/b"]}}"#.as_slice(),
            br#"{"action":"CREATED"}"#.as_slice(),
            br#"{"action":"CREATED","component":{"format":"docker"}}"#.as_slice(),
            br#"{"action":"CREATED","component":{"format":"docker","name":""}}"#.as_slice(),
            br#"{"action":"CREATED","component":{"format":"docker","name":"a/b:1:2"}}"#.as_slice(),
        ] {
            let err = deliver(bad, None).unwrap_err();
            assert!(matches!(err, HookError::BadPayload(_)), "{bad:?}: {err:?}");
            assert!(!err.is_unauthorized());
        }
        // With a registry host in front, the name is still checked.
        let err = deliver(&created("app:1:2"), Some("h.example.com")).unwrap_err();
        assert!(matches!(err, HookError::BadPayload(_)), "{err:?}");
    }
}
