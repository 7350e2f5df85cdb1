//! Image references parsed the way fluxd parses them (`image.ParseRef`).
//!
//! The result must match fluxd's exactly: fluxd compares the notification's
//! name with the images it tracks, so a different split means a missed update.

use crate::notification::ImageName;

/// Why an image reference was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Nothing to parse.
    #[error("the image name is empty")]
    Empty,
    /// Leading or trailing `/`, or a tag that is empty or has extra colons.
    #[error("the image name \"{0}\" is malformed")]
    Malformed(String),
}

/// Parse `[domain/]path[:tag][@digest]` into fluxd's (domain, image),
/// dropping the tag and the digest.
///
/// - one path element: no domain (`nginx`);
/// - two: the first is a domain only if it looks like one (`localhost`, or
///   dotted labels, with an optional `:port`), so `team/app` has none;
/// - three or more: the first is always the domain.
///
/// fluxd's own parser knows no digests: given `app@sha256:…` it would name
/// the image `app@sha256`, which matches nothing, so a push by digest would
/// be lost (the Go original relayed such names). Everything from the first
/// `@` is taken off first and never read: fluxd is told of the repository,
/// so a digest of any shape (Artifact Registry's documentation abbreviates
/// it, `@sha256:6ec128e26cd5...`) is no reason to refuse a push.
pub fn parse(reference: &str) -> Result<ImageName, ImageError> {
    if reference.is_empty() {
        return Err(ImageError::Empty);
    }
    let malformed = || ImageError::Malformed(crate::printable(reference));
    let name = reference
        .split_once('@')
        .map_or(reference, |(name, _digest)| name);
    if name.is_empty() || name.starts_with('/') || name.ends_with('/') {
        return Err(malformed());
    }
    let elements: Vec<&str> = name.split('/').collect();
    let (domain, path) = match elements.as_slice() {
        [_] => ("", name),
        [first, rest] if looks_like_domain(first) => (*first, *rest),
        [_, _] => ("", name),
        [first, ..] => (*first, &name[first.len() + 1..]),
        [] => unreachable!("split always yields at least one element"),
    };
    let image = match path.split(':').collect::<Vec<_>>().as_slice() {
        [image] => *image,
        [image, tag] if !image.is_empty() && !tag.is_empty() => *image,
        _ => return Err(malformed()),
    };
    // Stricter than fluxd, which would accept `team/:1` as the image `team/`:
    // a name with an empty path element can never match a real image, so
    // refuse it rather than ask fluxd to look for it (found by fuzzing).
    if image.split('/').any(str::is_empty) {
        return Err(malformed());
    }
    Ok(ImageName {
        domain: domain.to_string(),
        image: image.to_string(),
    })
}

/// The image `repository` in the registry at `host` (`host[:port]`), for
/// registries that report the two apart (ACR, distribution). Neither may be
/// empty; the host must be a bare host and port, and the repository a bare
/// repository name (no tag, no digest), so that nothing in either is
/// silently dropped or taken for something else.
pub fn in_registry(host: &str, repository: &str) -> Result<ImageName, ImageError> {
    let reference = format!("{host}/{repository}");
    let bad_host = host.is_empty()
        || host
            .bytes()
            .any(|b| matches!(b, b'/' | b'@') || b.is_ascii_whitespace() || b.is_ascii_control());
    let bad_repository = repository.is_empty() || repository.contains([':', '@']);
    if bad_host || bad_repository {
        return Err(ImageError::Malformed(crate::printable(&reference)));
    }
    parse(&reference)
}

/// `localhost` or `label(.label)+`, then an optional `:digits`.
fn looks_like_domain(s: &str) -> bool {
    let host = match s.split_once(':') {
        Some((host, port)) => {
            if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            host
        }
        None => s,
    };
    if host == "localhost" {
        return true;
    }
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2 && labels.iter().all(|l| is_label(l))
}

