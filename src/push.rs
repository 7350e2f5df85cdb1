//! What a git push told beyond fluxd's notification: the [`Push`] a git
//! source reads from its payload, kept on each git [`Change`] it returns
//! ([`crate::notification::GitUpdate::told`]) for the targets that need more
//! than a URL and a branch (Argo CD: the repository's web URL, its default
//! branch, the commits before and after, the files changed).
//!
//! A source fills in what its payload says and leaves the rest out: a
//! target never sees an invented value. fluxd's notification is made from
//! the URL and branch alone, so what is told here never changes what fluxd
//! is sent, how filters match or how a delivery's changes are de-duplicated.
//!
//! [`Change`]: crate::notification::Change

use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One ref a push updated, as its provider's payload describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Push {
    /// The full ref: `refs/heads/<branch>` or `refs/tags/<tag>`.
    pub git_ref: String,
    /// The repository, shared by the pushes of one delivery: a payload
    /// listing many refs holds its URLs once.
    pub repository: Arc<Repository>,
    /// The commit the ref pointed to before the push.
    pub before: Option<String>,
    /// The commit it points to after.
    pub after: Option<String>,
    /// The files the push's commits changed, where the payload lists them
    /// all; `None` where it lists none, or only some (a payload that says
    /// it left commits out).
    pub files: Option<Files>,
}

/// The repository a push went to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Repository {
    /// The clone URLs the payload names, https first where it names one.
    pub clone_urls: Vec<String>,
    /// The repository's web page, where the payload names one that is the
    /// repository's address (GitHub's `html_url`, GitLab's `web_url`), not
    /// a page within it (Bitbucket Server's browse page).
    pub web_url: Option<String>,
    /// The repository's default branch, without `refs/heads/`.
    pub default_branch: Option<String>,
}

impl Push {
    /// A push of `git_ref`: `refs/…` as it is, anything else taken for a
    /// branch name.
    pub fn of_ref(git_ref: &str) -> Push {
        let git_ref = if git_ref.starts_with("refs/") {
            git_ref.to_string()
        } else {
            format!("refs/heads/{git_ref}")
        };
        Push {
            git_ref,
            ..Push::default()
        }
    }

    /// This push, to `repository`.
    pub fn to(self, repository: &Arc<Repository>) -> Push {
        Push {
            repository: repository.clone(),
            ..self
        }
    }

    /// Whether it is a tag's ref.
    pub fn is_tag(&self) -> bool {
        self.git_ref.starts_with("refs/tags/")
    }
}

impl Repository {
    /// `url`, or nothing for an empty one, added to the clone URLs: first
    /// if it is an http(s) URL, so that https leads.
    pub fn with_clone_url(mut self, url: Option<&str>) -> Repository {
        match url {
            Some(u) if u.is_empty() || self.clone_urls.iter().any(|c| c == u) => {}
            Some(u) if u.starts_with("http://") || u.starts_with("https://") => {
                let at = self
                    .clone_urls
                    .iter()
                    .take_while(|c| c.starts_with("http"))
                    .count();
                self.clone_urls.insert(at, u.to_string());
            }
            Some(u) => self.clone_urls.push(u.to_string()),
            None => {}
        }
        self
    }
}

/// Most bytes of file names a push keeps. Argo CD reads them to skip
/// Applications none of whose files changed; without them it refreshes
/// every Application of the repository, which is never wrong. A longer
/// list is left out, so that what the queue holds per push stays small
/// whatever the payload listed.
pub const MAX_FILES_BYTES: usize = 16 * 1024;

/// Files changed by a push's commits, each list in the order the commits
/// name them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Files {
    /// Added.
    pub added: Vec<String>,
    /// Modified.
    pub modified: Vec<String>,
    /// Removed.
    pub removed: Vec<String>,
}

