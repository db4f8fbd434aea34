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
fn gather_rows_copies_from_mapped_host_memory() {
    let Some((ops, lane)) = setup() else { return };
    let (rows, dim) = (100, 8);
    let table: Vec<f32> = (0..rows * dim).map(|v| v as f32).collect();
    let mapped = MappedHostTable::new(&ops, "m", &table, rows, dim).unwrap();
    let mut cache = ops.upload(&lane, &vec![0f32; 4 * dim], 4, dim).unwrap();
    ops.gather_rows(&lane, &mapped, &[99, 3], &mut cache, &[2, 0])
        .unwrap();
    let got = ops.download(&lane, &cache).unwrap();
    assert_eq!(&got[2 * dim..3 * dim], &table[99 * dim..100 * dim]);
    assert_eq!(&got[..dim], &table[3 * dim..4 * dim]);
    assert!(got[dim..2 * dim].iter().all(|&v| v == 0.0));
}

#[test]
fn upload_download_round_trip_small_large_and_across_lanes() {
    let Some((ops, lane)) = setup() else { return };
    let other = ops.lane(1, -1).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    // 10 values (pinned staging) and 5M values = 20 MiB (above the staging limit).
    for &(rows, cols) in &[(2, 5), (5000, 1000), (0, 7)] {
        let x = random(&mut rng, rows * cols);
        let t = ops.upload(&lane, &x, rows, cols).unwrap();
        assert_eq!(ops.download(&lane, &t).unwrap(), x);
        // A tensor made on one lane, read on another.
        assert_eq!(ops.download(&other, &t).unwrap(), x);
    }
    let x = random(&mut rng, 64);
    let t = ops.upload(&lane, &x, 8, 8).unwrap();
    let s = ops.sigmoid(&other, &t).unwrap();
    let want: Vec<f64> = x
        .iter()
        .map(|&v| 1.0 / (1.0 + (-(v as f64)).exp()))
        .collect();
    assert_close(
        "cross-lane sigmoid",
        &ops.download(&other, &s).unwrap(),
        &want,
    );
}

#[test]
fn two_lanes_run_batches_overlapping_in_time() {
    use cudarc::driver::sys::CUevent_flags;
    let Some((ops, _)) = setup() else { return };
    let lanes = [ops.lane(0, 0).unwrap(), ops.lane(1, 0).unwrap()];
    let (n, k) = (512, 1024);
    let mut rng = StdRng::seed_from_u64(6);
    let w = ops.weight(&random(&mut rng, k * k), k, k).unwrap();
    let b = ops.weight(&random(&mut rng, k), 1, k).unwrap();
    let x = random(&mut rng, n * k);
    let ctx = ops.context().clone();
    let timing = || {
        ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .unwrap()
    };
    ops.synchronize().unwrap();
    let t0 = timing();
    t0.record(&ctx.default_stream()).unwrap();
    let marks: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = lanes
            .iter()
            .map(|lane| {
                let (ops, w, b, x, timing) = (&ops, &w, &b, &x, &timing);
                s.spawn(move || {
                    let cohost_kernels::LaneKind::Cuda(stream) = &lane.kind else {
                        unreachable!()
                    };
                    let (start, end) = (timing(), timing());
                    start.record(stream).unwrap();
                    let mut h = ops.upload(lane, x, n, k).unwrap();
                    for _ in 0..40 {
                        h = ops.linear(lane, &h, w, b, Activation::Sigmoid).unwrap();
                    }
                    end.record(stream).unwrap();
                    ops.download(lane, &h).unwrap();
                    (start, end)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let at = |e: &cudarc::driver::CudaEvent| t0.elapsed_ms(e).unwrap() as f64;
    let spans: Vec<(f64, f64)> = marks.iter().map(|(s, e)| (at(s), at(e))).collect();
    let overlap = spans[0].1.min(spans[1].1) - spans[0].0.max(spans[1].0);
    println!("lane spans (ms from t0): {spans:?}; overlap {overlap:.3} ms");
    assert!(
        overlap > 0.0,
        "the two lanes ran one after the other: {spans:?}"
    );
}
