//! Azure DevOps "Code pushed" service hooks (the Web Hooks service).
//!
//! - Verification: the service hook's basic authentication. The password
//!   must equal the key (compared in constant time); the user name can be
//!   anything. Azure DevOps signs nothing, so this header credential is the
//!   proof, checked before the body is read. (Azure DevOps sends basic
//!   authentication only to https URLs.)
//! - Event: the body's `eventType`. `git.push` notifies; every other event
//!   (pull requests, builds, work items, …) is acknowledged and ignored.
//!   There is no event or delivery-id header; the body's `id` names the
//!   event.
//! - Body: JSON, with the resource details the hook sends by default
//!   ("All"): `resource.refUpdates` and `resource.repository`.
//! - Notification: one git change per updated branch in
//!   `resource.refUpdates` (tags and other refs, and branches whose
//!   `newObjectId` is all zeros, i.e. deleted, are skipped), for each URL
//!   fluxd may know the repository by, since it matches its own git URL by
//!   host and path: `resource.repository.remoteUrl` (https), the
//!   repository's `sshUrl` where the payload has one, and, for Azure DevOps
//!   Services (`dev.azure.com` and the older `<org>.visualstudio.com`), the
//!   URLs that one implies: `https://dev.azure.com/ORG/PROJECT/_git/REPO`,
//!   `git@ssh.dev.azure.com:v3/ORG/PROJECT/REPO` and, for a
//!   visualstudio.com organisation, `ORG@vs-ssh.visualstudio.com:v3/…`.
//!   URLs fluxd takes for one repository are sent once. A push that updated
//!   no branch is acknowledged and ignored.
//! - What each updated branch tells other targets (Argo CD, `crate::push`):
//!   its ref, `oldObjectId`/`newObjectId`, `remoteUrl` and `sshUrl`, and
//!   the repository's `defaultBranch`. Azure lists no files.

use std::sync::Arc;

use base64::prelude::{Engine, BASE64_STANDARD};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{SampleRequest, AFTER, BEFORE, BRANCH, MESSAGE, OWNER, TIME};
use super::{
    header, json, lenient, required, told_changes, verify, FirstRefs, HookError, HookResult, Kinds,
    Outcome, Proof, Provider, SampleHook, Settings,
};
use crate::notification::{distinct_repositories, is_deletion, split_url};
use crate::push as told;

const AUTHORIZATION: &str = "Authorization";

/// Azure DevOps, as the config names it.
pub const PROVIDER: Provider = Provider {
    name: "AzureDevOps",
    proof: Proof::HeaderToken {
        header: AUTHORIZATION,
        check: check_password,
    },
    event_header: None,
    delivery_header: None,
    handle,
    sample_events: &["push"],
    sample,
    changes: Kinds::Git,
    extras: &[],
};

/// `Authorization: Basic base64(user:password)`; the password must equal
/// the key.
fn check_password(headers: &HeaderMap, key: &[u8]) -> Result<(), HookError> {
    let value = header(headers, AUTHORIZATION).ok_or(HookError::Unsigned(AUTHORIZATION))?;
    let bad = || HookError::BadSignature(AUTHORIZATION);
    let (scheme, credentials) = value.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let credentials = BASE64_STANDARD
        .decode(credentials.trim())
        .map_err(|_| bad())?;
    let credentials = String::from_utf8(credentials).map_err(|_| bad())?;
    let (_user, password) = credentials.split_once(':').ok_or_else(bad)?;
    verify::token(AUTHORIZATION, password, key)
}

#[derive(Deserialize)]
struct Event {
    #[serde(rename = "eventType")]
    event_type: Option<String>,
    resource: Option<Resource>,
}

#[derive(Deserialize)]
struct Resource {
    #[serde(rename = "refUpdates")]
    ref_updates: Option<Vec<RefUpdate>>,
    repository: Option<Described>,
}

#[derive(Deserialize)]
struct RefUpdate {
    name: Option<String>,
    #[serde(rename = "oldObjectId")]
    #[serde(default, deserialize_with = "lenient")]
    old_object_id: Option<String>,
    #[serde(rename = "newObjectId")]
    new_object_id: Option<String>,
}

#[derive(Deserialize)]
struct Repository {
    #[serde(rename = "remoteUrl")]
    remote_url: Option<String>,
    #[serde(rename = "sshUrl")]
    ssh_url: Option<String>,
}

