//! Gitea push webhooks. Forgejo (a fork of Gitea) and Gogs (the project
//! Gitea forked) send the same payload, signed the same way, under their own
//! header names: each of their files declares a [`Forge`] (name, headers,
//! sample host), and [`provider`] makes it a provider that reads deliveries
//! as described here.
//!
//! - Verification: `X-Gitea-Signature`, the bare hex HMAC-SHA256 of the
//!   payload keyed with the webhook's secret, compared in constant time.
//!   The payload is the body, or, for a hook whose content type is
//!   `application/x-www-form-urlencoded`, the JSON in the form field
//!   `payload`: Gitea signs the JSON, not its form encoding (GitHub signs
//!   the body as sent). A hook without a secret sends the header empty,
//!   which counts as unsigned.
//! - Event: `X-Gitea-Event`. `push` notifies; every other event (`create`,
//!   `delete`, `pull_request`, `release`, …) is acknowledged and ignored.
//! - Body: JSON. It resembles GitHub's, but only the fields below are read,
//!   so differences such as `repository.created_at` being a timestamp
//!   string rather than a number do not matter.
//! - Notification: for a push to a branch, git, `repository.ssh_url` with
//!   the branch; and `repository.clone_url` as well where fluxd would take
//!   it for another repository (a custom SSH host or port, an HTTP port or
//!   sub-path: see [`crate::notification::same_repository`]). A tag push
//!   (`ref` under `refs/tags/`) and a deleted branch (`after` all zeros)
//!   are acknowledged and ignored.
//! - What the push tells other targets (Argo CD, `crate::push`): the full
//!   `ref`, `clone_url` and `ssh_url`, `html_url`, `default_branch`,
//!   `before`/`after`, and the files of `commits[]` when they are all
//!   listed (`total_commits`, where the forge sends it).

use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{self, SampleRequest, AFTER, BEFORE, BRANCH, MESSAGE, OWNER, TAG, TIME};
use super::verify::{self, sign_hex, Algorithm};
use super::{
    header, json, json_or_form, lenient, required, Commit, HookError, HookResult, Kinds, Outcome,
    Proof, Provider, SampleHook, Settings,
};
use crate::notification::{distinct_repositories, is_deletion, Change};
use crate::push::{self as told, Files};

/// A forge of the Gitea family, declared in its own file.
pub(super) trait Forge {
    /// Its name in the config file.
    const NAME: &'static str;
    /// The sets of headers it sends, its own first (those its description
    /// names). A delivery is read with the first set whose signature header
    /// it carries: that signature is the one checked (a wrong one is not
    /// rescued by a right one in a later set), and that set's event header
    /// names the event.
    const HEADERS: &'static [Headers];
    /// The host its samples name.
    const SAMPLE_HOST: &'static str;
}

/// The names of the headers one forge sends.
pub(super) struct Headers {
    /// The signature: bare hex HMAC-SHA256.
    pub signature: &'static str,
    /// The event, e.g. `push`.
    pub event: &'static str,
    /// The delivery's id.
    pub delivery: &'static str,
}

/// Gitea's headers, which Forgejo sends too.
pub(super) const HEADERS: Headers = Headers {
    signature: "X-Gitea-Signature",
    event: "X-Gitea-Event",
    delivery: "X-Gitea-Delivery",
};

/// Gitea itself.
struct Gitea;

impl Forge for Gitea {
    const NAME: &'static str = "Gitea";
    const HEADERS: &'static [Headers] = &[HEADERS];
    const SAMPLE_HOST: &'static str = "gitea.example.com";
}

/// Gitea, as the config names it.
pub const PROVIDER: Provider = provider::<Gitea>();

/// The description of forge `F`.
pub(super) const fn provider<F: Forge>() -> Provider {
    let own = &F::HEADERS[0];
    Provider {
        name: F::NAME,
        proof: Proof::Signature {
            header: own.signature,
            prefixed: false,
        },
        event_header: Some(own.event),
        delivery_header: Some(own.delivery),
        handle: receive::<F>,
        // A push, and the `create` event that comes with a new tag (or
        // branch), which is acknowledged.
        sample_events: &["push", "create"],
        sample: delivery::<F>,
        changes: Kinds::Git,
        extras: &[],
    }
}

