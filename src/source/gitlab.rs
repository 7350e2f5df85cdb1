//! GitLab push hooks.
//!
//! - Verification: the hook's "Secret token", sent verbatim in
//!   `X-Gitlab-Token`, must equal the key (compared in constant time). GitLab
//!   does not sign the body.
//! - Event: `X-Gitlab-Event` must be `Push Hook`; any other event is refused
//!   with 400, as the Go original did. Configure the hook for push events
//!   only.
//! - Body: JSON.
//! - Notification: git, `project.git_ssh_url`, `ref` without `refs/heads/`
//!   (tags keep their full `refs/tags/…`).

use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{self, SampleRequest, AFTER, BEFORE, BRANCH, MESSAGE, OWNER, TIME};
use super::{
    header, json, required, verify, Delivery, HookError, HookResult, Kinds, Outcome, Proof,
    Provider, Settings,
};
use crate::notification::Change;

const TOKEN: &str = "X-Gitlab-Token";
const EVENT: &str = "X-Gitlab-Event";
const DELIVERY: &str = "X-Gitlab-Event-UUID";

/// GitLab, as the config names it.
pub const PROVIDER: Provider = Provider {
    name: "GitLab",
    proof: Proof::HeaderToken {
        header: TOKEN,
        check: check_token,
    },
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
    project: Option<Project>,
}

#[derive(Deserialize)]
struct Project {
    git_ssh_url: Option<String>,
}

/// Verify and parse one GitLab delivery.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    check_token(headers, settings.key.expose())?;

    let event = header(headers, EVENT).ok_or(HookError::MissingEvent(EVENT))?;
    if event != "Push Hook" {
        return Err(HookError::wrong_event(EVENT, event));
    }

    let push: Push = json(body)?;
    let url = required(
        push.project.and_then(|p| p.git_ssh_url),
        "project.git_ssh_url",
    )?;
    let git_ref = required(push.git_ref, "ref")?;
    Ok(Outcome::Notify(vec![Change::git(url, &git_ref)]))
}

/// A push hook, with the secret token as GitLab sends it.
fn sample(s: &SampleRequest) -> Delivery {
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
    let mut headers = sample::json_headers();
    headers.extend([
        (EVENT, "Push Hook".to_string()),
        (TOKEN, s.key_text()),
        (DELIVERY, s.delivery_id.to_string()),
        ("X-Gitlab-Instance", "https://gitlab.com".to_string()),
    ]);
    Delivery {
        headers,
        body: s.body_or(&body),
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
