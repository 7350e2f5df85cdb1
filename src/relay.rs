//! Relaying notifications to fluxd's `POST {api}/v11/notify`.
//!
//! ureq is a blocking client, so every call runs on tokio's blocking pool
//! (`spawn_blocking`); one [`ureq::Agent`] is shared so connections to fluxd
//! are reused. Each hook has one deadline for all the changes it carries:
//! ureq's own global timeout is set to what is left of it, so a blocking
//! thread is never held past the deadline even when fluxd hangs.

use std::time::{Duration, Instant};

use crate::notification::Change;

/// How a relay failed; each maps to the status the provider sees.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    /// fluxd could not be reached (connection refused, reset, DNS).
    #[error("the Flux API is unreachable")]
    Unreachable,
    /// fluxd answered, but not with a 2xx.
    #[error("the Flux API answered {0}")]
    Rejected(u16),
    /// No answer before the hook's deadline.
    #[error("the Flux API did not answer in time")]
    TimedOut,
}

impl RelayError {
    /// 502 when fluxd is down or refuses, 504 when it is too slow.
    pub fn status(&self) -> u16 {
        match self {
            RelayError::Unreachable | RelayError::Rejected(_) => 502,
            RelayError::TimedOut => 504,
        }
    }
}

/// Sends notifications to fluxd.
#[derive(Debug, Clone)]
pub struct Relay {
    agent: ureq::Agent,
    deadline: Duration,
}

impl Relay {
    /// A relay that gives each hook `deadline` to deliver all its changes.
    pub fn new(deadline: Duration) -> Relay {
        let agent = ureq::Agent::config_builder()
            // Non-2xx statuses are answers, not transport errors.
            .http_status_as_error(false)
            .timeout_global(Some(deadline))
            .user_agent(concat!("flux-recv/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Relay { agent, deadline }
    }

    /// The per-hook deadline.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// POST each change, in order, to `notify_url`; succeed only when fluxd
    /// accepted every one. Runs on the blocking pool.
    pub async fn notify(&self, notify_url: String, changes: Vec<Change>) -> Result<(), RelayError> {
        let relay = self.clone();
        let until = Instant::now() + self.deadline;
        let call = tokio::task::spawn_blocking(move || {
            relay.notify_blocking(&notify_url, &changes, until)
        });
        // The blocking call stops itself at the deadline; this outer timeout
        // only guards against a stall outside ureq (a starved pool).
        match tokio::time::timeout(self.deadline + Duration::from_secs(1), call).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
            Err(_) => Err(RelayError::TimedOut),
        }
    }

    fn notify_blocking(
        &self,
        url: &str,
        changes: &[Change],
        until: Instant,
    ) -> Result<(), RelayError> {
        for change in changes {
            let left = until
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
                .ok_or(RelayError::TimedOut)?;
            let reply = self
                .agent
                .post(url)
                .config()
                .timeout_global(Some(left))
                .build()
                .header("Content-Type", "application/json")
                .send(&change.to_json()[..]);
            match reply {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => return Err(RelayError::Rejected(r.status().as_u16())),
                Err(ureq::Error::Timeout(_)) => return Err(RelayError::TimedOut),
                Err(_) => return Err(RelayError::Unreachable),
            }
        }
        Ok(())
    }
}
