//! GitLab push hooks.
//!
//! - Verification, chosen by the endpoint's key:
//!   - a signing token (`whsec_…`, GitLab 19.0 and later): the Standard
//!     Webhooks signature GitLab sends in `webhook-signature`, over
//!     `webhook-id`, `webhook-timestamp` and the body (see
//!     [`super::stamped`]). It is then the only proof taken: a delivery
//!     with only `X-Gitlab-Token` is refused, whatever the token. The
//!     timestamp must lie within `--signature-tolerance` of now, and a
//!     `webhook-id` accepted within that window is acknowledged without
//!     sending anything again.
//!   - any other key: the hook's "Secret token", sent verbatim in
//!     `X-Gitlab-Token`, must equal the key (compared in constant time).
//!     GitLab then signs nothing, so a recorded delivery can be replayed.
//! - Event: `X-Gitlab-Event` must be `Push Hook`; any other event is refused
//!   with 400, as the Go original did. Configure the hook for push events
//!   only.
//! - Body: JSON.
//! - Notification: git, `project.git_ssh_url`, `ref` without `refs/heads/`
//!   (tags keep their full `refs/tags/…`).
//! - What the push tells other targets (Argo CD, `crate::push`): the full
//!   `ref`, `project.git_http_url` and `git_ssh_url`, `web_url`,
//!   `default_branch`, `before`/`after`, and the files of `commits[]` when
//!   they are all listed (`total_commits_count`; GitLab lists 20 at most).

use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{self, SampleRequest, AFTER, BEFORE, BRANCH, MESSAGE, OWNER, TIME};
use super::stamped::{self, Stamp};
use super::{
    header, json, lenient, required, verify, Commit, HookError, HookResult, Kinds, Outcome, Proof,
    Provider, SampleHook, Settings,
};
use crate::notification::Change;
use crate::push::{self as told, Files};

const TOKEN: &str = "X-Gitlab-Token";
const EVENT: &str = "X-Gitlab-Event";
const DELIVERY: &str = "X-Gitlab-Event-UUID";
/// GitLab's retry key, which it also sends as `webhook-id`.
const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// GitLab, as the config names it.
pub const PROVIDER: Provider = Provider {
    name: "GitLab",
    proof: Proof::SigningSecretOr(&Proof::HeaderToken {
        header: TOKEN,
        check: check_token,
    }),
    event_header: Some(EVENT),
    delivery_header: Some(DELIVERY),
    handle,
    sample_events: &["push"],
    sample,
    changes: Kinds::Git,
    extras: &[],
};

/// The secret token, verbatim, must equal the key.
fn check_token(headers: &HeaderMap, key: &[u8]) -> Result<(), HookError> {
    verify::key_in_header(headers, TOKEN, key)
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    before: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    after: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    commits: Option<Vec<Commit>>,
    /// All the push's commits; `commits` lists at most 20.
    #[serde(default, deserialize_with = "lenient")]
    total_commits_count: Option<u64>,
    project: Option<Project>,
}

#[derive(Deserialize)]
struct Project {
    git_ssh_url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    git_http_url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    web_url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    default_branch: Option<String>,
}

/// Verify and parse one GitLab delivery.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    let key = settings.key.expose();
    if stamped::is_signing_secret(key) {
        stamped::verify(headers, body, key)?;
    } else {
        check_token(headers, key)?;
    }

    let event = header(headers, EVENT).ok_or(HookError::MissingEvent(EVENT))?;
    if event != "Push Hook" {
        return Err(HookError::wrong_event(EVENT, event));
    }

    let push: Push = json(body)?;
    let project = push.project;
    let url = required(
        project.as_ref().and_then(|p| p.git_ssh_url.clone()),
        "project.git_ssh_url",
    )?;
    let git_ref = required(push.git_ref, "ref")?;
    let project = project.expect("it has a git_ssh_url");
    let commits = push.commits.into_iter().flatten().map(Commit::files);
    let repository = told::Repository {
        web_url: project.web_url,
        default_branch: project.default_branch,
        ..told::Repository::default()
    }
    .with_clone_url(project.git_http_url.as_deref())
    .with_clone_url(Some(&url));
    let told = told::Push {
        before: push.before,
        after: push.after,
        files: Files::of_commits(commits, push.total_commits_count),
        ..told::Push::of_ref(&git_ref)
    }
    .to(&Arc::new(repository));
    let change = Change::git(url, &git_ref).told(&Arc::new(told));
    Ok(Outcome::Notify(vec![change]))
}

