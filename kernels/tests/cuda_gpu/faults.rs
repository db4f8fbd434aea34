//! The GPU suite's fault and staging tests: an injected out-of-range read is a sticky fault
//! (in a child process, since it loses the context), an oversize allocation fails only its
//! op, and uploads queued back to back through the staging ring keep their own data.

use super::*;
use std::process::Command;

/// Set in the child process that runs [`sticky_fault_child`].
const CHILD_VAR: &str = "COHOST_FAULT_CHILD";

/// The child's half of the sticky-fault test: lane A's work completes and is correct, then
/// a raw-address bag on lane B reads far outside its table. Does nothing unless the parent
/// test started it (the fault would lose this process's CUDA context for every later test).
#[test]
fn sticky_fault_child() {
    if std::env::var(CHILD_VAR).is_err() {
        return;
    }
    let (ops, a) = setup().expect("the parent saw a device");
    let b = ops.lane(1, 0).unwrap();
    let (rows, dim) = (16, 8);
    let table: Vec<f32> = (0..rows * dim).map(|v| v as f32).collect();
    let mapped = MappedHostTable::new(&ops, "victim", &table, rows, dim).unwrap();
    // Lane A: a correct bag, downloaded (so completed) before the fault.
    let good = mapped.bag_sum(&ops, &a, &[1, 2, 15, 0], 2).unwrap();
    let got = ops.download(&a, &good).unwrap();
    let want: Vec<f32> = (0..dim)
        .map(|c| table[dim + c] + table[2 * dim + c])
        .chain((0..dim).map(|c| table[15 * dim + c] + table[c]))
        .collect();
    assert_eq!(got, want, "lane A's batch before the fault");
    assert!(ops.batch_boundary(&a).is_ok());
    // Lane B: 2^36 rows past the table (2 TiB away): an illegal address.
    let far = 1i64 << 36;
    // SAFETY: deliberately violated — this child process exists to lose its context.
    let bad = unsafe { ops.bag_sum_raw(&b, mapped.device_ptr(), dim, &[0, far], 2) };
    let downloaded = bad.and_then(|t| ops.download(&b, &t));
    assert!(
        downloaded.is_err(),
        "the faulting batch must fail: {downloaded:?}"
    );
    let fault = ops
        .batch_boundary(&b)
        .expect_err("the boundary check must see the fault");
    assert!(fault.is_sticky(), "an illegal address is sticky: {fault}");
    println!("FAULT-CHILD-OK {fault}");
    // The context is lost: leak everything rather than free it into a dead context.
    std::mem::forget((good, mapped, a, b, ops));
}

#[test]
fn an_out_of_range_raw_index_is_a_sticky_fault_after_another_lanes_work_completed() {
    let Some(_) = setup() else { return };
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "faults::sticky_fault_child",
            "--exact",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_VAR, "1")
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    // The verdict is the child's test result (its exit after a lost context is not).
    assert!(
        text.contains("FAULT-CHILD-OK"),
        "child did not reach the fault: {text}"
    );
    assert!(text.contains("1 passed"), "child failed: {text}");
}

#[test]
fn an_oversize_allocation_fails_its_op_only_and_the_device_stays_usable() {
    let Some((ops, lane)) = setup() else { return };
    // x [2^16, 1] · w [2^20, 1]ᵀ needs a 2^36-float (256 GiB) output: more than any GPU.
    let (n, out) = (1usize << 16, 1usize << 20);
    let x = ops.upload(&lane, &vec![1.0; n], n, 1).unwrap();
    let w = ops.weight(&vec![1.0; out], out, 1).unwrap();
    let b = ops.weight(&vec![0.0; out], 1, out).unwrap();
    let r = ops.linear(&lane, &x, &w, &b, Activation::None);
    assert!(matches!(r, Err(KernelError::Cuda(_))), "{:?}", r.err());
    let boundary = ops.batch_boundary(&lane);
    assert!(
        boundary.is_ok(),
        "out of memory is not a device fault: {boundary:?}"
    );
    let small = ops.upload(&lane, &[0.0, 1.0, -2.0], 1, 3).unwrap();
    let s = ops.sigmoid(&lane, &small).unwrap();
    let want: Vec<f64> = [0.0f64, 1.0, -2.0]
        .iter()
        .map(|v| 1.0 / (1.0 + (-v).exp()))
        .collect();
    assert_close(
        "sigmoid after the OOM",
        &ops.download(&lane, &s).unwrap(),
        &want,
    );
    assert!(ops.batch_boundary(&lane).is_ok());
}

#[test]
fn uploads_queued_back_to_back_through_the_staging_ring_keep_their_own_data() {
    let Some((ops, lane)) = setup() else { return };
    let mut rng = StdRng::seed_from_u64(21);
    let cpu = CpuOps::new();
    let cpu_lane = Lane::cpu(0);
    let (rows, dim) = (5000, 16);
    let table = random(&mut rng, rows * dim);
    let gpu_t = ops.resident_table("t", &table, rows, dim).unwrap();
    let cpu_t = cpu.resident_table("t", &table, rows, dim).unwrap();
    // More batches than ring slots, of growing and shrinking sizes, all queued before any
    // is read back: a slot reused while its copy was pending would corrupt an earlier batch.
    // 1.1M bags of 2 are 17.6 MB of indices: past the 16 MiB staging limit (bypass).
    let sizes = [3usize, 700, 9000, 1, 64, 20000, 5, 1_100_000, 4096, 333, 2];
    let mut queued = Vec::new();
    for &bags in &sizes {
        let idx: Vec<i64> = (0..bags * 2)
            .map(|_| rng.random_range(0..rows as i64))
            .collect();
        let dense = random(&mut rng, bags * 3);
        queued.push((
            gpu_t.bag_sum(&ops, &lane, &idx, 2).unwrap(),
            ops.upload(&lane, &dense, bags, 3).unwrap(),
            idx,
            dense,
        ));
    }
    for (pooled, up, idx, dense) in &queued {
        assert_eq!(
            &ops.download(&lane, up).unwrap(),
            dense,
            "upload kept its data"
        );
        let want = cpu_t.bag_sum(&cpu, &cpu_lane, idx, 2).unwrap();
        let want = widen(&cpu.download(&cpu_lane, &want).unwrap());
        assert_close("queued bag", &ops.download(&lane, pooled).unwrap(), &want);
    }
}
