//! Every CUDA C kernel of `kernels/cuda/*.cu` run on the CPU under `kernels/cuda/host_shim.h`,
//! against f64 loops and the CPU backend. Needs no GPU, only a C++ compiler.
//!
//! The test compiles the kernel sources exactly as the backend embeds them
//! (`cuda::nvrtc::SOURCES`), the shim and `tests/cuda_host/driver.cpp` with `$CXX` (else `c++`,
//! `g++`, `clang++`) into `target/tmp/cuda-host/<pid>`: once plain (`-O2`), once under
//! AddressSanitizer + UBSan (out-of-bounds reads and writes, including past the launch's
//! dynamic shared memory) and once under ThreadSanitizer (races between a block's threads, a
//! missing `__syncthreads()`). A sanitizer the toolchain lacks is skipped with a note;
//! `COHOST_HOST_SANITIZERS=0` skips both. Without any C++ compiler the tests print
//! "skipped: no C++ compiler" and pass, unless `COHOST_REQUIRE_CXX=1`.
//!
//! Launch shapes come from `cuda::grid` (what the backend launches with) on a 1-SM device, so
//! grid-stride loops wrap (the grid is smaller than the work), plus explicit 1- and 3-block
//! grids. Accuracy: `|got − want| ≤ 1e-5 · max(|want|, 1)`.

use cohost_kernels::cpu::{CpuOps, embedding_bag_sum};
use cohost_kernels::cuda::grid;
use cohost_kernels::offload::{CachePolicy, CachedBatchPlan, SlotMap, plan_cached_batch};
use cohost_kernels::{Activation, Lane, Ops};
mod common;

use common::{act64, random};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "cuda_host/harness.rs"]
mod harness;
use harness::*;

#[test]
fn bias_act_matches_f64_and_the_cpu_linear() {
    if !ready() {
        return;
    }
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(11);
    // (n, k, out): batch 1; out not a multiple of the block; n * out = 11100 > 32 * 256, so
    // the backend's grid on one SM wraps.
    for &(n, k, out) in &[(1, 1, 1), (1, 13, 300), (3, 9, 257), (37, 20, 300)] {
        let (x, w, b) = (
            random(&mut rng, n * k),
            random(&mut rng, out * k),
            random(&mut rng, out),
        );
        // What cuBLAS leaves in y: x · wᵀ (here rounded from f64).
        let gemm: Vec<f64> = (0..n * out)
            .map(|i| {
                let (r, o) = (i / out, i % out);
                (0..k)
                    .map(|c| x[r * k + c] as f64 * w[o * k + c] as f64)
                    .sum()
            })
            .collect();
        let y0: Vec<f32> = gemm.iter().map(|&v| v as f32).collect();
        let backend = grid::elementwise(n * out, SMS);
        if n * out > 32 * 256 {
            assert!(
                (backend.grid * backend.block) as usize == 32 * 256,
                "{backend:?}"
            );
        }
        for act in [Activation::None, Activation::Relu, Activation::Sigmoid] {
            let want: Vec<f64> = (0..n * out)
                .map(|i| act64(y0[i] as f64 + b[i % out] as f64, act))
                .collect();
            let code = match act {
                Activation::None => 0,
                Activation::Relu => 1,
                Activation::Sigmoid => 2,
            };
            let cpu_y = cpu
                .download(
                    &cl,
                    &cpu.linear(
                        &cl,
                        &cpu.upload(&cl, &x, n, k).unwrap(),
                        &cpu.weight(&w, out, k).unwrap(),
                        &cpu.weight(&b, 1, out).unwrap(),
                        act,
                    )
                    .unwrap(),
                )
                .unwrap();
            for (l, sanitized) in launches(backend) {
                for (build, got) in run(
                    "bias_act_f32",
                    l,
                    // One activation is enough to look for races and overruns.
                    sanitized && act == Activation::Sigmoid,
                    &format!("{n} {out} {code}"),
                    &[Arr::F32(&y0), Arr::F32(&b)],
                ) {
                    let what = format!("[{build}] bias_act [{n}, {out}] {act:?} {l:?}");
                    assert_close(&format!("{what} vs f64"), &got, &want);
                    assert_close(&format!("{what} vs cpu linear"), &got, &widen(&cpu_y));
                }
            }
        }
    }
}

