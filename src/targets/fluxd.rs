//! Flux v1's fluxd: `POST {api}/v11/notify` with one JSON [`Change`] per
//! change (its `v9.Change`, byte for byte what the Go flux-recv sent).
//!
//! ```yaml
//! api: http://localhost:3030/api/flux        # every endpoint's default
//! endpoints:
//! - source: GitHub
//!   keyPath: github.key
//!   api:                                    # one URL or a list
//!   - http://flux-team-a.team-a:3030/api/flux
//!   - http://flux-team-b.team-b:3030/api/flux
//! ```
//!
//! An endpoint's own `api` wins; without one, `--api` (`FLUXRECV_API`) if
//! given, else the config's top-level `api`, else fluxd in the same pod.
//! fluxd serves its API in plain HTTP inside the cluster and has no
//! authentication, so anything but `http://host[:port]/path` is refused.
//!
//! fluxd's answers: 2xx took it; 408, 429 and 5xx may succeed later (after
//! its `Retry-After`, if it sends one); a redirect or another 4xx never
//! will. Its metric label and log name is the notify URL.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;

use super::{
    Answer, Body, Changes, Configured, Headers, Key, Outgoing, Target, TargetKind, VerifiedHook,
};
use crate::notification::Change;

/// Where fluxd's API is when nothing says: fluxd in the same pod.
pub const DEFAULT_API: &str = "http://localhost:3030/api/flux";

/// The kind's name.
pub const NAME: &str = "fluxd";

/// One fluxd API, as a table holds it: worked out once per table build, so
/// a request only shares these strings and never formats a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fluxd {
    /// The base URL, without a trailing `/`: what the config says, and
    /// what `endpoints` and the hook's log line show.
    base: Arc<str>,
    /// [`notify_url`] of `base`: where notifications are POSTed, and the
    /// label of its metrics and the queue's log lines.
    key: Key,
}

impl Fluxd {
    /// The API whose base URL is `base` (already [checked](check_api)).
    pub fn new(base: &str) -> Fluxd {
        Fluxd {
            base: Arc::from(base),
            key: Key::new(NAME, Arc::from(notify_url(base))),
        }
    }
}

/// The request for one change: `change` as fluxd is sent it.
pub fn notification(change: &Change) -> Outgoing {
    Outgoing {
        body: Body {
            bytes: Bytes::from(change.to_json()),
            content_type: Some(HeaderValue::from_static("application/json")),
        },
        changes: Changes::of(std::slice::from_ref(change)),
    }
}

impl TargetKind for Fluxd {
    fn key(&self) -> &Key {
        &self.key
    }

    fn label(&self) -> &Arc<str> {
        self.key.url()
    }

    fn name(&self) -> &'static str {
        NAME
    }

    fn shown(&self) -> &str {
        &self.base
    }

    fn items(&self, hook: &VerifiedHook) -> Vec<Outgoing> {
        hook.changes.iter().map(notification).collect()
    }

    fn headers(&self, body: &Body) -> Headers {
        body.content_type
            .iter()
            .map(|t| (CONTENT_TYPE, t.clone()))
            .collect()
    }

    fn read(&self, status: StatusCode, headers: &HeaderMap) -> Answer {
        let said = || format!("fluxd answered {status}");
        match status.as_u16() {
            200..=299 => Answer::Accepted,
            300..=399 => Answer::redirect(said(), "the api URL", headers),
            408 | 429 | 500..=599 => Answer::retry_after(said(), headers),
            _ => Answer::Refused(said()),
        }
    }

    /// An API whose path does not end in `/api/flux`: fluxd then answers
    /// every notification with 404, the most common mistake.
    fn warnings(&self) -> Vec<String> {
        if looks_like_fluxd(&self.base) {
            return Vec::new();
        }
        vec![format!(
            "{:?} does not end in /api/flux, where fluxd serves its API; fluxd will answer \
             every notification with 404 (e.g. http://localhost:3030/api/flux)",
            &*self.base
        )]
    }
}

