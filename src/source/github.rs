//! GitHub push webhooks.
//!
//! - Verification: HMAC of the raw body with the webhook secret, in
//!   `X-Hub-Signature-256` (`sha256=<hex>`, preferred; any other prefix is
//!   refused, matching or not) or the legacy `X-Hub-Signature` (`sha1=`;
//!   `sha256=` and `sha512=` are accepted too, as the Go original did).
//! - Event: `X-GitHub-Event`. `push` notifies, and so does the publication
//!   of a container image (below); `ping` (sent when a hook is created) and
//!   any other event are acknowledged and ignored.
//! - Body: JSON, or with content type `application/x-www-form-urlencoded`
//!   the JSON in the form field `payload`. The signature covers the raw body
//!   as sent, form encoding included.
//! - Notification for `push`: git, `repository.ssh_url`, `ref` without
//!   `refs/heads/`.
//! - Notification for `package` (and the older `registry_package`, whose
//!   payload names the package `registry_package`): when `action` is
//!   `published` and `package_type` is `container` (any case), an image in
//!   GitHub's registry, `ghcr.io/<package.owner.login>/<package.name>`,
//!   lowercased as the registry names it. Other actions (`updated`) and
//!   package types (npm, maven, …) are acknowledged and ignored.
//! - What the push tells other targets (Argo CD, `crate::push`): the full
//!   `ref`, `clone_url` and `ssh_url`, `html_url`, `default_branch`,
//!   `before`/`after`, and the files of `commits[]`.

use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use super::sample::{
    self, SampleRequest, AFTER, BEFORE, BRANCH, DIGEST, EPOCH, MESSAGE, OWNER, TAG, TIME,
};
use super::verify::{sign, Algorithm};
use super::{
    header, json, json_or_form, lenient, required, verify, Commit, HookError, HookResult, Kinds,
    Outcome, Proof, Provider, SampleHook, Settings,
};
use crate::notification::Change;
use crate::push::{self as told, Files};

const SIGNATURE_256: &str = "X-Hub-Signature-256";
const SIGNATURE: &str = "X-Hub-Signature";
const EVENT: &str = "X-GitHub-Event";
const DELIVERY: &str = "X-GitHub-Delivery";

/// GitHub, as the config names it.
pub const PROVIDER: Provider = Provider {
    name: "GitHub",
    proof: Proof::Signature {
        header: SIGNATURE_256,
        prefixed: true,
    },
    event_header: Some(EVENT),
    delivery_header: Some(DELIVERY),
    handle,
    sample_events: &["push", "ping", "package"],
    sample,
    changes: Kinds::GitAndImage,
    extras: &[],
};

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
    repository: Option<Repository>,
}