#[test]
fn sigmoid_matches_f64_and_the_cpu() {
    if !ready() {
        return;
    }
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(12);
    for &(rows, cols) in &[(1, 1), (1, 257), (33, 300)] {
        let n = rows * cols;
        let x: Vec<f32> = random(&mut rng, n).iter().map(|v| v * 40.0).collect();
        let want: Vec<f64> = x
            .iter()
            .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp()))
            .collect();
        let cpu_got = cpu
            .download(
                &cl,
                &cpu.sigmoid(&cl, &cpu.upload(&cl, &x, rows, cols).unwrap())
                    .unwrap(),
            )
            .unwrap();
        for (l, sanitized) in launches(grid::elementwise(n, SMS)) {
            for (build, got) in run("sigmoid_f32", l, sanitized, &n.to_string(), &[Arr::F32(&x)]) {
                assert_close(&format!("[{build}] sigmoid {n} {l:?} vs f64"), &got, &want);
                assert_close(
                    &format!("[{build}] sigmoid {n} {l:?} vs cpu"),
                    &got,
                    &widen(&cpu_got),
                );
            }
        }
    }
}

#[test]
fn dot_interaction_matches_f64_and_the_cpu_on_both_paths() {
    if !ready() {
        return;
    }
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(13);
    // (n, d, tables): batch 1; 40 rows > 32 blocks (wraps); d = 300 > 128 threads; 27 x 512
    // floats (55 KiB) take the global-memory path; 128 features give 8128 pairs.
    for &(n, d, tables) in &[
        (1, 4, 1),
        (40, 16, 26),
        (3, 300, 3),
        (9, 512, 26),
        (2, 3, 127),
    ] {
        let x = random(&mut rng, n * d);
        let pooled: Vec<Vec<f32>> = (0..tables).map(|_| random(&mut rng, n * d)).collect();
        let feats: Vec<&Vec<f32>> = std::iter::once(&x).chain(pooled.iter()).collect();
        let f = feats.len();
        let width = d + f * (f - 1) / 2;
        let mut want = vec![0f64; n * width];
        for r in 0..n {
            for c in 0..d {
                want[r * width + c] = x[r * d + c] as f64;
            }
            let mut p = d;
            for i in 1..f {
                for j in 0..i {
                    want[r * width + p] = (0..d)
                        .map(|c| feats[i][r * d + c] as f64 * feats[j][r * d + c] as f64)
                        .sum();
                    p += 1;
                }
            }
        }
        let cx = cpu.upload(&cl, &x, n, d).unwrap();
        let cp: Vec<_> = pooled
            .iter()
            .map(|p| cpu.upload(&cl, p, n, d).unwrap())
            .collect();
        let cpu_got = cpu
            .download(&cl, &cpu.dot_interaction(&cl, &cx, &cp).unwrap())
            .unwrap();
        let shape = grid::interaction(n, f, d, SMS);
        assert_eq!(shape.use_smem, f * d * 4 <= 48 << 10);
        let arrays: Vec<Arr> = feats.iter().map(|v| Arr::F32(v)).collect();
        for (l, sanitized) in launches(shape.launch) {
            let scalars = format!("{f} {n} {d} {} 0", i32::from(shape.use_smem));
            for (build, got) in run("dot_interaction_f32", l, sanitized, &scalars, &arrays) {
                let what = format!(
                    "[{build}] dot_interaction n={n} d={d} F={f} smem={} {l:?}",
                    shape.use_smem
                );
                assert_close(&format!("{what} vs f64"), &got, &want);
                assert_close(&format!("{what} vs cpu"), &got, &widen(&cpu_got));
            }
        }
    }
}

