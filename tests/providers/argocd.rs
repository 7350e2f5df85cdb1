//! Each git provider's real payload (the fixtures under `testdata/`), read
//! by its source and made into Argo CD pushes by an Argo CD target, then
//! read by the stand-in Argo CD as Argo CD reads them: an Application
//! naming the repository's https clone URL is matched, the revision is the
//! pushed ref's, and the changed files are those the provider listed.
//! No server runs here; `tests/delivery/argocd.rs` sends them for real.

use flux_recv::source::{Outcome, SampleRequest, Secret, Settings, Source};
use flux_recv::target_files::SecretFile;
use flux_recv::targets::argocd::ArgoCd;
use flux_recv::targets::{Body, Target, VerifiedHook};

use crate::common::argocd::{read, ArgoPush};
use crate::common::testdata;

const KEY: &[u8] = b"provider-key-0123456789abcdef";
const SECRET: &[u8] = b"argocd-webhook-secret\n";

/// The pushes Argo CD reads for `fixture` delivered by `source`.
fn pushes(source: &str, fixture: &str) -> Vec<ArgoPush> {
    let source = Source::named(source);
    let payload = std::fs::read(testdata().join(fixture)).unwrap();
    let request = SampleRequest {
        body: Some(&payload),
        ..SampleRequest::push(KEY)
    };
    let delivery = source.sample(&request).unwrap();
    let headers = delivery.header_map();
    let settings = Settings {
        key: Secret::new(KEY.to_vec()),
        ..Settings::default()
    };
    let outcome = source.handle(&headers, &delivery.body, &settings);
    let Ok(Outcome::Notify(changes)) = outcome else {
        panic!("{source}: {outcome:?}");
    };
    let is_github = source == Source::named("GitHub");
    let target = Target::from(ArgoCd::new(
        "http://argocd/api/webhook",
        SecretFile {
            path: "argocd.secret".into(),
            secret: Secret::new(SECRET.to_vec()),
        },
        None,
        is_github,
    ));
    let body = Body {
        bytes: delivery.body.clone().into(),
        content_type: headers.get("content-type").cloned(),
    };
    let hook = VerifiedHook {
        changes: &changes,
        body: target.needs_body().then_some(&body),
    };
    target
        .items(&hook)
        .iter()
        .map(|item| {
            let mut map = http::HeaderMap::new();
            for (name, value) in target.headers(&item.body) {
                map.append(name, value);
            }
            read(&map, &item.body.bytes, SECRET).unwrap_or_else(|s| panic!("{source}: {s}"))
        })
        .collect()
}

/// One push, matched by `https` (and by every URL of `also`), of
/// `revision`, listing `files`.
fn check(push: &ArgoPush, https: &str, also: &[&str], revision: &str, files: &[&str]) {
    assert!(push.uses(https), "{https} is not matched by {push:?}");
    for url in also {
        assert!(push.uses(url), "{url} is not matched by {push:?}");
    }
    assert_eq!(push.revision, revision, "{push:?}");
    assert_eq!(push.files, files, "{push:?}");
}

#[test]
fn github_is_sent_its_own_push() {
    let [push] = &pushes("GitHub", "github_payload")[..] else {
        panic!("one push")
    };
    let ssh = "git@github.com:Codertocat/Hello-World.git";
    check(
        push,
        "https://github.com/Codertocat/Hello-World.git",
        &[ssh],
        "simple-tag",
        &[],
    );
    assert!(!push.uses("https://github.com/Codertocat/Hello-World-2.git"));
    assert_eq!(push.before, "6113728f27ae82c7b1a177c8d03f9e96e0adf246");
    assert!(!push.touched_head, "a tag is not master");
}

