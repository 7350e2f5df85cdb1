//! Notifications from a CNCF distribution registry (`registry:2`,
//! `distribution/distribution`) and registries that send its envelope.
//!
//! - Verification: the registry signs nothing; each endpoint in its
//!   `notifications:` config sends fixed `headers`. Configure
//!   `Authorization: [Bearer <key>]` (or the bare key); it is compared with
//!   the key in constant time, before the body is read.
//! - Body: JSON, an envelope `{"events": [...]}` (media type
//!   `application/vnd.docker.distribution.events.v1+json`, `v2` in newer
//!   releases; not checked, as the registry's docs ask receivers to be
//!   accepting). One envelope may group unrelated events.
//! - Events: each has an `action` (`push`, `pull`, `mount`, `delete`) and a
//!   `target`. Only manifest pushes notify. Pulls are ignored: fluxd's own
//!   scans cause them, so relaying them would loop. Blob pushes and mounts
//!   (layers and configs, whose manifest push follows) and deletes are
//!   ignored too; an envelope with no manifest push is acknowledged.
//! - Manifest or blob: `target.url` links to the content, under
//!   `/v2/<name>/manifests/<reference>` or `/v2/<name>/blobs/<digest>`;
//!   without a url, `target.mediaType` says (manifest and index types).
//! - Notification: image `<host>/<target.repository>` for each manifest
//!   push, the host being the endpoint's `registryHost` if set, else
//!   `request.host` (the Host the registry was reached at), else the host of
//!   `target.url`. The tag plays no part. The pushes of a multi-platform
//!   image (its platform manifests, then its index) name one repository
//!   and collapse into one change.

use http::HeaderMap;
use serde::Deserialize;
use serde_json::{json, Value};

use super::sample::{SampleRequest, DIGEST, OWNER, TAG, TIME};
use super::{
    essence, json, required, verify, HookError, HookResult, Kinds, Outcome, Proof, Provider,
    SampleHook, Settings,
};
use crate::image;
use crate::notification::{split_url, Change};

const AUTHORIZATION: &str = "Authorization";

/// The envelope's media type, as current releases send it.
const EVENTS_MEDIA_TYPE: &str = "application/vnd.docker.distribution.events.v2+json";

/// Manifest media types: Docker's (schema 1 and 2, and lists) and OCI's
/// (manifests, indexes and the short-lived artifact manifest).
const MANIFEST_MEDIA_TYPES: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.artifact.manifest.v1+json",
];

/// Distribution, as the config names it. Events and their ids are in the
/// body.
pub const PROVIDER: Provider = Provider {
    name: "Distribution",
    proof: Proof::HeaderToken {
        header: AUTHORIZATION,
        check: check_token,
    },
    event_header: None,
    delivery_header: None,
    handle,
    sample_events: &["push", "pull"],
    sample,
    changes: Kinds::Image,
    extras: &[],
};

/// The endpoint's `Authorization` header must carry the key.
fn check_token(headers: &HeaderMap, key: &[u8]) -> Result<(), HookError> {
    verify::bearer_key_in_header(headers, AUTHORIZATION, key)
}

#[derive(Deserialize)]
struct Envelope {
    events: Option<Vec<Event>>,
}

#[derive(Deserialize)]
struct Event {
    action: Option<String>,
    target: Option<Target>,
    request: Option<Request>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Target {
    media_type: Option<String>,
    repository: Option<String>,
    url: Option<String>,
}

#[derive(Deserialize)]
struct Request {
    host: Option<String>,
}

/// Verify and parse one envelope.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    check_token(headers, settings.key.expose())?;

    let envelope: Envelope = json(body)?;
    let events = envelope
        .events
        .ok_or_else(|| HookError::BadPayload("events is missing".into()))?;
    let count = events.len();
    let mut changes = Vec::new();
    for (i, event) in events.into_iter().enumerate() {
        let action = required(event.action, &format!("events[{i}].action"))?;
        if action != "push" {
            continue;
        }
        let target = event
            .target
            .ok_or_else(|| HookError::BadPayload(format!("events[{i}].target is missing")))?;
        if !is_manifest(&target) {
            continue;
        }
        let repository = required(target.repository, &format!("events[{i}].target.repository"))?;
        let host = match &settings.registry_host {
            Some(host) => host.clone(),
            None => {
                let reported = event.request.and_then(|r| r.host).filter(|h| !h.is_empty());
                let linked = target
                    .url
                    .as_deref()
                    .and_then(split_url)
                    .map(|(host, _)| host.to_string());
                required(reported.or(linked), &format!("events[{i}].request.host"))?
            }
        };
        changes.push(Change::image(image::in_registry(&host, &repository)?));
    }
    if changes.is_empty() {
        return Ok(Outcome::Ignore(format!(
            "no manifest push among {count} event(s)"
        )));
    }
    Ok(Outcome::Notify(changes))
}

