//! Bitbucket Server / Data Center webhooks.
//!
//! - Verification: HMAC of the raw body with the webhook secret, in
//!   `X-Hub-Signature` as `sha256=<hex>`, the only hash Bitbucket Server
//!   signs with: another prefix is refused even with a matching MAC.
//! - Event: `X-Event-Key`. `repo:refs_changed` notifies; `diagnostics:ping`
//!   (the "Test connection" button) is acknowledged and ignored; any other
//!   event is refused with 400.
//! - Body: JSON.
//! - Notification: one git change per `changes[].ref.id` whose `ref.type`
//!   is `BRANCH` (repeats collapsed, as for every source), with the branch
//!   name (the id without `refs/heads/`) and the URL from the entry named
//!   `ssh` in `repository.links.clone`. Tag changes are not relayed; a
//!   delivery that changed no branch is acknowledged and ignored.
//! - What each change tells other targets (Argo CD, `crate::push`): the
//!   ref id, the `http` and `ssh` clone links (the https path is under
//!   `/scm/`), `fromHash`/`toHash`. No default branch and no files.

use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{SampleRequest, AFTER, BEFORE, BRANCH, OWNER};
use super::verify::{sign, Algorithm};
use super::{
    check_url, header, json, lenient, required, told_changes, verify, FirstRefs, HookError,
    HookResult, Kinds, Outcome, Proof, Provider, SampleHook, Settings,
};
use crate::push as told;

const SIGNATURE: &str = "X-Hub-Signature";
const EVENT: &str = "X-Event-Key";
const DELIVERY: &str = "X-Request-Id";

/// Bitbucket Server (and Data Center), as the config names it.
pub const PROVIDER: Provider = Provider {
    name: "BitbucketServer",
    proof: Proof::Signature {
        header: SIGNATURE,
        prefixed: true,
    },
    event_header: Some(EVENT),
    delivery_header: Some(DELIVERY),
    handle,
    sample_events: &["push", "ping"],
    sample,
    changes: Kinds::Git,
    extras: &[],
};

#[derive(Deserialize)]
struct Payload {
    repository: Option<Repository>,
    changes: Option<Vec<RefChange>>,
}

#[derive(Deserialize)]
struct Repository {
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    clone: Option<Vec<Link>>,
}

#[derive(Deserialize)]
struct Link {
    href: Option<String>,
    name: Option<String>,
}

#[derive(Deserialize)]
struct RefChange {
    #[serde(rename = "ref")]
    changed: Option<Ref>,
    #[serde(rename = "fromHash")]
    #[serde(default, deserialize_with = "lenient")]
    from_hash: Option<String>,
    #[serde(rename = "toHash")]
    #[serde(default, deserialize_with = "lenient")]
    to_hash: Option<String>,
}

#[derive(Deserialize)]
struct Ref {
    id: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// Verify and parse one Bitbucket Server delivery.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    verify::prefixed_hmac_in_header_as(
        headers,
        SIGNATURE,
        verify::Prefixes::Sha256,
        settings.key.expose(),
        body,
    )?;

    let event = header(headers, EVENT).ok_or(HookError::MissingEvent(EVENT))?;
    match event {
        "repo:refs_changed" => {}
        "diagnostics:ping" => return Ok(Outcome::Ignore("ping".into())),
        other => return Err(HookError::wrong_event(EVENT, other)),
    }

    let payload: Payload = json(body)?;
    let links = payload
        .repository
        .and_then(|r| r.links)
        .and_then(|l| l.clone)
        .unwrap_or_default();
    let href = |name: &str| {
        links
            .iter()
            .find(|link| link.name.as_deref() == Some(name))
            .and_then(|link| link.href.clone())
            .filter(|href| !href.is_empty())
    };
    let url = href("ssh")
        .ok_or_else(|| HookError::BadPayload("repository.links.clone has no ssh link".into()))?;
    // The https clone URL is under /scm/, which the ssh path is not.
    let http = href("http");
    let changes = payload
        .changes
        .ok_or_else(|| HookError::BadPayload("changes is missing".into()))?;

    check_url(&url)?;
    let repository = Arc::new(
        told::Repository::default()
            .with_clone_url(http.as_deref())
            .with_clone_url(Some(&url)),
    );
    let mut first = FirstRefs::default();
    let mut refs = Vec::new();
    for (i, change) in changes.into_iter().enumerate() {
        let Some(changed) = change.changed else {
            continue;
        };
        if changed.kind.as_deref() != Some("BRANCH") {
            continue;
        }
        let id = required(changed.id, &format!("changes[{i}].ref.id"))?;
        if !first.first(&id)? {
            continue;
        }
        let push = told::Push {
            before: change.from_hash,
            after: change.to_hash,
            ..told::Push::of_ref(&id)
        }
        .to(&repository);
        refs.push((id, push));
    }
    let branches = told_changes(&[url], refs)?;
    if branches.is_empty() {
        return Ok(Outcome::Ignore("no branch was changed".into()));
    }
    Ok(Outcome::Notify(branches))
}