/// `api:` on an endpoint: one URL or a list.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ApiConfig {
    /// `api: http://…`
    One(String),
    /// `api: [http://…, http://…]`
    Many(Vec<String>),
}

impl ApiConfig {
    /// The URLs, in order.
    pub fn urls(&self) -> &[String] {
        match self {
            ApiConfig::One(url) => std::slice::from_ref(url),
            ApiConfig::Many(urls) => urls,
        }
    }

    /// Each URL with the field that names it under `endpoint`
    /// (`endpoints[3]`): `endpoints[3].api` for one URL, `endpoints[3].api[1]`
    /// in a list. Every problem about an endpoint's APIs is named this way.
    pub fn fields<'a>(&'a self, endpoint: &'a str) -> impl Iterator<Item = (String, &'a str)> {
        self.urls().iter().enumerate().map(move |(i, url)| {
            let field = match self {
                ApiConfig::One(_) => format!("{endpoint}.api"),
                ApiConfig::Many(_) => format!("{endpoint}.api[{i}]"),
            };
            (field, url.as_str())
        })
    }
}

/// Check an API base URL and return it without a trailing `/`. fluxd serves
/// its API in plain HTTP inside the cluster and has no authentication, so
/// anything but `http://host[:port]/path` is a mistake.
pub fn check_api(api: &str) -> Result<String, String> {
    let example = format!("e.g. {DEFAULT_API}");
    let shown = redacted(api);
    let api_shown = &shown;
    let uri: http::Uri = api
        .parse()
        .map_err(|e| format!("{api_shown:?} is not a URL ({e}); give fluxd's API, {example}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "{api_shown:?} is not an http:// URL; fluxd's API speaks plain HTTP, {example}"
        ));
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("{api_shown:?} has no host, {example}"));
    };
    if authority.as_str().contains('@') {
        return Err(format!(
            "{api_shown:?} has a user name or password, which fluxd's API does not take \
             (it has no authentication); remove it, {example}"
        ));
    }
    if authority.host().is_empty() {
        return Err(format!("{api_shown:?} has no host, {example}"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{api_shown:?} has a query string; give the API's base URL, {example}"
        ));
    }
    Ok(api.trim_end_matches('/').to_string())
}

/// `api` for a message: a user name or password in it shown as `***`.
fn redacted(api: &str) -> String {
    let (scheme, rest) = api.split_once("://").unwrap_or(("", api));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let shown = match rest[..end].rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[end..]),
        None => api.to_string(),
    };
    crate::printable(&shown)
}

/// `POST` here to notify the fluxd whose API is at `api`.
pub fn notify_url(api: &str) -> String {
    format!("{api}/v11/notify")
}

/// Whether an API's path looks like fluxd's: every hook gets 404 from fluxd
/// otherwise, the most common mistake.
pub fn looks_like_fluxd(api: &str) -> bool {
    api.trim_end_matches('/').ends_with("/api/flux")
}

