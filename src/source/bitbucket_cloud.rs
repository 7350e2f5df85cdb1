//! Bitbucket Cloud (bitbucket.org) push webhooks.
//!
//! - Verification: Bitbucket Cloud signs the webhooks that were given a
//!   secret, with the HMAC-SHA256 of the body in `X-Hub-Signature`
//!   (`sha256=<hex>`; Bitbucket signs with SHA-256 only, so another prefix
//!   is refused even with a matching MAC). When the header is present it
//!   must verify with the endpoint's key (constant time). Hooks without a secret send no
//!   signature; such deliveries are accepted, with the unguessable hook URL
//!   as the only protection, unless the endpoint sets
//!   `requireSignature: true`, which refuses them (401).
//! - Event: `X-Event-Key` must be `repo:push`; any other event is refused
//!   with 400, as the Go original did.
//! - Body: JSON (Bitbucket sends `application/json; charset=UTF-8`).
//! - Notification: one git change per entry of `push.changes`, in order, for
//!   the branch or tag named in its `new.name`, with the URL
//!   `git@bitbucket.org:<repository.full_name>.git`. A change whose `new` is
//!   null (a deleted branch or tag) is skipped; a push that only deleted
//!   refs is acknowledged and ignored.
//! - What each change tells other targets (Argo CD, `crate::push`):
//!   `refs/heads/` or `refs/tags/` (from `new.type`) and the name,
//!   `repository.links.html.href`, `old.target.hash`/`new.target.hash`.
//!   No default branch and no files.

use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{self, SampleRequest, AFTER, BEFORE, BRANCH, MESSAGE, OWNER, TIME};
use super::verify::{self, sign, Algorithm};
use super::{
    check_url, header, json, lenient, required, told_changes, Extra, FirstRefs, HookError,
    HookResult, Kinds, Outcome, Proof, Provider, SampleHook, Settings,
};
use crate::push as told;

const SIGNATURE: &str = "X-Hub-Signature";
const EVENT: &str = "X-Event-Key";
const DELIVERY: &str = "X-Request-UUID";

/// Bitbucket Cloud, as the config names it.
pub const PROVIDER: Provider = Provider {
    name: "BitbucketCloud",
    proof: Proof::OptionalSignature {
        header: SIGNATURE,
        prefixed: true,
    },
    event_header: Some(EVENT),
    delivery_header: Some(DELIVERY),
    handle,
    sample_events: &["push"],
    sample,
    changes: Kinds::Git,
    extras: &[Extra::RequireSignature],
};

#[derive(Deserialize)]
struct Payload {
    repository: Option<Repository>,
    push: Option<Push>,
}

#[derive(Deserialize)]
struct Repository {
    full_name: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    #[serde(default, deserialize_with = "lenient")]
    html: Option<Link>,
}

#[derive(Deserialize)]
struct Link {
    #[serde(default, deserialize_with = "lenient")]
    href: Option<String>,
}

#[derive(Deserialize)]
struct Push {
    changes: Option<Vec<RefChange>>,
}

#[derive(Deserialize)]
struct RefChange {
    /// The ref after the push; null when the push deleted it.
    new: Option<NewRef>,
    /// The ref before; null when the push created it.
    #[serde(default, deserialize_with = "lenient")]
    old: Option<OldRef>,
}

#[derive(Deserialize)]
struct NewRef {
    name: Option<String>,
    /// `branch` or `tag`.
    #[serde(rename = "type")]
    #[serde(default, deserialize_with = "lenient")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    target: Option<Target>,
}

#[derive(Deserialize)]
struct OldRef {
    #[serde(default, deserialize_with = "lenient")]
    target: Option<Target>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(default, deserialize_with = "lenient")]
    hash: Option<String>,
}

