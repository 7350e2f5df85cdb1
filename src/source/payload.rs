//! Reading a delivery: the helpers every source uses for its headers and
//! body, each turning what is missing or malformed into a
//! [`HookError::BadPayload`] (a 400) that names it.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use http::HeaderMap;
use serde::Deserialize;

use super::git_changes;
use super::outcome::HookError;
use crate::notification::Change;
use crate::push::Push;

/// A header's value as text, if it is present and valid UTF-8.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The media type of `Content-Type`, lowercased and without parameters:
/// `application/json; charset=UTF-8` is `application/json`.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    header(headers, "content-type").map(|value| essence(value).to_ascii_lowercase())
}

/// A media type without its parameters, case kept:
/// `application/json; charset=UTF-8` is `application/json`.
pub fn essence(media_type: &str) -> &str {
    media_type.split(';').next().unwrap_or("").trim()
}

/// The JSON a delivery carries: the body, or, when the body is
/// `application/x-www-form-urlencoded` (a content type GitHub and the Gitea
/// family offer), its form field `payload`.
pub fn json_or_form<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<Cow<'a, [u8]>, HookError> {
    if media_type(headers).as_deref() != Some("application/x-www-form-urlencoded") {
        return Ok(Cow::Borrowed(body));
    }
    form_urlencoded::parse(body)
        .find(|(name, _)| name == "payload")
        .map(|(_, value)| Cow::Owned(value.into_owned().into_bytes()))
        .ok_or_else(|| HookError::BadPayload("form field payload is missing".into()))
}

/// Deserialize the JSON value at the start of a payload, turning serde's
/// error into a short 400.
///
/// Like Go's `json.Decoder`, which the original used, bytes after the first
/// complete value are ignored: the GCR fixture from the original's own tests
/// has a stray `}` at the end and must be accepted. The signature, where
/// there is one, still covers the whole body.
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, HookError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    T::deserialize(&mut de).map_err(|e| HookError::BadPayload(crate::printable(&e.to_string())))
}

/// A field the payload must have: `None` or empty becomes a 400 naming it.
pub fn required(value: Option<String>, field: &str) -> Result<String, HookError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(HookError::BadPayload(format!("{field} is missing"))),
    }
}

/// The distinct refs of a delivery that lists several, counted as they
/// are read, so that what a push tells other targets ([`crate::push`]) is
/// built once per ref, and for no more than [`super::MAX_CHANGES`] refs
/// whatever the payload lists.
#[derive(Debug, Default)]
pub struct FirstRefs(HashSet<String>);

impl FirstRefs {
    /// Whether `name` is read for the first time; refused once more than
    /// [`super::MAX_CHANGES`] distinct refs are.
    pub fn first(&mut self, name: &str) -> Result<bool, HookError> {
        if self.0.contains(name) {
            return Ok(false);
        }
        if self.0.len() >= super::MAX_CHANGES {
            return Err(HookError::TooManyChanges(super::MAX_CHANGES));
        }
        Ok(self.0.insert(name.to_string()))
    }
}

/// A field read only for what a push tells other targets ([`crate::push`]),
/// as `#[serde(default, deserialize_with = "lenient")]`: `None` when it is
/// absent or not of its type, so that it never refuses a delivery that
/// fluxd's fields make good.
pub fn lenient<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

/// A commit as GitHub, GitLab and the Gitea family list them in a push,
/// for the files it changed (each list may be absent or null).
#[derive(Deserialize)]
pub struct Commit {
    #[serde(default, deserialize_with = "lenient")]
    added: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient")]
    modified: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient")]
    removed: Option<Vec<String>>,
}

impl Commit {
    /// Its files: added, modified, removed.
    pub fn files(self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let list = |l: Option<Vec<String>>| l.unwrap_or_default();
        (list(self.added), list(self.modified), list(self.removed))
    }
}

/// [`git_changes`] for pushes that each told more ([`Push`]): `pushes`
/// pairs the ref as fluxd is given it (as [`git_changes`] takes it) with
/// the push. The changes of each ref, in order, each with the first push
/// of its ref.
pub fn told_changes(
    urls: &[String],
    pushes: Vec<(String, Push)>,
) -> Result<Vec<Change>, HookError> {
    let changes = git_changes(urls, pushes.iter().map(|(r, _)| r.as_str()))?;
    let branch = |r: &str| r.strip_prefix("refs/heads/").unwrap_or(r).to_string();
    let pushes: Vec<(String, Arc<Push>)> = pushes
        .into_iter()
        .map(|(r, p)| (branch(&r), Arc::new(p)))
        .collect();
    let told = |change: Change| {
        let first = match &change {
            Change::Git(g) => pushes.iter().find(|(b, _)| *b == g.branch),
            Change::Image(_) => None,
        };
        match first {
            Some((_, push)) => change.told(push),
            None => change,
        }
    };
    Ok(changes.into_iter().map(told).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::testing;

    #[test]
    fn media_type_ignores_parameters_and_case() {
        let h = testing::headers(&[("Content-Type", "Application/JSON; charset=UTF-8")]);
        assert_eq!(media_type(&h).as_deref(), Some("application/json"));
        assert_eq!(media_type(&HeaderMap::new()), None);
        assert_eq!(essence(" text/Plain ;q=1"), "text/Plain");
    }
}