/// Whether an event's target is a manifest (rather than a blob): by the
/// kind of link in its url, else by its media type.
fn is_manifest(target: &Target) -> bool {
    if let Some(kind) = target.url.as_deref().and_then(url_kind) {
        return kind == "manifests";
    }
    let media_type = target.media_type.as_deref().map(essence);
    media_type.is_some_and(|t| {
        MANIFEST_MEDIA_TYPES
            .iter()
            .any(|m| m.eq_ignore_ascii_case(t))
    })
}

/// `manifests` or `blobs`, from a url ending `…/manifests/<reference>` or
/// `…/blobs/<digest>`. Only the last two segments count: a repository may
/// itself have a path element called `manifests`.
fn url_kind(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next().unwrap_or("");
    let mut segments = path.rsplit('/');
    let _reference = segments.next()?;
    segments
        .next()
        .filter(|kind| *kind == "manifests" || *kind == "blobs")
}

/// An envelope as the registry sends it: the event of interest with the
/// blob events around it that the same `docker push` (or pull) makes.
fn sample(s: &SampleRequest) -> SampleHook {
    let host = s.registry_host.unwrap_or("registry.example.com:5000");
    let repository = format!("{OWNER}/{}", s.name);
    let layer = "sha256:3a1f5c7e9b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a1c3e5b7d9f2a4c6e8b0d1f3a";
    let (action, method, useragent) = match s.event {
        "pull" => ("pull", "GET", "containerd/v1.7.15"),
        _ => (
            "push",
            "PUT",
            "docker/26.1.0 go/go1.21.9 os/linux arch/amd64",
        ),
    };
    let event = |id: &str, media_type: &str, digest: &str, size: u64, kind: &str| {
        let mut event = json!({
            "id": id,
            "timestamp": TIME,
            "action": action,
            "target": {
                "mediaType": media_type,
                "digest": digest,
                "size": size,
                "length": size,
                "repository": repository,
                "url": format!("https://{host}/v2/{repository}/{kind}/{digest}"),
            },
            "request": {
                "id": "e0c1b2a3-9f8e-4d7c-b6a5-948372615d4c",
                "addr": "10.0.4.17:51122",
                "host": host,
                "method": method,
                "useragent": useragent,
            },
            "actor": {"name": OWNER},
            "source": {
                "addr": "registry-7d9f8c6b5-x2k4q:5000",
                "instanceID": "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b",
            },
        });
        if kind == "manifests" {
            event["target"]["tag"] = Value::from(TAG);
        }
        event
    };
    let layer_type = "application/vnd.oci.image.layer.v1.tar+gzip";
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    let events = match s.event {
        // A pull fetches the manifest first, then its layers.
        "pull" => vec![
            event(s.delivery_id, manifest_type, DIGEST, 1_024, "manifests"),
            event(
                "2b4d6f8a-0c1e-4a3b-9d5f-7b9d1f3a5c7e",
                layer_type,
                layer,
                3_623_807,
                "blobs",
            ),
        ],
        // A push uploads the layers, then the manifest that names them.
        _ => vec![
            event(
                "2b4d6f8a-0c1e-4a3b-9d5f-7b9d1f3a5c7e",
                layer_type,
                layer,
                3_623_807,
                "blobs",
            ),
            event(s.delivery_id, manifest_type, DIGEST, 1_024, "manifests"),
        ],
    };
    let body = json!({ "events": events });
    SampleHook {
        headers: vec![
            ("Content-Type", EVENTS_MEDIA_TYPE.to_string()),
            (AUTHORIZATION, format!("Bearer {}", s.key_text())),
        ],
        body: s.body_or(&body),
        summary: format!("a {action} of image {host}/{repository}:{TAG}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::{fixture, headers, image, settings};
    use crate::source::Source;

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn bearer() -> HeaderMap {
        headers(&[(AUTHORIZATION, &format!("Bearer {KEY}"))])
    }

    fn deliver(body: &[u8]) -> HookResult {
        handle(&bearer(), body, &settings(KEY.as_bytes()))
    }

    /// An envelope of one event (made from the notification docs' field
    /// list).
    fn envelope(event: &str) -> Vec<u8> {
        format!(r#"{{"events":[{event}]}}"#).into_bytes()
    }

    /// A docker push: two layers, a config and the manifest.
    #[test]
    fn a_manifest_push_notifies_and_its_blobs_do_not() {
        assert_eq!(
            deliver(&fixture("distribution/push.json")),
            Ok(image("registry.example.com", "library/test"))
        );
    }

    /// The pushes of a multi-platform image: both platform manifests by
    /// digest, then the index by tag.
    #[test]
    fn a_multi_platform_push_is_one_change() {
        let body = fixture("distribution/push_index.json");
        let Ok(Outcome::Notify(raw)) = deliver(&body) else {
            panic!("not relayed");
        };
        assert_eq!(raw.len(), 3);
        let source = Source::named("Distribution");
        assert_eq!(
            source.handle(&bearer(), &body, &settings(KEY.as_bytes())),
            Ok(image("10.20.30.40:5000", "team/app"))
        );
    }

    #[test]
    fn pushes_to_several_repositories_each_notify() {
        let push = |repo: &str| {
            format!(
                r#"{{"action":"push","target":{{"mediaType":"application/vnd.docker.distribution.manifest.v2+json",
                "repository":"{repo}","url":"https://r.example.com/v2/{repo}/manifests/sha256:00"}},
                "request":{{"host":"r.example.com"}}}}"#
            )
        };
        let body = format!(r#"{{"events":[{},{}]}}"#, push("a/one"), push("b/two"));
        let Ok(Outcome::Notify(changes)) = deliver(body.as_bytes()) else {
            panic!("not relayed");
        };
        assert_eq!(
            changes,
            [
                Change::image(image::parse("r.example.com/a/one").unwrap()),
                Change::image(image::parse("r.example.com/b/two").unwrap()),
            ]
        );
    }

    #[test]
    fn pulls_blobs_mounts_and_deletes_are_acknowledged() {
        for (name, count) in [
            ("distribution/pull.json", 3),
            ("distribution/delete.json", 3),
            ("distribution/mount.json", 1),
        ] {
            assert_eq!(
                deliver(&fixture(name)),
                Ok(Outcome::Ignore(format!(
                    "no manifest push among {count} event(s)"
                ))),
                "{name}"
            );
        }
        assert_eq!(
            deliver(br#"{"events":[]}"#),
            Ok(Outcome::Ignore("no manifest push among 0 event(s)".into()))
        );
    }

    #[test]
    fn the_url_tells_manifests_from_blobs() {
        for (url, media_type, notifies) in [
            // The url wins over the media type...
            (
                "https://r.io/v2/a/manifests/v1",
                "application/octet-stream",
                true,
            ),
            (
                "https://r.io/v2/a/blobs/sha256:00",
                MANIFEST_MEDIA_TYPES[2],
                false,
            ),
            // ...even where the repository has a `manifests` element.
            ("https://r.io/v2/manifests/a/blobs/sha256:00", "", false),
            ("https://r.io/v2/blobs/a/manifests/sha256:00?x=1", "", true),
            // Without a usable url, the media type decides.
            ("", "application/vnd.oci.image.index.v1+json", true),
            ("", "Application/VND.oci.image.manifest.v1+json; x=y", true),
            (
                "",
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
                false,
            ),
            ("", "application/vnd.oci.image.config.v1+json", false),
            (
                "https://r.io/elsewhere",
                "application/vnd.oci.image.manifest.v1+json",
                true,
            ),
            ("", "", false),
        ] {
            let event = format!(
                r#"{{"action":"push","target":{{"mediaType":"{media_type}","repository":"a","url":"{url}"}},"request":{{"host":"r.io"}}}}"#
            );
            let outcome = deliver(&envelope(&event)).unwrap();
            assert_eq!(
                matches!(outcome, Outcome::Notify(_)),
                notifies,
                "{url} {media_type}"
            );
        }
    }

    #[test]
    fn the_host_comes_from_the_settings_the_request_or_the_url() {
        let event = |request: &str, url: &str| {
            envelope(&format!(
                r#"{{"action":"push","target":{{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"team/app","url":"{url}"}}{request}}}"#
            ))
        };
        let url = "http://user@linked.example.com:5000/v2/team/app/manifests/sha256:00";
        let reported = r#","request":{"host":"reported.example.com"}"#;
        assert_eq!(
            deliver(&event(reported, url)),
            Ok(image("reported.example.com", "team/app"))
        );
        for request in ["", r#","request":{}"#, r#","request":{"host":""}"#] {
            assert_eq!(
                deliver(&event(request, url)),
                Ok(image("linked.example.com:5000", "team/app")),
                "{request}"
            );
        }
        let configured = Settings {
            registry_host: Some("registry.example.com".into()),
            ..settings(KEY.as_bytes())
        };
        assert_eq!(
            handle(&bearer(), &event(reported, url), &configured),
            Ok(image("registry.example.com", "team/app"))
        );
    }

    #[test]
    fn missing_credentials_are_401() {
        assert_eq!(
            handle(
                &headers(&[]),
                &fixture("distribution/push.json"),
                &settings(KEY.as_bytes())
            ),
            Err(HookError::Unsigned(AUTHORIZATION))
        );
    }

    #[test]
    fn wrong_credentials_are_401() {
        let other = format!("Bearer {}", KEY.to_uppercase());
        for bad in ["", "Bearer", "Bearer x", "Basic dXNlcjpwYXNz", &other] {
            let h = headers(&[(AUTHORIZATION, bad)]);
            assert_eq!(
                handle(
                    &h,
                    &fixture("distribution/push.json"),
                    &settings(KEY.as_bytes())
                ),
                Err(HookError::BadSignature(AUTHORIZATION)),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_bare_key_is_accepted() {
        let h = headers(&[(AUTHORIZATION, KEY)]);
        assert_eq!(
            handle(
                &h,
                &fixture("distribution/push.json"),
                &settings(KEY.as_bytes())
            ),
            Ok(image("registry.example.com", "library/test"))
        );
    }

    #[test]
    fn verification_comes_before_parsing() {
        for body in [b"".as_slice(), br#"{"events":[]}"#.as_slice()] {
            let h = headers(&[(AUTHORIZATION, "Bearer wrong")]);
            assert!(handle(&h, body, &settings(KEY.as_bytes()))
                .unwrap_err()
                .is_unauthorized());
        }
    }

    #[test]
    fn bad_payloads_are_400() {
        let body = fixture("distribution/push.json");
        let manifest = r#""mediaType":"application/vnd.docker.distribution.manifest.v2+json""#;
        let bad_events = [
            // No action.
            format!(r#"{{"target":{{{manifest},"repository":"a"}},"request":{{"host":"r.io"}}}}"#),
            r#"{"action":""}"#.to_string(),
            r#"{"action":3}"#.to_string(),
            // A push without a target, repository or host.
            r#"{"action":"push"}"#.to_string(),
            format!(r#"{{"action":"push","target":{{{manifest}}},"request":{{"host":"r.io"}}}}"#),
            format!(
                r#"{{"action":"push","target":{{{manifest},"repository":""}},"request":{{"host":"r.io"}}}}"#
            ),
            format!(r#"{{"action":"push","target":{{{manifest},"repository":"a"}}}}"#),
            format!(
                r#"{{"action":"push","target":{{{manifest},"repository":"a","url":"/v2/a/manifests/x"}}}}"#
            ),
            // Names fluxd could not use.
            format!(
                r#"{{"action":"push","target":{{{manifest},"repository":"a/"}},"request":{{"host":"r.io"}}}}"#
            ),
            format!(
                r#"{{"action":"push","target":{{{manifest},"repository":"a:1"}},"request":{{"host":"r.io"}}}}"#
            ),
            format!(
                r#"{{"action":"push","target":{{{manifest},"repository":"a"}},"request":{{"host":"r.io/x"}}}}"#
            ),
            r#""push""#.to_string(),
        ];
        let mut bodies: Vec<Vec<u8>> = bad_events.iter().map(|e| envelope(e)).collect();
        bodies.extend(
            [
                &body[..body.len() / 2],
                b"".as_slice(),
                b"\xff\xfe".as_slice(),
                b"[]".as_slice(),
                b"{}".as_slice(),
                br#"{"events":null}"#.as_slice(),
                br#"{"events":{}}"#.as_slice(),
                br#"{"events":"push"}"#.as_slice(),
            ]
            .map(<[u8]>::to_vec),
        );
        for bad in bodies {
            let err = deliver(&bad).unwrap_err();
            assert!(
                matches!(err, HookError::BadPayload(_)),
                "{}: {err:?}",
                String::from_utf8_lossy(&bad)
            );
        }
    }

    #[test]
    fn one_bad_manifest_push_refuses_the_envelope() {
        // Relaying only part of it would hide the bad event from whoever
        // reads the registry's log.
        let good = r#"{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"a"},"request":{"host":"r.io"}}"#;
        let bad = r#"{"action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json"},"request":{"host":"r.io"}}"#;
        let body = format!(r#"{{"events":[{good},{bad}]}}"#);
        assert_eq!(
            deliver(body.as_bytes()),
            Err(HookError::BadPayload(
                "events[1].target.repository is missing".into()
            ))
        );
    }

    #[test]
    fn url_parts() {
        fn url_host(url: &str) -> Option<&str> {
            split_url(url).map(|(host, _)| host)
        }
        assert_eq!(url_host("https://r.io/v2/a"), Some("r.io"));
        assert_eq!(url_host("http://u:p@r.io:5000/v2"), Some("r.io:5000"));
        assert_eq!(url_host("http://r.io"), Some("r.io"));
        assert_eq!(url_host("http:///v2"), None);
        assert_eq!(url_host("/v2/a/manifests/x"), None);
        assert_eq!(url_kind("https://r.io/v2/a/manifests/x"), Some("manifests"));
        assert_eq!(url_kind("https://r.io/v2/a/blobs/x#y"), Some("blobs"));
        assert_eq!(url_kind("https://r.io/v2/a/tags/list"), None);
        assert_eq!(url_kind(""), None);
    }
}