#[derive(Deserialize)]
struct Repository {
    ssh_url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    clone_url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    html_url: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct PackageEvent {
    action: Option<String>,
    /// In `package` events.
    package: Option<Package>,
    /// In `registry_package` events.
    registry_package: Option<Package>,
}

#[derive(Deserialize)]
struct Package {
    name: Option<String>,
    package_type: Option<String>,
    owner: Option<Owner>,
}

#[derive(Deserialize)]
struct Owner {
    login: Option<String>,
}

/// Verify and parse one GitHub delivery.
pub fn handle(headers: &HeaderMap, body: &[u8], settings: &Settings) -> HookResult {
    let key = settings.key.expose();
    match (header(headers, SIGNATURE_256), header(headers, SIGNATURE)) {
        (Some(sig), _) => {
            verify::prefixed_hmac_as(SIGNATURE_256, verify::Prefixes::Sha256, sig, key, body)?
        }
        (None, Some(sig)) => verify::prefixed_hmac(SIGNATURE, sig, key, body)?,
        (None, None) => return Err(HookError::Unsigned(SIGNATURE_256)),
    }

    let event = header(headers, EVENT).ok_or(HookError::MissingEvent(EVENT))?;
    match event {
        "push" => push(&json_or_form(headers, body)?),
        "package" | "registry_package" => package(event, &json_or_form(headers, body)?),
        "ping" => Ok(Outcome::Ignore("ping".into())),
        other => Ok(Outcome::Ignore(format!(
            "{} event",
            crate::printable(other)
        ))),
    }
}

fn push(json_payload: &[u8]) -> HookResult {
    let push: Push = json(json_payload)?;
    let repository = push.repository;
    let url = required(
        repository.as_ref().and_then(|r| r.ssh_url.clone()),
        "repository.ssh_url",
    )?;
    let git_ref = required(push.git_ref, "ref")?;
    let repository = repository.expect("it has an ssh_url");
    let repository = told::Repository {
        web_url: repository.html_url,
        default_branch: repository.default_branch,
        ..told::Repository::default()
    }
    .with_clone_url(repository.clone_url.as_deref())
    .with_clone_url(Some(&url));
    let told = told::Push {
        before: push.before,
        after: push.after,
        files: Files::of_commits(push.commits.into_iter().flatten().map(Commit::files), None),
        ..told::Push::of_ref(&git_ref)
    }
    .to(&Arc::new(repository));
    let change = Change::git(url, &git_ref).told(&Arc::new(told));
    Ok(Outcome::Notify(vec![change]))
}

/// A `package` or `registry_package` event.
fn package(event: &str, json_payload: &[u8]) -> HookResult {
    let payload: PackageEvent = json(json_payload)?;
    let action = payload.action.unwrap_or_default();
    if action != "published" {
        let action = crate::printable(&action);
        return Ok(Outcome::Ignore(format!("{event} {action}")));
    }
    let package = match event {
        "package" => payload.package,
        _ => payload.registry_package,
    }
    .ok_or_else(|| HookError::BadPayload(format!("{event} is missing")))?;
    let kind = package.package_type.unwrap_or_default();
    if !kind.eq_ignore_ascii_case("container") {
        let kind = crate::printable(&kind);
        return Ok(Outcome::Ignore(format!(
            "a {kind} package, not a container"
        )));
    }
    let owner = required(
        package.owner.and_then(|o| o.login),
        &format!("{event}.owner.login"),
    )?;
    let name = required(package.name, &format!("{event}.name"))?;
    let image = crate::image::parse(&format!("ghcr.io/{owner}/{name}").to_lowercase())?;
    Ok(Outcome::Notify(vec![Change::image(image)]))
}

/// A push, the ping GitHub sends when a webhook is created, or the
/// publication of a container image to ghcr.io (`package`), with both
/// signature headers, as GitHub sends them.
fn sample(s: &SampleRequest) -> SampleHook {
    let name = s.name;
    let ssh_url = format!("git@github.com:{OWNER}/{name}.git");
    let html_url = format!("https://github.com/{OWNER}/{name}");
    let sender = json!({"login": OWNER, "id": 1, "type": "User", "site_admin": false});
    let repository = json!({
        "id": 1_296_269,
        "name": name,
        "full_name": format!("{OWNER}/{name}"),
        "private": true,
        "owner": {"name": OWNER, "login": OWNER, "id": 1, "type": "User"},
        "html_url": html_url,
        "url": html_url,
        "git_url": format!("git://github.com/{OWNER}/{name}.git"),
        "ssh_url": ssh_url,
        "clone_url": format!("{html_url}.git"),
        "default_branch": BRANCH,
        "master_branch": BRANCH,
        "pushed_at": EPOCH,
    });
    let (body, summary) = if s.event == "ping" {
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
    } else if s.event == "package" {
        let image = format!("ghcr.io/{OWNER}/{name}");
        let packages = format!("https://github.com/users/{OWNER}/packages/container");
        let version = json!({
            "id": 214_748_361,
            "version": DIGEST,
            "name": DIGEST,
            "description": "",
            "html_url": format!("{packages}/{name}/214748361"),
            "created_at": TIME,
            "updated_at": TIME,
            "metadata": [],
            "container_metadata": {
                "tag": {"name": TAG, "digest": DIGEST},
                "labels": {"source": html_url, "revision": AFTER},
                "manifest": {
                    "digest": DIGEST,
                    "media_type": "application/vnd.oci.image.index.v1+json",
                },
            },
            "package_files": [],
            "installation_command": format!("docker pull {image}:{TAG}"),
            "package_url": format!("{image}:{TAG}"),
        });
        let body = json!({
            "action": "published",
            "package": {
                "id": 4_194_303,
                "name": name,
                "namespace": OWNER,
                "description": null,
                "ecosystem": "CONTAINER",
                "package_type": "CONTAINER",
                "html_url": format!("{packages}/package/{name}"),
                "created_at": TIME,
                "updated_at": TIME,
                "owner": sender,
                "package_version": version,
                "registry": {
                    "about_url": "https://docs.github.com/packages",
                    "name": "GitHub CONTAINER registry",
                    "type": "CONTAINER",
                    "url": format!("https://ghcr.io/{OWNER}"),
                    "vendor": "GitHub Inc",
                },
            },
            "repository": repository,
            "sender": sender,
        });
        (body, format!("the publication of image {image}:{TAG}"))
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
        (body, format!("a push to branch {BRANCH} of {ssh_url}"))
    };
    let body = s.body_or(&body);
    let mut headers = sample::json_headers();
    headers.extend([
        (EVENT, s.event.to_string()),
        (DELIVERY, s.delivery_id.to_string()),
        ("X-GitHub-Hook-ID", "1".to_string()),
        (SIGNATURE, sign(Algorithm::Sha1, s.key, &body)),
        (SIGNATURE_256, sign(Algorithm::Sha256, s.key, &body)),
    ]);
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

    const KEY: &[u8] = b"423be8373b98a9ffccc10402cc033e77263e1cdf\n";

    fn push(sig_header: &str, sig: &str, body: &[u8]) -> HookResult {
        let h = headers(&[(sig_header, sig), (EVENT, "push")]);
        handle(&h, body, &settings(KEY))
    }

    fn expected() -> Outcome {
        Outcome::Notify(vec![Change::git(
            "git@github.com:Codertocat/Hello-World.git",
            "refs/tags/simple-tag",
        )])
    }

    #[test]
    fn push_with_each_signature_algorithm_in_the_legacy_header() {
        let body = fixture("github_payload");
        for algo in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            let sig = sign(algo, KEY, &body);
            assert_eq!(push(SIGNATURE, &sig, &body), Ok(expected()), "{algo:?}");
        }
    }

