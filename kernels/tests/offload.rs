//! Offloaded tables against resident ones: bit-identical pooled outputs over random
//! inputs and cache sizes down to one row (LRU and LFU, host copy and mapped bytes in
//! f32/f16/bf16), and exact hit/miss/eviction counts on scripted access sequences.

use cohost_kernels::cpu::{CpuOps, CpuTable};
use cohost_kernels::offload::{
    CacheConfig, CachePolicy, CacheTier, HostRows, MappedRows, OffloadedTable, RowSource,
    StoredType,
};
use cohost_kernels::{EmbeddingStore, Lane, Ops, TablePlacement};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

fn pooled(t: &dyn EmbeddingStore<CpuOps>, idx: &[i64], bag: usize) -> Vec<f32> {
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    let y = t.bag_sum(&ops, &lane, idx, bag).expect("bag_sum");
    ops.download(&lane, &y).expect("download")
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The three host tiers of one table, plus the f32 values a resident table would hold.
fn sources(
    rng: &mut StdRng,
    rows: usize,
    dim: usize,
) -> Vec<(String, Vec<f32>, Box<dyn RowSource>)> {
    let values: Vec<f32> = (0..rows * dim)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut out: Vec<(String, Vec<f32>, Box<dyn RowSource>)> = Vec::new();
    out.push((
        "host".into(),
        values.clone(),
        Box::new(HostRows::new(values.clone(), rows, dim).unwrap()),
    ));
    // f32 at an odd offset (unaligned), as a file could hold it.
    let mut f32_bytes = vec![0u8; 3];
    values
        .iter()
        .for_each(|v| f32_bytes.extend(v.to_le_bytes()));
    out.push((
        "mapped-f32".into(),
        values.clone(),
        Box::new(MappedRows::new(Arc::new(f32_bytes), 3, rows, dim, StoredType::F32).unwrap()),
    ));
    let h: Vec<half::f16> = values.iter().map(|&v| half::f16::from_f32(v)).collect();
    let h_bytes: Vec<u8> = h.iter().flat_map(|v| v.to_le_bytes()).collect();
    out.push((
        "mapped-f16".into(),
        h.iter().map(|v| v.to_f32()).collect(),
        Box::new(MappedRows::new(Arc::new(h_bytes), 0, rows, dim, StoredType::F16).unwrap()),
    ));
    let b: Vec<half::bf16> = values.iter().map(|&v| half::bf16::from_f32(v)).collect();
    let b_bytes: Vec<u8> = b.iter().flat_map(|v| v.to_le_bytes()).collect();
    out.push((
        "mapped-bf16".into(),
        b.iter().map(|v| v.to_f32()).collect(),
        Box::new(MappedRows::new(Arc::new(b_bytes), 0, rows, dim, StoredType::BF16).unwrap()),
    ));
    out
}

#[test]
fn offloaded_bags_are_bit_identical_to_resident() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut cases = 0;
    for round in 0..6 {
        let rows = [1, 2, 17, 100, 333, 1000][round];
        let dim = [1, 3, 8, 16, 5, 32][round];
        for (kind, values, source) in sources(&mut rng, rows, dim) {
            let resident = CpuTable::new("t", values, rows, dim).unwrap();
            let mut caps = vec![1, 2, rows / 10, rows / 2, rows, rows + 5];
            caps.dedup();
            let mut source = Some(source);
            for (ci, &cap) in caps.iter().enumerate() {
                for policy in [CachePolicy::Lru, CachePolicy::Lfu] {
                    // One table per (source, cache size, policy); the source is rebuilt
                    // cheaply by reusing the first and cloning data for the rest.
                    let src: Box<dyn RowSource> = match source.take() {
                        Some(s) => s,
                        None => Box::new(HostRows::new(read_all(&resident), rows, dim).unwrap()),
                    };
                    let shards = if ci % 2 == 0 { 0 } else { 3 };
                    let cfg = CacheConfig {
                        capacity_rows: cap,
                        policy,
                        shards,
                    };
                    let t = OffloadedTable::new("t", src, cfg, CacheTier::Device);
                    for _ in 0..25 {
                        let bag = rng.random_range(1..=4);
                        let n = rng.random_range(1..=24);
                        // Skewed and uniform keys, so both hits and misses occur.
                        let idx: Vec<i64> = (0..n * bag)
                            .map(|_| {
                                if rng.random_bool(0.5) {
                                    rng.random_range(0..rows.min(4)) as i64
                                } else {
                                    rng.random_range(0..rows) as i64
                                }
                            })
                            .collect();
                        let want = pooled(&resident, &idx, bag);
                        let got = pooled(&t, &idx, bag);
                        assert_eq!(
                            bits(&got),
                            bits(&want),
                            "{kind}: rows {rows} dim {dim} cache {cap} {policy:?} bag {bag} idx {idx:?}"
                        );
                        cases += 1;
                    }
                    let m = EmbeddingStore::<CpuOps>::memory(&t);
                    assert!(m.hits + m.misses > 0);
                    assert!(m.cache_capacity_rows as usize <= rows.max(1));
                }
            }
        }
    }
    assert!(cases > 2000, "{cases} cases");
}

