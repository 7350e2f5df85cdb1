//! Raising the open-file limit at start, in a test binary of its own: the
//! limit is the whole process's, and the tests of one binary run side by
//! side, so lowering it for this test could fail another test's `open`.

use flux_recv::fd_limit::{current, raise};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

#[test]
fn raise_lifts_the_soft_limit_to_the_hard_one() {
    // Lower the soft limit first (allowed without privilege, and back up
    // again by `raise`), so the raise has something to do, whatever the
    // hard limit is: unlimited (`None`) too.
    let before = getrlimit(Resource::Nofile);
    let low = before.maximum.map_or(512, |hard| (hard / 2).clamp(1, 512));
    let lowered = Rlimit {
        current: Some(low),
        maximum: before.maximum,
    };
    setrlimit(Resource::Nofile, lowered).unwrap();
    assert_eq!(current().soft, low, "lowered for the test");
    assert!(
        current().hard > low,
        "a hard limit of {low} leaves nothing to raise"
    );

    let raised = raise().unwrap_or_else(|e| {
        panic!(
            "raising the soft limit from {low} to the hard limit ({:?}) failed: {e}",
            before.maximum
        )
    });
    assert!(raised.soft > low, "not raised: {raised:?}");
    assert_eq!(raised.soft, raised.hard);
    assert_eq!(raised.hard, before.maximum.unwrap_or(u64::MAX));
    assert_eq!(current(), raised);
}