/// Verify (where signed, or required to be) and parse one Bitbucket Cloud
/// delivery.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    match header(headers, SIGNATURE) {
        Some(sig) => verify::prefixed_hmac_as(
            SIGNATURE,
            verify::Prefixes::Sha256,
            sig,
            settings.key.expose(),
            body,
        )?,
        None if settings.require_signature => return Err(HookError::Unsigned(SIGNATURE)),
        None => {}
    }

    let event = header(headers, EVENT).ok_or(HookError::MissingEvent(EVENT))?;
    if event != "repo:push" {
        return Err(HookError::wrong_event(EVENT, event));
    }

    let payload: Payload = json(body)?;
    let repository = payload.repository;
    let full_name = required(
        repository.as_ref().and_then(|r| r.full_name.clone()),
        "repository.full_name",
    )?;
    let web_url = repository
        .and_then(|r| r.links)
        .and_then(|l| l.html)
        .and_then(|h| h.href);
    let changes = payload
        .push
        .and_then(|p| p.changes)
        .ok_or_else(|| HookError::BadPayload("push.changes is missing".into()))?;

    let url = format!("git@bitbucket.org:{full_name}.git");
    check_url(&url)?;
    let repository = Arc::new(
        told::Repository {
            web_url,
            ..told::Repository::default()
        }
        .with_clone_url(Some(&url)),
    );
    let mut first = FirstRefs::default();
    let mut refs = Vec::new();
    for (i, change) in changes.into_iter().enumerate() {
        let Some(new) = change.new else { continue };
        let name = required(new.name, &format!("push.changes[{i}].new.name"))?;
        if !first.first(&name)? {
            continue;
        }
        let kind = match new.kind.as_deref() {
            Some("tag") => "tags",
            _ => "heads",
        };
        let push = told::Push {
            before: change.old.and_then(|o| o.target).and_then(|t| t.hash),
            after: new.target.and_then(|t| t.hash),
            ..told::Push::of_ref(&format!("refs/{kind}/{name}"))
        }
        .to(&repository);
        refs.push((name, push));
    }
    let notify = told_changes(&[url], refs)?;
    if notify.is_empty() {
        return Ok(Outcome::Ignore("no branch or tag was updated".into()));
    }
    Ok(Outcome::Notify(notify))
}