/// The repository, with what only other targets than fluxd read.
#[derive(Deserialize)]
struct Described {
    #[serde(flatten)]
    urls: Repository,
    /// `refs/heads/<branch>`.
    #[serde(rename = "defaultBranch")]
    #[serde(default, deserialize_with = "lenient")]
    default_branch: Option<String>,
}

/// Verify and parse one Azure DevOps delivery.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    check_password(headers, settings.key.expose())?;

    let event: Event = json(body)?;
    let event_type = event
        .event_type
        .ok_or_else(|| HookError::BadPayload("eventType is missing".into()))?;
    if event_type != "git.push" {
        let event_type = crate::printable(&event_type);
        return Ok(Outcome::Ignore(format!("{event_type} event")));
    }
    let resource = event
        .resource
        .ok_or_else(|| HookError::BadPayload("resource is missing".into()))?;
    let updates = resource
        .ref_updates
        .ok_or_else(|| HookError::BadPayload("resource.refUpdates is missing".into()))?;
    let mut first = FirstRefs::default();
    let mut branches = Vec::new();
    for (i, update) in updates.into_iter().enumerate() {
        let name = required(update.name, &format!("resource.refUpdates[{i}].name"))?;
        let deleted = update.new_object_id.as_deref().is_some_and(is_deletion);
        let branch = name.strip_prefix("refs/heads/").unwrap_or("");
        if !branch.is_empty() && !deleted && first.first(&name)? {
            let push = told::Push {
                before: update.old_object_id,
                after: update.new_object_id,
                ..told::Push::of_ref(&name)
            };
            branches.push((name, push));
        }
    }
    if branches.is_empty() {
        return Ok(Outcome::Ignore("no branch was updated".into()));
    }

    let (repository, default_branch) = match resource.repository {
        Some(r) => (Some(r.urls), r.default_branch),
        None => (None, None),
    };
    let described = told::Repository {
        default_branch: default_branch.map(|b| match b.strip_prefix("refs/heads/") {
            Some(branch) => branch.to_string(),
            None => b,
        }),
        ..told::Repository::default()
    };
    let described = match &repository {
        Some(r) => described
            .with_clone_url(r.remote_url.as_deref())
            .with_clone_url(r.ssh_url.as_deref()),
        None => described,
    };
    let urls = repository_urls(repository)?;
    let described = Arc::new(described);
    let branches = branches
        .into_iter()
        .map(|(name, push)| (name, push.to(&described)))
        .collect();
    let changes = told_changes(&urls, branches)?;
    Ok(Outcome::Notify(changes))
}

/// Every URL the repository goes by that fluxd tells apart, the payload's
/// own first.
fn repository_urls(repository: Option<Repository>) -> Result<Vec<String>, HookError> {
    let (remote, ssh) = repository.map_or((None, None), |r| (r.remote_url, r.ssh_url));
    let implied = remote.as_deref().map(services_urls).unwrap_or_default();
    let urls = distinct_repositories(remote.into_iter().chain(ssh).chain(implied));
    if urls.is_empty() {
        return Err(HookError::BadPayload(
            "resource.repository.remoteUrl is missing".into(),
        ));
    }
    Ok(urls)
}

/// The URLs Azure DevOps Services serves the repository at https clone URL
/// `remote` under; none for other hosts (Azure DevOps Server), where the
/// payload's URLs are all there is.
///
/// `remote` is `https://[user@]dev.azure.com/ORG/PROJECT/_git/REPO`, or
/// `https://ORG.visualstudio.com/[DefaultCollection/]PROJECT/_git/REPO`;
/// without `PROJECT` where the repository is named as its project. Names
/// stay percent-encoded as given: Azure's ssh URLs encode them the same way.
fn services_urls(remote: &str) -> Vec<String> {
    if !remote.starts_with("https://") {
        return Vec::new();
    }
    let Some((host, path)) = split_url(remote) else {
        return Vec::new();
    };
    let host = host.to_ascii_lowercase();
    let mut segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (org, visualstudio) = if host == "dev.azure.com" && !segments.is_empty() {
        (segments.remove(0).to_string(), false)
    } else if let Some(org) = host.strip_suffix(".visualstudio.com") {
        if segments
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case("DefaultCollection"))
        {
            segments.remove(0);
        }
        (org.to_string(), true)
    } else {
        return Vec::new();
    };
    let (project, repo) = match segments.as_slice() {
        [project, "_git", repo] => (*project, *repo),
        ["_git", repo] => (*repo, *repo),
        _ => return Vec::new(),
    };
    if org.is_empty() || org.contains('.') {
        return Vec::new();
    }
    let mut urls = vec![
        format!("https://dev.azure.com/{org}/{project}/_git/{repo}"),
        format!("git@ssh.dev.azure.com:v3/{org}/{project}/{repo}"),
    ];
    if visualstudio {
        urls.push(format!(
            "{org}@vs-ssh.visualstudio.com:v3/{org}/{project}/{repo}"
        ));
    }
    urls
}