#[test]
fn gitlab() {
    let [push] = &pushes("GitLab", "gitlab_payload")[..] else {
        panic!("one push")
    };
    // The payload lists 2 of its 4 commits: the files of the other two are
    // unknown, so none are listed and Argo CD refreshes every match.
    check(
        push,
        "http://example.com/mike/diaspora.git",
        &["git@example.com:mike/diaspora.git"],
        "master",
        &[],
    );
    assert!(push.uses("https://example.com/mike/diaspora"));
    assert!(push.touched_head && push.refreshes("HEAD"));
    assert_eq!(push.before, "95790bf891e76fee5e1747ab589903a6a1f80f22");
    assert_eq!(push.after, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
}

#[test]
fn gitlab_with_every_commit_listed_names_their_files() {
    let mut payload: serde_json::Value =
        serde_json::from_slice(&std::fs::read(testdata().join("gitlab_payload")).unwrap()).unwrap();
    payload["total_commits_count"] = 2.into();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gitlab_payload");
    std::fs::write(&path, payload.to_string()).unwrap();
    let [push] = &pushes("GitLab", path.to_str().unwrap())[..] else {
        panic!("one push")
    };
    let files = [
        "CHANGELOG",
        "CHANGELOG",
        "app/controller/application.rb",
        "app/controller/application.rb",
    ];
    check(
        push,
        "https://example.com/mike/diaspora.git",
        &[],
        "master",
        &files,
    );
}

#[test]
fn bitbucket_cloud() {
    let [push] = &pushes("BitbucketCloud", "bitbucket_cloud_payload")[..] else {
        panic!("one push")
    };
    let ssh = "git@bitbucket.org:mbridgen/dummy.git";
    check(
        push,
        "https://bitbucket.org/mbridgen/dummy.git",
        &[ssh],
        "master",
        &[],
    );
    assert_eq!(push.before, "2269f06c06bebc4f4da528a4144390fddd2cc190");
    assert_eq!(push.after, "6db247ef432063e73512b86edf7b4a72da927355");
    // Bitbucket names no default branch: Applications tracking HEAD are
    // not refreshed.
    assert!(!push.touched_head);
}

#[test]
fn bitbucket_server_is_matched_by_its_scm_clone_path() {
    let [push] = &pushes("BitbucketServer", "bitbucket_server_payload")[..] else {
        panic!("one push")
    };
    let https = "https://bitbucket.redacted.com/scm/~abursavich/hook-test.git";
    check(push, https, &[], "master", &[]);
    assert!(!push.uses("https://bitbucket.redacted.com/users/abursavich/repos/hook-test/browse"));
    assert_eq!(push.after, "a93eaf9b94009af4bad03d929185393672a1d788");
}

#[test]
fn gitea_forgejo_and_gogs() {
    /// Source, fixture, https and ssh clone URLs, revision, files.
    type Case<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str, &'a [&'a str]);
    let cases: [Case; 3] = [
        (
            "Gitea",
            "gitea/push.json",
            "https://git.example.org/platform/deploy-config.git",
            "ssh://git@git.example.org:2222/platform/deploy-config.git",
            "develop",
            &["api/deployment.yaml"],
        ),
        (
            "Forgejo",
            "forgejo/push.json",
            "https://forge.example.net/infra/cluster.git",
            "git@forge.example.net:infra/cluster.git",
            "main",
            &["api/deployment.yaml"],
        ),
        (
            "Gogs",
            "gogs/push.json",
            "http://gogs.example.com:3000/ops/flux-config.git",
            "git@gogs.example.com:ops/flux-config.git",
            "production",
            &["workers/deployment.yaml"],
        ),
    ];
    for (source, fixture, https, ssh, revision, files) in cases {
        let all = pushes(source, fixture);
        let [push] = &all[..] else {
            panic!("{source}: one push for its two URLs, not {all:?}")
        };
        check(push, https, &[ssh], revision, files);
        assert!(
            push.refreshes(revision) && !push.refreshes("other"),
            "{source}"
        );
    }
}

#[test]
fn azure_devops_sends_each_updated_branch() {
    let all = pushes("AzureDevOps", "azure_devops/git.push.json");
    let https = "https://dev.azure.com/contoso-ops/Platform/_git/cluster-config";
    let [main, staging] = &all[..] else {
        panic!("main and staging (the tag and the deletion are not sent): {all:?}")
    };
    check(main, https, &[], "main", &[]);
    check(staging, https, &[], "staging", &[]);
    assert!(main.uses("https://contoso-ops@dev.azure.com/contoso-ops/Platform/_git/cluster-config"));
    assert!(main.touched_head && !staging.touched_head);
    assert_eq!(main.before, "2a4c6e8f0b1d3f5a7c9e1b3d5f7a9c0e2b4d6f8a");
    let all = pushes("AzureDevOps", "azure_devops/git.push.visualstudio.json");
    let https = "https://fabrikam-legacy.visualstudio.com/DefaultCollection/Shop%20Front/_git/web";
    let [release] = &all[..] else {
        panic!("{all:?}")
    };
    check(release, https, &[], "release", &[]);
}

#[test]
fn the_stand_in_refuses_a_push_signed_otherwise() {
    let target = Target::from(ArgoCd::new(
        "http://argocd/api/webhook",
        SecretFile {
            path: "argocd.secret".into(),
            secret: Secret::new(b"another secret".to_vec()),
        },
        None,
        false,
    ));
    let changes = [flux_recv::notification::Change::git(
        "git@h:a/b.git",
        "main",
    )];
    let items = target.items(&VerifiedHook {
        changes: &changes,
        body: None,
    });
    let mut map = http::HeaderMap::new();
    for (name, value) in target.headers(&items[0].body) {
        map.append(name, value);
    }
    assert_eq!(read(&map, &items[0].body.bytes, SECRET), Err(400));
    // With the right secret, a change from a notify: block is read too.
    let ok = read(&map, &items[0].body.bytes, b"another secret").unwrap();
    assert!(ok.uses("https://h/a/b.git") && ok.uses("git@h:a/b.git"));
    assert_eq!(ok.revision, "main");
    // Each header alone is not enough.
    for drop in ["x-hub-signature", "x-hub-signature-256", "x-github-event"] {
        let mut less = map.clone();
        less.remove(drop);
        assert_eq!(
            read(&less, &items[0].body.bytes, b"another secret"),
            Err(400),
            "{drop}"
        );
    }
}