/// A `repo:refs_changed` updating one branch, or the `diagnostics:ping` of
/// the "Test connection" button.
fn sample(s: &SampleRequest) -> SampleHook {
    let name = s.name;
    let ssh_url = format!("ssh://git@bitbucket.example.com:7999/ex/{name}.git");
    let (event_key, body, summary) = if s.event == "ping" {
        let summary = "a ping (the \"Test connection\"; nothing is relayed)";
        (
            "diagnostics:ping",
            json!({"test": true}),
            summary.to_string(),
        )
    } else {
        let user = json!({
            "name": OWNER,
            "emailAddress": "dev@example.com",
            "id": 101,
            "displayName": "Example Developer",
            "active": true,
            "slug": OWNER,
            "type": "NORMAL",
        });
        let body = json!({
            "eventKey": "repo:refs_changed",
            "date": "2024-05-01T12:00:00+0000",
            "actor": user,
            "repository": {
                "slug": name,
                "id": 84,
                "name": name,
                "scmId": "git",
                "state": "AVAILABLE",
                "statusMessage": "Available",
                "forkable": true,
                "project": {"key": "EX", "id": 84, "name": "Example", "public": false, "type": "NORMAL"},
                "public": false,
                "links": {
                    "clone": [
                        {"href": format!("https://bitbucket.example.com/scm/ex/{name}.git"), "name": "http"},
                        {"href": ssh_url, "name": "ssh"},
                    ],
                    "self": [{"href": format!("https://bitbucket.example.com/projects/EX/repos/{name}/browse")}],
                },
            },
            "changes": [{
                "ref": {"id": format!("refs/heads/{BRANCH}"), "displayId": BRANCH, "type": "BRANCH"},
                "refId": format!("refs/heads/{BRANCH}"),
                "fromHash": BEFORE,
                "toHash": AFTER,
                "type": "UPDATE",
            }],
        });
        let summary = format!("a push to branch {BRANCH} of {ssh_url}");
        ("repo:refs_changed", body, summary)
    };
    let body = s.body_or(&body);
    let headers = vec![
        (
            "Content-Type",
            "application/json; charset=utf-8".to_string(),
        ),
        (EVENT, event_key.to_string()),
        (DELIVERY, s.delivery_id.to_string()),
        (SIGNATURE, sign(Algorithm::Sha256, s.key, &body)),
    ];
    SampleHook {
        headers,
        body,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Change;
    use crate::source::testing::{fixture, headers, settings};

    /// testdata/bitbucket_server_key, which has no trailing newline.
    const KEY: &[u8] = b"a04059c652d3339ffccc10402c99dba7996f6f8f";
    const SSH: &str = "ssh://git@bitbucket.redacted.com/~abursavich/hook-test.git";

    /// A signed delivery, handled as the server handles it (repeated
    /// changes collapsed).
    fn deliver(event: &str, body: &[u8]) -> HookResult {
        let sig = sign(Algorithm::Sha256, KEY, body);
        let h = headers(&[(SIGNATURE, &sig), (EVENT, event)]);
        crate::source::Source::named(PROVIDER.name).handle(&h, body, &settings(KEY))
    }

    fn refs_changed(body: &[u8]) -> HookResult {
        deliver("repo:refs_changed", body)
    }

    /// A payload with these `changes` and an ssh clone link to `u`.
    fn with_changes(changes: &str) -> Vec<u8> {
        format!(
            r#"{{"repository":{{"links":{{"clone":[
                {{"href":"https://h/scm/p/r.git","name":"http"}},
                {{"href":"ssh://git@h/p/r.git","name":"ssh"}}]}}}},
               "changes":{changes}}}"#
        )
        .into_bytes()
    }

    fn git(branch: &str) -> Change {
        Change::git("ssh://git@h/p/r.git", branch)
    }

    #[test]
    fn fixture_key_is_the_one_the_tests_use() {
        assert_eq!(fixture("bitbucket_server_key"), KEY);
    }

    /// cases.json "bitbucket server refs_changed", with its signature.
    #[test]
    fn refs_changed_notifies() {
        let h = headers(&[
            ("Content-Type", "application/json"),
            (EVENT, "repo:refs_changed"),
            (
                SIGNATURE,
                "sha256=c157606c8d0ac3e7eb0173ea55c90740d146ff278b85b0fc50a4ab7d8e1b8fed",
            ),
        ]);
        assert_eq!(
            handle(&h, &fixture("bitbucket_server_payload"), &settings(KEY)),
            Ok(Outcome::Notify(vec![Change::git(SSH, "master")]))
        );
    }

    #[test]
    fn only_sha256_signatures_verify() {
        let body = fixture("bitbucket_server_payload");
        let sig = sign(Algorithm::Sha256, KEY, &body);
        let h = headers(&[(SIGNATURE, &sig), (EVENT, "repo:refs_changed")]);
        assert_eq!(
            handle(&h, &body, &settings(KEY)),
            Ok(Outcome::Notify(vec![Change::git(SSH, "master")]))
        );
        for algo in [Algorithm::Sha1, Algorithm::Sha512] {
            let matching = sign(algo, KEY, &body);
            let h = headers(&[(SIGNATURE, &matching), (EVENT, "repo:refs_changed")]);
            let e = handle(&h, &body, &settings(KEY)).unwrap_err();
            assert!(
                matches!(
                    e,
                    HookError::WrongAlgorithm {
                        header: SIGNATURE,
                        ..
                    }
                ),
                "{algo:?}: {e:?}"
            );
        }
    }

    /// cases.json "bitbucket server, bad key".
    #[test]
    fn signature_with_another_key_is_401() {
        let h = headers(&[
            ("Content-Type", "application/json"),
            (EVENT, "repo:refs_changed"),
            (
                SIGNATURE,
                "sha256=68b02a0efe0b58eaeffd2c6f2f5e976921715c5d906941efabce4656e2aa7d8f",
            ),
        ]);
        assert_eq!(
            handle(&h, &fixture("bitbucket_server_payload"), &settings(KEY)),
            Err(HookError::BadSignature(SIGNATURE))
        );
    }

    #[test]
    fn bad_signatures_are_401() {
        let body = fixture("bitbucket_server_payload");
        let hex = verify::sign_hex(Algorithm::Sha256, KEY, &body);
        let mut extended_key = KEY.to_vec();
        extended_key.push(b'\n');
        for bad in [
            // Signature of a different body.
            sign(Algorithm::Sha256, KEY, b"{}"),
            // The key with a newline the key file does not have.
            sign(Algorithm::Sha256, &extended_key, &body),
            // Right MAC, wrong or missing algorithm prefix.
            format!("sha512={hex}"),
            format!("sha1={hex}"),
            format!("md5={hex}"),
            hex,
            "sha256=".to_string(),
            "sha256=zz".to_string(),
            String::new(),
        ] {
            let h = headers(&[(SIGNATURE, &bad), (EVENT, "repo:refs_changed")]);
            let e = handle(&h, &body, &settings(KEY)).unwrap_err();
            assert!(e.is_unauthorized(), "{bad}: {e:?}");
            // Both kinds of refusal name the header.
            assert!(e.to_string().starts_with(SIGNATURE), "{bad}: {e}");
        }
    }

    #[test]
    fn key_with_trailing_newline_must_be_used_whole() {
        let body = fixture("bitbucket_server_payload");
        let sig = sign(Algorithm::Sha256, b"secret", &body);
        let h = headers(&[(SIGNATURE, &sig), (EVENT, "repo:refs_changed")]);
        assert_eq!(
            handle(&h, &body, &settings(b"secret\n")),
            Err(HookError::BadSignature(SIGNATURE))
        );
    }

    #[test]
    fn missing_signature_is_401() {
        let h = headers(&[(EVENT, "repo:refs_changed")]);
        assert_eq!(
            handle(&h, &fixture("bitbucket_server_payload"), &settings(KEY)),
            Err(HookError::Unsigned(SIGNATURE))
        );
    }

    #[test]
    fn verification_comes_before_the_event() {
        for event in [Some("diagnostics:ping"), Some("pr:opened"), None] {
            let mut pairs = vec![(SIGNATURE, "sha256=00")];
            if let Some(event) = event {
                pairs.push((EVENT, event));
            }
            assert_eq!(
                handle(&headers(&pairs), b"{}", &settings(KEY)),
                Err(HookError::BadSignature(SIGNATURE)),
                "{event:?}"
            );
            let pairs: Vec<_> = event.map(|e| (EVENT, e)).into_iter().collect();
            assert_eq!(
                handle(&headers(&pairs), b"{}", &settings(KEY)),
                Err(HookError::Unsigned(SIGNATURE)),
                "{event:?}"
            );
        }
    }

    #[test]
    fn test_connection_is_acknowledged() {
        let body = br#"{"test": true}"#;
        assert!(matches!(
            deliver("diagnostics:ping", body),
            Ok(Outcome::Ignore(_))
        ));
    }

    #[test]
    fn other_events_are_400() {
        let body = fixture("bitbucket_server_payload");
        let sig = sign(Algorithm::Sha256, KEY, &body);
        let h = headers(&[(SIGNATURE, &sig)]);
        assert_eq!(
            handle(&h, &body, &settings(KEY)),
            Err(HookError::MissingEvent(EVENT))
        );
        for event in [
            "repo:push",
            "pr:opened",
            "repo:refs_changed ",
            "REPO:REFS_CHANGED",
        ] {
            let err = deliver(event, &body).unwrap_err();
            assert_eq!(err, HookError::wrong_event(EVENT, event));
            assert!(!err.is_unauthorized());
        }
    }

    #[test]
    fn distinct_branches_in_order_and_tags_skipped() {
        let body = with_changes(
            r#"[
            {"ref":{"id":"refs/heads/b","displayId":"b","type":"BRANCH"},"type":"UPDATE"},
            {"ref":{"id":"refs/tags/v1","displayId":"v1","type":"TAG"},"type":"ADD"},
            {"ref":{"id":"refs/heads/a","displayId":"a","type":"BRANCH"},"type":"ADD"},
            {"ref":{"id":"refs/heads/b","displayId":"b","type":"BRANCH"},"type":"UPDATE"},
            {"refId":"refs/heads/c","type":"ADD"},
            {"ref":{"id":"refs/heads/d","type":"branch"},"type":"ADD"},
            {"ref":{"id":"refs/heads/feature/x","type":"BRANCH"},"type":"DELETE"}
        ]"#,
        );
        assert_eq!(
            refs_changed(&body),
            Ok(Outcome::Notify(vec![git("b"), git("a"), git("feature/x")]))
        );
    }

    #[test]
    fn no_branch_changes_are_ignored() {
        for changes in [r#"[{"ref":{"id":"refs/tags/v1","type":"TAG"}}]"#, r#"[]"#] {
            assert!(
                matches!(refs_changed(&with_changes(changes)), Ok(Outcome::Ignore(_))),
                "{changes}"
            );
        }
    }

    /// cases.json "bitbucket server, bad payload": the fixture without its
    /// opening brace, correctly signed.
    #[test]
    fn unparseable_body_is_400() {
        let body = fixture("bitbucket_server_payload");
        let bad = &body[1..];
        assert_eq!(
            sign(Algorithm::Sha256, KEY, bad),
            "sha256=189e8c1f232b33e93d0aa1ce2b9f21dbe3eb7268985ff02a87e66561c8ac1892"
        );
        let err = refs_changed(bad).unwrap_err();
        assert!(matches!(err, HookError::BadPayload(_)), "{err:?}");
    }

    #[test]
    fn bad_payloads_are_400() {
        let body = fixture("bitbucket_server_payload");
        let branch = r#"[{"ref":{"id":"refs/heads/m","type":"BRANCH"}}]"#;
        let cases: Vec<Vec<u8>> = vec![
            body[..body.len() / 2].to_vec(),
            b"".to_vec(),
            b"\xff\xfe\xfd".to_vec(),
            b"[]".to_vec(),
            // Wrong types.
            with_changes(r#"{"ref":{"id":"refs/heads/m","type":"BRANCH"}}"#),
            with_changes(r#"[{"ref":{"id":1,"type":"BRANCH"}}]"#),
            with_changes(r#"[{"ref":{"id":"refs/heads/m","type":true}}]"#),
            with_changes(r#"[{"ref":"refs/heads/m"}]"#),
            format!(r#"{{"repository":{{"links":{{"clone":{{}}}}}},"changes":{branch}}}"#)
                .into_bytes(),
            format!(
                r#"{{"repository":{{"links":{{"clone":[{{"href":5,"name":"ssh"}}]}}}},"changes":{branch}}}"#
            )
            .into_bytes(),
            // Non-UTF-8 inside a string.
            with_changes("[{\"ref\":{\"id\":\"refs/heads/\u{1}\",\"type\":\"BRANCH\"}}]")
                .into_iter()
                .map(|b| if b == 1 { 0xff } else { b })
                .collect(),
            // No ssh clone link.
            format!(r#"{{"changes":{branch}}}"#).into_bytes(),
            format!(r#"{{"repository":{{}},"changes":{branch}}}"#).into_bytes(),
            format!(r#"{{"repository":{{"links":{{}}}},"changes":{branch}}}"#).into_bytes(),
            format!(
                r#"{{"repository":{{"links":{{"clone":[{{"href":"https://h/r.git","name":"http"}}]}}}},"changes":{branch}}}"#
            )
            .into_bytes(),
            format!(
                r#"{{"repository":{{"links":{{"clone":[{{"name":"ssh"}}]}}}},"changes":{branch}}}"#
            )
            .into_bytes(),
            format!(
                r#"{{"repository":{{"links":{{"clone":[{{"href":"","name":"ssh"}}]}}}},"changes":{branch}}}"#
            )
            .into_bytes(),
            // Missing changes, or a branch without an id.
            br#"{"repository":{"links":{"clone":[{"href":"ssh://h/r.git","name":"ssh"}]}}}"#
                .to_vec(),
            with_changes("null"),
            with_changes(r#"[{"ref":{"type":"BRANCH"}}]"#),
            with_changes(r#"[{"ref":{"id":"","type":"BRANCH"}}]"#),
        ];
        for bad in &cases {
            let err = refs_changed(bad).unwrap_err();
            assert!(
                matches!(err, HookError::BadPayload(_)),
                "{}: {err:?}",
                String::from_utf8_lossy(bad)
            );
            assert!(!err.is_unauthorized());
        }
    }
}
