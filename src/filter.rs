//! Which of an endpoint's changes are sent: all, or those its `filter:`
//! block's glob lists name.
//!
//! ```yaml
//! endpoints:
//! - source: GitHub
//!   keyPath: github.key
//!   filter:
//!     branches: ["main", "release/*"]
//!     images: ["registry.example.com/team/*"]
//! ```
//!
//! `*` and `?` stay within one `/`-separated element, `**` crosses them (see
//! [`crate::globs`]); each list is compiled once per table and matches in
//! linear time. An image filter matches every spelling of a Docker Hub name.

use std::fmt;

use serde::Deserialize;

use crate::globs::GlobList;
use crate::notification::{Change, ImageName};

/// An endpoint's `filter:` block, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Branch globs: git changes on other branches are not sent.
    pub branches: Option<Vec<String>>,
    /// Image globs: image changes for other images are not sent.
    pub images: Option<Vec<String>>,
}

/// Which changes an endpoint sends on: all, or those a glob list names.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    branches: Option<Globs>,
    images: Option<Globs>,
}

#[derive(Debug, Clone)]
struct Globs {
    written: Vec<String>,
    /// Compiled once, when the table is built.
    compiled: GlobList,
}

/// Longest name a filter looks at: the longest branch or image name a
/// source relays ([`crate::source::MAX_FIELD`]), so a filter's work per
/// change is bounded whatever a delivery holds. A longer name is never
/// admitted (it cannot reach fluxd anyway).
pub const MAX_FILTERED: usize = crate::source::MAX_FIELD;

impl PartialEq for Filter {
    fn eq(&self, other: &Filter) -> bool {
        let written = |g: &Option<Globs>| g.as_ref().map(|g| g.written.clone());
        written(&self.branches) == written(&other.branches)
            && written(&self.images) == written(&other.images)
    }
}

impl Eq for Filter {}

/// What is wrong with a filter: the field under `filter` and the message.
pub type FilterProblem = (&'static str, String);

impl Filter {
    /// Build a filter; `git` and `image` say which kinds of change the
    /// endpoint's source sends, so a filter on the other kind is refused.
    pub fn build(
        config: &FilterConfig,
        source: &str,
        git: bool,
        image: bool,
    ) -> Result<Filter, Vec<FilterProblem>> {
        let mut problems = Vec::new();
        let mut globs = |field: &'static str, list: &Option<Vec<String>>, allowed: bool| {
            let list = list.as_ref()?;
            if !allowed {
                let kind = if field == "branches" { "git" } else { "image" };
                problems.push((
                    field,
                    format!("{source} sends no {kind} changes, so there is nothing to filter by {field}; remove it"),
                ));
                return None;
            }
            if list.is_empty() {
                problems.push((
                    field,
                    "is empty, so nothing would ever be sent; remove it to send everything"
                        .to_string(),
                ));
                return None;
            }
            match GlobList::new(list.iter().map(String::as_str)) {
                Ok(compiled) => Some(Globs {
                    written: list.clone(),
                    compiled,
                }),
                Err(errors) => {
                    for (written, e) in errors {
                        problems.push((field, format!("{written:?} is not a glob: {}", e.msg)));
                    }
                    None
                }
            }
        };
        let filter = Filter {
            branches: globs("branches", &config.branches, git),
            images: globs("images", &config.images, image),
        };
        if problems.is_empty() {
            Ok(filter)
        } else {
            Err(problems)
        }
    }

    /// Whether the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.branches.is_none() && self.images.is_none()
    }

    /// Whether `change` is sent.
    pub fn admits(&self, change: &Change) -> bool {
        match change {
            Change::Git(git) => self
                .branches
                .as_ref()
                .is_none_or(|g| g.matches(&git.branch)),
            Change::Image(image) => self
                .images
                .as_ref()
                .is_none_or(|g| spellings(&image.name).iter().any(|s| g.matches(s))),
        }
    }
}

