//! Sample deliveries: what each provider sends when something is pushed,
//! signed the way that provider signs it.
//!
//! `flux-recv send` posts these to a running flux-recv so an operator can
//! try the whole chain (ingress, receiver, fluxd) without pushing a commit
//! or an image. The payloads have the shape of the providers' real ones
//! (trimmed, with the fields the sources read and the usual ones around
//! them) and name an example repository or image, so fluxd is notified of
//! something it does not track and does nothing; the point is the statuses
//! along the way.
//!
//! Nothing here touches the network, and a delivery depends only on its
//! arguments, so the tests can check each sample against the sources.

use base64::Engine;
use serde_json::{json, Value};

use crate::source::verify::{sign, Algorithm};
use crate::source::{Settings, Source};

/// A request as the provider would make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Headers, including the signature or token and a delivery id.
    pub headers: Vec<(&'static str, String)>,
    /// The exact bytes that were signed.
    pub body: Vec<u8>,
    /// What it is, for people: "a push to branch main of git@…".
    pub summary: String,
}

/// Why no sample can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// The source has no sample of this event.
    #[error("there is no {event:?} sample for {provider}; choose one of: {}", supported.join(", "))]
    UnknownEvent {
        /// The endpoint's source.
        provider: Source,
        /// The event asked for.
        event: String,
        /// The events that have samples.
        supported: &'static [&'static str],
    },
    /// The provider sends the key itself in a header, and this key cannot
    /// travel in one (the provider could not send it either).
    #[error(
        "{provider} sends the key itself in the {header} header, and this key cannot be sent \
         in a header (it has control characters or non-ASCII bytes, or starts or ends with \
         whitespace); make a new one with `flux-recv keygen`"
    )]
    KeyNotSendable {
        /// The endpoint's source.
        provider: Source,
        /// The header the key goes in.
        header: &'static str,
    },
}

/// The events `source` has samples of; the first is the default, `push`.
pub fn events(source: Source) -> &'static [&'static str] {
    match source {
        Source::GitHub | Source::BitbucketServer => &["push", "ping"],
        _ => &["push"],
    }
}

/// The delivery `source` would make for `event`, signed with the
/// endpoint's key. `delivery_id` goes in the provider's delivery-id header,
/// where it has one.
pub fn delivery(
    source: Source,
    event: &str,
    settings: &Settings,
    delivery_id: &str,
) -> Result<Delivery, SampleError> {
    if !events(source).contains(&event) {
        return Err(SampleError::UnknownEvent {
            provider: source,
            event: event.to_string(),
            supported: events(source),
        });
    }
    let key = settings.key.expose();
    let host = settings.registry_host.as_deref().filter(|h| !h.is_empty());
    Ok(match source {
        Source::GitHub => github(event, key, delivery_id),
        Source::GitLab => gitlab(header_key(source, "X-Gitlab-Token", key)?, delivery_id),
        Source::BitbucketCloud => bitbucket_cloud(delivery_id),
        Source::BitbucketServer => bitbucket_server(event, key, delivery_id),
        Source::DockerHub => dockerhub(),
        Source::Quay => quay(host),
        Source::Harbor => harbor(header_key(source, "Authorization", key)?, host),
        Source::Nexus => nexus(key, host, delivery_id),
        Source::GoogleContainerRegistry => gcr(host),
    })
}

// What the samples are about.
const OWNER: &str = "example";
const REPO: &str = "app";
const BRANCH: &str = "main";
const TAG: &str = "1.2.3";
const BEFORE: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
const AFTER: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
const DIGEST: &str = "sha256:e4355b66995c96b4b468159fc5c7e3540fcef961189ca13fee877798649f531a";
const TIME: &str = "2024-05-01T12:00:00Z";
const EPOCH: u64 = 1_714_564_800;
const MESSAGE: &str = "Sample commit sent by flux-recv send";

fn compact(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("a JSON value serializes")
}

fn json_headers() -> Vec<(&'static str, String)> {
    vec![("Content-Type", "application/json".to_string())]
}

