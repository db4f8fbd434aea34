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

/// The gate of [`gated_run`]: a heavy linear layer's weights and input on its own lane.
struct Gate {
    lane: Lane,
    w: cohost_kernels::cuda::CudaTensor,
    b: cohost_kernels::cuda::CudaTensor,
    x: cohost_kernels::cuda::CudaTensor,
}

impl Gate {
    /// A `4096 x 4096` layer: 8 of them are about 1.1 TFLOP, long enough to queue everything
    /// behind them.
    fn new(ops: &CudaOps, lane: Lane, rng: &mut StdRng) -> Self {
        let big = 4096;
        Gate {
            w: ops.weight(&random(rng, big * big), big, big).unwrap(),
            b: ops.weight(&random(rng, big), 1, big).unwrap(),
            x: ops
                .upload(&lane, &random(rng, big * big), big, big)
                .unwrap(),
            lane,
        }
    }
}

/// Queues `layers` small linear layers on each of `lanes` behind a gate (heavy GEMMs on a
/// third stream every lane waits for, so all the work is queued before any of it runs), and
/// returns the device time from the gate opening to the last lane's end, and each lane's own
/// span, in ms (CUDA events on both ends of each lane's work).
fn gated_run(
    ops: &CudaOps,
    gate: &Gate,
    lanes: &[&Lane],
    layers: usize,
    rng: &mut StdRng,
) -> (f64, Vec<f64>) {
    use cohost_kernels::LaneKind;
    use cudarc::driver::sys::CUevent_flags;
    let stream = |lane: &Lane| match &lane.kind {
        LaneKind::Cuda(s) => s.clone(),
        LaneKind::Cpu => unreachable!("CUDA lanes only"),
    };
    let timing = || {
        ops.context()
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .unwrap()
    };
    // Small layers: each launch is far from filling the device, so two lanes can share it.
    let (n, k) = (16, 256);
    let w = ops.weight(&random(rng, k * k), k, k).unwrap();
    let b = ops.weight(&random(rng, k), 1, k).unwrap();
    let x = random(rng, n * k);
    let inputs: Vec<_> = lanes
        .iter()
        .map(|lane| ops.upload(lane, &x, n, k).unwrap())
        .collect();
    ops.synchronize().unwrap();
    let mut g = ops
        .linear(&gate.lane, &gate.x, &gate.w, &gate.b, Activation::Sigmoid)
        .unwrap();
    for _ in 1..8 {
        g = ops
            .linear(&gate.lane, &g, &gate.w, &gate.b, Activation::Sigmoid)
            .unwrap();
    }
    let open = timing();
    open.record(&stream(&gate.lane)).unwrap();
    let marks: Vec<_> = lanes
        .iter()
        .zip(&inputs)
        .map(|(lane, h0)| {
            let s = stream(lane);
            s.wait(&open).unwrap();
            let (start, end) = (timing(), timing());
            start.record(&s).unwrap();
            let mut h = ops.linear(lane, h0, &w, &b, Activation::Relu).unwrap();
            for _ in 1..layers {
                h = ops.linear(lane, &h, &w, &b, Activation::Relu).unwrap();
            }
            end.record(&s).unwrap();
            (start, end, h)
        })
        .collect();
    if open.is_complete() {
        println!("warning: the gate opened before all work was queued");
    }
    ops.synchronize().unwrap();
    let spans: Vec<f64> = marks
        .iter()
        .map(|(s, e, _)| s.elapsed_ms(e).unwrap() as f64)
        .collect();
    let makespan = marks
        .iter()
        .map(|(_, e, _)| open.elapsed_ms(e).unwrap() as f64)
        .fold(0.0, f64::max);
    drop(g);
    (makespan, spans)
}

