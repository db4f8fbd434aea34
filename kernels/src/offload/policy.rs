//! Eviction policies of one cache shard: LRU (the baseline) and LFU, behind one trait.
//!
//! A policy only sees slot numbers `0..capacity`; the shard maps rows to slots.

use std::collections::BTreeSet;

/// Decides which slot of a full shard is evicted next.
pub trait EvictionPolicy: Send {
    /// Slot `slot` was just filled with a new row.
    fn inserted(&mut self, slot: u32);
    /// Slot `slot` was read (a hit).
    fn touched(&mut self, slot: u32);
    /// Removes and returns the slot to evict (only called when every slot is filled).
    fn evict(&mut self) -> u32;
    /// Bytes of bookkeeping held for `capacity` slots (for memory accounting).
    fn index_bytes(capacity: usize) -> u64
    where
        Self: Sized;
}

const NIL: u32 = u32::MAX;

/// Least recently used: an intrusive doubly-linked list over slots, O(1) per operation.
#[derive(Debug)]
pub struct Lru {
    prev: Vec<u32>,
    next: Vec<u32>,
    /// Most recently used slot.
    head: u32,
    /// Least recently used slot (the next victim).
    tail: u32,
}

impl Lru {
    /// An empty list over `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        Lru {
            prev: vec![NIL; capacity],
            next: vec![NIL; capacity],
            head: NIL,
            tail: NIL,
        }
    }

    fn unlink(&mut self, s: u32) {
        let (p, n) = (self.prev[s as usize], self.next[s as usize]);
        match p {
            NIL => self.head = n,
            p => self.next[p as usize] = n,
        }
        match n {
            NIL => self.tail = p,
            n => self.prev[n as usize] = p,
        }
        self.prev[s as usize] = NIL;
        self.next[s as usize] = NIL;
    }

    fn push_front(&mut self, s: u32) {
        self.prev[s as usize] = NIL;
        self.next[s as usize] = self.head;
        match self.head {
            NIL => self.tail = s,
            h => self.prev[h as usize] = s,
        }
        self.head = s;
    }
}

impl EvictionPolicy for Lru {
    fn inserted(&mut self, slot: u32) {
        self.push_front(slot);
    }

    fn touched(&mut self, slot: u32) {
        if self.head != slot {
            self.unlink(slot);
            self.push_front(slot);
        }
    }

    fn evict(&mut self) -> u32 {
        let s = self.tail;
        assert_ne!(s, NIL, "evict from an empty LRU list");
        self.unlink(s);
        s
    }

    fn index_bytes(capacity: usize) -> u64 {
        (capacity * 2 * size_of::<u32>()) as u64
    }
}

/// Least frequently used among the cached rows (counts start at 1 on admission and are
/// forgotten on eviction); ties go to the least recently used. O(log n) per operation.
#[derive(Debug)]
pub struct Lfu {
    /// Per slot: (use count, last-use tick).
    state: Vec<(u64, u64)>,
    /// Every filled slot ordered by (count, tick): the first is the victim.
    order: BTreeSet<(u64, u64, u32)>,
    tick: u64,
}

impl Lfu {
    /// An empty LFU over `capacity` slots.
    pub fn new(capacity: usize) -> Self {
        Lfu {
            state: vec![(0, 0); capacity],
            order: BTreeSet::new(),
            tick: 0,
        }
    }

    fn set(&mut self, slot: u32, count: u64) {
        self.tick += 1;
        self.state[slot as usize] = (count, self.tick);
        self.order.insert((count, self.tick, slot));
    }
}

impl EvictionPolicy for Lfu {
    fn inserted(&mut self, slot: u32) {
        self.set(slot, 1);
    }

    fn touched(&mut self, slot: u32) {
        let (count, tick) = self.state[slot as usize];
        self.order.remove(&(count, tick, slot));
        self.set(slot, count + 1);
    }

    fn evict(&mut self) -> u32 {
        let (_, _, slot) = self.order.pop_first().expect("evict from an empty LFU");
        slot
    }

    /// Per slot: the state pair plus one B-tree entry (24 bytes, ~1.5x for node slack).
    fn index_bytes(capacity: usize) -> u64 {
        (capacity * (16 + 36)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_least_recent() {
        let mut p = Lru::new(3);
        (0..3).for_each(|s| p.inserted(s));
        p.touched(0);
        assert_eq!(p.evict(), 1);
        p.inserted(1);
        assert_eq!(p.evict(), 2);
        assert_eq!(p.evict(), 0);
        assert_eq!(p.evict(), 1);
    }

    #[test]
    fn lfu_evicts_least_frequent_then_oldest() {
        let mut p = Lfu::new(3);
        (0..3).for_each(|s| p.inserted(s));
        p.touched(0);
        p.touched(0);
        p.touched(2);
        assert_eq!(p.evict(), 1);
        p.inserted(1);
        assert_eq!(p.evict(), 1);
        assert_eq!(p.evict(), 2);
        assert_eq!(p.evict(), 0);
    }
}
