//! The GPU suite's lane and memory tests: uploads and downloads across lanes, two lanes
//! overlapping in time, cross-lane reads, and row gathers from mapped host memory.

use super::*;

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
