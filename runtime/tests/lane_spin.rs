//! Lanes that spin for work before sleeping (`RuntimeOptions::lane_spin`): same answers,
//! they do go to sleep, and shutdown does not wait for a spin to run out.

mod common;

use cohost_models::BatchingPolicyKind;
use cohost_models::synth;
use cohost_runtime::{Runtime, RuntimeOptions};
use common::{
    assert_close, f32s, random_request, reference_model_of, reference_outputs, rng, until,
};
use std::time::Duration;

/// A CPU runtime with `lanes` lanes spinning `spin` when idle, serving `config` as "m".
fn spinning_runtime(lanes: usize, spin: Duration, config: &cohost_runtime::ModelConfig) -> Runtime {
    runtime_with(
        RuntimeOptions::default().lanes(lanes).lane_spin(spin),
        config,
    )
}

/// [`spinning_runtime`] with caller runs off: every batch runs on a lane, so a lane goes
/// idle (and may spin) after each one, not only after the first, uncalibrated ones.
fn lanes_only_runtime(
    lanes: usize,
    spin: Duration,
    config: &cohost_runtime::ModelConfig,
) -> Runtime {
    let options = RuntimeOptions::default()
        .lanes(lanes)
        .lane_spin(spin)
        .caller_runs(Duration::ZERO);
    runtime_with(options, config)
}

/// A runtime with `options`, serving `config` as "m".
fn runtime_with(options: RuntimeOptions, config: &cohost_runtime::ModelConfig) -> Runtime {
    let rt = Runtime::new(options).unwrap();
    rt.load_model_from("m", 1, config.clone(), &synth::random_weights(config, 5))
        .unwrap();
    rt
}

/// mlp-tiny batched by `policy` (a static batcher waits 300 µs for company).
fn mlp_tiny(policy: BatchingPolicyKind) -> cohost_runtime::ModelConfig {
    let mut config = synth::preset("mlp-tiny").unwrap();
    config.batching.policy = policy;
    config.batching.max_queue_delay_us = 300;
    config
}

/// Sequential requests (each taken by a spinning lane, answered to a spinning caller) and
/// a concurrent burst (batched) get the reference model's outputs, for a policy that
/// runs at once and one that waits for company.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_lanes_answer_like_the_model() {
    for policy in [BatchingPolicyKind::None, BatchingPolicyKind::Static] {
        let config = mlp_tiny(policy);
        let reference = reference_model_of(&config, 5);
        let rt = spinning_runtime(2, Duration::from_millis(2), &config);
        for i in 0..300 {
            let req = random_request(&config, 1 + (i % 3) as usize, &mut rng(i));
            let want = reference_outputs(reference.as_ref(), &req);
            let got = rt.infer("m", None, req).await.unwrap();
            assert_close(f32s(&got.outputs[0]), &want[0], 1e-6);
        }
        let burst: Vec<_> = (0..64)
            .map(|i| {
                let req = random_request(&config, 2, &mut rng(1000 + i));
                let want = reference_outputs(reference.as_ref(), &req);
                let rt = rt.clone();
                tokio::spawn(async move { (rt.infer("m", None, req).await.unwrap(), want) })
            })
            .collect();
        for task in burst {
            let (got, want) = task.await.unwrap();
            assert_close(f32s(&got.outputs[0]), &want[0], 1e-6);
        }
        rt.shutdown();
    }
}

/// An idle lane spins after its batch, then sleeps once its spin is over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_lane_spins_then_sleeps() {
    let config = mlp_tiny(BatchingPolicyKind::None);
    let rt = lanes_only_runtime(1, Duration::from_millis(300), &config);
    let spins = rt.lane_spins();
    rt.infer("m", None, random_request(&config, 1, &mut rng(1)))
        .await
        .unwrap();
    // Spins begun are counted, so no look has to land inside the 300 ms spin.
    until("the lane spins after its batch", || rt.lane_spins() > spins).await;
    until("the lane sleeps after its 300 ms spin", || {
        rt.lanes_spinning() == 0
    })
    .await;
    rt.shutdown();
}

/// After a burst that kept both lanes busy, one lane spins and the other sleeps: one
/// spinner takes the next arrival at once, a second would only burn a core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_one_idle_lane_spins() {
    let config = mlp_tiny(BatchingPolicyKind::None);
    let rt = lanes_only_runtime(2, Duration::from_millis(300), &config);
    let mut most = 0;
    for round in 0..5u64 {
        let spins = rt.lane_spins();
        let burst: Vec<_> = (0..32)
            .map(|i| {
                let req = random_request(&config, 1, &mut rng(round * 100 + i));
                let rt = rt.clone();
                tokio::spawn(async move { rt.infer("m", None, req).await.unwrap() })
            })
            .collect();
        for task in burst {
            task.await.unwrap();
        }
        until("a lane spins after the burst", || rt.lane_spins() > spins).await;
        // Both lanes are idle now: sample who spins meanwhile.
        for _ in 0..100 {
            most = most.max(rt.lanes_spinning());
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
    }
    assert!(most <= 1, "{most} lanes spinning at once");
    rt.shutdown();
}

/// Requests further apart than the spin: after a few spins that catch nothing, an idle
/// lane sleeps at once (but for a probe now and then) instead of spinning after each one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_stop_spinning_when_arrivals_are_further_apart_than_the_spin() {
    let config = mlp_tiny(BatchingPolicyKind::None);
    // Caller runs off: a quick batch would otherwise run on its caller while the lane
    // sleeps, and the lane would never go idle, spun or not, whatever its gate said.
    let rt = lanes_only_runtime(1, Duration::from_millis(5), &config);
    let mut spun = Vec::new();
    for i in 0..40u64 {
        let spins = rt.lane_spins();
        rt.infer("m", None, random_request(&config, 1, &mut rng(i)))
            .await
            .unwrap();
        // More than twice the 5 ms spin: this idle period ends late, a miss (a sleep lasts
        // at least this long); whether a spin began after the batch is counted meanwhile.
        tokio::time::sleep(Duration::from_millis(15)).await;
        spun.push(rt.lane_spins() > spins);
    }
    // The first spins run (and miss); from the 20th request on only probes spin.
    let early = spun[..5].iter().filter(|s| **s).count();
    let late = spun[20..].iter().filter(|s| **s).count();
    assert!(early >= 3, "first idle periods spun {early} of 5 times");
    assert!(
        late <= 5,
        "lanes spun after {late} of the last 20 sparse requests"
    );
    rt.shutdown();
}

/// Shutdown stops a spinning lane at once instead of waiting for its spin to run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_a_spinning_lane() {
    let config = mlp_tiny(BatchingPolicyKind::None);
    let rt = spinning_runtime(2, Duration::from_secs(60), &config);
    rt.infer("m", None, random_request(&config, 1, &mut rng(2)))
        .await
        .unwrap();
    until("a lane spins after its batch", || rt.lanes_spinning() > 0).await;
    let stopping = tokio::task::spawn_blocking(move || rt.shutdown());
    // Lanes spin for 60 s: a shutdown that waited for them would miss this by far.
    tokio::time::timeout(Duration::from_secs(20), stopping)
        .await
        .expect("shutdown waited for the spinning lanes")
        .unwrap();
}
