//! Sample deliveries: what a provider sends when something is pushed,
//! signed the way that provider signs it. Each provider's file builds its
//! own; this module has what they share.
//!
//! `flux-recv send` posts these to a running flux-recv so an operator can
//! try the whole chain (ingress, receiver, fluxd) without pushing a commit
//! or an image. The payloads have the shape of the providers' real ones
//! (trimmed, with the fields the sources read and the usual ones around
//! them) and name an example repository or image, so fluxd is notified of
//! something it does not track and does nothing; the point is the statuses
//! along the way.
//!
//! The tests, benchmarks and fuzz targets start from the same samples, so
//! what a provider sends is written down once, in its file.

use serde_json::Value;

/// What to make a sample of.
#[derive(Debug, Clone, Copy)]
pub struct SampleRequest<'a> {
    /// The event, one of the provider's `sample_events`.
    pub event: &'a str,
    /// The endpoint's key, to sign with (or to send, where the provider
    /// sends it as a token).
    pub key: &'a [u8],
    /// The endpoint's `registryHost`: registries put it in image names.
    pub registry_host: Option<&'a str>,
    /// Goes in the provider's delivery-id header, where it has one.
    pub delivery_id: &'a str,
    /// The repository or image the sample is about.
    pub name: &'a str,
    /// Sign and send this body instead of the sample's own: tests and fuzz
    /// targets use it to send what they like, signed as the provider would.
    pub body: Option<&'a [u8]>,
    /// When it is sent, in Unix seconds, for providers whose signature
    /// covers the time (Standard Webhooks): a receiver refuses a time far
    /// from its clock.
    pub sent_at: u64,
}

impl<'a> SampleRequest<'a> {
    /// A `push` about repository `app`, signed with `key`, sent now.
    pub fn push(key: &'a [u8]) -> SampleRequest<'a> {
        SampleRequest {
            event: "push",
            key,
            registry_host: None,
            delivery_id: "72d3162e-cc78-11e3-81ab-4c9367dc0958",
            name: REPO,
            body: None,
            sent_at: super::stamped::unix_now(),
        }
    }

    /// The body to send: the override if there is one, else `sample`.
    pub fn body_or(&self, sample: &Value) -> Vec<u8> {
        match self.body {
            Some(body) => body.to_vec(),
            None => serde_json::to_vec(sample).expect("a JSON value serializes"),
        }
    }

    /// The key as a header value, for providers that send the key itself.
    /// [`crate::source::Source::sample`] has checked that it can be one.
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(self.key).into_owned()
    }
}

/// A request as the provider would make it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleHook {
    /// Headers, including the signature or token and a delivery id.
    pub headers: Vec<(&'static str, String)>,
    /// The exact bytes that were signed.
    pub body: Vec<u8>,
    /// What it is, for people: "a push to branch main of git@…".
    pub summary: String,
}

impl SampleHook {
    /// The headers as a `HeaderMap`, as a server would receive them.
    pub fn header_map(&self) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in &self.headers {
            if let Ok(value) = http::HeaderValue::from_str(value) {
                map.append(*name, value);
            }
        }
        map
    }

    /// The value of header `name` (any case), if the delivery has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why no sample can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// The source has no sample of this event.
    #[error("there is no {event:?} sample for {provider}; choose one of: {}", supported.join(", "))]
    UnknownEvent {
        /// The endpoint's source.
        provider: &'static str,
        /// The event asked for.
        event: String,
        /// The events that have samples.
        supported: &'static [&'static str],
    },
    /// The provider sends the key itself in a header, and this key cannot
    /// travel in one (the provider could not send it either).
    #[error(
        "{provider} sends the key itself in the {header} header, and this key cannot be sent \
         in a header (it has control characters or non-ASCII bytes, or starts or ends with \
         whitespace); make a new one with `flux-recv keygen`"
    )]
    KeyNotSendable {
        /// The endpoint's source.
        provider: &'static str,
        /// The header the key goes in.
        header: &'static str,
    },
}

/// Whether a key can travel verbatim in a header and arrive unchanged:
/// visible ASCII, inner blanks allowed (HTTP trims surrounding whitespace).
pub fn sendable_in_header(key: &[u8]) -> bool {
    let visible = |b: &u8| (0x21..0x7f).contains(b);
    key.first().is_some_and(visible)
        && key.last().is_some_and(visible)
        && key.iter().all(|b| visible(b) || *b == b' ' || *b == b'\t')
}

