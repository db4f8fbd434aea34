//! The slot choice of a lane's pinned staging ring, free of CUDA so it can be tested on the
//! CPU: which buffer the next copy goes through, when the host must wait, how a buffer grows
//! and which copies bypass staging altogether.
//!
//! Each slot stands for one pinned buffer plus the event of the last copy through it. The
//! next upload takes a slot whose copy has completed (asked through a "completed?" oracle,
//! `cuEventQuery` on the device), so filling it overlaps the copies and kernels still queued
//! on the lane; the host waits only when every slot's copy is still pending, and then for
//! the oldest one.

/// Copies larger than this bypass the pinned staging ring (the driver stages them itself),
/// so a lane never pins more than a few of these.
pub(crate) const MAX_STAGED_BYTES: usize = 16 << 20;

/// The smallest buffer a slot allocates, in elements.
pub(crate) const MIN_SLOT_ELEMS: usize = 4096;

/// Slots in an upload ring: enough to fill one batch's uploads while the previous one's
/// copies run, without pinning much (at most this many 16 MiB buffers per direction).
pub(crate) const UPLOAD_SLOTS: usize = 3;

/// What the ring decided for one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    /// The slot to copy through.
    pub(crate) slot: usize,
    /// Whether the host must first wait for this slot's pending copy (every slot was busy).
    pub(crate) wait: bool,
    /// The new capacity (elements) to allocate before use, when the slot's buffer is smaller.
    pub(crate) grow_to: Option<usize>,
}

/// Whether a copy of `len` elements of `elem_bytes` each goes through the staging ring.
pub(crate) fn stages(len: usize, elem_bytes: usize) -> bool {
    len.checked_mul(elem_bytes)
        .is_some_and(|bytes| bytes <= MAX_STAGED_BYTES)
}

/// Per-slot bookkeeping of a staging ring: capacities, pending copies and their order.
#[derive(Debug, Clone)]
pub(crate) struct SlotRing {
    /// Allocated elements per slot (0 = not allocated yet).
    caps: Vec<usize>,
    /// Issue sequence of the copy pending on each slot, `None` when the slot is free.
    pending: Vec<Option<u64>>,
    /// Issue counter: orders pending copies so a full ring waits for the oldest.
    seq: u64,
    /// Where the round-robin search starts next time.
    next: usize,
}

impl SlotRing {
    /// A ring of `slots` (at least 1) unallocated slots.
    pub(crate) fn new(slots: usize) -> Self {
        let slots = slots.max(1);
        SlotRing {
            caps: vec![0; slots],
            pending: vec![None; slots],
            seq: 0,
            next: 0,
        }
    }

    /// Number of slots.
    pub(crate) fn len(&self) -> usize {
        self.caps.len()
    }

    /// Allocated elements of `slot`.
    #[cfg(test)]
    pub(crate) fn capacity(&self, slot: usize) -> usize {
        self.caps[slot]
    }

    /// Whether `slot` has a copy that has not been seen completing.
    pub(crate) fn is_pending(&self, slot: usize) -> bool {
        self.pending[slot].is_some()
    }

    /// Picks the slot for a copy of `len` elements. `completed(slot)` reports whether a
    /// pending slot's copy has finished (errors pass through). Prefers a free slot that is
    /// already large enough, then any free slot (grown), and only when every slot is pending
    /// the oldest one, with `wait` set. The chosen slot counts as free afterwards: the
    /// caller waits (if told to) before filling it, then calls [`SlotRing::issued`].
    pub(crate) fn choose<E>(
        &mut self,
        len: usize,
        mut completed: impl FnMut(usize) -> Result<bool, E>,
    ) -> Result<Choice, E> {
        let n = self.len();
        let mut free_small = None;
        let mut chosen = None;
        for k in 0..n {
            let slot = (self.next + k) % n;
            if self.pending[slot].is_some() {
                if !completed(slot)? {
                    continue;
                }
                self.pending[slot] = None;
            }
            if self.caps[slot] >= len {
                chosen = Some((slot, false));
                break;
            }
            free_small.get_or_insert(slot);
        }
        let (slot, wait) = match (chosen, free_small) {
            (Some(c), _) => c,
            (None, Some(slot)) => (slot, false),
            (None, None) => {
                let oldest = (0..n)
                    .min_by_key(|&s| self.pending[s].unwrap_or(u64::MAX))
                    .expect("a ring has at least one slot");
                (oldest, true)
            }
        };
        self.pending[slot] = None;
        let grow_to = (self.caps[slot] < len).then(|| len.next_power_of_two().max(MIN_SLOT_ELEMS));
        if let Some(cap) = grow_to {
            self.caps[slot] = cap;
        }
        self.next = (slot + 1) % n;
        Ok(Choice {
            slot,
            wait,
            grow_to,
        })
    }

    /// Records that a copy through `slot` was issued (its event recorded after it).
    pub(crate) fn issued(&mut self, slot: usize) {
        self.seq += 1;
        self.pending[slot] = Some(self.seq);
    }

    /// Forgets `slot`'s buffer (its allocation failed): it is allocated again on next use.
    pub(crate) fn forget(&mut self, slot: usize) {
        self.caps[slot] = 0;
        self.pending[slot] = None;
    }
}

#[cfg(test)]
mod tests {
    use super::{Choice, MAX_STAGED_BYTES, MIN_SLOT_ELEMS, SlotRing, stages};
    use std::cell::RefCell;
    use std::convert::Infallible;

    /// A fake device: which slots' copies have completed, and which slots were asked.
    struct Oracle {
        done: RefCell<Vec<bool>>,
        asked: RefCell<Vec<usize>>,
    }