    /// The `-256` header names its hash: a valid `sha1=` (or `sha512=`)
    /// MAC there is refused, with a reply that says what it must carry,
    /// and is not rescued by the legacy header.
    #[test]
    fn the_256_header_carries_sha256_only() {
        let body = fixture("github_payload");
        let sha256 = sign(Algorithm::Sha256, KEY, &body);
        assert_eq!(push(SIGNATURE_256, &sha256, &body), Ok(expected()));
        for algo in [Algorithm::Sha1, Algorithm::Sha512] {
            let valid = sign(algo, KEY, &body);
            let h = headers(&[
                (SIGNATURE_256, &valid),
                (SIGNATURE, &sign(Algorithm::Sha1, KEY, &body)),
                (EVENT, "push"),
            ]);
            let e = handle(&h, &body, &settings(KEY)).unwrap_err();
            assert!(e.is_unauthorized(), "{algo:?}");
            assert_eq!(
                e.to_string(),
                "X-Hub-Signature-256 must be sha256=<hex>, an HMAC-SHA256 of the body"
            );
        }
    }

    #[test]
    fn branch_loses_refs_heads() {
        let body =
            br#"{"ref":"refs/heads/main","repository":{"ssh_url":"git@github.com:a/b.git"}}"#;
        let sig = sign(Algorithm::Sha256, KEY, body);
        assert_eq!(
            push(SIGNATURE_256, &sig, body),
            Ok(Outcome::Notify(vec![Change::git(
                "git@github.com:a/b.git",
                "main"
            )]))
        );
    }

