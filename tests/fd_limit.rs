//! Raising the open-file limit at start, in a test binary of its own: the
//! limit is the whole process's, and the tests of one binary run side by
//! side, so lowering it for this test could fail another test's `open`.

use flux_recv::fd_limit::{current, raise};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

#[test]
fn raise_lifts_the_soft_limit_to_the_hard_one() {
    // Lower the soft limit first (allowed without privilege, and back up
    // again by `raise`), so the raise has something to do.
    let before = getrlimit(Resource::Nofile);
    if let Some(hard) = before.maximum {
        let lowered = Rlimit {
            current: Some((hard / 2).clamp(1, 512)),
            maximum: Some(hard),
        };
        setrlimit(Resource::Nofile, lowered).unwrap();
        assert_ne!(current().soft, current().hard, "lowered for the test");
    }
    let raised = raise().unwrap();
    assert_eq!(raised.soft, raised.hard);
    assert_eq!(current(), raised);
}
