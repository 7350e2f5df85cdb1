//! What a reload changed: the endpoints added, removed, or kept with other
//! settings, for the lines that say so.

use crate::endpoint::Endpoint;
use crate::table::Table;

/// The same endpoint in both tables: same URL, same source, same key file.
/// Anything else is a removal and an addition, which is what an operator
/// needs to hear about (a rotated key is a new URL).
fn same_endpoint(a: &Endpoint, b: &Endpoint) -> bool {
    a.fingerprint == b.fingerprint && a.source == b.source && a.key_path == b.key_path
}

/// Endpoints of `table` that `other` does not have.
pub(super) fn missing_from<'a>(table: &'a Table, other: &Table) -> Vec<&'a Endpoint> {
    table
        .endpoints()
        .iter()
        .filter(|e| {
            !other
                .get(&e.fingerprint)
                .is_some_and(|o| same_endpoint(e, o))
        })
        .map(|e| &**e)
        .collect()
}

/// Endpoints in both tables whose other settings (e.g. a `gcr:` block)
/// changed, as they are now.
pub(super) fn changed_settings<'a>(before: &Table, after: &'a Table) -> Vec<&'a Endpoint> {
    after
        .endpoints()
        .iter()
        .filter(|e| {
            before
                .get(&e.fingerprint)
                .is_some_and(|b| same_endpoint(e, b) && !b.same_settings(e))
        })
        .map(|e| &**e)
        .collect()
}
