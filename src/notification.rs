//! The notification fluxd's `POST /v11/notify` understands.
//!
//! fluxd treats a notification as a trigger to look again at a git repo or an
//! image repository, never as data, so sending one twice is harmless. The
//! JSON shape (field names, their order and the `Kind` tag) is fluxd's
//! `v9.Change`; it must stay byte-for-byte what the Go flux-recv sent.

use std::sync::Arc;

use serde::Serialize;

use crate::push::{Push, Told};

/// One thing fluxd should look at again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "Kind", content = "Source")]
pub enum Change {
    /// A push to a branch (or tag) of a git repository.
    #[serde(rename = "git")]
    Git(GitUpdate),
    /// A push of an image to a registry.
    #[serde(rename = "image")]
    Image(ImageUpdate),
}

/// `{"URL": …, "Branch": …}`
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct GitUpdate {
    /// The repository's URL as fluxd is configured with it: the SSH clone URL.
    #[serde(rename = "URL")]
    pub url: String,
    /// The branch without `refs/heads/`; other refs (tags) are kept whole.
    #[serde(rename = "Branch")]
    pub branch: String,
    /// What the push told beyond these two fields, for other targets
    /// (see [`crate::push`]): never sent to fluxd, and not part of the
    /// change's identity.
    #[serde(skip)]
    pub told: Told,
}

/// `{"Name": {"Domain": …, "Image": …}}`
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ImageUpdate {
    /// The image repository that changed, without a tag.
    #[serde(rename = "Name")]
    pub name: ImageName,
}

/// An image repository name split the way fluxd splits it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ImageName {
    /// Registry host (with optional port); empty for Docker Hub.
    #[serde(rename = "Domain")]
    pub domain: String,
    /// Path within the registry, e.g. `library/nginx`.
    #[serde(rename = "Image")]
    pub image: String,
}

impl Change {
    /// A git change, with `refs/heads/` taken off the ref.
    pub fn git(url: impl Into<String>, git_ref: &str) -> Change {
        Change::Git(GitUpdate {
            url: url.into(),
            branch: git_ref
                .strip_prefix("refs/heads/")
                .unwrap_or(git_ref)
                .to_string(),
            told: Told::default(),
        })
    }

    /// This change with what its push told; an image change as it is.
    pub fn told(self, push: &Arc<Push>) -> Change {
        match self {
            Change::Git(g) => Change::Git(GitUpdate {
                told: Told::push(push.clone()),
                ..g
            }),
            image => image,
        }
    }

    /// An image change.
    pub fn image(name: ImageName) -> Change {
        Change::Image(ImageUpdate { name })
    }

    /// The request body for `POST {api}/v11/notify`.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Change always serialises")
    }
}

/// Most characters of one value of a change (a URL, a branch, an image
/// name) in a log line, escapes included: real ones fit whole, while a
/// payload's 1 KiB field cannot make a line of kilobytes.
pub const LOGGED_VALUE: usize = 200;

impl Change {
    /// This change with every value made fit for a log line: escaped and
    /// cut as [`crate::printable_within`] does, to [`LOGGED_VALUE`].
    pub fn for_log(&self) -> Change {
        let shown = |s: &str| crate::printable_within(s, LOGGED_VALUE);
        match self {
            Change::Git(g) => Change::Git(GitUpdate {
                url: shown(&g.url),
                branch: shown(&g.branch),
                told: g.told.clone(),
            }),
            Change::Image(i) => Change::image(ImageName {
                domain: shown(&i.name.domain),
                image: shown(&i.name.image),
            }),
        }
    }
}

/// `git <url> <branch>` or `image [<domain>/]<image>`, for log lines: the
/// values come from payloads, so they are shown as [`Change::for_log`]
/// shows them.
impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.for_log() {
            Change::Git(g) => write!(f, "git {} {}", g.url, g.branch),
            Change::Image(i) if i.name.domain.is_empty() => write!(f, "image {}", i.name.image),
            Change::Image(i) => write!(f, "image {}/{}", i.name.domain, i.name.image),
        }
    }
}

