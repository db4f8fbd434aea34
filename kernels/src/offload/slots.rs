//! [`SlotMap`]: which row each cache slot holds and which slot is evicted next — the
//! bookkeeping shared by the CPU cache's shards ([`super::RowCache`]) and the CUDA device
//! cache (whose slots live in device memory), plus [`plan_cached_batch`], the pure
//! per-batch plan of the device cache.

use super::CachePolicy;
use super::policy::{EvictionPolicy, Lfu, Lru};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A multiplicative hasher for row numbers (SipHash is needlessly slow for u64 keys).
#[derive(Default, Clone, Copy)]
pub struct RowHasher(u64);

impl Hasher for RowHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8 | b as u64).rotate_left(5);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// A `HashMap` keyed by row number.
pub type RowMap<V> = HashMap<u64, V, BuildHasherDefault<RowHasher>>;

/// Row → slot index and eviction policy over `capacity` slots (no row data).
pub struct SlotMap {
    /// Row -> slot.
    map: RowMap<u32>,
    /// Slot -> row, for the slots filled so far.
    keys: Vec<u64>,
    capacity: usize,
    policy: Box<dyn EvictionPolicy>,
}

/// Where [`SlotMap::admit`] put a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// The slot now holding the row.
    pub slot: u32,
    /// The row evicted from that slot, if it held one.
    pub evicted: Option<u64>,
}

impl SlotMap {
    /// An empty map of `capacity` slots (at least 1) evicting by `policy`.
    pub fn new(capacity: usize, policy: CachePolicy) -> SlotMap {
        let capacity = capacity.max(1);
        let mut map = RowMap::default();
        // Twice the rows: with at most half the map's capacity in use, hashbrown cleans
        // tombstones in place instead of growing, so the map never reallocates.
        map.reserve(2 * capacity);
        SlotMap {
            map,
            keys: Vec::with_capacity(capacity),
            capacity,
            policy: match policy {
                CachePolicy::Lru => Box::new(Lru::new(capacity)),
                CachePolicy::Lfu => Box::new(Lfu::new(capacity)),
            },
        }
    }

    /// Slots in the map.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The slot holding `key`, counted as a use by the policy; `None` when absent.
    pub fn lookup(&mut self, key: u64) -> Option<u32> {
        let slot = *self.map.get(&key)?;
        self.policy.touched(slot);
        Some(slot)
    }

    /// Whether `key` is held (not counted as a use).
    pub fn contains(&self, key: u64) -> bool {
        self.map.contains_key(&key)
    }

    /// Gives `key` (which must be absent) a slot: a free one, else the policy's victim.
    pub fn admit(&mut self, key: u64) -> Admitted {
        debug_assert!(
            !self.map.contains_key(&key),
            "admit: row {key} already held"
        );
        let (slot, evicted) = if self.keys.len() < self.capacity {
            self.keys.push(key);
            ((self.keys.len() - 1) as u32, None)
        } else {
            let slot = self.policy.evict();
            let old = self.keys[slot as usize];
            self.map.remove(&old);
            self.keys[slot as usize] = key;
            (slot, Some(old))
        };
        self.map.insert(key, slot);
        self.policy.inserted(slot);
        Admitted { slot, evicted }
    }
}

/// One batch of a device-cached table, as the kernel `embedding_bag_cached_f32` takes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CachedBatchPlan {
    /// Per index, in the batch's order: `s >= 0` reads host row `s`, `s < 0` reads cache
    /// slot `-s - 1`.
    pub src: Vec<i64>,
    /// Host rows copied into the cache by the launch, paired with `fill_slots`.
    pub fill_rows: Vec<i64>,
    /// Cache slots those rows are copied into (each at most once, none read by `src`).
    pub fill_slots: Vec<i64>,
    /// Distinct rows found in the cache.
    pub hits: u64,
    /// Distinct rows not found (read from the host tier).
    pub misses: u64,
    /// Rows evicted to admit the misses.
    pub evictions: u64,
}

/// The encoding of "read cache slot `slot`" in [`CachedBatchPlan::src`].
pub fn slot_source(slot: u32) -> i64 {
    -(slot as i64) - 1
}

