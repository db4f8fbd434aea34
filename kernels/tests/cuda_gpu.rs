//! The CUDA backend against the CPU backend and f64 loops, on a real GPU.
//!
//! Every test returns early, printing "skipped: no CUDA device", when `cuda::probe()` fails
//! (no driver, NVRTC or cuBLAS library, or no device), so the suite passes on CI machines.
//! With `COHOST_REQUIRE_CUDA=1` a missing device fails instead (use it on GPU machines).
//! Command: see "Running the GPU suite" in docs/CUDA.md.
//!
//! Accuracy: fp32 relative error ≤ 1e-5, measured as |got − want| / max(|want|, 1).

use cohost_kernels::cpu::CpuOps;
use cohost_kernels::cuda::{self, CudaOps, MappedHostTable};
use cohost_kernels::{Activation, EmbeddingStore, KernelError, Lane, Ops};
mod common;

use common::{act64, random};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "cuda_gpu/faults.rs"]
mod faults;
#[path = "cuda_gpu/lanes.rs"]
mod lanes;

const TOL: f64 = 1e-5;

/// Prints the skip line (or fails under `COHOST_REQUIRE_CUDA=1`) when CUDA is absent.
fn skip(e: &str) {
    let required = std::env::var("COHOST_REQUIRE_CUDA").is_ok_and(|v| !v.is_empty() && v != "0");
    assert!(
        !required,
        "COHOST_REQUIRE_CUDA is set but CUDA is unusable: {e}"
    );
    println!("skipped: no CUDA device ({e})");
}

fn setup() -> Option<(CudaOps, Lane)> {
    match cuda::probe() {
        Ok(info) => println!("CUDA device: {info}"),
        Err(e) => {
            skip(&e);
            return None;
        }
    }
    let ops = CudaOps::open().expect("probe succeeded, so the backend must open");
    let lane = ops.lane(0, 0).expect("lane");
    Some((ops, lane))
}

fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let rel = (g as f64 - w).abs() / w.abs().max(1.0);
        if rel > worst.0 {
            worst = (rel, i);
        }
    }
    assert!(
        worst.0 <= TOL,
        "{what}: relative error {:.3e} at {} (got {}, want {})",
        worst.0,
        worst.1,
        got[worst.1],
        want[worst.1]
    );
}

fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

#[test]
fn probe_describes_the_device_or_skips() {
    match cuda::probe() {
        Ok(info) => {
            println!("{info}\n{info:#?}");
            assert!(info.sm_count > 0 && info.total_memory > 0);
            assert!(info.free_memory <= info.total_memory);
        }
        Err(e) => skip(&e),
    }
}

#[test]
fn linear_matches_cpu_and_f64() {
    let Some((ops, lane)) = setup() else { return };
    let cpu = CpuOps::new();
    let cpu_lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(1);
    for &(n, k, out) in &[(1, 3, 1), (37, 129, 65), (256, 512, 300)] {
        for act in [Activation::None, Activation::Relu, Activation::Sigmoid] {
            let (x, w, b) = (
                random(&mut rng, n * k),
                random(&mut rng, out * k),
                random(&mut rng, out),
            );
            let mut want = vec![0f64; n * out];
            for r in 0..n {
                for o in 0..out {
                    let dot: f64 = (0..k)
                        .map(|i| x[r * k + i] as f64 * w[o * k + i] as f64)
                        .sum();
                    want[r * out + o] = act64(dot + b[o] as f64, act);
                }
            }
            let y = ops
                .linear(
                    &lane,
                    &ops.upload(&lane, &x, n, k).unwrap(),
                    &ops.weight(&w, out, k).unwrap(),
                    &ops.weight(&b, 1, out).unwrap(),
                    act,
                )
                .unwrap();
            assert_eq!(ops.shape(&y), (n, out));
            let got = ops.download(&lane, &y).unwrap();
            assert_close(
                &format!("linear {n}x{k}->{out} {act:?} vs f64"),
                &got,
                &want,
            );
            let cy = cpu
                .linear(
                    &cpu_lane,
                    &cpu.upload(&cpu_lane, &x, n, k).unwrap(),
                    &cpu.weight(&w, out, k).unwrap(),
                    &cpu.weight(&b, 1, out).unwrap(),
                    act,
                )
                .unwrap();
            let cpu_got = cpu.download(&cpu_lane, &cy).unwrap();
            assert_close(
                &format!("linear {n}x{k}->{out} {act:?} vs cpu"),
                &got,
                &widen(&cpu_got),
            );
        }
    }
}