    impl Oracle {
        fn new(n: usize) -> Self {
            Oracle {
                done: RefCell::new(vec![false; n]),
                asked: RefCell::new(Vec::new()),
            }
        }

        fn completed(&self, slot: usize) -> Result<bool, Infallible> {
            self.asked.borrow_mut().push(slot);
            Ok(self.done.borrow()[slot])
        }

        fn finish(&self, slot: usize) {
            self.done.borrow_mut()[slot] = true;
        }
    }

    /// Issues a copy of `len` on `ring`, as the lane does after filling the slot.
    fn issue(ring: &mut SlotRing, oracle: &Oracle, len: usize) -> Choice {
        let c = ring.choose(len, |s| oracle.completed(s)).unwrap();
        oracle.done.borrow_mut()[c.slot] = false;
        ring.issued(c.slot);
        c
    }

    #[test]
    fn never_hands_out_a_pending_slot_while_another_is_free() {
        let (mut ring, oracle) = (SlotRing::new(3), Oracle::new(3));
        let a = issue(&mut ring, &oracle, 10);
        let b = issue(&mut ring, &oracle, 10);
        let c = issue(&mut ring, &oracle, 10);
        let slots = [a.slot, b.slot, c.slot];
        assert_eq!(slots, [0, 1, 2], "three copies in flight use three slots");
        assert!(
            !a.wait && !b.wait && !c.wait,
            "no wait while a slot is free"
        );
        // Only slot 1 completes: it is the one handed out, without waiting.
        oracle.finish(1);
        let d = ring.choose(10, |s| oracle.completed(s)).unwrap();
        assert_eq!((d.slot, d.wait), (1, false));
        assert!(ring.is_pending(0) && ring.is_pending(2));
    }

    #[test]
    fn waits_only_when_every_slot_is_pending_and_then_for_the_oldest() {
        let (mut ring, oracle) = (SlotRing::new(2), Oracle::new(2));
        issue(&mut ring, &oracle, 8);
        issue(&mut ring, &oracle, 8);
        // Slot 1 finishes and is reused: now slot 0 holds the oldest pending copy.
        oracle.finish(1);
        let again = issue(&mut ring, &oracle, 8);
        assert_eq!((again.slot, again.wait), (1, false));
        let full = ring.choose(8, |s| oracle.completed(s)).unwrap();
        assert_eq!(
            (full.slot, full.wait),
            (0, true),
            "full ring: wait for the oldest"
        );
        assert_eq!(full.grow_to, None);
    }

    #[test]
    fn a_single_slot_ring_waits_for_its_previous_copy() {
        let (mut ring, oracle) = (SlotRing::new(0), Oracle::new(1));
        assert_eq!(ring.len(), 1, "zero slots are clamped to one");
        let first = issue(&mut ring, &oracle, 4);
        assert!(!first.wait);
        let second = ring.choose(4, |s| oracle.completed(s)).unwrap();
        assert_eq!((second.slot, second.wait), (0, true));
    }

    #[test]
    fn grows_to_the_next_power_of_two_with_a_floor() {
        let (mut ring, oracle) = (SlotRing::new(2), Oracle::new(2));
        let c = issue(&mut ring, &oracle, 10);
        assert_eq!(
            c.grow_to,
            Some(MIN_SLOT_ELEMS),
            "small copies allocate the floor"
        );
        oracle.finish(0);
        let c = issue(&mut ring, &oracle, MIN_SLOT_ELEMS);
        assert_eq!(
            (c.slot, c.grow_to),
            (0, None),
            "slot 0 is free and fits: reused"
        );
        oracle.finish(0);
        let c = issue(&mut ring, &oracle, 5000);
        assert_eq!(c.grow_to, Some(8192), "5000 elements round up to 8192");
        assert_eq!(ring.capacity(c.slot), 8192);
        oracle.finish(c.slot);
        // The same size again through that slot: no new allocation.
        let again = ring.choose(8192, |s| oracle.completed(s)).unwrap();
        assert_eq!((again.slot, again.grow_to), (c.slot, None));
    }

    #[test]
    fn prefers_a_free_slot_that_is_already_big_enough() {
        let (mut ring, oracle) = (SlotRing::new(3), Oracle::new(3));
        issue(&mut ring, &oracle, 10);
        issue(&mut ring, &oracle, 100_000);
        issue(&mut ring, &oracle, 10);
        for s in 0..3 {
            oracle.finish(s);
        }
        // Round robin would start at slot 0 (small); slot 1 fits without growing.
        let c = ring.choose(70_000, |s| oracle.completed(s)).unwrap();
        assert_eq!((c.slot, c.grow_to, c.wait), (1, None, false));
    }

    #[test]
    fn completion_errors_pass_through_and_forget_resets_a_slot() {
        let mut ring = SlotRing::new(2);
        ring.choose(4, |_| Ok::<_, ()>(true)).unwrap();
        ring.issued(0);
        let err = ring.choose(4, |_| Err::<bool, _>("event query failed"));
        assert_eq!(err, Err("event query failed"));
        ring.forget(0);
        assert_eq!((ring.capacity(0), ring.is_pending(0)), (0, false));
    }

    #[test]
    fn the_bypass_threshold_is_sixteen_mebibytes_and_overflow_bypasses() {
        assert!(stages(MAX_STAGED_BYTES / 4, 4));
        assert!(!stages(MAX_STAGED_BYTES / 4 + 1, 4));
        assert!(stages(MAX_STAGED_BYTES / 8, 8));
        assert!(
            !stages(usize::MAX, 8),
            "an overflowing size bypasses, never panics"
        );
    }
}