#[test]
fn two_lanes_run_batches_overlapping_in_time() {
    let Some((ops, _)) = setup() else { return };
    let lanes = [ops.lane(0, 0).unwrap(), ops.lane(1, 0).unwrap()];
    let mut rng = StdRng::seed_from_u64(6);
    let gate = Gate::new(&ops, ops.lane(2, 0).unwrap(), &mut rng);
    let layers = 200;
    // Warm-up (cuBLAS heuristics, allocator pools), then each lane alone, then both.
    gated_run(&ops, &gate, &[&lanes[0], &lanes[1]], 10, &mut rng);
    let solo: Vec<f64> = lanes
        .iter()
        .map(|lane| gated_run(&ops, &gate, &[lane], layers, &mut rng).0)
        .collect();
    let (both, spans) = gated_run(&ops, &gate, &[&lanes[0], &lanes[1]], layers, &mut rng);
    let serial = solo.iter().sum::<f64>();
    println!(
        "solo makespans {solo:?} ms (sum {serial:.3}); both lanes {both:.3} ms, spans {spans:?}"
    );
    // Run one after the other, the two lanes would take the sum of their solo times.
    assert!(
        both < 0.8 * serial,
        "two lanes took {both:.3} ms, solo runs {solo:?} ms: no overlap on the device"
    );
}

#[test]
fn cross_lane_reads_survive_the_tensor_being_freed_on_its_home_lane() {
    let Some((ops, lane)) = setup() else { return };
    let other = ops.lane(1, 0).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let (n, k) = (64, 1024);
    let w = random(&mut rng, k * k);
    let b = random(&mut rng, k);
    let x = random(&mut rng, n * k);
    let (gw, gb) = (ops.weight(&w, k, k).unwrap(), ops.weight(&b, 1, k).unwrap());
    let cpu = CpuOps::new();
    let cl = Lane::cpu(0);
    let want = cpu
        .download(
            &cl,
            &cpu.linear(
                &cl,
                &cpu.upload(&cl, &x, n, k).unwrap(),
                &cpu.weight(&w, k, k).unwrap(),
                &cpu.weight(&b, 1, k).unwrap(),
                Activation::Sigmoid,
            )
            .unwrap(),
        )
        .unwrap();
    for _ in 0..10 {
        // Keep `other` busy so the read of `t` is still queued when `t` is dropped.
        let mut busy = ops.upload(&other, &x, n, k).unwrap();
        for _ in 0..20 {
            busy = ops
                .linear(&other, &busy, &gw, &gb, Activation::Relu)
                .unwrap();
        }
        let t = ops.upload(&lane, &x, n, k).unwrap();
        let y = ops
            .linear(&other, &t, &gw, &gb, Activation::Sigmoid)
            .unwrap();
        // The free is queued on `lane`; the guard made `lane` wait for the read on `other`,
        // so refilling the freed memory on `lane` cannot change `y`.
        drop(t);
        let junk: Vec<_> = (0..4)
            .map(|_| ops.upload(&lane, &vec![f32::NAN; n * k], n, k).unwrap())
            .collect();
        assert_close(
            "linear on another lane after the input's free",
            &ops.download(&other, &y).unwrap(),
            &widen(&want),
        );
        drop((junk, busy));
    }
}

#[test]
fn gather_rows_refuses_rows_outside_either_matrix_and_the_device_stays_usable() {
    let Some((ops, lane)) = setup() else { return };
    let (rows, dim) = (10, 8);
    let table: Vec<f32> = (0..rows * dim).map(|v| v as f32).collect();
    let mapped = MappedHostTable::new(&ops, "m", &table, rows, dim).unwrap();
    let mut cache = ops.upload(&lane, &vec![0f32; 4 * dim], 4, dim).unwrap();
    for (src, dst) in [(&[10i64][..], &[0i64][..]), (&[-1], &[0]), (&[0], &[4])] {
        let r = ops.gather_rows(&lane, &mapped, src, &mut cache, dst);
        assert!(
            matches!(r, Err(KernelError::IndexOutOfRange { .. })),
            "{src:?} -> {dst:?}: {r:?}"
        );
    }
    let mut wide = ops.upload(&lane, &vec![0f32; 4 * 16], 4, 16).unwrap();
    let r = ops.gather_rows(&lane, &mapped, &[0], &mut wide, &[0]);
    assert!(matches!(r, Err(KernelError::Shape(_))), "{r:?}");
    assert!(
        ops.download(&lane, &cache)
            .unwrap()
            .iter()
            .all(|&v| v == 0.0)
    );
    ops.gather_rows(&lane, &mapped, &[9], &mut cache, &[3])
        .unwrap();
    let got = ops.download(&lane, &cache).unwrap();
    assert_eq!(&got[3 * dim..], &table[9 * dim..]);
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