#[test]
fn sigmoid_matches_cpu_and_f64() {
    let Some((ops, lane)) = setup() else { return };
    let mut rng = StdRng::seed_from_u64(2);
    let x: Vec<f32> = random(&mut rng, 33 * 70).iter().map(|v| v * 40.0).collect();
    let got = ops
        .download(
            &lane,
            &ops.sigmoid(&lane, &ops.upload(&lane, &x, 33, 70).unwrap())
                .unwrap(),
        )
        .unwrap();
    let want: Vec<f64> = x
        .iter()
        .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp()))
        .collect();
    assert_close("sigmoid vs f64", &got, &want);
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let cpu_got = cpu
        .download(
            &cl,
            &cpu.sigmoid(&cl, &cpu.upload(&cl, &x, 33, 70).unwrap())
                .unwrap(),
        )
        .unwrap();
    assert_close("sigmoid vs cpu", &got, &widen(&cpu_got));
}

#[test]
fn dot_interaction_matches_cpu_and_f64() {
    let Some((ops, lane)) = setup() else { return };
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(3);
    // 27 x 16 floats fit shared memory; 27 x 512 (55 KiB) takes the global-memory path.
    for &(n, d, tables) in &[(1, 4, 1), (64, 16, 26), (9, 512, 26)] {
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
        let gx = ops.upload(&lane, &x, n, d).unwrap();
        let gp: Vec<_> = pooled
            .iter()
            .map(|p| ops.upload(&lane, p, n, d).unwrap())
            .collect();
        let z = ops.dot_interaction(&lane, &gx, &gp).unwrap();
        assert_eq!(ops.shape(&z), (n, width));
        let got = ops.download(&lane, &z).unwrap();
        assert_close(
            &format!("dot_interaction n={n} d={d} k={tables} vs f64"),
            &got,
            &want,
        );
        let cx = cpu.upload(&cl, &x, n, d).unwrap();
        let cp: Vec<_> = pooled
            .iter()
            .map(|p| cpu.upload(&cl, p, n, d).unwrap())
            .collect();
        let cpu_got = cpu
            .download(&cl, &cpu.dot_interaction(&cl, &cx, &cp).unwrap())
            .unwrap();
        assert_close(
            &format!("dot_interaction n={n} d={d} vs cpu"),
            &got,
            &widen(&cpu_got),
        );
    }
}

#[test]
fn embedding_bag_sum_matches_cpu_and_f64() {
    let Some((ops, lane)) = setup() else { return };
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(4);
    let (rows, dim, n, bag) = (1000, 24, 50, 7);
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
    let resident = ops.resident_table("t", &table, rows, dim).unwrap();
    let mapped = MappedHostTable::new(&ops, "m", &table, rows, dim).unwrap();
    let cpu_table = cpu.resident_table("t", &table, rows, dim).unwrap();
    let cpu_got = cpu
        .download(&cl, &cpu_table.bag_sum(&cpu, &cl, &idx, bag).unwrap())
        .unwrap();
    for (name, store) in [
        ("resident", &*resident as &dyn EmbeddingStore<CudaOps>),
        ("mapped", &mapped),
    ] {
        let got = ops
            .download(&lane, &store.bag_sum(&ops, &lane, &idx, bag).unwrap())
            .unwrap();
        assert_close(&format!("{name} bag_sum vs f64"), &got, &want);
        assert_close(&format!("{name} bag_sum vs cpu"), &got, &widen(&cpu_got));
        let bad = store.bag_sum(&ops, &lane, &[0, rows as i64], 2);
        assert!(
            matches!(bad, Err(KernelError::IndexOutOfRange { .. })),
            "{name}: {bad:?}"
        );
    }
    assert_eq!(resident.memory().resident_bytes, (rows * dim * 4) as u64);
}

#[test]
fn grid_stride_loops_wrap_on_the_device() {
    let Some((ops, lane)) = setup() else { return };
    let sms = cuda::probe().unwrap().sm_count as usize;
    let mut rng = StdRng::seed_from_u64(8);
    // Twice the elements (and bags) the largest grid covers, plus a ragged end.
    let n = sms * 32 * 256 * 2 + 17;
    let x = random(&mut rng, n);
    let got = ops
        .download(
            &lane,
            &ops.sigmoid(&lane, &ops.upload(&lane, &x, 1, n).unwrap())
                .unwrap(),
        )
        .unwrap();
    let want: Vec<f64> = x
        .iter()
        .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp()))
        .collect();
    assert_close("sigmoid past one grid", &got, &want);
    let (rows, dim, bags) = (1000, 300, sms * 32 * 2 + 5);
    let table = random(&mut rng, rows * dim);
    let idx: Vec<i64> = (0..bags)
        .map(|_| rng.random_range(0..rows as i64))
        .collect();
    let store = ops.resident_table("t", &table, rows, dim).unwrap();
    let got = ops
        .download(&lane, &store.bag_sum(&ops, &lane, &idx, 1).unwrap())
        .unwrap();
    let want: Vec<f64> = idx
        .iter()
        .flat_map(|&r| table[r as usize * dim..(r as usize + 1) * dim].to_vec())
        .map(f64::from)
        .collect();
    assert_close("bag_sum past one grid, dim > 256", &got, &want);
}

