//! How a request goes on the wire to its target: request line, headers and
//! body in one write, and socket timeouts that stay put.
//!
//! ureq writes a request's head and its body separately. For a notification
//! of a few hundred bytes to a fluxd in the same pod that is two packets and
//! two wake-ups on each side where one does. ureq also sets the socket's
//! timeout before each read and write to what is left of the POST's
//! deadline, which differs from the last by microseconds every time: a
//! `setsockopt` per step of every POST.
//!
//! [`OneWrite`] wraps the connection ureq makes (TCP, or a proxy's tunnel):
//! what ureq transmits is held until it waits for the answer, then sent at
//! once; and the time left is rounded up to a whole [`STEP`], so that from
//! one step and one POST to the next the socket keeps its timeout. A POST may
//! then run at most one step past `--relay-timeout`.

use std::fmt;
use std::time::Duration as StdDuration;

use ureq::unversioned::transport::time::Duration;
use ureq::unversioned::transport::{Buffers, ConnectionDetails, Connector, NextTimeout, Transport};
use ureq::Error;

/// What the time left for a POST is rounded up to.
pub(crate) const STEP: StdDuration = StdDuration::from_millis(100);

/// Wraps each connection ureq makes in a [`Deferred`].
#[derive(Debug, Default)]
pub(crate) struct OneWrite;

impl<In: Transport> Connector<In> for OneWrite {
    type Out = Deferred<In>;

    fn connect(
        &self,
        _details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Deferred<In>>, Error> {
        Ok(chained.map(|inner| Deferred {
            inner,
            pending: Vec::new(),
        }))
    }
}

/// A connection whose output waits until its answer is awaited.
pub(crate) struct Deferred<T> {
    inner: T,
    /// Transmitted by ureq, not yet written.
    pending: Vec<u8>,
}

impl<T: Transport> Deferred<T> {
    /// Write what is held, as few writes as the connection's output buffer
    /// allows (one, for any notification).
    fn flush(&mut self, timeout: NextTimeout) -> Result<(), Error> {
        let mut sent = 0;
        while sent < self.pending.len() {
            let output = self.inner.buffers().output();
            let n = output.len().min(self.pending.len() - sent);
            output[..n].copy_from_slice(&self.pending[sent..sent + n]);
            if let Err(e) = self.inner.transmit_output(n, timeout) {
                self.pending.clear();
                return Err(e);
            }
            sent += n;
        }
        self.pending.clear();
        Ok(())
    }
}

impl<T: Transport> Transport for Deferred<T> {
    fn buffers(&mut self) -> &mut dyn Buffers {
        self.inner.buffers()
    }

    fn transmit_output(&mut self, amount: usize, _timeout: NextTimeout) -> Result<(), Error> {
        let output = self.inner.buffers().output();
        self.pending.extend_from_slice(&output[..amount]);
        Ok(())
    }

    fn maybe_await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let timeout = stepped(timeout);
        self.flush(timeout)?;
        self.inner.maybe_await_input(timeout)
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
        let timeout = stepped(timeout);
        self.flush(timeout)?;
        self.inner.await_input(timeout)
    }

    fn is_open(&mut self) -> bool {
        self.inner.is_open()
    }

    fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }
}

impl<T: fmt::Debug> fmt::Debug for Deferred<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deferred")
            .field("inner", &self.inner)
            .field("pending", &self.pending.len())
            .finish()
    }
}

/// `timeout` with the time left rounded up to a whole [`STEP`]. Zero stays
/// zero: a deadline that has passed still times out.
fn stepped(mut timeout: NextTimeout) -> NextTimeout {
    if let Duration::Exact(left) = timeout.after {
        let step = STEP.as_nanos();
        let steps = left.as_nanos().div_ceil(step);
        let nanos = u64::try_from(steps * step).unwrap_or(u64::MAX);
        timeout.after = Duration::Exact(StdDuration::from_nanos(nanos));
    }
    timeout
}

#[cfg(test)]
mod tests {
    use super::*;
    use ureq::unversioned::transport::LazyBuffers;