#[test]
fn dot_interaction_itself_matches_f64_and_the_cpu_on_both_paths() {
    if !ready() {
        return;
    }
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(16);
    // As the strict triangle's test; 127 tables give 8256 pairs with the diagonal.
    for &(n, d, tables) in &[
        (1, 4, 1),
        (40, 16, 26),
        (3, 300, 3),
        (9, 512, 26),
        (2, 3, 127),
    ] {
        let feats: Vec<Vec<f32>> = (0..=tables).map(|_| random(&mut rng, n * d)).collect();
        let f = feats.len();
        let width = d + f * (f + 1) / 2;
        let mut want = vec![0f64; n * width];
        for r in 0..n {
            for c in 0..d {
                want[r * width + c] = feats[0][r * d + c] as f64;
            }
            let mut p = d;
            for i in 0..f {
                for j in 0..=i {
                    want[r * width + p] = (0..d)
                        .map(|c| feats[i][r * d + c] as f64 * feats[j][r * d + c] as f64)
                        .sum();
                    p += 1;
                }
            }
        }
        let up: Vec<_> = feats
            .iter()
            .map(|v| cpu.upload(&cl, v, n, d).unwrap())
            .collect();
        let cpu_got = cpu
            .download(
                &cl,
                &cpu.dot_interaction_itself(&cl, &up[0], &up[1..]).unwrap(),
            )
            .unwrap();
        let shape = grid::interaction(n, f, d, SMS);
        let arrays: Vec<Arr> = feats.iter().map(|v| Arr::F32(v)).collect();
        for (l, sanitized) in launches(shape.launch) {
            let scalars = format!("{f} {n} {d} {} 1", i32::from(shape.use_smem));
            for (build, got) in run("dot_interaction_f32", l, sanitized, &scalars, &arrays) {
                let what = format!(
                    "[{build}] dot_interaction itself n={n} d={d} F={f} smem={} {l:?}",
                    shape.use_smem
                );
                assert_close(&format!("{what} vs f64"), &got, &want);
                assert_close(&format!("{what} vs cpu"), &got, &widen(&cpu_got));
            }
        }
    }
}

#[test]
fn cat_interaction_matches_the_features_side_by_side_and_the_cpu() {
    if !ready() {
        return;
    }
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(17);
    for &(n, d, tables) in &[(1, 4, 1), (40, 16, 26), (3, 300, 3), (2, 3, 127)] {
        let feats: Vec<Vec<f32>> = (0..=tables).map(|_| random(&mut rng, n * d)).collect();
        let f = feats.len();
        let want: Vec<f64> = (0..n)
            .flat_map(|r| feats.iter().flat_map(move |v| &v[r * d..(r + 1) * d]))
            .map(|&v| v as f64)
            .collect();
        let up: Vec<_> = feats
            .iter()
            .map(|v| cpu.upload(&cl, v, n, d).unwrap())
            .collect();
        let cpu_got = cpu
            .download(&cl, &cpu.cat_interaction(&cl, &up[0], &up[1..]).unwrap())
            .unwrap();
        let arrays: Vec<Arr> = feats.iter().map(|v| Arr::F32(v)).collect();
        for (l, sanitized) in launches(grid::elementwise(n * f * d, SMS)) {
            let scalars = format!("{f} {n} {d}");
            for (build, got) in run("cat_interaction_f32", l, sanitized, &scalars, &arrays) {
                let what = format!("[{build}] cat_interaction n={n} d={d} F={f} {l:?}");
                assert_close(&format!("{what} vs f64"), &got, &want);
                assert_close(&format!("{what} vs cpu"), &got, &widen(&cpu_got));
            }
        }
    }
}

#[test]
fn cross_matches_f64_and_the_cpu() {
    if !ready() {
        return;
    }
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(18);
    for &(rows, cols) in &[(1, 1), (1, 3456), (33, 300)] {
        let n = rows * cols;
        let [x0, y, xl] = [0, 1, 2].map(|_| random(&mut rng, n));
        let want: Vec<f64> = (0..n)
            .map(|i| x0[i] as f64 * y[i] as f64 + xl[i] as f64)
            .collect();
        let up = |v: &[f32]| cpu.upload(&cl, v, rows, cols).unwrap();
        let cpu_got = cpu
            .download(&cl, &cpu.cross(&cl, &up(&x0), &up(&y), &up(&xl)).unwrap())
            .unwrap();
        let arrays = [Arr::F32(&x0), Arr::F32(&y), Arr::F32(&xl)];
        for (l, sanitized) in launches(grid::elementwise(n, SMS)) {
            for (build, got) in run("cross_f32", l, sanitized, &n.to_string(), &arrays) {
                assert_close(&format!("[{build}] cross {n} {l:?} vs f64"), &got, &want);
                assert_close(
                    &format!("[{build}] cross {n} {l:?} vs cpu"),
                    &got,
                    &widen(&cpu_got),
                );
            }
        }
    }
}