impl Files {
    /// The files of `commits`, each as `(added, modified, removed)`;
    /// `None` when there are no commits, when `total` says there were
    /// more than the payload lists, or when their names are more than
    /// [`MAX_FILES_BYTES`].
    pub fn of_commits<I>(commits: I, total: Option<u64>) -> Option<Files>
    where
        I: IntoIterator<Item = (Vec<String>, Vec<String>, Vec<String>)>,
    {
        let mut files = Files::default();
        let mut listed = 0u64;
        for (added, modified, removed) in commits {
            listed += 1;
            files.added.extend(added);
            files.modified.extend(modified);
            files.removed.extend(removed);
        }
        if listed == 0 || total.is_some_and(|total| total > listed) {
            return None;
        }
        let bytes: usize = files.all().map(str::len).sum();
        (bytes <= MAX_FILES_BYTES).then_some(files)
    }

    /// Every file, added, modified then removed: what Argo CD reads.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        let lists = [&self.added, &self.modified, &self.removed];
        lists.into_iter().flatten().map(String::as_str)
    }
}

/// What a push told, kept on a git change: not part of the change's
/// identity. Two changes that name the same repository URL and branch are
/// one change for fluxd, for filters and for de-duplication, whatever they
/// were told, so every `Told` equals every other and hashes to nothing.
#[derive(Debug, Clone, Default)]
pub struct Told(Option<Arc<Push>>);

impl Told {
    /// Told `push`.
    pub fn push(push: Arc<Push>) -> Told {
        Told(Some(push))
    }

    /// The push, if its source told one.
    pub fn get(&self) -> Option<&Arc<Push>> {
        self.0.as_ref()
    }
}

impl PartialEq for Told {
    fn eq(&self, _: &Told) -> bool {
        true
    }
}

impl Eq for Told {}

impl Hash for Told {
    fn hash<H: Hasher>(&self, _: &mut H) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ref_is_kept_whole_or_taken_for_a_branch() {
        assert_eq!(Push::of_ref("main").git_ref, "refs/heads/main");
        assert_eq!(Push::of_ref("refs/tags/v1").git_ref, "refs/tags/v1");
        assert!(Push::of_ref("refs/tags/v1").is_tag());
        assert!(!Push::of_ref("refs/heads/tags").is_tag());
    }

    #[test]
    fn https_clone_urls_lead() {
        let push = Repository::default()
            .with_clone_url(Some("git@h:a/b.git"))
            .with_clone_url(Some("https://h/a/b.git"))
            .with_clone_url(Some(""))
            .with_clone_url(None)
            .with_clone_url(Some("git@h:a/b.git"));
        assert_eq!(push.clone_urls, ["https://h/a/b.git", "git@h:a/b.git"]);
    }

    #[test]
    fn files_are_left_out_when_commits_are() {
        let commit = |f: &str| (vec![], vec![f.to_string()], vec![]);
        let two = || [commit("a"), commit("b")];
        let files = Files::of_commits(two(), None).unwrap();
        assert_eq!(files.all().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(Files::of_commits(two(), Some(2)), Some(files));
        assert_eq!(Files::of_commits(two(), Some(3)), None);
        assert_eq!(Files::of_commits([], None), None);
        // Too many names to keep: none are.
        let half = "f".repeat(MAX_FILES_BYTES / 2);
        let at_cap = [commit(&half), commit(&half)];
        assert!(Files::of_commits(at_cap, None).is_some());
        let over = [commit(&half), commit(&half), commit("x")];
        assert_eq!(Files::of_commits(over, None), None);
    }

    #[test]
    fn what_is_told_is_not_part_of_identity() {
        use std::collections::hash_map::DefaultHasher;
        let told = Told::push(Arc::new(Push::of_ref("main")));
        assert_eq!(told, Told::default());
        let hash = |t: &Told| {
            let mut h = DefaultHasher::new();
            t.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&told), hash(&Told::default()));
        assert!(told.get().is_some() && Told::default().get().is_none());
    }
}
