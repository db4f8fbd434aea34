//! Many lanes gathering the same rows through a tiny cache (constant eviction) never see
//! a torn row: every row encodes its own number and a checksum, checked on every read.

use cohost_kernels::cpu::CpuOps;
use cohost_kernels::offload::{
    CacheConfig, CachePolicy, CacheTier, HostRows, MappedRows, OffloadedTable, RowSource,
    StoredType,
};
use cohost_kernels::{EmbeddingStore, Lane, Ops};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const ROWS: usize = 64;
const DIM: usize = 32;

/// Row `r`: `DIM - 1` values `r·1000 + j·(r % 7 + 1)` (exact in f32) and their sum.
fn row(r: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..DIM - 1)
        .map(|j| (r * 1000 + j * (r % 7 + 1)) as f32)
        .collect();
    v.push(v.iter().sum());
    v
}

fn check(got: &[f32], r: usize) {
    let (body, sum) = got.split_at(DIM - 1);
    assert_eq!(
        body.iter().sum::<f32>(),
        sum[0],
        "checksum of row {r}: {got:?}"
    );
    assert_eq!(got, row(r).as_slice(), "row {r} torn or wrong");
}

fn hammer(source: Box<dyn RowSource>, policy: CachePolicy, cap: usize, shards: usize) {
    let cfg = CacheConfig {
        capacity_rows: cap,
        policy,
        shards,
    };
    let table = Arc::new(OffloadedTable::new("t", source, cfg, CacheTier::Device));
    let threads: Vec<_> = (0..8u64)
        .map(|seed| {
            let t = table.clone();
            std::thread::spawn(move || {
                let ops = CpuOps::new();
                let lane = Lane::cpu(seed as usize);
                let mut rng = StdRng::seed_from_u64(seed);
                let mut checked = 0usize;
                for _ in 0..1500 {
                    // Mostly the same few rows (contention on the same slots), some others.
                    let n = rng.random_range(1..=12);
                    let idx: Vec<i64> = (0..n)
                        .map(|_| {
                            if rng.random_bool(0.7) {
                                rng.random_range(0..6)
                            } else {
                                rng.random_range(0..ROWS as i64)
                            }
                        })
                        .collect();
                    let y = t.bag_sum(&ops, &lane, &idx, 1).unwrap();
                    let out = ops.download(&lane, &y).unwrap();
                    for (o, &r) in out.chunks_exact(DIM).zip(&idx) {
                        check(o, r as usize);
                        checked += 1;
                    }
                }
                checked
            })
        })
        .collect();
    let checked: usize = threads.into_iter().map(|h| h.join().unwrap()).sum();
    let m = EmbeddingStore::<CpuOps>::memory(&*table);
    assert!(checked > 8 * 1500);
    assert!(m.evictions > 1000, "the cache must churn: {m:?}");
}

fn values() -> Vec<f32> {
    (0..ROWS).flat_map(row).collect()
}

#[test]
fn host_rows_never_tear_under_eviction() {
    for policy in [CachePolicy::Lru, CachePolicy::Lfu] {
        for (cap, shards) in [(1, 1), (3, 1), (4, 2)] {
            let src = HostRows::new(values(), ROWS, DIM).unwrap();
            hammer(Box::new(src), policy, cap, shards);
        }
    }
}

#[test]
fn mapped_rows_never_tear_under_eviction() {
    let bytes: Vec<u8> = values().iter().flat_map(|v| v.to_le_bytes()).collect();
    let bytes = Arc::new(bytes);
    for policy in [CachePolicy::Lru, CachePolicy::Lfu] {
        let src = MappedRows::new(bytes.clone(), 0, ROWS, DIM, StoredType::F32).unwrap();
        hammer(Box::new(src), policy, 2, 1);
    }
}