#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    before: Option<String>,
    after: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    commits: Option<Vec<Commit>>,
    /// All the push's commits, where `commits` lists only some (Gitea).
    #[serde(default, deserialize_with = "lenient")]
    total_commits: Option<u64>,
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Repository {
    ssh_url: Option<String>,
    clone_url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    html_url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    default_branch: Option<String>,
}

/// Verify and parse one delivery from forge `F`.
fn receive<F: Forge>(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    let (set, signature) = F::HEADERS
        .iter()
        .find_map(|set| header(headers, set.signature).map(|value| (set, value)))
        .filter(|(_, value)| !value.trim().is_empty())
        .ok_or(HookError::Unsigned(F::HEADERS[0].signature))?;
    // What the forge signed: the JSON, whether or not it came in a form.
    let payload = json_or_form(headers, body);
    // A form without the field has nothing signed; checking the body means
    // only a genuine delivery learns what is wrong with it.
    let signed = payload.as_deref().unwrap_or(body);
    verify::hex_hmac(
        set.signature,
        Algorithm::Sha256,
        signature,
        settings.key.expose(),
        signed,
    )?;

    let event = header(headers, set.event).ok_or(HookError::MissingEvent(set.event))?;
    if event != "push" {
        let event = crate::printable(event);
        return Ok(Outcome::Ignore(format!("{event} event")));
    }
    push(&payload?)
}

fn push(payload: &[u8]) -> HookResult {
    let push: Push = json(payload)?;
    let git_ref = required(push.git_ref, "ref")?;
    let Some(branch) = git_ref.strip_prefix("refs/heads/") else {
        let git_ref = crate::printable(&git_ref);
        return Ok(Outcome::Ignore(format!("push to {git_ref}, not a branch")));
    };
    if branch.is_empty() {
        return Err(HookError::BadPayload("ref names no branch".into()));
    }
    if push.after.as_deref().is_some_and(is_deletion) {
        let branch = crate::printable(branch);
        return Ok(Outcome::Ignore(format!("branch {branch} was deleted")));
    }

    let repository = push
        .repository
        .ok_or_else(|| HookError::BadPayload("repository is missing".into()))?;
    let described = told::Repository {
        web_url: repository.html_url,
        default_branch: repository.default_branch,
        ..told::Repository::default()
    }
    .with_clone_url(repository.clone_url.as_deref())
    .with_clone_url(repository.ssh_url.as_deref());
    let told = told::Push {
        before: push.before,
        after: push.after,
        files: Files::of_commits(
            push.commits.into_iter().flatten().map(Commit::files),
            push.total_commits,
        ),
        ..told::Push::of_ref(&git_ref)
    }
    .to(&Arc::new(described));
    let urls = distinct_repositories(repository.ssh_url.into_iter().chain(repository.clone_url));
    if urls.is_empty() {
        return Err(HookError::BadPayload(
            "repository.ssh_url and repository.clone_url are missing".into(),
        ));
    }
    let told = Arc::new(told);
    let changes = urls
        .into_iter()
        .map(|url| Change::git(url, branch).told(&told));
    Ok(Outcome::Notify(changes.collect()))
}