/// The fluxd APIs an endpoint's `api:` names, each checked and with the
/// field that names it (under `field`, the endpoint's: `endpoints[3]`);
/// and what is wrong, by field. An empty list is wrong: without `api:` the
/// endpoint's changes go to the table's default.
pub fn configured(field: &str, api: &ApiConfig) -> Configured {
    let mut found = Configured::default();
    if api.urls().is_empty() {
        let message = "is an empty list; name at least one fluxd API, or remove it to use the \
                       top-level api";
        found.problem(format!("{field}.api"), message.to_string());
    }
    for (at, url) in api.fields(field) {
        match check_api(url) {
            Ok(url) if found.targets.iter().any(|(_, t)| t.to_string() == url) => {
                found.problem(at, "is listed twice".to_string())
            }
            Ok(url) => found.targets.push((at, Target::from(Fluxd::new(&url)))),
            Err(message) => found.problem(at, message),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_api_list_names_each_url_by_its_index() {
        let one = ApiConfig::One("http://a/api/flux".into());
        let many = ApiConfig::Many(vec!["http://a/api/flux".into()]);
        let fields = |api: &ApiConfig| -> Vec<(String, String)> {
            api.fields("endpoints[2]")
                .map(|(at, url)| (at, url.to_string()))
                .collect()
        };
        let a = "http://a/api/flux".to_string();
        assert_eq!(fields(&one), [("endpoints[2].api".to_string(), a.clone())]);
        // A list of one is still a list.
        assert_eq!(fields(&many), [("endpoints[2].api[0]".to_string(), a)]);
    }

    #[test]
    fn apis_must_be_plain_http_without_credentials() {
        assert_eq!(
            check_api("http://fluxd:3030/api/flux/").unwrap(),
            "http://fluxd:3030/api/flux"
        );
        for bad in [
            "https://fluxd/api/flux",
            "fluxd:3030",
            "http:///x",
            "http://user:secret@fluxd:3030/api/flux",
            "http://user@fluxd/api/flux",
            "https://user:secret@fluxd/api/flux",
            "http://fluxd/api/flux?x=1",
            "",
        ] {
            let e = check_api(bad).unwrap_err();
            assert!(!e.contains("secret") && !e.contains("user@"), "{e}");
        }
        assert!(looks_like_fluxd("http://fluxd:3030/api/flux"));
        assert!(!looks_like_fluxd("http://fluxd:3030/"));
    }

    fn read(status: u16, headers: &[(&'static str, &str)]) -> Answer {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, value.parse().unwrap());
        }
        let fluxd = Fluxd::new("http://fluxd:3030/api/flux");
        fluxd.read(StatusCode::from_u16(status).unwrap(), &map)
    }

    #[test]
    fn statuses_are_classified() {
        for n in [200, 202, 204] {
            assert_eq!(read(n, &[]), Answer::Accepted);
        }
        for n in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(read(n, &[]), Answer::Retry { .. }), "{n}");
        }
        for n in [400, 401, 403, 404, 405, 410, 413] {
            assert!(matches!(read(n, &[]), Answer::Refused(_)), "{n}");
        }
        assert_eq!(
            read(404, &[]),
            Answer::Refused("fluxd answered 404 Not Found".into())
        );
        let Answer::Refused(why) = read(301, &[("location", "http://elsewhere/x")]) else {
            panic!("a redirect is refused");
        };
        assert!(why.contains("301 Moved Permanently"), "{why}");
        assert!(why.contains("http://elsewhere/x"), "{why}");
        assert_eq!(
            read(503, &[("retry-after", "7")]),
            Answer::Retry {
                reason: "fluxd answered 503 Service Unavailable".into(),
                after: Some(std::time::Duration::from_secs(7)),
            }
        );
    }

    #[test]
    fn a_change_is_posted_as_json_to_the_notify_url_and_named_by_it() {
        let fluxd = Fluxd::new("http://fluxd:3030/api/flux");
        let target = Target::from(fluxd.clone());
        assert_eq!(&**target.url(), "http://fluxd:3030/api/flux/v11/notify");
        assert_eq!(target.label(), target.url());
        assert_eq!(target.to_string(), "http://fluxd:3030/api/flux");
        let changes = [
            Change::git("git@github.com:org/app.git", "main"),
            Change::git("git@github.com:org/app.git", "dev"),
        ];
        let items = target.items(&VerifiedHook {
            changes: &changes,
            body: None,
        });
        assert_eq!(items.len(), 2);
        for (item, change) in items.iter().zip(&changes) {
            assert_eq!(&item.body.bytes[..], &change.to_json()[..]);
            assert_eq!(item.changes.as_slice(), std::slice::from_ref(change));
            let headers = target.headers(&item.body);
            assert_eq!(headers, [(CONTENT_TYPE, "application/json".parse().unwrap())]);
        }
        assert!(!target.needs_body());
    }
}
