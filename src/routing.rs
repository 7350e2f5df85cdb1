//! Where an endpoint's changes go: the fluxd APIs that hear of them (which
//! of them, the endpoint's filter decides: [`crate::filter`]).
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

use std::sync::Arc;

use serde::Deserialize;

/// Where fluxd's API is when nothing says: fluxd in the same pod.
pub const DEFAULT_API: &str = "http://localhost:3030/api/flux";

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

/// One fluxd API, as a table holds it: worked out once per table build, so
/// a request only shares these strings (a reference count each) and never
/// formats a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    /// The base URL, without a trailing `/`: what logs and `endpoints` show.
    pub base: Arc<str>,
    /// [`notify_url`] of `base`: where notifications are POSTed.
    pub notify: Arc<str>,
}

impl Api {
    /// The API whose base URL is `base` (already checked).
    pub fn new(base: &str) -> Api {
        Api {
            base: Arc::from(base),
            notify: Arc::from(notify_url(base)),
        }
    }
}

/// The base URLs of `apis`, separated by spaces: how logs name them.
pub fn bases(apis: &[Api]) -> String {
    let bases: Vec<&str> = apis.iter().map(|a| &*a.base).collect();
    bases.join(" ")
}

/// Whether an API's path looks like fluxd's: every hook gets 404 from fluxd
/// otherwise, the most common mistake.
pub fn looks_like_fluxd(api: &str) -> bool {
    api.trim_end_matches('/').ends_with("/api/flux")
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
}