#[test]
fn empty_matrices_and_k_zero_need_no_zero_byte_allocations() {
    let Some((ops, lane)) = setup() else { return };
    // x [3, 0] and w [4, 0] are empty buffers; y = act(0 + b).
    let b = [0.5f32, -1.0, 2.0, 0.0];
    let y = ops
        .linear(
            &lane,
            &ops.upload(&lane, &[], 3, 0).unwrap(),
            &ops.weight(&[], 4, 0).unwrap(),
            &ops.weight(&b, 1, 4).unwrap(),
            Activation::Relu,
        )
        .unwrap();
    let got = ops.download(&lane, &y).unwrap();
    let want: Vec<f64> = (0..3)
        .flat_map(|_| b.map(|v| f64::from(v.max(0.0))))
        .collect();
    assert_close("linear with k = 0", &got, &want);
    let empty = ops.resident_table("e", &[], 0, 8).unwrap();
    assert_eq!(
        ops.shape(&empty.bag_sum(&ops, &lane, &[], 1).unwrap()),
        (0, 8)
    );
    assert!(
        ops.download(&lane, &ops.weight(&[], 0, 5).unwrap())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn f16_weights_are_refused_on_cuda() {
    let Some((ops, _)) = setup() else { return };
    let r = ops.weight_f16(&[1.0; 6], 2, 3);
    match r {
        Err(KernelError::Unavailable(m)) => assert!(m.contains("fp16"), "{m}"),
        other => panic!("f16 weight accepted or wrong error: {other:?}"),
    }
}

/// `[x, e_0, ..]`: `tables + 1` random `n x d` matrices on the host.
fn random_features(rng: &mut StdRng, n: usize, d: usize, tables: usize) -> Vec<Vec<f32>> {
    (0..=tables).map(|_| random(rng, n * d)).collect()
}

#[test]
fn interaction_variants_match_cpu() {
    let Some((ops, lane)) = setup() else { return };
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(21);
    // Shared-memory and global-memory paths of the dot kernel; dlrm-v2's 27 x 128.
    for &(n, d, tables) in &[(1, 4, 1), (64, 16, 26), (9, 512, 26), (33, 128, 26)] {
        let feats = random_features(&mut rng, n, d, tables);
        let g: Vec<_> = feats
            .iter()
            .map(|v| ops.upload(&lane, v, n, d).unwrap())
            .collect();
        let c: Vec<_> = feats
            .iter()
            .map(|v| cpu.upload(&cl, v, n, d).unwrap())
            .collect();
        let f = tables + 1;
        let itself = ops.dot_interaction_itself(&lane, &g[0], &g[1..]).unwrap();
        assert_eq!(ops.shape(&itself), (n, d + f * (f + 1) / 2));
        let want = cpu
            .download(
                &cl,
                &cpu.dot_interaction_itself(&cl, &c[0], &c[1..]).unwrap(),
            )
            .unwrap();
        assert_close(
            &format!("dot_interaction_itself n={n} d={d} k={tables} vs cpu"),
            &ops.download(&lane, &itself).unwrap(),
            &widen(&want),
        );
        let cat = ops.cat_interaction(&lane, &g[0], &g[1..]).unwrap();
        assert_eq!(ops.shape(&cat), (n, f * d));
        let want: Vec<f32> = (0..n)
            .flat_map(|r| feats.iter().flat_map(move |v| &v[r * d..(r + 1) * d]))
            .copied()
            .collect();
        assert_eq!(
            ops.download(&lane, &cat).unwrap(),
            want,
            "cat_interaction n={n} d={d} k={tables}"
        );
    }
}

#[test]
fn cross_matches_cpu_and_f64() {
    let Some((ops, lane)) = setup() else { return };
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(22);
    for &(rows, cols) in &[(1, 1), (1, 3456), (512, 3456)] {
        let n = rows * cols;
        let [x0, y, xl] = [0, 1, 2].map(|_| random(&mut rng, n));
        let want: Vec<f64> = (0..n)
            .map(|i| x0[i] as f64 * y[i] as f64 + xl[i] as f64)
            .collect();
        let up = |v: &[f32]| ops.upload(&lane, v, rows, cols).unwrap();
        let out = ops.cross(&lane, &up(&x0), &up(&y), &up(&xl)).unwrap();
        assert_eq!(ops.shape(&out), (rows, cols));
        let got = ops.download(&lane, &out).unwrap();
        assert_close(&format!("cross {rows}x{cols} vs f64"), &got, &want);
        let cu = |v: &[f32]| cpu.upload(&cl, v, rows, cols).unwrap();
        let cpu_got = cpu
            .download(&cl, &cpu.cross(&cl, &cu(&x0), &cu(&y), &cu(&xl)).unwrap())
            .unwrap();
        assert_close(
            &format!("cross {rows}x{cols} vs cpu"),
            &got,
            &widen(&cpu_got),
        );
    }
}