#[test]
fn embedding_bag_sum_matches_f64_and_the_cpu_table() {
    if !ready() {
        return;
    }
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(14);
    // (rows, dim, n, bag): 50 bags > 32 blocks (wraps); dim 24 (not a warp multiple);
    // dim 300 > 256 threads; batch 1 and bag 1.
    for &(rows, dim, n, bag) in &[
        (1000, 24, 50, 7),
        (10, 300, 1, 1),
        (5, 1, 3, 1),
        (100, 64, 33, 1),
    ] {
        let table = random(&mut rng, rows * dim);
        let idx: Vec<i64> = (0..n * bag)
            .map(|_| rng.random_range(0..rows as i64))
            .collect();
        let mut want = vec![0f64; n * dim];
        for r in 0..n {
            for k in 0..bag {
                let row = idx[r * bag + k] as usize;
                for c in 0..dim {
                    want[r * dim + c] += table[row * dim + c] as f64;
                }
            }
        }
        let cpu_table = cpu.resident_table("t", &table, rows, dim).unwrap();
        let cpu_got = cpu
            .download(&cl, &cpu_table.bag_sum(&cpu, &cl, &idx, bag).unwrap())
            .unwrap();
        for (l, sanitized) in launches(grid::rows(n, dim, SMS)) {
            for (build, got) in run(
                "embedding_bag_sum_f32",
                l,
                sanitized,
                &format!("{n} {bag} {dim}"),
                &[Arr::F32(&table), Arr::I64(&idx)],
            ) {
                let what = format!("[{build}] bag_sum n={n} bag={bag} dim={dim} {l:?}");
                assert_close(&format!("{what} vs f64"), &got, &want);
                assert_close(&format!("{what} vs cpu"), &got, &widen(&cpu_got));
            }
        }
    }
}

#[test]
fn gather_rows_copies_exactly_the_listed_rows() {
    if !ready() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(15);
    // (src rows, dim, cache rows, count): 40 rows > 32 blocks (wraps); dim 300 > 256 threads.
    for &(rows, dim, cache, count) in &[(100, 8, 4, 2), (100, 300, 64, 40), (7, 33, 7, 1)] {
        let src = random(&mut rng, rows * dim);
        let mut slots: Vec<i64> = (0..cache as i64).collect();
        for i in (1..slots.len()).rev() {
            slots.swap(i, rng.random_range(0..=i));
        }
        let dst_rows = &slots[..count];
        let src_rows: Vec<i64> = (0..count)
            .map(|_| rng.random_range(0..rows as i64))
            .collect();
        let before: Vec<f32> = (0..cache * dim).map(|v| -(v as f32)).collect();
        let mut want = before.clone();
        for (&s, &d) in src_rows.iter().zip(dst_rows) {
            let (s, d) = (s as usize, d as usize);
            want[d * dim..(d + 1) * dim].copy_from_slice(&src[s * dim..(s + 1) * dim]);
        }
        for (l, sanitized) in launches(grid::rows(count, dim, SMS)) {
            for (build, got) in run(
                "gather_rows_f32",
                l,
                sanitized,
                &format!("{count} {dim}"),
                &[
                    Arr::F32(&src),
                    Arr::I64(&src_rows),
                    Arr::I64(dst_rows),
                    Arr::F32(&before),
                ],
            ) {
                assert_eq!(got, want, "[{build}] gather {count} rows of {dim} {l:?}");
            }
        }
    }
}