    #[test]
    fn sha256_header_is_preferred() {
        let body = fixture("github_payload");
        let good = sign(Algorithm::Sha256, KEY, &body);
        let h = headers(&[
            (SIGNATURE_256, &good),
            (SIGNATURE, "sha1=00"),
            (EVENT, "push"),
        ]);
        assert_eq!(handle(&h, &body, &settings(KEY)), Ok(expected()));
        let h = headers(&[
            (SIGNATURE_256, "sha256=00"),
            (SIGNATURE, &good),
            (EVENT, "push"),
        ]);
        assert_eq!(
            handle(&h, &body, &settings(KEY)),
            Err(HookError::BadSignature(SIGNATURE_256))
        );
    }

    #[test]
    fn form_encoded_payload() {
        let json = fixture("github_payload");
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", std::str::from_utf8(&json).unwrap())
            .finish();
        let sig = sign(Algorithm::Sha512, KEY, body.as_bytes());
        let h = headers(&[
            (SIGNATURE, &sig),
            (EVENT, "push"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ]);
        assert_eq!(handle(&h, body.as_bytes(), &settings(KEY)), Ok(expected()));
        // The signature is over the form body, not the JSON inside it.
        let sig = sign(Algorithm::Sha512, KEY, &json);
        let h = headers(&[
            (SIGNATURE, &sig),
            (EVENT, "push"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ]);
        assert!(handle(&h, body.as_bytes(), &settings(KEY)).is_err());
    }

    #[test]
    fn form_without_payload_field_is_400() {
        let body = b"other=1";
        let sig = sign(Algorithm::Sha256, KEY, body);
        let h = headers(&[
            (SIGNATURE_256, &sig),
            (EVENT, "push"),
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf-8",
            ),
        ]);
        assert!(!handle(&h, body, &settings(KEY))
            .unwrap_err()
            .is_unauthorized());
    }

    #[test]
    fn ping_and_other_events_are_acknowledged() {
        let body = br#"{"zen":"Keep it logically awesome."}"#;
        let sig = sign(Algorithm::Sha256, KEY, body);
        for event in ["ping", "issues", "pull_request"] {
            let h = headers(&[(SIGNATURE_256, &sig), (EVENT, event)]);
            assert!(
                matches!(handle(&h, body, &settings(KEY)), Ok(Outcome::Ignore(_))),
                "{event}"
            );
        }
    }

    #[test]
    fn ping_with_a_bad_signature_is_still_401() {
        let h = headers(&[(SIGNATURE_256, "sha256=00"), (EVENT, "ping")]);
        assert!(handle(&h, b"{}", &settings(KEY))
            .unwrap_err()
            .is_unauthorized());
    }

    #[test]
    fn refusals() {
        let body = fixture("github_payload");
        let good = sign(Algorithm::Sha256, KEY, &body);
        // No signature at all.
        let h = headers(&[(EVENT, "push")]);
        assert_eq!(
            handle(&h, &body, &settings(KEY)),
            Err(HookError::Unsigned(SIGNATURE_256))
        );
        // Signed with the key minus its trailing newline.
        let sig = sign(Algorithm::Sha256, &KEY[..KEY.len() - 1], &body);
        assert!(push(SIGNATURE_256, &sig, &body)
            .unwrap_err()
            .is_unauthorized());
        // Missing event header.
        let h = headers(&[(SIGNATURE_256, &good)]);
        assert_eq!(
            handle(&h, &body, &settings(KEY)),
            Err(HookError::MissingEvent(EVENT))
        );
        // Truncated JSON, wrong types, missing fields: 400.
        for bad in [
            &body[..100],
            br#"{"ref":1,"repository":{"ssh_url":"u"}}"#.as_slice(),
            br#"{"ref":"refs/heads/x"}"#.as_slice(),
            br#"{"ref":"refs/heads/x","repository":{"ssh_url":""}}"#.as_slice(),
            b"".as_slice(),
        ] {
            let sig = sign(Algorithm::Sha256, KEY, bad);
            assert!(!push(SIGNATURE_256, &sig, bad)
                .unwrap_err()
                .is_unauthorized());
        }
    }

    fn delivered(event: &str, body: &[u8]) -> HookResult {
        let sig = sign(Algorithm::Sha256, KEY, body);
        let h = headers(&[(SIGNATURE_256, &sig), (EVENT, event)]);
        handle(&h, body, &settings(KEY))
    }

    fn ghcr(image: &str) -> HookResult {
        Ok(Outcome::Notify(vec![Change::image(
            crate::image::parse(image).unwrap(),
        )]))
    }

    /// A container version published to GitHub's registry, as both events
    /// describe it; names lowercased as ghcr.io has them.
    #[test]
    fn a_published_container_is_an_image_in_ghcr() {
        assert_eq!(
            delivered("package", &fixture("github/package.published.json")),
            ghcr("ghcr.io/acme-corp/billing-api")
        );
        assert_eq!(
            delivered(
                "registry_package",
                &fixture("github/registry_package.published.json")
            ),
            ghcr("ghcr.io/acme-corp/billing-api")
        );
        // Form-encoded, like a push.
        let json = fixture("github/package.published.json");
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("payload", std::str::from_utf8(&json).unwrap())
            .finish();
        let sig = sign(Algorithm::Sha256, KEY, body.as_bytes());
        let h = headers(&[
            (SIGNATURE_256, &sig),
            (EVENT, "package"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ]);
        assert_eq!(
            handle(&h, body.as_bytes(), &settings(KEY)),
            ghcr("ghcr.io/acme-corp/billing-api")
        );
        // Nested names and the type in lower case.
        let body = br#"{"action":"published","package":{"name":"Tools/Lint","package_type":"container","owner":{"login":"Someone"}}}"#;
        assert_eq!(
            delivered("package", body),
            ghcr("ghcr.io/someone/tools/lint")
        );
    }

    #[test]
    fn other_packages_and_actions_are_acknowledged() {
        let published = std::str::from_utf8(&fixture("github/package.published.json"))
            .unwrap()
            .to_string();
        for (event, body) in [
            (
                "package",
                published.replace(r#""action": "published""#, r#""action": "updated""#),
            ),
            (
                "package",
                published.replace(r#""package_type": "CONTAINER""#, r#""package_type": "npm""#),
            ),
            (
                "package",
                published.replace(
                    r#""package_type": "CONTAINER""#,
                    r#""package_type": "docker""#,
                ),
            ),
            (
                "package",
                published.replace(r#""package_type": "CONTAINER","#, ""),
            ),
            (
                "registry_package",
                r#"{"action":"updated","registry_package":{}}"#.to_string(),
            ),
            ("package", "{}".to_string()),
        ] {
            assert!(
                matches!(delivered(event, body.as_bytes()), Ok(Outcome::Ignore(_))),
                "{event}: {body}"
            );
        }
    }

    #[test]
    fn bad_package_payloads_are_400_and_bad_signatures_401() {
        for (event, body) in [
            ("package", r#"{"action":"published"}"#),
            // The package under the other event's name.
            (
                "registry_package",
                r#"{"action":"published","package":{"name":"a","package_type":"CONTAINER","owner":{"login":"o"}}}"#,
            ),
            (
                "package",
                r#"{"action":"published","package":{"name":"a","package_type":"CONTAINER"}}"#,
            ),
            (
                "package",
                r#"{"action":"published","package":{"name":"","package_type":"CONTAINER","owner":{"login":"o"}}}"#,
            ),
            (
                "package",
                r#"{"action":"published","package":{"name":"a/","package_type":"CONTAINER","owner":{"login":"o"}}}"#,
            ),
            ("package", r#"{"action":7}"#),
            ("package", "not json"),
        ] {
            let e = delivered(event, body.as_bytes()).unwrap_err();
            assert!(matches!(e, HookError::BadPayload(_)), "{body}: {e:?}");
        }
        let body = fixture("github/package.published.json");
        let h = headers(&[(SIGNATURE_256, "sha256=00"), (EVENT, "package")]);
        assert!(handle(&h, &body, &settings(KEY))
            .unwrap_err()
            .is_unauthorized());
    }
}