/// A push hook, with the secret token as GitLab sends it, or signed, when
/// the key is a signing token.
fn sample(s: &SampleRequest) -> SampleHook {
    let name = s.name;
    let ssh_url = format!("git@gitlab.com:{OWNER}/{name}.git");
    let web_url = format!("https://gitlab.com/{OWNER}/{name}");
    let body = json!({
        "object_kind": "push",
        "event_name": "push",
        "before": BEFORE,
        "after": AFTER,
        "ref": format!("refs/heads/{BRANCH}"),
        "ref_protected": true,
        "checkout_sha": AFTER,
        "user_id": 4,
        "user_name": "Example Developer",
        "user_username": OWNER,
        "user_email": "",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": name,
            "description": "",
            "web_url": web_url,
            "git_ssh_url": ssh_url,
            "git_http_url": format!("{web_url}.git"),
            "namespace": OWNER,
            "visibility_level": 0,
            "path_with_namespace": format!("{OWNER}/{name}"),
            "default_branch": BRANCH,
        },
        "commits": [{
            "id": AFTER,
            "message": MESSAGE,
            "title": MESSAGE,
            "timestamp": TIME,
            "url": format!("{web_url}/-/commit/{AFTER}"),
            "author": {"name": "Example Developer", "email": "dev@example.com"},
            "added": [],
            "modified": ["README.md"],
            "removed": [],
        }],
        "total_commits_count": 1,
        "repository": {
            "name": name,
            "url": ssh_url,
            "description": "",
            "homepage": web_url,
            "git_http_url": format!("{web_url}.git"),
            "git_ssh_url": ssh_url,
            "visibility_level": 0,
        },
    });
    let body = s.body_or(&body);
    let mut headers = sample::json_headers();
    headers.extend([
        (EVENT, "Push Hook".to_string()),
        (DELIVERY, s.delivery_id.to_string()),
        ("X-Gitlab-Instance", "https://gitlab.com".to_string()),
    ]);
    if stamped::is_signing_secret(s.key) {
        let stamp = Stamp {
            id: s.delivery_id.to_string(),
            timestamp: s.sent_at,
        };
        headers.push((IDEMPOTENCY_KEY, stamp.id.clone()));
        headers.extend(stamped::headers(s.key, &stamp, &body));
    } else {
        headers.push((TOKEN, s.key_text()));
    }
    SampleHook {
        headers,
        body,
        summary: format!("a push to branch {BRANCH} of {ssh_url}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::{fixture, headers, settings};

    /// testdata/gitlab_key, which has no trailing newline.
    const KEY: &[u8] = b"af82965fd1338596c801a04059c652d333044768";

    fn push(token: &str, body: &[u8]) -> HookResult {
        let h = headers(&[(TOKEN, token), (EVENT, "Push Hook")]);
        handle(&h, body, &settings(&fixture("gitlab_key")))
    }

    #[test]
    fn fixture_key_is_the_one_the_tests_use() {
        assert_eq!(fixture("gitlab_key"), KEY);
    }

    /// cases.json "gitlab push".
    #[test]
    fn push_hook_notifies() {
        let h = headers(&[
            ("Content-Type", "application/json"),
            (EVENT, "Push Hook"),
            (TOKEN, "af82965fd1338596c801a04059c652d333044768"),
        ]);
        assert_eq!(
            handle(&h, &fixture("gitlab_payload"), &settings(KEY)),
            Ok(Outcome::Notify(vec![Change::git(
                "git@example.com:mike/diaspora.git",
                "master"
            )]))
        );
    }

    #[test]
    fn tags_keep_their_full_ref() {
        let body = br#"{"ref":"refs/tags/v1","project":{"git_ssh_url":"git@gitlab.com:a/b.git"}}"#;
        assert_eq!(
            push(std::str::from_utf8(KEY).unwrap(), body),
            Ok(Outcome::Notify(vec![Change::git(
                "git@gitlab.com:a/b.git",
                "refs/tags/v1"
            )]))
        );
    }

    /// cases.json "gitlab push, bogus token", and other wrong tokens.
    #[test]
    fn wrong_token_is_401() {
        let body = fixture("gitlab_payload");
        for bad in [
            "BOGUSaf82965fd1338596c801a04059c652d333044768",
            "af82965fd1338596c801a04059c652d33304476",
            "AF82965FD1338596C801A04059C652D333044768",
            "",
        ] {
            assert_eq!(
                push(bad, &body),
                Err(HookError::BadSignature(TOKEN)),
                "{bad}"
            );
        }
    }

    #[test]
    fn key_with_trailing_newline_must_be_sent_whole() {
        let h = headers(&[(TOKEN, "secret"), (EVENT, "Push Hook")]);
        let body = fixture("gitlab_payload");
        assert_eq!(
            handle(&h, &body, &settings(b"secret\n")),
            Err(HookError::BadSignature(TOKEN))
        );
    }

    #[test]
    fn missing_token_is_401() {
        let h = headers(&[(EVENT, "Push Hook")]);
        assert_eq!(
            handle(&h, &fixture("gitlab_payload"), &settings(KEY)),
            Err(HookError::Unsigned(TOKEN))
        );
    }

    #[test]
    fn non_utf8_token_is_401() {
        let mut h = headers(&[(EVENT, "Push Hook")]);
        h.insert(TOKEN, http::HeaderValue::from_bytes(b"\xffkey").unwrap());
        assert!(handle(&h, &fixture("gitlab_payload"), &settings(KEY))
            .unwrap_err()
            .is_unauthorized());
    }

    #[test]
    fn bad_token_is_401_even_for_the_wrong_event() {
        let h = headers(&[(TOKEN, "nope"), (EVENT, "Tag Push Hook")]);
        assert_eq!(
            handle(&h, b"{}", &settings(KEY)),
            Err(HookError::BadSignature(TOKEN))
        );
        let h = headers(&[]);
        assert_eq!(
            handle(&h, b"{}", &settings(KEY)),
            Err(HookError::Unsigned(TOKEN))
        );
    }

    /// A signing token, as GitLab makes them: `whsec_` and the base64 of
    /// 32 random bytes.
    const SIGNING_TOKEN: &[u8] = b"whsec_dGVzdHRlc3R0ZXN0dGVzdHRlc3R0ZXN0dGVzdHRlc3Q=";

    fn signed(body: &[u8], key: &[u8]) -> Vec<(&'static str, String)> {
        let stamp = Stamp {
            id: "4b5d2d0f-3f52-4b4c-a4b9-2a1f6c0e8d11".into(),
            timestamp: 1_760_000_000,
        };
        let mut h = vec![(EVENT, "Push Hook".to_string())];
        h.extend(stamped::headers(key, &stamp, body));
        h
    }

    fn map(pairs: &[(&'static str, String)]) -> HeaderMap {
        headers(
            &pairs
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        )
    }

    #[test]
    fn a_signing_token_verifies_the_signature() {
        let body = fixture("gitlab_payload");
        let want = Ok(Outcome::Notify(vec![Change::git(
            "git@example.com:mike/diaspora.git",
            "master",
        )]));
        let h = signed(&body, SIGNING_TOKEN);
        assert_eq!(handle(&map(&h), &body, &settings(SIGNING_TOKEN)), want);
        // A secret token beside it (GitLab sends both when both are set)
        // is not looked at.
        let mut both = h.clone();
        both.push((TOKEN, "some secret token".into()));
        assert_eq!(handle(&map(&both), &body, &settings(SIGNING_TOKEN)), want);
        // Tampered with, or signed with another token.
        let mut tampered = body.clone();
        tampered[body.len() / 2] ^= 1;
        assert_eq!(
            handle(&map(&h), &tampered, &settings(SIGNING_TOKEN)),
            Err(HookError::BadSignature(stamped::SIGNATURE))
        );
        let other = signed(&body, b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        assert_eq!(
            handle(&map(&other), &body, &settings(SIGNING_TOKEN)),
            Err(HookError::BadSignature(stamped::SIGNATURE))
        );
        // Still 401 before the event is looked at.
        let mut tag = other.clone();
        tag[0].1 = "Tag Push Hook".into();
        assert!(handle(&map(&tag), &body, &settings(SIGNING_TOKEN))
            .unwrap_err()
            .is_unauthorized());
    }

    #[test]
    fn with_a_signing_token_the_secret_token_alone_is_refused() {
        let body = fixture("gitlab_payload");
        let token = std::str::from_utf8(SIGNING_TOKEN).unwrap();
        for given in [token, "some secret token", ""] {
            let h = headers(&[(TOKEN, given), (EVENT, "Push Hook")]);
            assert_eq!(
                handle(&h, &body, &settings(SIGNING_TOKEN)),
                Err(HookError::Unsigned(stamped::SIGNATURE)),
                "{given:?}"
            );
        }
        // And before the body is read.
        let h = headers(&[(TOKEN, token), (EVENT, "Push Hook")]);
        let gitlab = crate::source::Source::named("GitLab");
        assert_eq!(
            gitlab.check_headers(&h, &settings(SIGNING_TOKEN)),
            Err(HookError::Unsigned(stamped::SIGNATURE))
        );
    }

    #[test]
    fn the_key_chooses_the_proof_and_the_sample() {
        let gitlab = crate::source::Source::named("GitLab");
        assert!(matches!(gitlab.proof_for(SIGNING_TOKEN), Proof::Stamped));
        assert!(matches!(
            gitlab.proof_for(KEY),
            Proof::HeaderToken { header: TOKEN, .. }
        ));
        let signed = sample(&SampleRequest::push(SIGNING_TOKEN));
        assert_eq!(signed.header(TOKEN), None);
        assert_eq!(signed.header(IDEMPOTENCY_KEY), signed.header(stamped::ID));
        let h = signed.header_map();
        let stamp = gitlab.check_headers(&h, &settings(SIGNING_TOKEN)).unwrap();
        assert_eq!(
            stamp.map(|s| s.id),
            signed.header(stamped::ID).map(String::from)
        );
        let plain = sample(&SampleRequest::push(KEY));
        assert_eq!(plain.header(stamped::SIGNATURE), None);
        assert_eq!(
            gitlab.check_headers(&plain.header_map(), &settings(KEY)),
            Ok(None)
        );
        // A plain key that merely contains the prefix later is a token.
        assert!(matches!(
            gitlab.proof_for(b"my-whsec_token"),
            Proof::HeaderToken { .. }
        ));
    }

    #[test]
    fn event_must_be_push_hook() {
        let body = fixture("gitlab_payload");
        let token = std::str::from_utf8(KEY).unwrap();
        let h = headers(&[(TOKEN, token)]);
        assert_eq!(
            handle(&h, &body, &settings(KEY)),
            Err(HookError::MissingEvent(EVENT))
        );
        for event in ["Tag Push Hook", "push hook", "Merge Request Hook", ""] {
            let h = headers(&[(TOKEN, token), (EVENT, event)]);
            let err = handle(&h, &body, &settings(KEY)).unwrap_err();
            assert_eq!(err, HookError::wrong_event(EVENT, event));
            assert!(!err.is_unauthorized());
        }
    }

    #[test]
    fn bad_payloads_are_400() {
        let token = std::str::from_utf8(KEY).unwrap();
        let body = fixture("gitlab_payload");
        for bad in [
            &body[..body.len() / 2],
            b"".as_slice(),
            b"\xff\xfe\xfd".as_slice(),
            b"{\"ref\":\"refs/heads/\xff\",\"project\":{\"git_ssh_url\":\"u\"}}".as_slice(),
            br#"[]"#.as_slice(),
            br#"{"ref":1,"project":{"git_ssh_url":"u"}}"#.as_slice(),
            br#"{"ref":"refs/heads/x","project":{"git_ssh_url":7}}"#.as_slice(),
            br#"{"ref":"refs/heads/x","project":"u"}"#.as_slice(),
            br#"{"ref":"refs/heads/x"}"#.as_slice(),
            br#"{"ref":"refs/heads/x","project":{}}"#.as_slice(),
            br#"{"ref":"refs/heads/x","project":{"git_ssh_url":""}}"#.as_slice(),
            br#"{"project":{"git_ssh_url":"u"}}"#.as_slice(),
            br#"{"ref":"","project":{"git_ssh_url":"u"}}"#.as_slice(),
            br#"{"ref":null,"project":{"git_ssh_url":"u"}}"#.as_slice(),
        ] {
            let err = push(token, bad).unwrap_err();
            assert!(matches!(err, HookError::BadPayload(_)), "{bad:?}: {err:?}");
            assert!(!err.is_unauthorized());
        }
    }
}