/// What forge `F` sends for `s.event` (`push` or `create`) about
/// repository `example/<s.name>`, with all its headers.
fn delivery<F: Forge>(s: &SampleRequest) -> SampleHook {
    let host = F::SAMPLE_HOST;
    let full_name = format!("{OWNER}/{}", s.name);
    let html_url = format!("https://{host}/{full_name}");
    let ssh_url = format!("git@{host}:{full_name}.git");
    let user = json!({
        "id": 1,
        "login": OWNER,
        "full_name": "Example Developer",
        "email": "dev@example.com",
        "avatar_url": format!("https://{host}/avatars/1"),
        "username": OWNER,
    });
    let repository = json!({
        "id": 7,
        "owner": user,
        "name": s.name,
        "full_name": full_name,
        "description": "",
        "empty": false,
        "private": true,
        "fork": false,
        "mirror": false,
        "html_url": html_url,
        "ssh_url": ssh_url,
        "clone_url": format!("{html_url}.git"),
        "website": "",
        "stars_count": 0,
        "forks_count": 0,
        "watchers_count": 1,
        "open_issues_count": 0,
        "default_branch": BRANCH,
        "archived": false,
        "created_at": TIME,
        "updated_at": TIME,
    });
    let (body, summary) = if s.event == "create" {
        let body = json!({
            "sha": AFTER,
            "ref": TAG,
            "ref_type": "tag",
            "repository": repository,
            "sender": user,
        });
        let summary = format!("the creation of tag {TAG} (nothing is relayed)");
        (body, summary)
    } else {
        let commit = json!({
            "id": AFTER,
            "message": MESSAGE,
            "url": format!("{html_url}/commit/{AFTER}"),
            "author": {"name": "Example Developer", "email": "dev@example.com", "username": OWNER},
            "committer": {"name": "Example Developer", "email": "dev@example.com", "username": OWNER},
            "timestamp": TIME,
            "added": [],
            "removed": [],
            "modified": ["README.md"],
        });
        let body = json!({
            "ref": format!("refs/heads/{BRANCH}"),
            "before": BEFORE,
            "after": AFTER,
            "compare_url": format!("{html_url}/compare/{BEFORE}...{AFTER}"),
            "commits": [commit],
            "total_commits": 1,
            "head_commit": commit,
            "repository": repository,
            "pusher": user,
            "sender": user,
        });
        (body, format!("a push to branch {BRANCH} of {ssh_url}"))
    };
    let body = s.body_or(&body);
    let signature = sign_hex(Algorithm::Sha256, s.key, &body);
    let mut headers = sample::json_headers();
    for h in F::HEADERS {
        headers.extend([
            (h.delivery, s.delivery_id.to_string()),
            (h.event, s.event.to_string()),
            (h.signature, signature.to_string()),
        ]);
    }
    SampleHook {
        headers,
        body,
        summary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing::{fixture, headers, settings};

    const KEY: &[u8] = b"gitea-webhook-secret-0123456789";

    fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
        (PROVIDER.handle)(headers, body, settings)
    }

    fn sample(s: &SampleRequest) -> SampleHook {
        (PROVIDER.sample)(s)
    }

    fn hex_sig(body: &[u8]) -> String {
        sign_hex(Algorithm::Sha256, KEY, body)
    }

    /// A delivery of `event` carrying `body`, signed as Gitea signs it.
    fn deliver(event: &str, body: &[u8]) -> HookResult {
        let sig = hex_sig(body);
        let h = headers(&[
            ("Content-Type", "application/json"),
            (HEADERS.event, event),
            (HEADERS.signature, &sig),
        ]);
        handle(&h, body, &settings(KEY))
    }

    fn push_of(git_ref: &str, ssh_url: &str, clone_url: &str) -> Vec<u8> {
        json!({
            "ref": git_ref,
            "after": AFTER,
            "repository": {"ssh_url": ssh_url, "clone_url": clone_url},
        })
        .to_string()
        .into_bytes()
    }

    fn notified(urls: &[&str], branch: &str) -> HookResult {
        Ok(Outcome::Notify(
            urls.iter().map(|u| Change::git(*u, branch)).collect(),
        ))
    }

    /// A push as the Gitea documentation describes it, from an instance
    /// whose SSH server listens on port 2222: the two URLs differ, so fluxd
    /// is told of both.
    #[test]
    fn documented_push_notifies_for_both_urls() {
        assert_eq!(
            deliver("push", &fixture("gitea/push.json")),
            notified(
                &[
                    "ssh://git@git.example.org:2222/platform/deploy-config.git",
                    "https://git.example.org/platform/deploy-config.git",
                ],
                "develop"
            )
        );
    }

    #[test]
    fn urls_fluxd_takes_for_one_repository_are_sent_once() {
        let cases: [(&str, &str, &[&str]); 5] = [
            // Port 22 and the web on 443: one repository.
            (
                "git@git.example.org:team/app.git",
                "https://git.example.org/team/app.git",
                &["git@git.example.org:team/app.git"],
            ),
            (
                "ssh://git@git.example.org/team/app.git",
                "https://git.example.org/team/app.git",
                &["ssh://git@git.example.org/team/app.git"],
            ),
            // The web on its own port.
            (
                "git@git.example.org:team/app.git",
                "http://git.example.org:3000/team/app.git",
                &[
                    "git@git.example.org:team/app.git",
                    "http://git.example.org:3000/team/app.git",
                ],
            ),
            // Served under a sub-path.
            (
                "git@example.org:team/app.git",
                "https://example.org/gitea/team/app.git",
                &[
                    "git@example.org:team/app.git",
                    "https://example.org/gitea/team/app.git",
                ],
            ),
            // SSH on another host name.
            (
                "git@ssh.example.org:team/app.git",
                "https://example.org/team/app.git",
                &[
                    "git@ssh.example.org:team/app.git",
                    "https://example.org/team/app.git",
                ],
            ),
        ];
        for (ssh, clone, want) in cases {
            let body = push_of("refs/heads/main", ssh, clone);
            assert_eq!(
                deliver("push", &body),
                notified(want, "main"),
                "{ssh} {clone}"
            );
        }
        // Either URL alone is enough.
        let body = br#"{"ref":"refs/heads/main","repository":{"clone_url":"https://h/a/b.git"}}"#;
        assert_eq!(
            deliver("push", body),
            notified(&["https://h/a/b.git"], "main")
        );
        let body =
            br#"{"ref":"refs/heads/main","repository":{"ssh_url":"git@h:a/b.git","clone_url":""}}"#;
        assert_eq!(deliver("push", body), notified(&["git@h:a/b.git"], "main"));
    }

    #[test]
    fn tags_deletions_and_other_events_are_acknowledged() {
        let url = "git@h:a/b.git";
        for body in [
            push_of("refs/tags/v1.0.0", url, url),
            push_of("refs/pull/3/head", url, url),
            json!({"ref": "refs/heads/gone", "after": "0000000000000000000000000000000000000000",
                   "repository": {"ssh_url": url}})
            .to_string()
            .into_bytes(),
        ] {
            assert!(
                matches!(deliver("push", &body), Ok(Outcome::Ignore(_))),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        // Other events are not even parsed.
        for event in [
            "create",
            "delete",
            "pull_request",
            "release",
            "repository",
            "x",
        ] {
            assert_eq!(
                deliver(event, b"not json"),
                Ok(Outcome::Ignore(format!("{event} event")))
            );
        }
        assert_eq!(
            deliver("create", &fixture("gitea/create.json")),
            Ok(Outcome::Ignore("create event".into()))
        );
    }

    #[test]
    fn form_encoded_deliveries_are_signed_over_the_json() {
        let json = fixture("gitea/push.json");
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", std::str::from_utf8(&json).unwrap())
            .finish();
        let form = |sig: &str| {
            headers(&[
                ("Content-Type", "application/x-www-form-urlencoded"),
                (HEADERS.event, "push"),
                (HEADERS.signature, sig),
            ])
        };
        let outcome = handle(&form(&hex_sig(&json)), body.as_bytes(), &settings(KEY));
        assert_eq!(outcome, deliver("push", &json));
        assert!(matches!(outcome, Ok(Outcome::Notify(_))));
        // A signature over the form encoding is not Gitea's.
        let e = handle(
            &form(&hex_sig(body.as_bytes())),
            body.as_bytes(),
            &settings(KEY),
        );
        assert_eq!(e, Err(HookError::BadSignature(HEADERS.signature)));
        // A signed form without the field: 400, once the body verifies.
        let e = handle(&form(&hex_sig(b"other=1")), b"other=1", &settings(KEY));
        assert_eq!(
            e,
            Err(HookError::BadPayload(
                "form field payload is missing".into()
            ))
        );
        assert!(handle(&form(&hex_sig(b"x")), b"other=1", &settings(KEY))
            .unwrap_err()
            .is_unauthorized());
    }

    #[test]
    fn verification_comes_first() {
        let body = fixture("gitea/push.json");
        let good = hex_sig(&body);
        let cases: [(&[(&str, &str)], HookError); 6] = [
            (
                &[(HEADERS.event, "push")],
                HookError::Unsigned(HEADERS.signature),
            ),
            // What Gitea sends for a hook without a secret.
            (
                &[(HEADERS.event, "push"), (HEADERS.signature, "")],
                HookError::Unsigned(HEADERS.signature),
            ),
            (
                &[(HEADERS.event, "push"), (HEADERS.signature, "00")],
                HookError::BadSignature(HEADERS.signature),
            ),
            // GitHub's prefixed form is not Gitea's.
            (
                &[
                    (HEADERS.event, "push"),
                    (HEADERS.signature, &format!("sha256={good}")),
                ],
                HookError::BadSignature(HEADERS.signature),
            ),
            // Ignored events are verified too.
            (
                &[(HEADERS.event, "delete"), (HEADERS.signature, "zz")],
                HookError::BadSignature(HEADERS.signature),
            ),
            // Another forge's header is not Gitea's.
            (
                &[(HEADERS.event, "push"), ("X-Gogs-Signature", &good)],
                HookError::Unsigned(HEADERS.signature),
            ),
        ];
        for (h, want) in cases {
            assert_eq!(
                handle(&headers(h), &body, &settings(KEY)),
                Err(want),
                "{h:?}"
            );
        }
        // Signed with another key.
        let h = headers(&[(HEADERS.event, "push"), (HEADERS.signature, &good)]);
        assert_eq!(
            handle(&h, &body, &settings(b"another key")),
            Err(HookError::BadSignature(HEADERS.signature))
        );
        // Upper-case hex is still the same signature.
        let h = headers(&[
            (HEADERS.event, "push"),
            (HEADERS.signature, &good.to_uppercase()),
        ]);
        assert!(matches!(
            handle(&h, &body, &settings(KEY)),
            Ok(Outcome::Notify(_))
        ));
        // Signed, but no event header.
        let h = headers(&[(HEADERS.signature, &good)]);
        assert_eq!(
            handle(&h, &body, &settings(KEY)),
            Err(HookError::MissingEvent(HEADERS.event))
        );
    }

    #[test]
    fn bad_payloads_are_400() {
        let body = fixture("gitea/push.json");
        for bad in [
            &body[..body.len() / 2],
            b"".as_slice(),
            b"[]".as_slice(),
            br#"{"ref":7,"repository":{"ssh_url":"git@h:a/b.git"}}"#.as_slice(),
            br#"{"repository":{"ssh_url":"git@h:a/b.git"}}"#.as_slice(),
            br#"{"ref":"","repository":{"ssh_url":"git@h:a/b.git"}}"#.as_slice(),
            br#"{"ref":"refs/heads/","repository":{"ssh_url":"git@h:a/b.git"}}"#.as_slice(),
            br#"{"ref":"refs/heads/main"}"#.as_slice(),
            br#"{"ref":"refs/heads/main","repository":null}"#.as_slice(),
            br#"{"ref":"refs/heads/main","repository":{}}"#.as_slice(),
            br#"{"ref":"refs/heads/main","repository":{"ssh_url":"","clone_url":""}}"#.as_slice(),
            br#"{"ref":"refs/heads/main","repository":{"ssh_url":["u"]}}"#.as_slice(),
            br#"{"ref":"refs/heads/main","after":1,"repository":{"ssh_url":"u"}}"#.as_slice(),
        ] {
            let e = deliver("push", bad).unwrap_err();
            assert!(matches!(e, HookError::BadPayload(_)), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn the_sample_is_what_gitea_sends() {
        let d = sample(&SampleRequest::push(KEY));
        assert_eq!(d.header(HEADERS.signature), Some(hex_sig(&d.body).as_str()));
        assert_eq!(
            handle(&d.header_map(), &d.body, &settings(KEY)),
            notified(&["git@gitea.example.com:example/app.git"], "main")
        );
        let create = SampleRequest {
            event: "create",
            ..SampleRequest::push(KEY)
        };
        let d = sample(&create);
        assert_eq!(d.header(HEADERS.event), Some("create"));
        assert_eq!(
            handle(&d.header_map(), &d.body, &settings(KEY)),
            Ok(Outcome::Ignore("create event".into()))
        );
    }
}