/// A DNS label: alphanumerics, with inner hyphens.
fn is_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> (String, String) {
        let n = parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (n.domain, n.image)
    }

    #[test]
    fn splits_like_fluxd() {
        let cases = [
            ("nginx", "", "nginx"),
            ("nginx:1.25", "", "nginx"),
            ("library/nginx", "", "library/nginx"),
            ("team/app:1", "", "team/app"),
            ("localhost/app", "localhost", "app"),
            ("localhost:5000/app", "localhost:5000", "app"),
            ("quay.io/hiddeco/foo", "quay.io", "hiddeco/foo"),
            ("registry.example.com/app", "registry.example.com", "app"),
            (
                "registry.example.com:5000/team/app:1",
                "registry.example.com:5000",
                "team/app",
            ),
            (
                "us.gcr.io/am/am.kebab.api:test",
                "us.gcr.io",
                "am/am.kebab.api",
            ),
            ("my-registry/app", "", "my-registry/app"),
            ("a/b/c/d", "a", "b/c/d"),
        ];
        for (input, domain, image) in cases {
            assert_eq!(
                ok(input),
                (domain.to_string(), image.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn refuses_what_fluxd_refuses() {
        assert_eq!(parse(""), Err(ImageError::Empty));
        for bad in [
            "/app",
            "app/",
            "app:",
            ":tag",
            "a:b:c",
            "quay.io/a/b:1:2",
            // Empty path elements once the tag is gone; the first is the
            // fuzzer's crash input.
            "U/:\0",
            "team/:1",
            "a//b",
            "quay.io//b",
        ] {
            assert!(matches!(parse(bad), Err(ImageError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn digests_are_dropped_with_the_tag() {
        let digest = "sha256:e4355b66995c96b4b468159fc5c7e3540fcef961189ca13fee877798649f531a";
        for (input, domain, image) in [
            ("alpine", "", "alpine"),
            ("library/alpine", "", "library/alpine"),
            (
                "demo.goharbor.io/test123/alpine",
                "demo.goharbor.io",
                "test123/alpine",
            ),
            ("localhost:5000/app", "localhost:5000", "app"),
            (
                "registry.example.com:5000/team/app:1.2",
                "registry.example.com:5000",
                "team/app",
            ),
        ] {
            let expected = (domain.to_string(), image.to_string());
            assert_eq!(ok(&format!("{input}@{digest}")), expected, "{input}");
        }
        assert_eq!(
            ok("us-central1-docker.pkg.dev/p/r/app@sha512:00ff"),
            (
                "us-central1-docker.pkg.dev".to_string(),
                "p/r/app".to_string()
            )
        );
    }

    #[test]
    fn a_host_and_a_repository_make_an_image() {
        for (host, repository, domain, image) in [
            (
                "myregistry.azurecr.io",
                "hello-world",
                "myregistry.azurecr.io",
                "hello-world",
            ),
            (
                "registry.example.com:5000",
                "team/app",
                "registry.example.com:5000",
                "team/app",
            ),
            ("localhost:5000", "app", "localhost:5000", "app"),
            ("10.0.0.7:5000", "a/b/c", "10.0.0.7:5000", "a/b/c"),
        ] {
            let name = in_registry(host, repository).unwrap();
            assert_eq!((name.domain.as_str(), name.image.as_str()), (domain, image));
        }
        for (host, repository) in [
            ("", "app"),
            ("r.io", ""),
            ("r.io/x", "app"),
            ("user@r.io", "app"),
            ("r .io", "app"),
            ("r.io", "app:1"),
            ("r.io", "app@sha256:00"),
            ("r.io", "/app"),
            ("r.io", "app/"),
            ("r.io", "a//b"),
        ] {
            assert!(
                matches!(in_registry(host, repository), Err(ImageError::Malformed(_))),
                "{host:?} {repository:?}"
            );
        }
    }

    /// The digest is dropped unread, whatever its shape; the name before
    /// it must still be one.
    #[test]
    fn a_digest_of_any_shape_is_dropped_unread() {
        for junk in [
            "app@",
            "app@sha256",
            "app@sha256:",
            "app@:abc",
            "app@SHA256:abc",
            "app@sha256:ab/c",
            "app@sha256:abc@sha256:abc",
            "app@sha256:6ec128e26cd5...",
        ] {
            assert_eq!(ok(junk), (String::new(), "app".to_string()), "{junk}");
        }
        for bad in [
            "@sha256:abc",
            "/app@sha256:abc",
            "app/@sha256:abc",
            "app:@sha256:abc",
            "a//b@sha256:abc",
        ] {
            assert!(matches!(parse(bad), Err(ImageError::Malformed(_))), "{bad}");
        }
    }

    #[test]
    fn domain_shapes() {
        assert!(looks_like_domain("a.b"));
        assert!(looks_like_domain("a-1.b:443"));
        assert!(!looks_like_domain("a.b:"));
        assert!(!looks_like_domain("a.b:x"));
        assert!(!looks_like_domain("-a.b"));
        assert!(!looks_like_domain("a..b"));
        assert!(!looks_like_domain("team"));
    }
}