/// GitLab and Harbor send the key itself, so it must be a valid header
/// value that survives the trip (HTTP trims surrounding whitespace).
fn header_key<'k>(
    source: Source,
    header: &'static str,
    key: &'k [u8],
) -> Result<&'k str, SampleError> {
    let visible = |b: &u8| (0x21..0x7f).contains(b);
    let ok = key.first().is_some_and(visible)
        && key.last().is_some_and(visible)
        && key.iter().all(|b| visible(b) || *b == b' ' || *b == b'\t');
    match std::str::from_utf8(key) {
        Ok(text) if ok => Ok(text),
        _ => Err(SampleError::KeyNotSendable {
            provider: source,
            header,
        }),
    }
}

/// GitHub: `X-Hub-Signature-256` (and the legacy SHA-1 `X-Hub-Signature`,
/// which GitHub still sends), `X-GitHub-Event`, `X-GitHub-Delivery`.
fn github(event: &str, key: &[u8], delivery_id: &str) -> Delivery {
    let ssh_url = format!("git@github.com:{OWNER}/{REPO}.git");
    let html_url = format!("https://github.com/{OWNER}/{REPO}");
    let sender = json!({"login": OWNER, "id": 1, "type": "User", "site_admin": false});
    let repository = json!({
        "id": 1_296_269,
        "name": REPO,
        "full_name": format!("{OWNER}/{REPO}"),
        "private": true,
        "owner": {"name": OWNER, "login": OWNER, "id": 1, "type": "User"},
        "html_url": html_url,
        "url": html_url,
        "git_url": format!("git://github.com/{OWNER}/{REPO}.git"),
        "ssh_url": ssh_url,
        "clone_url": format!("{html_url}.git"),
        "default_branch": BRANCH,
        "master_branch": BRANCH,
        "pushed_at": EPOCH,
    });
    let (body, summary) = if event == "ping" {
        let body = json!({
            "zen": "Design for failure.",
            "hook_id": 1,
            "hook": {
                "type": "Repository",
                "id": 1,
                "name": "web",
                "active": true,
                "events": ["push"],
                "config": {"content_type": "json", "insecure_ssl": "0"},
            },
            "repository": repository,
            "sender": sender,
        });
        let summary = "a ping (sent when a webhook is created; nothing is relayed)";
        (body, summary.to_string())
    } else {
        let commit = json!({
            "id": AFTER,
            "tree_id": BEFORE,
            "distinct": true,
            "message": MESSAGE,
            "timestamp": TIME,
            "url": format!("{html_url}/commit/{AFTER}"),
            "author": {"name": OWNER, "email": "dev@example.com", "username": OWNER},
            "committer": {"name": OWNER, "email": "dev@example.com", "username": OWNER},
            "added": [],
            "removed": [],
            "modified": ["README.md"],
        });
        let body = json!({
            "ref": format!("refs/heads/{BRANCH}"),
            "before": BEFORE,
            "after": AFTER,
            "created": false,
            "deleted": false,
            "forced": false,
            "base_ref": null,
            "compare": format!("{html_url}/compare/{}...{}", &BEFORE[..12], &AFTER[..12]),
            "commits": [commit],
            "head_commit": commit,
            "repository": repository,
            "pusher": {"name": OWNER, "email": "dev@example.com"},
            "sender": sender,
        });
        let summary = format!("a push to branch {BRANCH} of {ssh_url}");
        (body, summary)
    };
    let body = compact(&body);
    let mut headers = json_headers();
    headers.extend([
        ("X-GitHub-Event", event.to_string()),
        ("X-GitHub-Delivery", delivery_id.to_string()),
        ("X-GitHub-Hook-ID", "1".to_string()),
        ("X-Hub-Signature", sign(Algorithm::Sha1, key, &body)),
        ("X-Hub-Signature-256", sign(Algorithm::Sha256, key, &body)),
    ]);
    Delivery {
        headers,
        body,
        summary,
    }
}