// What the samples are about.
/// The owner (user, organisation, namespace) in every sample.
pub const OWNER: &str = "example";
/// The default repository or image name.
pub const REPO: &str = "app";
/// The branch pushed to.
pub const BRANCH: &str = "main";
/// The image tag pushed.
pub const TAG: &str = "1.2.3";
/// The commit before the push.
pub const BEFORE: &str = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
/// The commit after the push.
pub const AFTER: &str = "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c";
/// The pushed image's digest.
pub const DIGEST: &str = "sha256:e4355b66995c96b4b468159fc5c7e3540fcef961189ca13fee877798649f531a";
/// When the push happened.
pub const TIME: &str = "2024-05-01T12:00:00Z";
/// The same, in Unix seconds.
pub const EPOCH: u64 = 1_714_564_800;
/// The pushed commit's message.
pub const MESSAGE: &str = "Sample commit sent by flux-recv send";

/// `Content-Type: application/json`, which most providers send.
pub fn json_headers() -> Vec<(&'static str, String)> {
    vec![("Content-Type", "application/json".to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::Change;
    use crate::source::{Extra, Outcome, Proof, Secret, Settings, Source};

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    /// A signing secret, for the sources whose endpoints need one.
    const SECRET: &[u8] = b"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    /// The key `source`'s endpoints take.
    fn key(source: Source) -> &'static [u8] {
        if source.needs_signing_secret() {
            SECRET
        } else {
            KEY
        }
    }

    fn settings(key: &[u8], registry_host: Option<&str>) -> Settings {
        Settings {
            key: Secret::new(key.to_vec()),
            registry_host: registry_host.map(String::from),
            ..Settings::default()
        }
    }

    /// What the endpoints of sources that take a `notify:` block name.
    fn notify() -> Vec<Change> {
        vec![Change::git("git@github.com:example/app.git", "main")]
    }

    /// An endpoint's settings for `source`, with a `notify:` block where the
    /// source requires one (as the config does).
    fn endpoint(source: Source, key: &[u8], registry_host: Option<&str>) -> Settings {
        let notify = if source.takes(Extra::Notify) {
            notify()
        } else {
            Vec::new()
        };
        Settings {
            notify,
            ..settings(key, registry_host)
        }
    }

    fn handle(source: Source, request: &SampleRequest) -> Outcome {
        let d = source
            .sample(request)
            .unwrap_or_else(|e| panic!("{source}: {e}"));
        let s = endpoint(source, request.key, request.registry_host);
        source
            .handle(&d.header_map(), &d.body, &s)
            .unwrap_or_else(|e| panic!("{source} {}: {e}", request.event))
    }

    #[test]
    fn every_push_sample_verifies_and_notifies() {
        for source in Source::all() {
            let Outcome::Notify(changes) = handle(source, &SampleRequest::push(key(source))) else {
                panic!("{source}: push is not relayed");
            };
            let expected = match source.name() {
                "GitHub" => Change::git("git@github.com:example/app.git", "main"),
                "GitLab" => Change::git("git@gitlab.com:example/app.git", "main"),
                "BitbucketCloud" => Change::git("git@bitbucket.org:example/app.git", "main"),
                "BitbucketServer" => {
                    Change::git("ssh://git@bitbucket.example.com:7999/ex/app.git", "main")
                }
                "Gitea" => Change::git("git@gitea.example.com:example/app.git", "main"),
                "Forgejo" => Change::git("git@forgejo.example.com:example/app.git", "main"),
                "Gogs" => Change::git("git@gogs.example.com:example/app.git", "main"),
                "AzureDevOps" => {
                    Change::git("https://dev.azure.com/example/platform/_git/app", "main")
                }
                "DockerHub" | "Nexus" => Change::image(crate::image::parse("example/app").unwrap()),
                "Quay" => Change::image(crate::image::parse("quay.io/example/app").unwrap()),
                "Harbor" => {
                    Change::image(crate::image::parse("harbor.example.com/library/app").unwrap())
                }
                "GoogleContainerRegistry" => {
                    Change::image(crate::image::parse("gcr.io/example-project/app").unwrap())
                }
                "AzureContainerRegistry" => {
                    Change::image(crate::image::parse("example.azurecr.io/example/app").unwrap())
                }
                "Distribution" => Change::image(
                    crate::image::parse("registry.example.com:5000/example/app").unwrap(),
                ),
                "Generic" | "GenericHMAC" | "StandardWebhooks" => notify()[0].clone(),
                other => panic!("no expectation for {other}"),
            };
            assert_eq!(changes[0], expected, "{source}");
            // Azure DevOps names the repository by its https URL, and its
            // ssh URL differs in path, so fluxd hears of both.
            let count = if source.name() == "AzureDevOps" { 2 } else { 1 };
            assert_eq!(changes.len(), count, "{source}");
        }
    }

    #[test]
    fn every_sample_event_is_handled() {
        for source in Source::all() {
            for event in source.provider().sample_events {
                let request = SampleRequest {
                    event,
                    ..SampleRequest::push(key(source))
                };
                let outcome = handle(source, &request);
                // Besides pushes, GitHub's `package` (an image published to
                // ghcr.io) is news for fluxd; the other samples are not.
                if *event == "push" || (source.name(), *event) == ("GitHub", "package") {
                    assert!(matches!(outcome, Outcome::Notify(_)), "{source}");
                } else {
                    assert!(matches!(outcome, Outcome::Ignore(_)), "{source} {event}");
                }
            }
        }
    }

    #[test]
    fn samples_carry_the_headers_their_provider_describes() {
        for source in Source::all() {
            let p = source.provider();
            let d = source.sample(&SampleRequest::push(key(source))).unwrap();
            if let Some(event) = p.event_header {
                assert!(d.header(event).is_some(), "{source}: no {event}");
            }
            if let Some(delivery) = p.delivery_header {
                assert_eq!(
                    d.header(delivery),
                    Some(SampleRequest::push(key(source)).delivery_id),
                    "{source}: {delivery}"
                );
            }
            if let Some(header) = p.proof.header() {
                assert!(d.header(header).is_some(), "{source}: no {header}")
            }
            // What is logged is what `send` put there.
            let headers = d.header_map();
            if p.delivery_header.is_some() {
                assert_eq!(
                    source.delivery_of(&headers),
                    SampleRequest::push(key(source)).delivery_id
                );
            }
        }
    }

    #[test]
    fn a_wrong_key_fails_verification() {
        let other = settings(b"another key, not the one signed", None);
        for source in Source::all().filter(|s| s.verifies_sender()) {
            let d = source.sample(&SampleRequest::push(key(source))).unwrap();
            let e = source.handle(&d.header_map(), &d.body, &other).unwrap_err();
            assert!(e.is_unauthorized(), "{source}: {e}");
        }
    }

    #[test]
    fn a_body_override_is_signed_as_given() {
        let body = br#"{"not":"a push"}"#;
        for source in Source::all() {
            let request = SampleRequest {
                body: Some(body),
                ..SampleRequest::push(key(source))
            };
            let d = source.sample(&request).unwrap();
            assert_eq!(d.body, body, "{source}");
            // Signed properly, so whatever is refused is refused for its
            // content, not its signature.
            if let Err(e) = source.handle(&d.header_map(), &d.body, &settings(key(source), None)) {
                assert!(!e.is_unauthorized(), "{source}: {e}");
            }
        }
    }

    #[test]
    fn registry_host_names_the_image() {
        for source in [
            "Quay",
            "Harbor",
            "Nexus",
            "GoogleContainerRegistry",
            "AzureContainerRegistry",
            "Distribution",
        ]
        .map(Source::named)
        {
            let request = SampleRequest {
                registry_host: Some("registry.example.com"),
                ..SampleRequest::push(b"0123456789abcdef")
            };
            let Outcome::Notify(changes) = handle(source, &request) else {
                panic!("{source}");
            };
            let Change::Image(image) = &changes[0] else {
                panic!("{source}");
            };
            assert_eq!(image.name.domain, "registry.example.com", "{source}");
        }
    }

    #[test]
    fn unknown_events_and_unsendable_keys_are_errors() {
        let gitlab = Source::named("GitLab");
        let e = gitlab
            .sample(&SampleRequest {
                event: "ping",
                ..SampleRequest::push(KEY)
            })
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "there is no \"ping\" sample for GitLab; choose one of: push"
        );
        for key in [
            &b"0123456789abcdef\n"[..],
            b" 0123456789abcdef",
            b"abc\x01def",
        ] {
            for source in Source::all() {
                let result = source.sample(&SampleRequest::push(key));
                match source.proof_for(key) {
                    Proof::HeaderToken { .. } => assert!(
                        matches!(result, Err(SampleError::KeyNotSendable { .. })),
                        "{source} {key:?}"
                    ),
                    // Signing sources take any key.
                    _ => assert!(result.is_ok(), "{source} {key:?}"),
                }
            }
        }
    }

    #[test]
    fn samples_are_deterministic() {
        let at = |sent_at| SampleRequest {
            sent_at,
            ..SampleRequest::push(KEY)
        };
        for source in Source::all() {
            let a = source.sample(&at(EPOCH)).unwrap();
            assert_eq!(a, source.sample(&at(EPOCH)).unwrap(), "{source}");
        }
    }
}
