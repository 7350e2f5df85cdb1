//! Room in the queue, shared per endpoint: the queue holds at most
//! `max_pending` entries, and each endpoint at most half of the room the
//! other endpoints leave (rounded up). Alone, an endpoint has half of the
//! queue; so however many entries one endpoint makes (an unsigned
//! endpoint's flood, say), as much room again stays free for the others.
//! An entry counts against the endpoint that made it; a change that joins
//! one needs no room.

use std::collections::HashMap;
use std::sync::Arc;

use super::Full;

/// Entries queued by each endpoint that has any.
#[derive(Debug, Default)]
pub(super) struct Room {
    held: HashMap<Arc<str>, usize>,
}

impl Room {
    /// Entries `endpoint` holds.
    fn held(&self, endpoint: &str) -> usize {
        self.held.get(endpoint).copied().unwrap_or(0)
    }

    /// Whether `endpoint` may add `n` entries to a queue of at most `max`
    /// that holds `pending` and is asked for `needed` in all.
    fn has_room(
        &self,
        endpoint: &str,
        n: usize,
        needed: usize,
        pending: usize,
        max: usize,
    ) -> bool {
        let mine = self.held(endpoint) + n;
        let others = pending + needed - mine;
        mine <= max.saturating_sub(others).div_ceil(2)
    }

    /// Whether new entries, one from each endpoint `new` names, fit the
    /// shares of a queue of at most `max` that holds `pending`; if not,
    /// why not.
    pub(super) fn admits<'a>(
        &self,
        new: impl Iterator<Item = &'a Arc<str>>,
        pending: usize,
        max: usize,
    ) -> Result<(), Full> {
        // Each endpoint's new entries (one endpoint, in practice).
        let mut per_endpoint: Vec<(&Arc<str>, usize)> = Vec::new();
        for endpoint in new {
            match per_endpoint.iter_mut().find(|(e, _)| *e == endpoint) {
                Some((_, n)) => *n += 1,
                None => per_endpoint.push((endpoint, 1)),
            }
        }
        let needed = per_endpoint.iter().map(|(_, n)| n).sum();
        match per_endpoint
            .iter()
            .find(|(e, n)| !self.has_room(e, *n, needed, pending, max))
        {
            Some((endpoint, _)) => Err(Full::NoRoom {
                needed,
                held: self.held(endpoint),
                pending,
                max,
            }),
            None => Ok(()),
        }
    }

    /// `endpoint` queued an entry.
    pub(super) fn hold(&mut self, endpoint: &Arc<str>) {
        *self.held.entry(endpoint.clone()).or_default() += 1;
    }

    /// An entry `endpoint` queued is gone.
    pub(super) fn release(&mut self, endpoint: &Arc<str>) {
        if let Some(held) = self.held.get_mut(endpoint) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(endpoint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endpoint_has_room_for_half_of_what_the_others_leave() {
        let mut room = Room::default();
        let a: Arc<str> = "a".into();
        for _ in 0..6 {
            room.hold(&a);
        }
        // 6 of 16 taken by a: b may hold 5 (half of 10), rounded up.
        assert!(room.has_room("b", 5, 5, 6, 16));
        assert!(!room.has_room("b", 6, 6, 6, 16));
        // a, alone, may hold 8 (half of 16): two more.
        assert!(room.has_room("a", 2, 2, 6, 16));
        assert!(!room.has_room("a", 3, 3, 6, 16));
        // A queue of one still takes one.
        assert!(Room::default().has_room("a", 1, 1, 0, 1));
        // Refused, with whose share it is.
        let b: Arc<str> = "b".into();
        let six = std::iter::repeat_n(&b, 6);
        assert_eq!(
            room.admits(six, 6, 16),
            Err(Full::NoRoom {
                needed: 6,
                held: 0,
                pending: 6,
                max: 16
            })
        );
        assert_eq!(room.admits(std::iter::repeat_n(&b, 5), 6, 16), Ok(()));
        room.release(&a);
        assert_eq!(room.held("a"), 5);
    }
}
