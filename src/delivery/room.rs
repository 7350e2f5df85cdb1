//! Room in the queue, shared per endpoint, counted twice: in entries (at
//! most `max_pending`) and in the bytes of their request bodies (at most
//! `max_pending_bytes`). In each, an endpoint may hold at most half of the
//! room the other endpoints leave (rounded up). Alone, an endpoint has half
//! of the queue; so however many entries one endpoint makes (an unsigned
//! endpoint's flood, say), and however large the bodies it chooses, as much
//! room again stays free for the others. An entry counts against the
//! endpoint that made it; a change that joins one needs no room.

use std::collections::HashMap;
use std::sync::Arc;

use super::Full;

/// What one endpoint holds, or is asked for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Held {
    entries: usize,
    bytes: usize,
}

/// Entries and bytes queued by each endpoint that has any, and in all.
#[derive(Debug, Default)]
pub(super) struct Room {
    held: HashMap<Arc<str>, Held>,
    /// Bytes of all the entries' bodies.
    bytes: usize,
}

/// The bounds of the queue: `max_pending` and `max_pending_bytes`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Bounds {
    pub(super) entries: usize,
    pub(super) bytes: usize,
}

/// Whether one may add `mine` more to a share of a queue of at most `max`
/// that holds `pending`, `held` of them its own, when `needed` are asked
/// for in all.
fn fits(held: usize, mine: usize, needed: usize, pending: usize, max: usize) -> bool {
    let mine = held + mine;
    let others = (pending + needed).saturating_sub(mine);
    mine <= max.saturating_sub(others).div_ceil(2)
}

impl Room {
    /// What `endpoint` holds.
    fn held(&self, endpoint: &str) -> Held {
        self.held.get(endpoint).copied().unwrap_or_default()
    }

    /// Bytes of all the entries' bodies.
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether new entries, one per `(endpoint, body bytes)` of `new`, fit
    /// the shares of a queue within `max` that holds `pending` entries; if
    /// not, why not.
    pub(super) fn admits<'a>(
        &self,
        new: impl Iterator<Item = (&'a Arc<str>, usize)>,
        pending: usize,
        max: Bounds,
    ) -> Result<(), Full> {
        // Each endpoint's new entries (one endpoint, in practice).
        let mut per_endpoint: Vec<(&Arc<str>, Held)> = Vec::new();
        for (endpoint, bytes) in new {
            let i = match per_endpoint.iter().position(|(e, _)| *e == endpoint) {
                Some(i) => i,
                None => {
                    per_endpoint.push((endpoint, Held::default()));
                    per_endpoint.len() - 1
                }
            };
            per_endpoint[i].1.entries += 1;
            per_endpoint[i].1.bytes += bytes;
        }
        let needed = per_endpoint
            .iter()
            .fold(Held::default(), |all, (_, n)| Held {
                entries: all.entries + n.entries,
                bytes: all.bytes + n.bytes,
            });
        for (endpoint, n) in &per_endpoint {
            let held = self.held(endpoint);
            if !fits(
                held.entries,
                n.entries,
                needed.entries,
                pending,
                max.entries,
            ) {
                return Err(Full::NoRoom {
                    needed: needed.entries,
                    held: held.entries,
                    pending,
                    max: max.entries,
                });
            }
            if !fits(held.bytes, n.bytes, needed.bytes, self.bytes, max.bytes) {
                return Err(Full::NoBytes {
                    needed: needed.bytes,
                    held: held.bytes,
                    pending: self.bytes,
                    max: max.bytes,
                });
            }
        }
        Ok(())
    }

    /// `endpoint` queued an entry whose body is `bytes` long.
    pub(super) fn hold(&mut self, endpoint: &Arc<str>, bytes: usize) {
        let held = self.held.entry(endpoint.clone()).or_default();
        held.entries += 1;
        held.bytes += bytes;
        self.bytes += bytes;
    }

    /// An entry `endpoint` queued, whose body is `bytes` long, is gone.
    pub(super) fn release(&mut self, endpoint: &Arc<str>, bytes: usize) {
        if let Some(held) = self.held.get_mut(endpoint) {
            held.entries -= 1;
            held.bytes -= bytes;
            self.bytes -= bytes;
            if held.entries == 0 {
                self.held.remove(endpoint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: usize = usize::MAX / 4;

    fn bounds(entries: usize, bytes: usize) -> Bounds {
        Bounds { entries, bytes }
    }

    #[test]
    fn an_endpoint_has_room_for_half_of_what_the_others_leave() {
        let mut room = Room::default();
        let a: Arc<str> = "a".into();
        for _ in 0..6 {
            room.hold(&a, 1);
        }
        // 6 of 16 taken by a: b may hold 5 (half of 10), rounded up.
        assert!(fits(0, 5, 5, 6, 16));
        assert!(!fits(0, 6, 6, 6, 16));
        // a, alone, may hold 8 (half of 16): two more.
        assert!(fits(6, 2, 2, 6, 16));
        assert!(!fits(6, 3, 3, 6, 16));
        // A queue of one still takes one.
        assert!(fits(0, 1, 1, 0, 1));
        // Refused, with whose share it is.
        let b: Arc<str> = "b".into();
        let six = std::iter::repeat_n((&b, 1), 6);
        assert_eq!(
            room.admits(six, 6, bounds(16, ROOMY)),
            Err(Full::NoRoom {
                needed: 6,
                held: 0,
                pending: 6,
                max: 16
            })
        );
        let five = std::iter::repeat_n((&b, 1), 5);
        assert_eq!(room.admits(five, 6, bounds(16, ROOMY)), Ok(()));
        room.release(&a, 1);
        assert_eq!(
            room.held("a"),
            Held {
                entries: 5,
                bytes: 5
            }
        );
    }

    #[test]
    fn bytes_are_shared_as_entries_are() {
        let mut room = Room::default();
        let a: Arc<str> = "a".into();
        let b: Arc<str> = "b".into();
        // a holds 600 of 1,000 bytes in two entries: b may add 200 (half
        // of 400), a nothing more (half of 1,000 is 500).
        room.hold(&a, 300);
        room.hold(&a, 300);
        assert_eq!(room.bytes(), 600);
        let max = bounds(16, 1000);
        assert_eq!(room.admits([(&b, 200)].into_iter(), 2, max), Ok(()));
        assert_eq!(
            room.admits([(&b, 201)].into_iter(), 2, max),
            Err(Full::NoBytes {
                needed: 201,
                held: 0,
                pending: 600,
                max: 1000
            })
        );
        assert!(room.admits([(&a, 1)].into_iter(), 2, max).is_err());
        // Released, its bytes are free again.
        room.release(&a, 300);
        room.release(&a, 300);
        assert_eq!(room.bytes(), 0);
        assert_eq!(room.held("a"), Held::default());
        assert_eq!(room.admits([(&a, 500)].into_iter(), 0, max), Ok(()));
    }
}
