//! The runtime seen through its embeddable API: correctness under concurrency and batching,
//! bounded queues, unloading under load, version roll-over, validation, fault isolation.

mod common;

use cohost_models::{BatchingPolicyKind, synth};
use cohost_runtime::{ErrorKind, InferRequest, Runtime, RuntimeOptions, Tensor, TensorData};
use common::*;
use std::sync::Arc;
use std::time::Duration;

fn runtime(repo: &std::path::Path, lanes: usize) -> Runtime {
    Runtime::new(
        RuntimeOptions::default()
            .lanes(lanes)
            .repository(repo.to_path_buf()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_models_answer_a_thousand_concurrent_requests_each_correctly() {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(dir.path(), "mlp-tiny", 2, 1, None, &mut |_, _| {}).unwrap();
    synth::generate(dir.path(), "dlrm-tiny", 2, 7, None, &mut |_, _| {}).unwrap();
    let rt = runtime(dir.path(), 2);
    assert!(rt.load_all().is_empty());
    let names: [&'static str; 4] = ["mlp-tiny-0", "mlp-tiny-1", "dlrm-tiny-0", "dlrm-tiny-1"];
    let mut tasks = Vec::new();
    let mut rng = rng(3);
    for (m, name) in names.into_iter().enumerate() {
        let reference = reference_model(&dir.path().join(name));
        for i in 0..1000 {
            let rows = 1 + (i % 3);
            let req = random_request(reference.config(), rows, &mut rng);
            let want = reference_outputs(reference.as_ref(), &req);
            let rt = rt.clone();
            tasks.push(tokio::spawn(async move {
                let resp = rt
                    .infer(name, None, req)
                    .await
                    .unwrap_or_else(|e| panic!("{name} #{i}: {e}"));
                assert_eq!(resp.outputs.len(), want.len());
                for (o, w) in resp.outputs.iter().zip(&want) {
                    assert_eq!(o.shape[0], rows as i64);
                    assert_close(f32s(o), w, 1e-6);
                }
                m
            }));
        }
    }
    let mut per_model = [0usize; 4];
    for t in tasks {
        per_model[t.await.unwrap()] += 1;
    }
    assert_eq!(per_model, [1000; 4]);
    let stats = rt.stats(None, None).unwrap();
    let executions: u64 = stats.iter().map(|s| s.execution_count).sum();
    let successes: u64 = stats.iter().map(|s| s.success.count).sum();
    assert_eq!(successes, 4000);
    assert!(
        executions < 4000,
        "no request was batched with another ({executions} batches)"
    );
    rt.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_rows_in_one_request_equal_the_rows_run_alone() {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(dir.path(), "dlrm-tiny", 1, 11, None, &mut |_, _| {}).unwrap();
    let rt = runtime(dir.path(), 1);
    assert!(rt.load_all().is_empty());
    let (_, config) = rt.config("dlrm-tiny", None).unwrap();
    let req = random_request(&config, 5, &mut rng(5));
    let together = rt.infer("dlrm-tiny", None, req.clone()).await.unwrap();
    let all = f32s(&together.outputs[0]).to_vec();
    for r in 0..5 {
        let inputs = req
            .inputs
            .iter()
            .map(|t| {
                let w = t.shape[1] as usize;
                let data = match &t.data {
                    TensorData::F32(v) => TensorData::F32(v[r * w..(r + 1) * w].to_vec()),
                    TensorData::I64(v) => TensorData::I64(v[r * w..(r + 1) * w].to_vec()),
                    _ => unreachable!(),
                };
                Tensor::new(&t.name, vec![1, w as i64], data)
            })
            .collect();
        let one = rt
            .infer(
                "dlrm-tiny",
                None,
                InferRequest {
                    inputs,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_close(f32s(&one.outputs[0]), &all[r..r + 1], 1e-6);
    }
    rt.shutdown();
}

/// One request at a time on two lanes: the lane that ran a batch looks for the next one
/// itself, so the idle lane is not woken for nothing (three passes a request when every
/// finished batch woke the other lane, two without that wake-up).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_batch_does_not_wake_an_idle_lane() {
    let mut config = synth::preset("mlp-tiny").unwrap();
    config.batching.policy = BatchingPolicyKind::None;
    // Every batch on a lane thread (no caller runs): the lanes' passes are what is counted.
    let rt = Runtime::new(
        RuntimeOptions::default()
            .lanes(2)
            .caller_runs(Duration::ZERO),
    )
    .unwrap();
    rt.load_model_from("m", 1, config.clone(), &synth::random_weights(&config, 1))
        .unwrap();
    // Let both lanes reach their first wait before counting.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let before = rt.scheduler_passes();
    let n = 200;
    for i in 0..n {
        let req = random_request(&config, 1, &mut rng(i));
        rt.infer("m", None, req).await.unwrap();
        // Both lanes back waiting before the next request, so no pass races an arrival.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    // Each request: one pass that takes it and one after it ran, finding nothing (the old
    // wake-up added the idle lane's pass: 3). A lane preempted past the pause can add one.
    let passes = rt.scheduler_passes() - before;
    assert!(
        passes <= n * 5 / 2,
        "{passes} scheduling passes for {n} sequential requests (2 a request expected)"
    );
    assert!(passes >= n, "{passes} passes for {n} requests");
    rt.shutdown();
}

/// A model config with a slow static batcher so requests sit in the queue.
fn slow_mlp(delay: Duration, queue: usize) -> cohost_runtime::ModelConfig {
    let mut c = synth::preset("mlp-tiny").unwrap();
    c.batching.policy = BatchingPolicyKind::Static;
    c.batching.max_queue_delay_us = delay.as_micros() as u64;
    c.max_queue_len = queue;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_with_overloaded_instead_of_growing() {
    let config = slow_mlp(Duration::from_millis(1500), 4);
    let rt = runtime_serving(1, "slow", &config, 1);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let rt = rt.clone();
        let req = random_request(&config, 1, &mut rng(i));
        tasks.push(tokio::spawn(
            async move { rt.infer("slow", None, req).await },
        ));
    }
    let (mut ok, mut overloaded) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.kind, ErrorKind::Overloaded, "{e}");
                assert!(e.message.contains("queue is full"), "{e}");
                overloaded += 1;
            }
        }
    }
    assert_eq!((ok, overloaded), (4, 6));
    rt.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_before_the_inputs_are_checked() {
    let config = slow_mlp(Duration::from_millis(1500), 2);
    let rt = runtime_serving(1, "slow", &config, 1);
    let held: Vec<_> = (0..2)
        .map(|i| {
            let rt = rt.clone();
            let req = random_request(&config, 1, &mut rng(i));
            tokio::spawn(async move { rt.infer("slow", None, req).await })
        })
        .collect();
    while rt.load("slow").unwrap().queued < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // No inputs at all: with room this is InvalidArgument; full, it is refused first.
    let empty = || InferRequest {
        id: None,
        inputs: Vec::new(),
        outputs: Vec::new(),
        timeout: None,
    };
    let e = rt.infer("slow", None, empty()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Overloaded, "{e}");
    for h in held {
        h.await.unwrap().unwrap();
    }
    let e = rt.infer("slow", None, empty()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
    rt.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unloading_lets_queued_requests_finish_and_refuses_new_ones() {
    let config = slow_mlp(Duration::from_millis(300), 1024);
    let rt = runtime_serving(1, "m", &config, 2);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let rt = rt.clone();
        let req = random_request(&config, 1, &mut rng(i));
        tasks.push(tokio::spawn(async move { rt.infer("m", None, req).await }));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    rt.unload_model("m").unwrap();
    let late = rt
        .infer("m", None, random_request(&config, 1, &mut rng(99)))
        .await;
    assert_eq!(late.unwrap_err().kind, ErrorKind::NotFound);
    for t in tasks {
        let resp = t
            .await
            .unwrap()
            .expect("a request accepted before the unload must be answered");
        assert_eq!(resp.outputs[0].shape, vec![1, 4]);
    }
    // Drained versions leave the scheduler and free their memory.
    for _ in 0..100 {
        if rt.models().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(rt.models().is_empty(), "still listed: {:?}", rt.models());
    assert_eq!(rt.memory_used(), 0);
    rt.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_takes_over_with_no_failed_requests() {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(dir.path(), "mlp-tiny", 1, 1, None, &mut |_, _| {}).unwrap();
    let rt = runtime(dir.path(), 2);
    assert!(rt.load_all().is_empty());
    let (_, config) = rt.config("mlp-tiny", None).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for w in 0..4 {
        let (rt, stop, config) = (rt.clone(), stop.clone(), config.clone());
        load.push(tokio::spawn(async move {
            let (mut ok, mut versions) = (0, std::collections::BTreeSet::new());
            let mut r = rng(w);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let resp = rt
                    .infer("mlp-tiny", None, random_request(&config, 1, &mut r))
                    .await
                    .unwrap();
                versions.insert(resp.model_version);
                ok += 1;
            }
            (ok, versions)
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Several take-overs: each is a chance for a request to resolve the old version just
    // before it closes (it must then go to the new one, not fail).
    for v in 2..=4u64 {
        let dirv = dir.path().join(format!("mlp-tiny/{v}"));
        std::fs::create_dir_all(&dirv).unwrap();
        std::fs::write(
            dirv.join("model.safetensors"),
            synth::random_weights(&config, v),
        )
        .unwrap();
        let rt2 = rt.clone();
        tokio::task::spawn_blocking(move || rt2.load_model("mlp-tiny"))
            .await
            .unwrap()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut seen = std::collections::BTreeSet::new();
    for t in load {
        let (ok, versions) = t.await.unwrap();
        assert!(ok > 0);
        seen.extend(versions);
    }
    assert_eq!(seen, [1, 2, 3, 4].into_iter().collect());
    assert_eq!(rt.metadata("mlp-tiny", None).unwrap().versions, vec![4]);
    rt.shutdown();
}

#[tokio::test]
async fn bad_requests_get_errors_that_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    synth::generate(dir.path(), "dlrm-tiny", 1, 1, None, &mut |_, _| {}).unwrap();
    let rt = runtime(dir.path(), 1);
    assert!(rt.load_all().is_empty());
    let (_, config) = rt.config("dlrm-tiny", None).unwrap();
    let good = random_request(&config, 2, &mut rng(1));
    let dense = &config.inputs[0];
    let sparse_width = config.inputs[1].dims[1];
    let check = |req: InferRequest, kind: ErrorKind, needle: String| {
        let rt = rt.clone();
        async move {
            let e = rt.infer("dlrm-tiny", None, req).await.unwrap_err();
            assert_eq!(e.kind, kind, "{e}");
            assert!(
                e.message.contains(&needle),
                "'{}' does not contain '{needle}'",
                e.message
            );
        }
    };
    let mut wrong_shape = good.clone();
    wrong_shape.inputs[0] = Tensor::new(&dense.name, vec![2, 3], TensorData::F32(vec![0.0; 6]));
    check(
        wrong_shape,
        ErrorKind::InvalidArgument,
        format!(
            "input '{}': expected shape [-1, {}], got [2, 3]",
            dense.name, dense.dims[1]
        ),
    )
    .await;
    let mut missing = good.clone();
    missing.inputs.remove(1);
    check(
        missing,
        ErrorKind::InvalidArgument,
        format!("missing input '{}'", config.inputs[1].name),
    )
    .await;
    let mut bytes = good.clone();
    bytes.inputs[0].data = TensorData::Bytes(vec![vec![1]; 2 * dense.dims[1] as usize]);
    check(bytes, ErrorKind::InvalidArgument, "BYTES".into()).await;
    let mut lossy = good.clone();
    lossy.inputs[0].data = TensorData::F64(vec![0.1; 2 * dense.dims[1] as usize]);
    check(lossy, ErrorKind::InvalidArgument, "without loss".into()).await;
    let mut out_of_range = good.clone();
    out_of_range.inputs[1].data = TensorData::I64(vec![1_000_000; 2 * sparse_width as usize]);
    check(out_of_range, ErrorKind::InvalidArgument, "1000000".into()).await;
    let mut short = good.clone();
    short.inputs[0].data = TensorData::F32(vec![0.0; 3]);
    check(short, ErrorKind::InvalidArgument, "elements".into()).await;
    let mut no_output = good.clone();
    no_output.outputs = vec!["nope".into()];
    check(
        no_output,
        ErrorKind::InvalidArgument,
        "no output 'nope'".into(),
    )
    .await;
    let e = rt.infer("nope", None, good.clone()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    let e = rt
        .infer("dlrm-tiny", Some(9), good.clone())
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
    assert!(e.message.contains("version 9"), "{e}");
    // Lossless conversions are accepted: INT32 indices, FP16 dense features.
    let mut converted = good.clone();
    if let TensorData::I64(v) = &converted.inputs[1].data {
        converted.inputs[1].data = TensorData::I32(v.iter().map(|&x| x as i32).collect());
    }
    let want = rt.infer("dlrm-tiny", None, good.clone()).await.unwrap();
    let got = rt.infer("dlrm-tiny", None, converted).await.unwrap();
    assert_eq!(f32s(&got.outputs[0]), f32s(&want.outputs[0]));
    // The runtime still serves after all of that.
    assert!(rt.infer("dlrm-tiny", None, good).await.is_ok());
    rt.shutdown();
}

#[tokio::test]
async fn a_request_past_its_timeout_gets_deadline_exceeded() {
    let config = slow_mlp(Duration::from_millis(1000), 16);
    let rt = runtime_serving(1, "slow", &config, 1);
    let mut req = random_request(&config, 1, &mut rng(1));
    req.timeout = Some(Duration::from_millis(50));
    let e = rt.infer("slow", None, req).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::DeadlineExceeded, "{e}");
    // The expired request is still queued; the lane must skip it and serve the next one.
    let next = random_request(&config, 1, &mut rng(2));
    let served = tokio::time::timeout(Duration::from_secs(10), rt.infer("slow", None, next)).await;
    let resp = served
        .expect("the lane stopped serving after an expired request")
        .unwrap();
    assert_eq!(resp.outputs[0].shape, vec![1, 4]);
    let stats = rt.stats(Some("slow"), None).unwrap();
    assert_eq!((stats[0].success.count, stats[0].fail.count), (1, 1));
    rt.shutdown();
}

#[test]
fn a_model_over_the_memory_budget_is_refused() {
    let rt = Runtime::new(RuntimeOptions::default().lanes(1).memory_budget(1000)).unwrap();
    let config = synth::preset("mlp-small").unwrap();
    let e = rt
        .load_model_from("big", 1, config.clone(), &synth::random_weights(&config, 1))
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidArgument, "{e}");
    assert!(
        e.message.contains("budget") || e.message.contains("memory"),
        "{e}"
    );
    assert!(rt.models().is_empty());
    assert_eq!(rt.memory_used(), 0);
    rt.shutdown();
}
