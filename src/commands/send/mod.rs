//! `flux-recv send`: post an endpoint a sample event, signed as its provider
//! signs it, and print the status and reply.
//!
//! This checks the whole chain an operator set up (DNS, ingress, Service,
//! flux-recv, its key, fluxd behind it) without pushing a commit or an
//! image. Each provider's sample is in its file under [`crate::source`].
//!
//! `--url` is either a full hook URL (anything with `/hook/` in its path,
//! used as it is) or a base URL, such as `https://hooks.example.com` or
//! `http://127.0.0.1:8080`, to which `/hook/<fingerprint>` is added.
//!
//! GoogleContainerRegistry endpoints with a `gcr:` block want a token only
//! Google can sign. `send` posts without one: the expected `401` still shows
//! that the URL reaches flux-recv and the endpoint exists (a wrong URL is a
//! `404`), and the command exits 1 as for any reply that is not 2xx.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

mod dry_run;

use crate::cli::SendArgs;
use crate::endpoint::Endpoint;
use crate::source::{SampleHook, SampleRequest};
use crate::table::Table;

/// The endpoint `spec` names: a number from 1 to the number of endpoints is
/// a position in the config; anything else a prefix of one fingerprint.
pub fn select<'t>(table: &'t Table, spec: &str) -> anyhow::Result<&'t Arc<Endpoint>> {
    let endpoints = table.endpoints();
    if endpoints.is_empty() {
        bail!("the config has no endpoints");
    }
    if let Ok(n) = spec.parse::<usize>() {
        if (1..=endpoints.len()).contains(&n) {
            return Ok(&endpoints[n - 1]);
        }
    }
    let prefix = spec.to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "--endpoint {spec:?} is neither a position (1 to {}) nor the start of a fingerprint",
            endpoints.len()
        );
    }
    let matches: Vec<&Arc<Endpoint>> = endpoints
        .iter()
        .filter(|e| e.fingerprint.starts_with(&prefix))
        .collect();
    match matches[..] {
        [one] => Ok(one),
        [] => bail!(
            "no endpoint is at position {spec} or has a fingerprint starting with {spec:?} \
             (the config has {} endpoint(s); `flux-recv endpoints` lists them)",
            endpoints.len()
        ),
        ref several => {
            let positions: Vec<String> = several.iter().map(|e| e.position.to_string()).collect();
            bail!(
                "{spec:?} starts the fingerprints of endpoints {}; give more of it",
                positions.join(", ")
            )
        }
    }
}

/// The URL to post to: `url` itself if it is a hook URL, else `url` (no
/// trailing `/`) followed by `/hook/<fingerprint>`.
pub fn hook_url(url: &str, fingerprint: &str) -> String {
    if url.contains("/hook/") {
        url.to_string()
    } else {
        format!("{url}/hook/{fingerprint}")
    }
}

/// A random (version 4) UUID, for the provider's delivery-id header.
fn delivery_id() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| anyhow!("cannot read random bytes: {e}"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    ))
}

/// What came back.
struct Reply {
    status: u16,
    body: String,
}