/// One batch of `embedding_bag_cached_f32` against `slots`' plan, checked against the CPU
/// `embedding_bag_sum` over the full table (1e-5) and the cache after the launch against the
/// plan's fills applied on the host (exact). Returns the plan and the cache after it.
fn cached_batch(
    table: &[f32],
    dim: usize,
    slots: &mut SlotMap,
    cache: &[f32],
    idx: &[i64],
    bag: usize,
) -> (CachedBatchPlan, Vec<f32>) {
    let n = idx.len() / bag;
    let plan = plan_cached_batch(slots, idx);
    let mut want = vec![0f32; n * dim];
    embedding_bag_sum(table, dim, idx, bag, &mut want);
    let mut want_cache = cache.to_vec();
    for (&r, &s) in plan.fill_rows.iter().zip(&plan.fill_slots) {
        let (r, s) = (r as usize, s as usize);
        want_cache[s * dim..(s + 1) * dim].copy_from_slice(&table[r * dim..(r + 1) * dim]);
    }
    let mut after = None;
    let work = n.max(plan.fill_rows.len());
    for (l, sanitized) in launches(grid::rows(work, dim, SMS)) {
        for (build, got) in run(
            "embedding_bag_cached_f32",
            l,
            sanitized,
            &format!("{n} {bag} {dim} {}", plan.fill_rows.len()),
            &[
                Arr::F32(table),
                Arr::F32(cache),
                Arr::I64(&plan.src),
                Arr::I64(&plan.fill_rows),
                Arr::I64(&plan.fill_slots),
            ],
        ) {
            let what = format!("[{build}] bag_cached n={n} bag={bag} dim={dim} {l:?}");
            assert_close(&format!("{what} vs cpu"), &got[..n * dim], &widen(&want));
            let cache_after = &got[n * dim..];
            assert_eq!(cache_after.len(), want_cache.len(), "{what}: cache length");
            if let Some(i) = (0..want_cache.len()).find(|&i| cache_after[i] != want_cache[i]) {
                panic!(
                    "{what}: cache after the fills, slot {} value {}: got {}, want {}",
                    i / dim.max(1),
                    i % dim.max(1),
                    cache_after[i],
                    want_cache[i]
                );
            }
            after.get_or_insert(got[n * dim..].to_vec());
        }
    }
    (plan, after.expect("at least one build ran"))
}

#[test]
fn embedding_bag_cached_matches_the_cpu_bag_sum_through_hits_misses_and_evictions() {
    if !ready() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(16);
    // (rows, dim, cache rows, n, bag, policy): 50 bags > 32 blocks (the grid wraps); dim 300
    // > 256 threads; bag 1; a cache smaller than a batch's distinct rows (evicts in-batch).
    for &(rows, dim, cap, n, bag, policy) in &[
        (1000, 24, 400, 50, 7, CachePolicy::Lru),
        (40, 300, 40, 3, 1, CachePolicy::Lfu),
        (200, 33, 8, 40, 3, CachePolicy::Lru),
        (200, 33, 8, 40, 3, CachePolicy::Lfu),
    ] {
        let table = random(&mut rng, rows * dim);
        let mut slots = SlotMap::new(cap, policy);
        let cache = vec![0f32; cap * dim];
        // Repeated indices inside the batch.
        let idx: Vec<i64> = (0..n * bag)
            .map(|_| rng.random_range(0..rows as i64 / 4))
            .collect();
        let distinct = idx.iter().collect::<std::collections::HashSet<_>>().len() as u64;
        // 1) Empty cache: all misses.
        let (plan, cache) = cached_batch(&table, dim, &mut slots, &cache, &idx, bag);
        assert_eq!(
            (plan.hits, plan.misses),
            (0, distinct),
            "first batch: all misses"
        );
        assert!(plan.src.iter().all(|&s| s >= 0), "misses read host rows");
        // 2) The same batch again: all hits when it fits the cache.
        let (plan, cache) = cached_batch(&table, dim, &mut slots, &cache, &idx, bag);
        if distinct as usize <= cap {
            assert_eq!((plan.hits, plan.misses), (distinct, 0), "repeat: all hits");
            assert!(plan.src.iter().all(|&s| s < 0), "hits read cache slots");
            assert!(plan.fill_rows.is_empty());
        } else {
            assert!(plan.evictions > 0, "a batch wider than the cache evicts");
        }
        // 3) A mixed batch over the whole table.
        let idx2: Vec<i64> = (0..n * bag)
            .map(|_| rng.random_range(0..rows as i64))
            .collect();
        let _ = cached_batch(&table, dim, &mut slots, &cache, &idx2, bag);
    }
}

#[test]
fn the_shim_rewrites_only_dynamic_shared_declarations() {
    let (text, n) = host_source("k.cu", "a\n    extern __shared__ float rows[];\nb");
    assert_eq!(n, 1);
    assert_eq!(
        text,
        "#line 1 \"k.cu\"\na\nCOHOST_DYNAMIC_SHARED(float, rows);\nb\n"
    );
}