    /// A connection that records each write and the time left it was given.
    #[derive(Debug)]
    struct Recording {
        buffers: LazyBuffers,
        writes: Vec<Vec<u8>>,
        time_left: Vec<Duration>,
        awaited: usize,
    }

    impl Recording {
        fn new(output: usize) -> Recording {
            Recording {
                buffers: LazyBuffers::new(1024, output),
                writes: Vec::new(),
                time_left: Vec::new(),
                awaited: 0,
            }
        }
    }

    impl Transport for Recording {
        fn buffers(&mut self) -> &mut dyn Buffers {
            &mut self.buffers
        }
        fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), Error> {
            self.writes.push(self.buffers.output()[..amount].to_vec());
            self.time_left.push(timeout.after);
            Ok(())
        }
        fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, Error> {
            self.awaited += 1;
            self.time_left.push(timeout.after);
            Ok(true)
        }
        fn is_open(&mut self) -> bool {
            true
        }
    }

    fn deferred(output: usize) -> Deferred<Recording> {
        Deferred {
            inner: Recording::new(output),
            pending: Vec::new(),
        }
    }

    fn transmit(t: &mut Deferred<Recording>, bytes: &[u8]) {
        t.buffers().output()[..bytes.len()].copy_from_slice(bytes);
        t.transmit_output(bytes.len(), left(4.9)).unwrap();
    }

    fn left(secs: f64) -> NextTimeout {
        NextTimeout {
            after: Duration::Exact(StdDuration::from_secs_f64(secs)),
            ..NextTimeout::default()
        }
    }

    fn exact(millis: u64) -> Duration {
        Duration::Exact(StdDuration::from_millis(millis))
    }

    #[test]
    fn head_and_body_leave_in_one_write_when_the_answer_is_awaited() {
        let mut t = deferred(16 * 1024);
        transmit(&mut t, b"POST /api/flux/v11/notify HTTP/1.1\r\n\r\n");
        transmit(&mut t, br#"{"Kind":"git"}"#);
        assert!(
            t.inner.writes.is_empty(),
            "nothing written before the answer is awaited"
        );
        assert!(t.await_input(left(4.99)).unwrap());
        assert_eq!(
            t.inner.writes,
            [b"POST /api/flux/v11/notify HTTP/1.1\r\n\r\n{\"Kind\":\"git\"}".to_vec()]
        );
        assert_eq!(t.inner.awaited, 1);
        // Awaiting more of the answer writes nothing again.
        assert!(t.maybe_await_input(left(4.98)).unwrap());
        assert_eq!(t.inner.writes.len(), 1);
        assert_eq!(t.inner.awaited, 2);
    }

    #[test]
    fn more_than_the_output_buffer_goes_whole_and_in_order() {
        let mut t = deferred(8);
        transmit(&mut t, b"0123456");
        transmit(&mut t, b"789abcd");
        transmit(&mut t, b"efghijk");
        t.await_input(left(1.0)).unwrap();
        assert_eq!(t.inner.writes.concat(), b"0123456789abcdefghijk");
        assert!(t.inner.writes.iter().all(|w| w.len() <= 8));
        assert_eq!(t.inner.writes.len(), 3);
    }

    #[test]
    fn the_time_left_is_rounded_up_to_a_step_and_stays_put() {
        let mut t = deferred(1024);
        transmit(&mut t, b"POST");
        t.await_input(left(4.999_3)).unwrap();
        t.await_input(left(4.901)).unwrap();
        t.await_input(left(0.000_001)).unwrap();
        // The write and the first wait see the same 5 s; a later wait
        // within the same step as well.
        assert_eq!(
            t.inner.time_left,
            [exact(5000), exact(5000), exact(5000), exact(100)]
        );
    }

    #[test]
    fn a_deadline_that_has_passed_still_times_out() {
        assert_eq!(stepped(left(0.0)).after, exact(0));
        let never = NextTimeout::default();
        assert_eq!(stepped(never).after, Duration::NotHappening);
    }
}