/// POST the delivery. Blocking; this is a short-lived command, not the
/// server.
fn post(url: &str, delivery: &SampleHook, timeout: Duration) -> anyhow::Result<Reply> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut request = agent.post(url).header(
        "User-Agent",
        concat!("flux-recv/", env!("CARGO_PKG_VERSION"), " (send)"),
    );
    for (name, value) in &delivery.headers {
        request = request.header(*name, value);
    }
    let mut response = request
        .send(&delivery.body[..])
        .with_context(|| format!("cannot POST to {url}"))?;
    let body = response
        .body_mut()
        .read_to_vec()
        .with_context(|| format!("cannot read the reply from {url}"))?;
    Ok(Reply {
        status: response.status().as_u16(),
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// Run `flux-recv send`.
pub fn run(args: SendArgs) -> anyhow::Result<ExitCode> {
    let table = super::load(&args.config, None)?;
    let endpoint = select(&table, &args.endpoint)?;
    let url = hook_url(args.url.as_deref().unwrap_or(""), &endpoint.fingerprint);
    if !args.dry_run && !url.contains(&endpoint.url_path()) {
        eprintln!(
            "warning: {url} is not endpoint {}'s hook URL (that ends in {}); sending anyway",
            endpoint.position,
            endpoint.url_path()
        );
    }
    let id = delivery_id()?;
    let request = SampleRequest {
        event: &args.event,
        key: endpoint.settings.key.expose(),
        registry_host: endpoint.settings.registry_host.as_deref(),
        delivery_id: &id,
        ..SampleRequest::push(b"")
    };
    let delivery = endpoint
        .source
        .sample(&request)
        .with_context(|| format!("endpoint {}", endpoint.position))?;
    if args.dry_run {
        println!(
            "endpoint {} ({}): {}, not sent; flux-recv would send:",
            endpoint.position, endpoint.source, delivery.summary
        );
        for line in dry_run::lines(&table, endpoint, &delivery) {
            println!("  {line}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if endpoint.gcr.is_some() {
        eprintln!(
            "note: endpoint {} verifies the token Google signs each Pub/Sub push with, and only \
             Google can make one; sending without it, so expect 401 (which still shows that \
             this URL reaches flux-recv and the endpoint exists)",
            endpoint.position
        );
    }
    // Only where the provider sends one: a delivery id that goes nowhere
    // cannot be matched with anything.
    let delivery_id = match endpoint.source.provider().delivery_header {
        Some(_) => format!(" (delivery {id})"),
        None => String::new(),
    };
    eprintln!(
        "endpoint {} ({}): sending {} to {url}{delivery_id}",
        endpoint.position, endpoint.source, delivery.summary
    );
    let reply = post(&url, &delivery, args.timeout.0)?;
    let reason = http::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    println!("HTTP {} {reason}", reply.status);
    let body = reply.body.trim_end();
    if !body.is_empty() {
        println!("{body}");
    }
    if reply.status == 202 {
        eprintln!(
            "note: flux-recv took the delivery, but fluxd has not confirmed it yet; it is \
             retried in the background (flux-recv's log says when it gets through, or why not)"
        );
    }
    Ok(if (200..300).contains(&reply.status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(dir: &std::path::Path, n: usize) -> Table {
        std::fs::write(dir.join("a.key"), "0123456789abcdef").unwrap();
        let mut config = String::from("fluxRecvVersion: 1\nendpoints:\n");
        for i in 0..n {
            config.push_str(&format!(
                "- source: Nexus\n  keyPath: a.key\n  registryHost: r{i}.example.com\n"
            ));
        }
        std::fs::write(dir.join("fluxrecv.yaml"), config).unwrap();
        Table::load(&dir.join("fluxrecv.yaml"), None).table.unwrap()
    }

    #[test]
    fn endpoints_by_position_or_fingerprint_prefix() {
        let dir = tempfile::tempdir().unwrap();
        // One key, 17 registry hosts: 17 fingerprints, some sharing a first digit.
        let t = table(dir.path(), 17);
        assert_eq!(select(&t, "3").unwrap().position, 3);
        let fp = &t.endpoints()[4].fingerprint;
        assert_eq!(select(&t, &fp[..10]).unwrap().position, 5);
        assert_eq!(select(&t, &fp.to_uppercase()).unwrap().position, 5);

        // A first digit shared by two fingerprints, that is not also a
        // position (the data is fixed, so this finds the same one each run).
        let first = |e: &Arc<Endpoint>| e.fingerprint.chars().next().unwrap();
        let shared = t
            .endpoints()
            .iter()
            .map(first)
            .filter(|c| !('1'..='9').contains(c))
            .find(|c| t.endpoints().iter().filter(|e| first(e) == *c).count() > 1)
            .unwrap();
        let e = select(&t, &shared.to_string()).unwrap_err().to_string();
        assert!(e.contains("give more of it"), "{e}");

        let e = select(&t, "xyz").unwrap_err().to_string();
        assert!(e.contains("neither a position (1 to 17)"), "{e}");
        // A number out of range is tried as a prefix; here none matches.
        let unused = (0..1000)
            .map(|n| n.to_string())
            .find(|s| s.parse::<usize>().unwrap() > 17 && select(&t, s).is_err())
            .unwrap();
        let e = select(&t, &unused).unwrap_err().to_string();
        assert!(e.contains("no endpoint is at position"), "{e}");
    }

    #[test]
    fn hook_urls() {
        assert_eq!(
            hook_url("http://127.0.0.1:8080", "ab12"),
            "http://127.0.0.1:8080/hook/ab12"
        );
        assert_eq!(
            hook_url("https://hooks.example.com/flux", "ab12"),
            "https://hooks.example.com/flux/hook/ab12"
        );
        assert_eq!(
            hook_url("https://hooks.example.com/hook/ab12", "cd34"),
            "https://hooks.example.com/hook/ab12"
        );
    }

    #[test]
    fn delivery_ids_are_v4_uuids() {
        let id = delivery_id().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!("89ab".contains(&id[19..20]));
        assert_ne!(id, delivery_id().unwrap());
    }
}