/// Whether fluxd takes git URLs `a` and `b` for the same repository.
///
/// fluxd checks a notification against its own `--git-url` by host (port
/// included) and path alone: scheme, user, one leading `/` and one trailing
/// `.git` do not count, so `git@host:org/app.git` and
/// `https://host/org/app.git` are one repository, while
/// `ssh://git@host:2222/org/app.git` is another. A source that knows
/// several URLs for a repository sends one notification for each that this
/// says is different. Paths are compared as written (fluxd decodes `%xx`
/// first), so two spellings of one path count as two: one notification too
/// many, never one too few.
pub fn same_repository(a: &str, b: &str) -> bool {
    match (host_and_path(a), host_and_path(b)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// `urls` in order, without the empty ones and those fluxd takes for a
/// repository already listed (see [`same_repository`]): for a source that
/// knows a repository by several URLs.
pub fn distinct_repositories(urls: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut distinct: Vec<String> = Vec::new();
    for url in urls {
        if !url.is_empty() && !distinct.iter().any(|known| same_repository(known, &url)) {
            distinct.push(url);
        }
    }
    distinct
}

/// Whether a push's new commit id is git's all-zeros id, which says the
/// ref was deleted.
pub fn is_deletion(new_id: &str) -> bool {
    !new_id.is_empty() && new_id.bytes().all(|b| b == b'0')
}

/// The host (with port) and path of a URL (`scheme://[user@]host[:port]/path`)
/// or of an scp-like address (`[user@]host:path`), as fluxd compares them.
fn host_and_path(url: &str) -> Option<(&str, &str)> {
    let (host, path) = if url.contains("://") {
        split_url(url)?
    } else {
        let (authority, path) = url.split_once(':')?;
        (without_user(authority), path)
    };
    if host.is_empty() {
        return None;
    }
    let path = path.strip_prefix('/').unwrap_or(path);
    Some((host, path.strip_suffix(".git").unwrap_or(path)))
}

/// The host (`host[:port]`, without user info) and the path (from its
/// leading `/`, without query or fragment) of an absolute URL,
/// `scheme://[user@]host[:port][/path]`; `None` if it has no scheme or no
/// host.
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let (_scheme, rest) = url.split_once("://")?;
    let rest = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = without_user(authority);
    (!host.is_empty()).then_some((host, path))
}

fn without_user(authority: &str) -> &str {
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_json_matches_fluxd() {
        let c = Change::git("git@github.com:a/b.git", "refs/heads/main");
        assert_eq!(
            String::from_utf8(c.to_json()).unwrap(),
            r#"{"Kind":"git","Source":{"URL":"git@github.com:a/b.git","Branch":"main"}}"#
        );
    }

    #[test]
    fn tags_keep_their_full_ref() {
        let c = Change::git("u", "refs/tags/v1");
        assert_eq!(
            c,
            Change::Git(GitUpdate {
                url: "u".into(),
                branch: "refs/tags/v1".into(),
                told: Told::default(),
            })
        );
    }

    #[test]
    fn image_json_matches_fluxd() {
        let c = Change::image(ImageName {
            domain: "quay.io".into(),
            image: "a/b".into(),
        });
        assert_eq!(
            String::from_utf8(c.to_json()).unwrap(),
            r#"{"Kind":"image","Source":{"Name":{"Domain":"quay.io","Image":"a/b"}}}"#
        );
    }

    #[test]
    fn repositories_are_told_apart_by_host_and_path() {
        let same = [
            ("git@host:org/app.git", "https://host/org/app.git"),
            ("git@host:org/app.git", "ssh://git@host/org/app"),
            (
                "https://user:pw@host/org/app.git?x=1",
                "http://host/org/app#frag",
            ),
            ("git@host:/org/app.git", "git@host:org/app"),
        ];
        for (a, b) in same {
            assert!(same_repository(a, b), "{a} {b}");
            assert!(same_repository(b, a), "{b} {a}");
        }
        let different = [
            // A custom ssh port is part of the host.
            (
                "ssh://git@host:2222/org/app.git",
                "https://host/org/app.git",
            ),
            // An https port too.
            ("git@host:org/app.git", "http://host:3000/org/app.git"),
            // A sub-path (a forge served under /git/).
            ("git@host:org/app.git", "https://host/git/org/app.git"),
            ("git@host:org/app.git", "git@other:org/app.git"),
            ("git@host:org/app.git", "git@host:org/app2.git"),
            // Hosts compare as written.
            ("git@Host:org/app.git", "git@host:org/app.git"),
            // Unparseable: never the same, even as itself.
            ("no-host", "no-host"),
            (":org/app", ":org/app"),
        ];
        for (a, b) in different {
            assert!(!same_repository(a, b), "{a} {b}");
        }
    }

    #[test]
    fn urls_split_into_host_and_path() {
        assert_eq!(split_url("https://r.io/v2/a"), Some(("r.io", "/v2/a")));
        assert_eq!(
            split_url("http://u:p@r.io:5000/v2"),
            Some(("r.io:5000", "/v2"))
        );
        assert_eq!(split_url("http://r.io"), Some(("r.io", "")));
        assert_eq!(split_url("http://r.io?x=/y#z"), Some(("r.io", "")));
        assert_eq!(split_url("http:///v2"), None);
        assert_eq!(split_url("/v2/a/manifests/x"), None);
        assert_eq!(split_url("git@host:org/app.git"), None);
    }

    #[test]
    fn distinct_repositories_keep_the_first_url_of_each() {
        let urls = [
            "git@host:org/app.git",
            "",
            "https://host/org/app.git",
            "ssh://git@host:2222/org/app.git",
            "no-host",
            "no-host",
        ];
        assert_eq!(
            distinct_repositories(urls.map(String::from)),
            [
                "git@host:org/app.git",
                "ssh://git@host:2222/org/app.git",
                "no-host",
                "no-host"
            ]
        );
    }

    #[test]
    fn only_the_all_zeros_id_is_a_deletion() {
        assert!(is_deletion("0000000000000000000000000000000000000000"));
        assert!(!is_deletion(""));
        assert!(!is_deletion("0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c"));
    }

    #[test]
    fn a_change_is_shown_escaped_and_bounded() {
        let change = Change::git(
            format!("git@host:org/{}.git", "r".repeat(2000)),
            "refs/heads/\u{202e}main\u{2028}",
        );
        let shown = change.to_string();
        assert!(shown.chars().all(|c| c.is_ascii() || c == '…'), "{shown}");
        assert!(shown.len() < 2 * LOGGED_VALUE + 16, "{} bytes", shown.len());
        assert!(shown.ends_with(r" \u{202e}main\u{2028}"), "{shown}");
        assert!(shown.contains("rrr…"), "{shown}");
        let image = Change::image(ImageName {
            domain: "registry.example.com:5000".into(),
            image: "team/app".into(),
        });
        assert_eq!(
            image.to_string(),
            "image registry.example.com:5000/team/app"
        );
        // What is sent to fluxd is whole.
        let Change::Git(g) = &change else { panic!() };
        assert_eq!(g.url.len(), 2000 + 17);
    }
}