/// Plans one batch against `slots` (indices already checked, each `>= 0`): each distinct
/// row is looked up once (a hit reads its slot); each miss reads the host row and is
/// admitted (evicting by policy), its slot filled by the same launch. When an admission
/// evicts a slot this batch already uses, that row is read from the host instead (and its
/// fill, if it had one, dropped), so no slot is both read and written by one launch.
pub fn plan_cached_batch(slots: &mut SlotMap, indices: &[i64]) -> CachedBatchPlan {
    #[derive(Clone, Copy)]
    enum Read {
        Slot(u32),
        Host,
        HostAndFill(u32),
    }
    let mut first: RowMap<u32> = RowMap::default();
    first.reserve(indices.len());
    let mut keys: Vec<u64> = Vec::new();
    let local: Vec<u32> = indices
        .iter()
        .map(|&i| {
            *first.entry(i as u64).or_insert_with(|| {
                keys.push(i as u64);
                (keys.len() - 1) as u32
            })
        })
        .collect();
    let mut plan = CachedBatchPlan::default();
    let mut reads: Vec<Read> = Vec::with_capacity(keys.len());
    // Slot -> the distinct key (position in `keys`) that uses it in this batch.
    let mut user: RowMap<u32> = RowMap::default();
    let mut missed: Vec<u32> = Vec::new();
    for (p, &k) in keys.iter().enumerate() {
        match slots.lookup(k) {
            Some(s) => {
                plan.hits += 1;
                user.insert(s as u64, p as u32);
                reads.push(Read::Slot(s));
            }
            None => {
                missed.push(p as u32);
                reads.push(Read::Host);
            }
        }
    }
    plan.misses = missed.len() as u64;
    for &p in &missed {
        let a = slots.admit(keys[p as usize]);
        plan.evictions += u64::from(a.evicted.is_some());
        if let Some(q) = user.insert(a.slot as u64, p) {
            // The slot's old row is still needed by this batch: read it from the host.
            reads[q as usize] = Read::Host;
        }
        reads[p as usize] = Read::HostAndFill(a.slot);
    }
    plan.src = local
        .iter()
        .map(|&p| match reads[p as usize] {
            Read::Slot(s) => slot_source(s),
            Read::Host | Read::HostAndFill(_) => keys[p as usize] as i64,
        })
        .collect();
    for (p, r) in reads.iter().enumerate() {
        if let Read::HostAndFill(s) = *r {
            plan.fill_rows.push(keys[p] as i64);
            plan.fill_slots.push(s as i64);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::{CachePolicy, SlotMap, plan_cached_batch, slot_source};

    #[test]
    fn a_first_batch_misses_each_distinct_row_once_and_fills_it() {
        let mut m = SlotMap::new(2, CachePolicy::Lru);
        let p = plan_cached_batch(&mut m, &[5, 5, 7]);
        assert_eq!(p.src, vec![5, 5, 7]);
        assert_eq!((p.fill_rows, p.fill_slots), (vec![5, 7], vec![0, 1]));
        assert_eq!((p.hits, p.misses, p.evictions), (0, 2, 0));
        let p = plan_cached_batch(&mut m, &[7, 5, 7]);
        assert_eq!(p.src, vec![slot_source(1), slot_source(0), slot_source(1)]);
        assert!(p.fill_rows.is_empty());
        assert_eq!((p.hits, p.misses, p.evictions), (2, 0, 0));
    }

    #[test]
    fn a_slot_evicted_by_the_same_batch_is_read_from_the_host_instead() {
        let mut m = SlotMap::new(2, CachePolicy::Lru);
        plan_cached_batch(&mut m, &[5, 7]);
        // 7 then 5 are hits (5 most recent); 9 evicts the LRU slot, 7's slot 1.
        let p = plan_cached_batch(&mut m, &[7, 5, 9]);
        assert_eq!(p.src, vec![7, slot_source(0), 9]);
        assert_eq!((p.fill_rows, p.fill_slots), (vec![9], vec![1]));
        assert_eq!((p.hits, p.misses, p.evictions), (2, 1, 1));
        assert!(!m.contains(7) && m.contains(9) && m.contains(5));
    }

    #[test]
    fn every_slot_read_holds_its_row_and_no_slot_is_read_and_filled_at_once() {
        // A model of the device slots (slot -> row), updated by each plan's fills.
        for policy in [CachePolicy::Lru, CachePolicy::Lfu] {
            for cap in [1usize, 3, 16] {
                let mut m = SlotMap::new(cap, policy);
                let mut held: Vec<Option<i64>> = vec![None; cap];
                let mut x = 12345u64;
                for _ in 0..200 {
                    let idx: Vec<i64> = (0..9)
                        .map(|_| {
                            x = x
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            ((x >> 33) % 24) as i64
                        })
                        .collect();
                    let p = plan_cached_batch(&mut m, &idx);
                    let mut filled = std::collections::HashSet::new();
                    for &s in &p.fill_slots {
                        assert!(filled.insert(s), "slot {s} filled twice");
                    }
                    for (&i, &s) in idx.iter().zip(&p.src) {
                        if s < 0 {
                            let slot = (-s - 1) as usize;
                            assert_eq!(held[slot], Some(i), "slot {slot} read for row {i}");
                            assert!(!filled.contains(&(slot as i64)), "slot read and filled");
                        } else {
                            assert_eq!(s, i, "a host read names its row");
                        }
                    }
                    for (&r, &s) in p.fill_rows.iter().zip(&p.fill_slots) {
                        held[s as usize] = Some(r);
                    }
                    let distinct = idx.iter().collect::<std::collections::HashSet<_>>().len();
                    assert_eq!((p.hits + p.misses) as usize, distinct);
                }
            }
        }
    }
}