/// GitLab: the secret token verbatim in `X-Gitlab-Token`, `X-Gitlab-Event:
/// Push Hook`, `X-Gitlab-Event-UUID`.
fn gitlab(token: &str, delivery_id: &str) -> Delivery {
    let ssh_url = format!("git@gitlab.com:{OWNER}/{REPO}.git");
    let web_url = format!("https://gitlab.com/{OWNER}/{REPO}");
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
            "name": REPO,
            "description": "",
            "web_url": web_url,
            "git_ssh_url": ssh_url,
            "git_http_url": format!("{web_url}.git"),
            "namespace": OWNER,
            "visibility_level": 0,
            "path_with_namespace": format!("{OWNER}/{REPO}"),
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
            "name": REPO,
            "url": ssh_url,
            "description": "",
            "homepage": web_url,
            "git_http_url": format!("{web_url}.git"),
            "git_ssh_url": ssh_url,
            "visibility_level": 0,
        },
    });
    let mut headers = json_headers();
    headers.extend([
        ("X-Gitlab-Event", "Push Hook".to_string()),
        ("X-Gitlab-Token", token.to_string()),
        ("X-Gitlab-Event-UUID", delivery_id.to_string()),
        ("X-Gitlab-Instance", "https://gitlab.com".to_string()),
    ]);
    Delivery {
        headers,
        body: compact(&body),
        summary: format!("a push to branch {BRANCH} of {ssh_url}"),
    }
}

/// Bitbucket Cloud: unsigned; `X-Event-Key: repo:push`, `X-Request-UUID`.
fn bitbucket_cloud(delivery_id: &str) -> Delivery {
    let full_name = format!("{OWNER}/{REPO}");
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
            "name": REPO,
            "full_name": full_name,
            "uuid": "{2f7c6f1c-5a0e-4f4b-9a53-6b3c0b8e5a11}",
            "is_private": true,
            "scm": "git",
            "links": {"html": {"href": html}},
        },
        "actor": {"type": "user", "display_name": "Example Developer", "nickname": OWNER},
    });
    let mut headers = json_headers();
    headers.extend([
        ("X-Event-Key", "repo:push".to_string()),
        ("X-Request-UUID", delivery_id.to_string()),
        (
            "X-Hook-UUID",
            "{6b1fc2b4-63a1-4f8e-9d44-1e0c8f5a2d7b}".to_string(),
        ),
        ("X-Attempt-Number", "1".to_string()),
    ]);
    Delivery {
        headers,
        body: compact(&body),
        summary: format!("a push to branch {BRANCH} of git@bitbucket.org:{full_name}.git"),
    }
}

