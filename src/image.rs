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

/// Parse `[domain/]path[:tag]` into fluxd's (domain, image), dropping the tag.
///
/// - one path element: no domain (`nginx`);
/// - two: the first is a domain only if it looks like one (`localhost`, or
///   dotted labels, with an optional `:port`), so `team/app` has none;
/// - three or more: the first is always the domain.
pub fn parse(reference: &str) -> Result<ImageName, ImageError> {
    if reference.is_empty() {
        return Err(ImageError::Empty);
    }
    let malformed = || ImageError::Malformed(crate::printable(reference));
    if reference.starts_with('/') || reference.ends_with('/') {
        return Err(malformed());
    }
    let elements: Vec<&str> = reference.split('/').collect();
    let (domain, path) = match elements.as_slice() {
        [_] => ("", reference),
        [first, rest] if looks_like_domain(first) => (*first, *rest),
        [_, _] => ("", reference),
        [first, ..] => (*first, &reference[first.len() + 1..]),
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