impl Globs {
    /// In time linear in `name`, which is at most [`MAX_FILTERED`] bytes:
    /// cheap enough for the runtime's threads, like parsing the body.
    fn matches(&self, name: &str) -> bool {
        name.len() <= MAX_FILTERED && self.compiled.matches(name)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(g) = &self.branches {
            parts.push(format!("branches {}", g.written.join(" ")));
        }
        if let Some(g) = &self.images {
            parts.push(format!("images {}", g.written.join(" ")));
        }
        if parts.is_empty() {
            f.write_str("everything")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// The ways an image name is written that mean the same image: as fluxd
/// names it, and fully qualified. Docker Hub's `library/alpine` is also
/// `alpine` and `docker.io/library/alpine`.
fn spellings(name: &ImageName) -> Vec<String> {
    let docker_hub = matches!(
        name.domain.as_str(),
        "" | "docker.io" | "index.docker.io" | "registry-1.docker.io"
    );
    if !docker_hub {
        return vec![format!("{}/{}", name.domain, name.image)];
    }
    let path = if name.image.contains('/') {
        name.image.clone()
    } else {
        format!("library/{}", name.image)
    };
    let mut all = vec![path.clone(), format!("docker.io/{path}")];
    if let Some(short) = path.strip_prefix("library/") {
        all.push(short.to_string());
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(branches: &[&str], images: &[&str]) -> Filter {
        let list = |l: &[&str]| (!l.is_empty()).then(|| l.iter().map(|s| s.to_string()).collect());
        let config = FilterConfig {
            branches: list(branches),
            images: list(images),
        };
        Filter::build(&config, "Test", true, true).unwrap()
    }

    fn image(name: &str) -> Change {
        Change::image(crate::image::parse(name).unwrap())
    }

    #[test]
    fn a_star_stays_within_a_path_element_and_two_cross_them() {
        let f = filter(&["main", "release/*", "team/**"], &[]);
        for (branch, sent) in [
            ("main", true),
            ("mainline", false),
            ("release/1.2", true),
            ("release/1.2/hotfix", false),
            ("team/a/b/c", true),
            ("refs/tags/v1", false),
        ] {
            assert_eq!(f.admits(&Change::git("u", branch)), sent, "{branch}");
        }
        // Image changes pass a branch-only filter.
        assert!(f.admits(&image("quay.io/org/app")));
    }

    /// Names crafted against a backtracking matcher: `v` then dots, ending
    /// where no star may go. `glob` 0.3 tried every split of the dots among
    /// the stars (cubic for `v*.*.*`: about 0.2 s a name, a minute for one
    /// delivery's 256; far longer with more stars). Linear now, so this
    /// runs in a moment; the figures are in `benches/filter.rs`.
    #[test]
    fn names_crafted_against_backtracking_are_judged_at_once() {
        let f = filter(&["v*.*.*", "v*.*.*.*.*.*"], &[]);
        let dots = ".".repeat(MAX_FILTERED - 8);
        for i in 0..256 {
            let crafted = format!("v{dots}/{i}");
            assert!(crafted.len() <= MAX_FILTERED);
            assert!(!f.admits(&Change::git("u", &crafted)), "{i}");
        }
        // The same shape without the `/` is a release tag: admitted.
        assert!(f.admits(&Change::git("u", &format!("v{dots}"))));
        assert!(f.admits(&Change::git("u", "v1.2.3")));
    }

    #[test]
    fn a_name_past_the_bound_is_never_admitted() {
        let f = filter(&["**"], &["**"]);
        let longest = "a".repeat(MAX_FILTERED);
        assert!(f.admits(&Change::git("u", &longest)));
        let longer = "a".repeat(MAX_FILTERED + 1);
        assert!(!f.admits(&Change::git("u", &longer)));
        // No filter, no bound here (sources bound what they relay).
        assert!(Filter::default().admits(&Change::git("u", &longer)));
    }

    #[test]
    fn an_image_filter_matches_every_spelling_of_the_name() {
        let f = filter(&[], &["docker.io/org/*", "alpine", "quay.io/team/app"]);
        for (name, sent) in [
            ("org/app", true),
            ("org/app/sub", false),
            ("library/alpine", true),
            ("alpine", true),
            ("docker.io/library/alpine", true),
            ("quay.io/team/app", true),
            ("quay.io/team/other", false),
            ("other/alpine", false),
        ] {
            assert_eq!(f.admits(&image(name)), sent, "{name}");
        }
        assert!(f.admits(&Change::git("u", "any")));
        let qualified = filter(&[], &["docker.io/library/alpine"]);
        assert!(qualified.admits(&image("alpine")));
    }

    #[test]
    fn filters_on_a_kind_the_source_does_not_send_are_refused() {
        let config = FilterConfig {
            branches: Some(vec!["main".into()]),
            images: Some(vec!["[".into()]),
        };
        let problems = Filter::build(&config, "DockerHub", false, true).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!(problems[0].0, "branches");
        assert!(
            problems[0].1.contains("DockerHub sends no git changes"),
            "{}",
            problems[0].1
        );
        assert_eq!(problems[1].0, "images");
        assert!(problems[1].1.contains("is not a glob"), "{}", problems[1].1);
        let empty = FilterConfig {
            branches: Some(vec![]),
            images: None,
        };
        assert!(Filter::build(&empty, "GitHub", true, false).is_err());
    }
}