/// Bitbucket Server / Data Center: `X-Hub-Signature: sha256=…`,
/// `X-Event-Key: repo:refs_changed` (or `diagnostics:ping`), `X-Request-Id`.
fn bitbucket_server(event: &str, key: &[u8], delivery_id: &str) -> Delivery {
    let ssh_url = format!("ssh://git@bitbucket.example.com:7999/ex/{REPO}.git");
    let (event_key, body, summary) = if event == "ping" {
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
                "slug": REPO,
                "id": 84,
                "name": REPO,
                "scmId": "git",
                "state": "AVAILABLE",
                "statusMessage": "Available",
                "forkable": true,
                "project": {"key": "EX", "id": 84, "name": "Example", "public": false, "type": "NORMAL"},
                "public": false,
                "links": {
                    "clone": [
                        {"href": format!("https://bitbucket.example.com/scm/ex/{REPO}.git"), "name": "http"},
                        {"href": ssh_url, "name": "ssh"},
                    ],
                    "self": [{"href": format!("https://bitbucket.example.com/projects/EX/repos/{REPO}/browse")}],
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
    let body = compact(&body);
    let headers = vec![
        (
            "Content-Type",
            "application/json; charset=utf-8".to_string(),
        ),
        ("X-Event-Key", event_key.to_string()),
        ("X-Request-Id", delivery_id.to_string()),
        ("X-Hub-Signature", sign(Algorithm::Sha256, key, &body)),
    ];
    Delivery {
        headers,
        body,
        summary,
    }
}

/// Docker Hub: unsigned, no event header.
fn dockerhub() -> Delivery {
    let repo_name = format!("{OWNER}/{REPO}");
    let body = json!({
        "callback_url": format!("https://registry.hub.docker.com/u/{repo_name}/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/"),
        "push_data": {"pushed_at": EPOCH, "pusher": OWNER, "tag": TAG},
        "repository": {
            "comment_count": 0,
            "date_created": EPOCH - 86_400,
            "description": "",
            "full_description": "",
            "is_official": false,
            "is_private": true,
            "is_trusted": false,
            "name": REPO,
            "namespace": OWNER,
            "owner": OWNER,
            "repo_name": repo_name,
            "repo_url": format!("https://hub.docker.com/r/{repo_name}"),
            "star_count": 0,
            "status": "Active",
        },
    });
    Delivery {
        headers: json_headers(),
        body: compact(&body),
        summary: format!("a push of image {repo_name}:{TAG}"),
    }
}

/// Quay: unsigned, no event header ("Push to Repository" notification).
fn quay(host: Option<&str>) -> Delivery {
    let host = host.unwrap_or("quay.io");
    let repository = format!("{OWNER}/{REPO}");
    let docker_url = format!("{host}/{repository}");
    let body = json!({
        "name": REPO,
        "repository": repository,
        "namespace": OWNER,
        "docker_url": docker_url,
        "homepage": format!("https://{host}/repository/{repository}"),
        "updated_tags": [TAG],
    });
    Delivery {
        headers: json_headers(),
        body: compact(&body),
        summary: format!("a push of image {docker_url}:{TAG}"),
    }
}

/// Harbor 2.x: the policy's auth header value verbatim in `Authorization`,
/// `type: PUSH_ARTIFACT`.
fn harbor(token: &str, host: Option<&str>) -> Delivery {
    let host = host.unwrap_or("harbor.example.com");
    let resource_url = format!("{host}/library/{REPO}:{TAG}");
    let body = json!({
        "type": "PUSH_ARTIFACT",
        "occur_at": EPOCH,
        "operator": "admin",
        "event_data": {
            "resources": [{"digest": DIGEST, "tag": TAG, "resource_url": resource_url}],
            "repository": {
                "date_created": EPOCH - 86_400,
                "name": REPO,
                "namespace": "library",
                "repo_full_name": format!("library/{REPO}"),
                "repo_type": "private",
            },
        },
    });
    let mut headers = json_headers();
    headers.push(("Authorization", token.to_string()));
    Delivery {
        headers,
        body: compact(&body),
        summary: format!("a push of image {resource_url}"),
    }
}

/// Nexus: hex HMAC-SHA1 in `X-Nexus-Webhook-Signature`, `X-Nexus-Webhook-Id:
/// rm:repository:component`, `X-Nexus-Webhook-Delivery`.
fn nexus(key: &[u8], host: Option<&str>, delivery_id: &str) -> Delivery {
    let name = format!("{OWNER}/{REPO}");
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
    let body = compact(&body);
    let signature = sign(Algorithm::Sha1, key, &body);
    let signature = signature.trim_start_matches("sha1=").to_string();
    let headers = vec![
        (
            "Content-Type",
            "application/json; charset=UTF-8".to_string(),
        ),
        ("X-Nexus-Webhook-Id", "rm:repository:component".to_string()),
        ("X-Nexus-Webhook-Delivery", delivery_id.to_string()),
        ("X-Nexus-Webhook-Signature", signature),
    ];
    let image = match host {
        Some(host) => format!("{}/{name}", host.trim_end_matches('/')),
        None => name,
    };
    Delivery {
        headers,
        body,
        summary: format!("a push of image {image}:{TAG}"),
    }
}

/// GCR: a Pub/Sub push envelope with the registry's message base64-encoded
/// in `message.data`. The OIDC token an authenticated subscription adds
/// cannot be made here: only Google can sign one.
fn gcr(host: Option<&str>) -> Delivery {
    let host = host.unwrap_or("gcr.io");
    let image = format!("{host}/{OWNER}-project/{REPO}");
    let data = json!({
        "action": "INSERT",
        "digest": format!("{image}@{DIGEST}"),
        "tag": format!("{image}:{TAG}"),
    });
    let data = base64::engine::general_purpose::STANDARD.encode(compact(&data));
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
    Delivery {
        headers: json_headers(),
        body: compact(&body),
        summary: format!("a push of image {image}:{TAG}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Change;
    use crate::source::{Outcome, Secret};

    fn settings(key: &[u8], registry_host: Option<&str>) -> Settings {
        Settings {
            key: Secret::new(key.to_vec()),
            registry_host: registry_host.map(String::from),
            gcr: None,
        }
    }

    fn handle(source: Source, event: &str, settings: &Settings) -> Outcome {
        let d = delivery(
            source,
            event,
            settings,
            "72d3162e-cc78-11e3-81ab-4c9367dc0958",
        )
        .unwrap_or_else(|e| panic!("{source}: {e}"));
        let mut headers = http::HeaderMap::new();
        for (name, value) in &d.headers {
            headers.append(*name, value.parse().unwrap());
        }
        source
            .handle(&headers, &d.body, settings)
            .unwrap_or_else(|e| panic!("{source} {event}: {e}"))
    }

    #[test]
    fn every_push_sample_verifies_and_notifies() {
        let s = settings(b"0123456789abcdef0123456789abcdef", None);
        for source in Source::ALL {
            let Outcome::Notify(changes) = handle(source, "push", &s) else {
                panic!("{source}: push is not relayed");
            };
            assert_eq!(changes.len(), 1, "{source}");
            let expected = match source {
                Source::GitHub => Change::git("git@github.com:example/app.git", "main"),
                Source::GitLab => Change::git("git@gitlab.com:example/app.git", "main"),
                Source::BitbucketCloud => Change::git("git@bitbucket.org:example/app.git", "main"),
                Source::BitbucketServer => {
                    Change::git("ssh://git@bitbucket.example.com:7999/ex/app.git", "main")
                }
                Source::DockerHub => Change::image(crate::image::parse("example/app").unwrap()),
                Source::Quay => Change::image(crate::image::parse("quay.io/example/app").unwrap()),
                Source::Harbor => {
                    Change::image(crate::image::parse("harbor.example.com/library/app").unwrap())
                }
                Source::Nexus => Change::image(crate::image::parse("example/app").unwrap()),
                Source::GoogleContainerRegistry => {
                    Change::image(crate::image::parse("gcr.io/example-project/app").unwrap())
                }
            };
            assert_eq!(changes[0], expected, "{source}");
        }
    }

    #[test]
    fn pings_are_verified_and_ignored() {
        let s = settings(b"0123456789abcdef0123456789abcdef", None);
        for source in [Source::GitHub, Source::BitbucketServer] {
            assert_eq!(
                handle(source, "ping", &s),
                Outcome::Ignore("ping".into()),
                "{source}"
            );
        }
    }

    #[test]
    fn a_wrong_key_fails_verification() {
        let signed = settings(b"0123456789abcdef0123456789abcdef", None);
        let other = settings(b"another key, not the one signed", None);
        for source in Source::ALL.into_iter().filter(|s| s.verifies_sender()) {
            let d = delivery(source, "push", &signed, "id").unwrap();
            let mut headers = http::HeaderMap::new();
            for (name, value) in &d.headers {
                headers.append(*name, value.parse().unwrap());
            }
            let e = source.handle(&headers, &d.body, &other).unwrap_err();
            assert_eq!(e.status(), 401, "{source}: {e}");
        }
    }

    #[test]
    fn registry_host_names_the_image() {
        let s = settings(b"0123456789abcdef", Some("registry.example.com"));
        for source in [
            Source::Quay,
            Source::Harbor,
            Source::Nexus,
            Source::GoogleContainerRegistry,
        ] {
            let Outcome::Notify(changes) = handle(source, "push", &s) else {
                panic!("{source}");
            };
            let Change::Image(image) = &changes[0] else {
                panic!("{source}");
            };
            assert_eq!(image.name.domain, "registry.example.com", "{source}");
        }
    }

    #[test]
    fn unknown_events_and_unsendable_keys_are_errors() {
        let s = settings(b"0123456789abcdef", None);
        let e = delivery(Source::GitLab, "ping", &s, "id").unwrap_err();
        assert_eq!(
            e.to_string(),
            "there is no \"ping\" sample for GitLab; choose one of: push"
        );
        for key in [
            &b"0123456789abcdef\n"[..],
            b" 0123456789abcdef",
            b"abc\x01def",
        ] {
            let s = settings(key, None);
            for source in [Source::GitLab, Source::Harbor] {
                assert!(
                    matches!(
                        delivery(source, "push", &s, "id"),
                        Err(SampleError::KeyNotSendable { .. })
                    ),
                    "{source} {key:?}"
                );
            }
            // Signing sources take any key.
            assert!(delivery(Source::GitHub, "push", &s, "id").is_ok());
        }
    }

    #[test]
    fn samples_are_deterministic_and_carry_the_delivery_id() {
        let s = settings(b"0123456789abcdef", None);
        let a = delivery(Source::GitHub, "push", &s, "id-1").unwrap();
        assert_eq!(a, delivery(Source::GitHub, "push", &s, "id-1").unwrap());
        assert!(a
            .headers
            .contains(&("X-GitHub-Delivery", "id-1".to_string())));
    }
}
