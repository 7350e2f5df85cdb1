//! `flux-recv send --dry-run`: what the endpoint's targets would be sent for
//! the sample, worked out here, as the server would, and printed; nothing
//! is posted. The sample goes through the endpoint's source (verified with
//! its key, parsed) and filter, then each target makes its requests.
//! fluxd's are printed whole (a change's JSON); a target sent the
//! provider's body is printed by size, media type and the headers it adds
//! (never a secret).

use crate::endpoint::Endpoint;
use crate::source::{Outcome, SampleHook};
use crate::table::Table;
use crate::targets::{Body, VerifiedHook};

/// The lines saying what `sample`, delivered to `endpoint`, would make its
/// targets be sent.
pub fn lines(table: &Table, endpoint: &Endpoint, sample: &SampleHook) -> Vec<String> {
    let headers = sample.header_map();
    let changes = match endpoint
        .source
        .handle(&headers, &sample.body, &endpoint.settings)
    {
        Err(e) => {
            return vec![format!(
                "nothing would be sent: the endpoint refuses it ({e})"
            )]
        }
        Ok(Outcome::Ignore(why)) => return vec![format!("nothing would be sent: {why}")],
        Ok(Outcome::Notify(changes)) => changes,
    };
    let parsed = changes.len();
    let changes: Vec<_> = changes
        .into_iter()
        .filter(|c| endpoint.filter.admits(c))
        .collect();
    if changes.is_empty() {
        return vec![format!(
            "nothing would be sent: the endpoint's filter leaves out all {parsed} change(s)"
        )];
    }
    let body = Body {
        bytes: sample.body.clone().into(),
        content_type: headers.get(http::header::CONTENT_TYPE).cloned(),
    };
    let hook = VerifiedHook {
        changes: &changes,
        body: Some(&body),
    };
    let mut lines = Vec::new();
    for target in table.targets_of(endpoint).iter() {
        for item in target.items(&hook) {
            let what = match target.needs_body() {
                false => String::from_utf8_lossy(&item.body.bytes).into_owned(),
                true => {
                    let media = item.body.content_type.as_ref();
                    let media = media
                        .and_then(|t| t.to_str().ok())
                        .unwrap_or("no Content-Type");
                    format!(
                        "{} bytes ({media}); {}",
                        item.body.bytes.len(),
                        target.dry_run()
                    )
                }
            };
            // fluxd's label is its notify URL; another kind's starts with its name.
            let label = target.label();
            let who = match label.starts_with(target.name()) {
                true => label.to_string(),
                false => format!("{} {label}", target.name()),
            };
            let line = match target.too_large(&item.body) {
                Some(why) => format!("{who}: not sent, {why}"),
                None => format!("{who}: POST {what}"),
            };
            lines.push(line);
        }
    }
    lines
}