fn read_all(t: &CpuTable) -> Vec<f32> {
    t.data().to_vec()
}

fn one_row_table(policy: CachePolicy, cap: usize) -> OffloadedTable {
    let rows = 16;
    let data: Vec<f32> = (0..rows * 2).map(|v| v as f32).collect();
    let src = Box::new(HostRows::new(data, rows, 2).unwrap());
    let cfg = CacheConfig {
        capacity_rows: cap,
        policy,
        shards: 1,
    };
    OffloadedTable::new("t", src, cfg, CacheTier::Device)
}

fn counters(t: &OffloadedTable) -> (u64, u64, u64) {
    let m = EmbeddingStore::<CpuOps>::memory(t);
    (m.hits, m.misses, m.evictions)
}

#[test]
fn scripted_lru_counts() {
    let t = one_row_table(CachePolicy::Lru, 2);
    for k in [1, 2, 1, 3, 2, 1] {
        pooled(&t, &[k], 1);
    }
    // 1 miss, 2 miss, 1 hit, 3 miss (evicts 2), 2 miss (evicts 1), 1 miss (evicts 3).
    assert_eq!(counters(&t), (1, 5, 3));
}

#[test]
fn scripted_lfu_counts() {
    let t = one_row_table(CachePolicy::Lfu, 2);
    for k in [1, 2, 1, 3, 2, 1] {
        pooled(&t, &[k], 1);
    }
    // 1 miss, 2 miss, 1 hit (count 2), 3 miss (evicts 2), 2 miss (evicts 3), 1 hit.
    assert_eq!(counters(&t), (2, 4, 2));
}

#[test]
fn keys_are_deduplicated_within_a_batch() {
    let t = one_row_table(CachePolicy::Lru, 4);
    let out = pooled(&t, &[5, 5, 5, 6], 2);
    assert_eq!(out, vec![20.0, 22.0, 22.0, 24.0]);
    assert_eq!(counters(&t), (0, 2, 0), "one miss per distinct row");
    pooled(&t, &[5, 6, 5], 1);
    assert_eq!(counters(&t), (2, 2, 0));
    // A single-row cache: a batch needing 3 rows still pools correctly.
    let t = one_row_table(CachePolicy::Lfu, 1);
    assert_eq!(pooled(&t, &[1, 2, 3], 3), vec![12.0, 15.0]);
    assert_eq!(counters(&t), (0, 3, 2));
}

#[test]
fn memory_and_placement_are_reported() {
    let t = one_row_table(CachePolicy::Lru, 4);
    let m = EmbeddingStore::<CpuOps>::memory(&t);
    assert_eq!(
        EmbeddingStore::<CpuOps>::placement(&t),
        TablePlacement::HostOffloaded
    );
    assert_eq!(m.host_bytes, 16 * 2 * 4);
    assert_eq!(m.resident_bytes, 0);
    assert!(m.cache_bytes >= 4 * 2 * 4, "slots plus index");
    assert_eq!(m.cache_bytes, t.cache().bytes());
    let h = OffloadedTable::new(
        "h",
        Box::new(HostRows::new(vec![0.0; 8], 4, 2).unwrap()),
        CacheConfig::rows(2, CachePolicy::Lru),
        CacheTier::Host,
    );
    let m = EmbeddingStore::<CpuOps>::memory(&h);
    assert_eq!((m.cache_bytes, m.host_bytes), (0, 32 + h.cache().bytes()));
}

#[test]
fn bad_indices_are_errors() {
    let t = one_row_table(CachePolicy::Lru, 2);
    let ops = CpuOps::new();
    let lane = Lane::cpu(0);
    assert!(t.bag_sum(&ops, &lane, &[16], 1).is_err());
    assert!(t.bag_sum(&ops, &lane, &[-1], 1).is_err());
    assert!(t.bag_sum(&ops, &lane, &[1, 2, 3], 2).is_err());
}