/// A `repo:push` updating one branch, signed as a hook with a secret is.
fn sample(s: &SampleRequest) -> SampleHook {
    let full_name = format!("{OWNER}/{}", s.name);
    let html = format!("https://bitbucket.org/{full_name}");
    let target = |hash: &str| {
        json!({
            "type": "commit",
            "hash": hash,
            "message": MESSAGE,
            "date": TIME,
            "author": {"type": "author", "raw": "Example Developer <dev@example.com>"},
            "links": {"html": {"href": format!("{html}/commits/{hash}")}},
        })
    };
    let body = json!({
        "push": {
            "changes": [{
                "old": {"type": "branch", "name": BRANCH, "target": target(BEFORE)},
                "new": {"type": "branch", "name": BRANCH, "target": target(AFTER)},
                "created": false,
                "closed": false,
                "forced": false,
                "truncated": false,
                "commits": [target(AFTER)],
            }],
        },
        "repository": {
            "type": "repository",
            "name": s.name,
            "full_name": full_name,
            "uuid": "{2f7c6f1c-5a0e-4f4b-9a53-6b3c0b8e5a11}",
            "is_private": true,
            "scm": "git",
            "links": {"html": {"href": html}},
        },
        "actor": {"type": "user", "display_name": "Example Developer", "nickname": OWNER},
    });
    let body = s.body_or(&body);
    let mut headers = sample::json_headers();
    headers.extend([
        (EVENT, "repo:push".to_string()),
        (SIGNATURE, sign(Algorithm::Sha256, s.key, &body)),
        (DELIVERY, s.delivery_id.to_string()),
        (
            "X-Hook-UUID",
            "{6b1fc2b4-63a1-4f8e-9d44-1e0c8f5a2d7b}".to_string(),
        ),
        ("X-Attempt-Number", "1".to_string()),
    ]);
    SampleHook {
        headers,
        body,
        summary: format!("a push to branch {BRANCH} of git@bitbucket.org:{full_name}.git"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Change;
    use crate::source::testing::{fixture, headers, settings};

    fn push(body: &[u8]) -> HookResult {
        let h = headers(&[
            ("Content-Type", "application/json; charset=UTF-8"),
            (EVENT, "repo:push"),
        ]);
        handle(&h, body, &settings(&fixture("bitbucket_cloud_key")))
    }

    fn git(branch: &str) -> Change {
        Change::git("git@bitbucket.org:team/repo.git", branch)
    }

    /// cases.json "bitbucket cloud push".
    #[test]
    fn push_notifies() {
        let h = headers(&[("Content-Type", "application/json"), (EVENT, "repo:push")]);
        assert_eq!(
            handle(
                &h,
                &fixture("bitbucket_cloud_payload"),
                &settings(&fixture("bitbucket_cloud_key"))
            ),
            Ok(Outcome::Notify(vec![Change::git(
                "git@bitbucket.org:mbridgen/dummy.git",
                "master"
            )]))
        );
    }

    #[test]
    fn charset_parameter_and_any_key_are_fine() {
        let expected = Ok(Outcome::Notify(vec![Change::git(
            "git@bitbucket.org:mbridgen/dummy.git",
            "master",
        )]));
        assert_eq!(push(&fixture("bitbucket_cloud_payload")), expected);
        // Unsigned: the endpoint's key plays no part.
        let h = headers(&[(EVENT, "repo:push")]);
        assert_eq!(
            handle(&h, &fixture("bitbucket_cloud_payload"), &settings(b"other")),
            expected
        );
    }

    #[test]
    fn one_change_per_updated_ref_in_order() {
        let body = br#"{
            "repository": {"full_name": "team/repo"},
            "push": {"changes": [
                {"new": {"type": "branch", "name": "main"}},
                {"new": null, "old": {"type": "branch", "name": "gone"}},
                {"new": {"type": "tag", "name": "v1.0"}},
                {"old": {"type": "branch", "name": "also-gone"}},
                {"new": {"type": "branch", "name": "dev"}}
            ]}
        }"#;
        assert_eq!(
            push(body),
            Ok(Outcome::Notify(vec![git("main"), git("v1.0"), git("dev")]))
        );
    }

    #[test]
    fn only_deletions_are_ignored() {
        for body in [
            br#"{"repository":{"full_name":"team/repo"},"push":{"changes":[{"new":null}]}}"#
                .as_slice(),
            br#"{"repository":{"full_name":"team/repo"},"push":{"changes":[]}}"#.as_slice(),
        ] {
            assert!(matches!(push(body), Ok(Outcome::Ignore(_))));
        }
    }

    #[test]
    fn event_must_be_repo_push() {
        let body = fixture("bitbucket_cloud_payload");
        let key = settings(&fixture("bitbucket_cloud_key"));
        let h = headers(&[("Content-Type", "application/json")]);
        assert_eq!(handle(&h, &body, &key), Err(HookError::MissingEvent(EVENT)));
        // cases.json "bitbucket cloud, wrong event key", and others.
        for event in [
            "flurb",
            "repo:refs_changed",
            "pullrequest:created",
            "Repo:Push",
        ] {
            let h = headers(&[("Content-Type", "application/json"), (EVENT, event)]);
            let err = handle(&h, &body, &key).unwrap_err();
            assert_eq!(err, HookError::wrong_event(EVENT, event));
            assert!(!err.is_unauthorized());
        }
    }

    #[test]
    fn bad_payloads_are_400() {
        let body = fixture("bitbucket_cloud_payload");
        for bad in [
            &body[..body.len() / 2],
            b"".as_slice(),
            b"\xff\xfe\xfd".as_slice(),
            br#""repo:push""#.as_slice(),
            br#"{"repository":{"full_name":1},"push":{"changes":[]}}"#.as_slice(),
            br#"{"repository":{"full_name":"a/b"},"push":{"changes":{}}}"#.as_slice(),
            br#"{"repository":{"full_name":"a/b"},"push":{"changes":[{"new":"main"}]}}"#.as_slice(),
            br#"{"repository":{"full_name":"a/b"},"push":{"changes":[{"new":{"name":2}}]}}"#
                .as_slice(),
            b"{\"repository\":{\"full_name\":\"a/\xff\"},\"push\":{\"changes\":[]}}".as_slice(),
            // Missing or empty repository.full_name.
            br#"{"push":{"changes":[{"new":{"name":"main"}}]}}"#.as_slice(),
            br#"{"repository":{},"push":{"changes":[{"new":{"name":"main"}}]}}"#.as_slice(),
            br#"{"repository":{"full_name":""},"push":{"changes":[{"new":{"name":"m"}}]}}"#
                .as_slice(),
            // Missing push.changes.
            br#"{"repository":{"full_name":"a/b"}}"#.as_slice(),
            br#"{"repository":{"full_name":"a/b"},"push":{}}"#.as_slice(),
            br#"{"repository":{"full_name":"a/b"},"push":{"changes":null}}"#.as_slice(),
            // An updated ref without a name.
            br#"{"repository":{"full_name":"a/b"},"push":{"changes":[{"new":{}}]}}"#.as_slice(),
            br#"{"repository":{"full_name":"a/b"},"push":{"changes":[{"new":{"name":""}}]}}"#
                .as_slice(),
        ] {
            let err = push(bad).unwrap_err();
            assert!(matches!(err, HookError::BadPayload(_)), "{bad:?}: {err:?}");
            assert!(!err.is_unauthorized());
        }
    }

    fn signature_required() -> Settings {
        Settings {
            require_signature: true,
            ..settings(&fixture("bitbucket_cloud_key"))
        }
    }

    fn signed(key: &[u8], body: &[u8]) -> HeaderMap {
        headers(&[
            ("Content-Type", "application/json"),
            (EVENT, "repo:push"),
            (SIGNATURE, &sign(Algorithm::Sha256, key, body)),
        ])
    }

    #[test]
    fn a_signature_present_must_verify() {
        let body = fixture("bitbucket_cloud_payload");
        let key = fixture("bitbucket_cloud_key");
        let expected = Ok(Outcome::Notify(vec![Change::git(
            "git@bitbucket.org:mbridgen/dummy.git",
            "master",
        )]));
        for settings in [settings(&key), signature_required()] {
            assert_eq!(handle(&signed(&key, &body), &body, &settings), expected);
        }
        // Another key, another body, a malformed or bare value: 401, with
        // or without requireSignature, before the event is looked at.
        let mut wrong_event = signed(b"another key", &body);
        wrong_event.insert(EVENT, "pullrequest:created".parse().unwrap());
        for h in [
            signed(b"another key", &body),
            signed(&key, b"{}"),
            wrong_event,
            headers(&[(EVENT, "repo:push"), (SIGNATURE, "sha256=zz")]),
            headers(&[(EVENT, "repo:push"), (SIGNATURE, "")]),
            headers(&[
                (EVENT, "repo:push"),
                (SIGNATURE, &verify::sign_hex(Algorithm::Sha256, &key, &body)),
            ]),
        ] {
            assert_eq!(
                handle(&h, &body, &settings(&key)),
                Err(HookError::BadSignature(SIGNATURE)),
                "{h:?}"
            );
        }
    }

    /// `requireSignature` means a SHA-256 signature: Bitbucket never sends
    /// another, so a matching `sha1=` (or `sha512=`) is refused.
    #[test]
    fn only_sha256_signatures_are_taken() {
        let body = fixture("bitbucket_cloud_payload");
        let key = fixture("bitbucket_cloud_key");
        for algo in [Algorithm::Sha1, Algorithm::Sha512] {
            let h = headers(&[(EVENT, "repo:push"), (SIGNATURE, &sign(algo, &key, &body))]);
            for settings in [settings(&key), signature_required()] {
                let e = handle(&h, &body, &settings).unwrap_err();
                assert!(e.is_unauthorized(), "{algo:?}");
                assert!(
                    e.to_string().starts_with("X-Hub-Signature must be sha256="),
                    "{e}"
                );
            }
        }
    }

    #[test]
    fn require_signature_refuses_unsigned_deliveries() {
        let body = fixture("bitbucket_cloud_payload");
        let h = headers(&[("Content-Type", "application/json"), (EVENT, "repo:push")]);
        let e = handle(&h, &body, &signature_required()).unwrap_err();
        assert_eq!(e, HookError::Unsigned(SIGNATURE));
        assert!(e.is_unauthorized());
        assert!(handle(&h, &body, &settings(b"k")).is_ok());
    }

    #[test]
    fn the_sample_is_signed() {
        let key = b"bitbucket-cloud-secret-012345678";
        let d = sample(&SampleRequest::push(key));
        assert_eq!(
            d.header(SIGNATURE),
            Some(sign(Algorithm::Sha256, key, &d.body).as_str())
        );
        let require = Settings {
            require_signature: true,
            ..settings(key)
        };
        assert!(matches!(
            handle(&d.header_map(), &d.body, &require),
            Ok(Outcome::Notify(_))
        ));
    }
}