/// A "Code pushed" event updating `main`, with the basic authentication a
/// service hook sends (user `flux-recv`, the key as password).
fn sample(s: &SampleRequest) -> SampleHook {
    let name = s.name;
    let project = "platform";
    let remote_url = format!("https://dev.azure.com/{OWNER}/{project}/_git/{name}");
    let api = format!("https://dev.azure.com/{OWNER}/_apis");
    let repository_id = "3b9f6c2e-8a41-4d7b-9e35-1c0f2a6d8b47";
    let person = json!({"name": "Example Developer", "email": "dev@example.com", "date": TIME});
    let text = format!("Example Developer pushed updates to {name}:{BRANCH}");
    let body = json!({
        "subscriptionId": "0f6c1d2e-3a4b-4c5d-8e9f-a0b1c2d3e4f5",
        "notificationId": 1,
        "id": s.delivery_id,
        "eventType": "git.push",
        "publisherId": "tfs",
        "message": {"text": text, "html": text, "markdown": text},
        "detailedMessage": {"text": text, "html": text, "markdown": text},
        "resource": {
            "commits": [{
                "commitId": AFTER,
                "author": person,
                "committer": person,
                "comment": MESSAGE,
                "url": format!("{api}/git/repositories/{repository_id}/commits/{AFTER}"),
            }],
            "refUpdates": [{
                "name": format!("refs/heads/{BRANCH}"),
                "oldObjectId": BEFORE,
                "newObjectId": AFTER,
            }],
            "repository": {
                "id": repository_id,
                "name": name,
                "url": format!("{api}/git/repositories/{repository_id}"),
                "project": {
                    "id": "7d2e9a41-5c3b-4f80-a6e1-9b0c4d2f8e13",
                    "name": project,
                    "url": format!("{api}/projects/7d2e9a41-5c3b-4f80-a6e1-9b0c4d2f8e13"),
                    "state": "wellFormed",
                    "visibility": "unchanged",
                    "lastUpdateTime": "0001-01-01T00:00:00",
                },
                "defaultBranch": format!("refs/heads/{BRANCH}"),
                "remoteUrl": remote_url,
            },
            "pushedBy": {
                "displayName": "Example Developer",
                "id": "5e1a7c3d-9b2f-4e60-8d14-2c7f0a9b3e58",
                "uniqueName": "dev@example.com",
            },
            "pushId": 1,
            "date": TIME,
            "url": format!("{api}/git/repositories/{repository_id}/pushes/1"),
        },
        "resourceVersion": "1.0",
        "resourceContainers": {
            "collection": {"id": "2c8e4f1a-6b3d-4a9e-b7c5-0d1e2f3a4b5c"},
            "account": {"id": "9a4b2c6d-1e8f-4d3a-a5b7-c9d0e1f2a3b4"},
            "project": {"id": "7d2e9a41-5c3b-4f80-a6e1-9b0c4d2f8e13"},
        },
        "createdDate": TIME,
    });
    let credentials = BASE64_STANDARD.encode(format!("flux-recv:{}", s.key_text()));
    let headers = vec![
        (
            "Content-Type",
            "application/json; charset=utf-8".to_string(),
        ),
        (AUTHORIZATION, format!("Basic {credentials}")),
    ];
    SampleHook {
        headers,
        body: s.body_or(&body),
        summary: format!("a push to branch {BRANCH} of {remote_url}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Change;
    use crate::source::testing::{fixture, headers, settings};

    const KEY: &[u8] = b"azure-devops-hook-password-01234";

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            BASE64_STANDARD.encode(format!("{user}:{password}"))
        )
    }

    fn deliver(body: &[u8]) -> HookResult {
        let h = headers(&[
            ("Content-Type", "application/json; charset=utf-8"),
            (
                AUTHORIZATION,
                &basic("flux", std::str::from_utf8(KEY).unwrap()),
            ),
        ]);
        handle(&h, body, &settings(KEY))
    }

    fn git(urls: &[&str], branches: &[&str]) -> HookResult {
        let changes = branches
            .iter()
            .flat_map(|b| urls.iter().map(move |u| Change::git(*u, b)));
        Ok(Outcome::Notify(changes.collect()))
    }

    /// The documented "Code pushed" payload: the tag and the deleted branch
    /// are skipped; each branch is sent for the https URL (as given, with
    /// its user) and the ssh URL it implies.
    #[test]
    fn documented_push_notifies_each_branch_for_https_and_ssh() {
        assert_eq!(
            deliver(&fixture("azure_devops/git.push.json")),
            git(
                &[
                    "https://contoso-ops@dev.azure.com/contoso-ops/Platform/_git/cluster-config",
                    "git@ssh.dev.azure.com:v3/contoso-ops/Platform/cluster-config",
                ],
                &["main", "staging"]
            )
        );
    }

    /// An organisation still on visualstudio.com, its collection in the URL
    /// and a space in its project's name.
    #[test]
    fn visualstudio_com_urls_imply_both_domains() {
        assert_eq!(
            deliver(&fixture("azure_devops/git.push.visualstudio.json")),
            git(
                &[
                    "https://fabrikam-legacy.visualstudio.com/DefaultCollection/Shop%20Front/_git/web",
                    "https://dev.azure.com/fabrikam-legacy/Shop%20Front/_git/web",
                    "git@ssh.dev.azure.com:v3/fabrikam-legacy/Shop%20Front/web",
                    "fabrikam-legacy@vs-ssh.visualstudio.com:v3/fabrikam-legacy/Shop%20Front/web",
                ],
                &["release"]
            )
        );
    }

    #[test]
    fn urls_implied_by_each_remote_form() {
        let cases: [(&str, &[&str]); 6] = [
            (
                "https://dev.azure.com/org/proj/_git/repo",
                &[
                    "https://dev.azure.com/org/proj/_git/repo",
                    "git@ssh.dev.azure.com:v3/org/proj/repo",
                ],
            ),
            // The short form, for a repository named as its project.
            (
                "https://dev.azure.com/org/_git/repo",
                &[
                    "https://dev.azure.com/org/_git/repo",
                    "https://dev.azure.com/org/repo/_git/repo",
                    "git@ssh.dev.azure.com:v3/org/repo/repo",
                ],
            ),
            (
                "https://org.visualstudio.com/proj/_git/repo",
                &[
                    "https://org.visualstudio.com/proj/_git/repo",
                    "https://dev.azure.com/org/proj/_git/repo",
                    "git@ssh.dev.azure.com:v3/org/proj/repo",
                    "org@vs-ssh.visualstudio.com:v3/org/proj/repo",
                ],
            ),
            // Azure DevOps Server: only what the payload says.
            (
                "https://tfs.example.com/tfs/DefaultCollection/proj/_git/repo",
                &["https://tfs.example.com/tfs/DefaultCollection/proj/_git/repo"],
            ),
            // Shapes that are not a repository URL imply nothing.
            (
                "https://dev.azure.com/org/proj/repo",
                &["https://dev.azure.com/org/proj/repo"],
            ),
            (
                "http://dev.azure.com/org/proj/_git/repo",
                &["http://dev.azure.com/org/proj/_git/repo"],
            ),
        ];
        for (remote, want) in cases {
            let repository = Repository {
                remote_url: Some(remote.into()),
                ssh_url: None,
            };
            assert_eq!(repository_urls(Some(repository)).unwrap(), want, "{remote}");
        }
        // An sshUrl in the payload is used, and not repeated.
        let repository = Repository {
            remote_url: Some("https://dev.azure.com/org/proj/_git/repo".into()),
            ssh_url: Some("ssh://git@ssh.dev.azure.com/v3/org/proj/repo".into()),
        };
        assert_eq!(
            repository_urls(Some(repository)).unwrap(),
            [
                "https://dev.azure.com/org/proj/_git/repo",
                "ssh://git@ssh.dev.azure.com/v3/org/proj/repo",
            ]
        );
    }

    #[test]
    fn the_password_must_be_the_key() {
        let body = fixture("azure_devops/git.push.json");
        let key = std::str::from_utf8(KEY).unwrap();
        // Any user name; a colon in the password is part of it.
        for user in ["", "flux", "a b"] {
            let h = headers(&[(AUTHORIZATION, &basic(user, key))]);
            assert!(matches!(
                handle(&h, &body, &settings(KEY)),
                Ok(Outcome::Notify(_))
            ));
        }
        let h = headers(&[(AUTHORIZATION, &basic("u", "p:q"))]);
        assert!(handle(&h, &body, &settings(b"p:q")).is_ok());
        let h = headers(&[(
            AUTHORIZATION,
            &format!("basic  {}", BASE64_STANDARD.encode(format!("u:{key}"))),
        )]);
        assert!(handle(&h, &body, &settings(KEY)).is_ok());

        assert_eq!(
            handle(&HeaderMap::new(), &body, &settings(KEY)),
            Err(HookError::Unsigned(AUTHORIZATION))
        );
        for bad in [
            basic("flux", "wrong"),
            basic("flux", &key[1..]),
            basic("flux", &format!("{key} ")),
            basic(key, ""),
            format!("Bearer {key}"),
            format!("Basic {key}"),
            format!("Basic {}", BASE64_STANDARD.encode(key)),
            format!("Basic {}", BASE64_STANDARD.encode(b"u:\xff")),
            "Basic".to_string(),
            String::new(),
        ] {
            let h = headers(&[(AUTHORIZATION, &bad)]);
            assert_eq!(
                handle(&h, &body, &settings(KEY)),
                Err(HookError::BadSignature(AUTHORIZATION)),
                "{bad}"
            );
            // The same check runs before the body is read.
            assert_eq!(
                check_password(&h, KEY),
                Err(HookError::BadSignature(AUTHORIZATION))
            );
        }
    }

    #[test]
    fn other_events_and_pushes_without_branches_are_acknowledged() {
        assert_eq!(
            deliver(&fixture("azure_devops/git.pullrequest.created.json")),
            Ok(Outcome::Ignore("git.pullrequest.created event".into()))
        );
        for event in ["build.complete", "workitem.updated", "tfvc.checkin"] {
            let body = format!(r#"{{"eventType":"{event}","resource":{{}}}}"#);
            assert!(
                matches!(deliver(body.as_bytes()), Ok(Outcome::Ignore(_))),
                "{event}"
            );
        }
        let zero = "0000000000000000000000000000000000000000";
        for updates in [
            "[]".to_string(),
            r#"[{"name":"refs/tags/v1","newObjectId":"ab"}]"#.to_string(),
            format!(r#"[{{"name":"refs/heads/gone","newObjectId":"{zero}"}}]"#),
            r#"[{"name":"refs/notes/commits","newObjectId":"ab"}]"#.to_string(),
        ] {
            let body = format!(
                r#"{{"eventType":"git.push","resource":{{"refUpdates":{updates},"repository":{{"remoteUrl":"https://dev.azure.com/o/p/_git/r"}}}}}}"#
            );
            assert_eq!(
                deliver(body.as_bytes()),
                Ok(Outcome::Ignore("no branch was updated".into())),
                "{updates}"
            );
        }
    }

    #[test]
    fn bad_payloads_are_400() {
        let body = fixture("azure_devops/git.push.json");
        for bad in [
            &body[..body.len() / 2],
            b"".as_slice(),
            b"{}".as_slice(),
            br#"{"eventType":7}"#.as_slice(),
            br#"{"eventType":"git.push"}"#.as_slice(),
            br#"{"eventType":"git.push","resource":{}}"#.as_slice(),
            br#"{"eventType":"git.push","resource":{"refUpdates":{}}}"#.as_slice(),
            br#"{"eventType":"git.push","resource":{"refUpdates":[{"newObjectId":"ab"}]}}"#
                .as_slice(),
            br#"{"eventType":"git.push","resource":{"refUpdates":[{"name":""}]}}"#.as_slice(),
            // A branch, but no repository to name.
            br#"{"eventType":"git.push","resource":{"refUpdates":[{"name":"refs/heads/m"}]}}"#
                .as_slice(),
            br#"{"eventType":"git.push","resource":{"refUpdates":[{"name":"refs/heads/m"}],"repository":{"remoteUrl":""}}}"#
                .as_slice(),
        ] {
            let e = deliver(bad).unwrap_err();
            assert!(matches!(e, HookError::BadPayload(_)), "{bad:?}: {e:?}");
        }
    }

    #[test]
    fn the_sample_authenticates_as_a_service_hook_does() {
        let d = sample(&SampleRequest::push(KEY));
        let key = std::str::from_utf8(KEY).unwrap();
        assert_eq!(
            d.header(AUTHORIZATION),
            Some(basic("flux-recv", key).as_str())
        );
        assert_eq!(
            handle(&d.header_map(), &d.body, &settings(KEY)),
            git(
                &[
                    "https://dev.azure.com/example/platform/_git/app",
                    "git@ssh.dev.azure.com:v3/example/platform/app",
                ],
                &["main"]
            )
        );
    }
}
