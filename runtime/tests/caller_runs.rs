//! Caller runs (`RuntimeOptions::caller_runs`): a quick batch ready as its request is
//! queued runs on the calling thread as a sleeping lane; the answers, statistics and
//! scheduling of everything else stay those of the lanes.

mod common;

use cohost_kernels::{Lane, LanePriority};
use cohost_models::BatchingPolicyKind;
use cohost_models::synth;
use cohost_runtime::testing::{Claimed, EdfFairShare, Scheduler, spawn_lanes};
use cohost_runtime::{ModelConfig, Runtime, RuntimeOptions};
use common::{
    HANG, assert_close, enqueue, f32s, random_request, reference_model_of, reference_outputs, rng,
    scheduled_queue, until,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A CPU runtime with `lanes` lanes and caller runs up to `max` (caller timers on, as the
/// server has them), serving `config` as "m".
fn runtime(lanes: usize, max: Duration, config: &ModelConfig) -> Runtime {
    let options = RuntimeOptions::default()
        .lanes(lanes)
        .caller_runs(max)
        .caller_timers(true);
    let rt = Runtime::new(options).unwrap();
    rt.load_model_from("m", 1, config.clone(), &synth::random_weights(config, 5))
        .unwrap();
    rt
}

/// `preset` batched by `policy` (a static batcher waits 300 µs for company).
fn model(preset: &str, policy: BatchingPolicyKind) -> ModelConfig {
    let mut config = synth::preset(preset).unwrap();
    config.batching.policy = policy;
    config.batching.max_queue_delay_us = 300;
    config
}

/// Sends `n` sequential requests of 1–3 rows, each after the lanes went back to sleep,
/// checking every answer against the f64-checked reference model (1e-6) and that a static
/// batcher's delay was kept; the scheduler passes the lane threads made meanwhile.
async fn sequential(rt: &Runtime, config: &ModelConfig, n: u64, seed: u64) -> u64 {
    let reference = reference_model_of(config, 5);
    let delay = match config.batching.policy {
        BatchingPolicyKind::Static => Duration::from_micros(config.batching.max_queue_delay_us),
        _ => Duration::ZERO,
    };
    let before = rt.scheduler_passes();
    for i in 0..n {
        let req = random_request(config, 1 + (i % 3) as usize, &mut rng(seed + i));
        let want = reference_outputs(reference.as_ref(), &req);
        let sent = Instant::now();
        let got = rt.infer("m", None, req).await.unwrap();
        // A lone request never fills a batch: it waits out the whole delay.
        assert!(
            sent.elapsed() >= delay,
            "answered before the batching delay"
        );
        assert_close(f32s(&got.outputs[0]), &want[0], 1e-6);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    rt.scheduler_passes() - before
}

/// Once the model's batch times are learnt, a lone quick request runs on its caller: no
/// lane thread is woken (no pass), yet each batch is counted as the lanes count theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quick_batches_run_on_the_caller_once_calibrated() {
    let config = model("mlp-tiny", BatchingPolicyKind::None);
    let rt = runtime(2, Duration::from_millis(5), &config);
    // Lanes run the first batches, which calibrate the model's latency fit.
    let first = sequential(&rt, &config, 100, 0).await;
    assert!(first > 0, "the uncalibrated model's batches ran on no lane");
    let n = 200;
    let passes = sequential(&rt, &config, n, 1000).await;
    assert!(
        passes <= n / 10,
        "{passes} lane passes for {n} quick sequential requests (none expected)"
    );
    let stats = &rt.stats(Some("m"), None).unwrap()[0];
    assert_eq!(stats.execution_count, 100 + n, "every batch is counted");
    drained_and_shut(&rt);
}

/// A quick batch waiting out a static batcher's delay keeps its timer on the caller: no
/// lane thread is woken for it, the delay is kept to the microsecond, and with caller
/// timers off each such request costs lane passes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_batches_keep_their_timer_on_the_caller() {
    let config = model("mlp-tiny", BatchingPolicyKind::Static);
    let rt = runtime(2, Duration::from_millis(5), &config);
    sequential(&rt, &config, 100, 0).await;
    let n = 200;
    let passes = sequential(&rt, &config, n, 1000).await;
    assert!(
        passes <= n / 10,
        "{passes} lane passes for {n} quick delayed requests (none expected)"
    );
    drained_and_shut(&rt);

    let off = RuntimeOptions::default()
        .lanes(2)
        .caller_runs(Duration::from_millis(5))
        .caller_timers(false);
    let rt = Runtime::new(off).unwrap();
    rt.load_model_from("m", 1, config.clone(), &synth::random_weights(&config, 5))
        .unwrap();
    sequential(&rt, &config, 50, 0).await;
    let passes = sequential(&rt, &config, 60, 500).await;
    assert!(
        passes >= 60,
        "{passes} passes for 60 delayed requests with timers off"
    );
    rt.shutdown();
}

/// A caller that gives up while it keeps its batch's timer (its future dropped) leaves the
/// request to the lanes: one takes it when its delay ends, and nothing stays queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_caller_leaves_its_timer_to_the_lanes() {
    // A long delay, so the caller is surely still waiting when it is dropped; full batches
    // of 4 rows run at once, which calibrates the model quickly.
    let mut config = model("mlp-tiny", BatchingPolicyKind::Static);
    config.batching.max_queue_delay_us = 50_000;
    config.batching.max_batch_size = Some(4);
    let rt = runtime(2, Duration::from_millis(5), &config);
    for i in 0..100 {
        let req = random_request(&config, 4, &mut rng(9000 + i));
        rt.infer("m", None, req).await.unwrap();
    }
    let req = random_request(&config, 1, &mut rng(77));
    let gave_up = tokio::time::timeout(Duration::from_millis(2), rt.infer("m", None, req)).await;
    assert!(
        gave_up.is_err(),
        "answered within 2 ms despite a 50 ms delay"
    );
    assert_eq!(
        rt.load("m").unwrap().queued,
        1,
        "the dropped request is queued"
    );
    // A lane takes it once its delay ends (and, its client gone, skips it).
    left_to_a_lane(&rt, "no lane was left its timer").await;
}

/// `n` callers on this thread with a request ready at once, each answer checked against
/// the f64-checked reference (1e-6); the batches they ran as.
async fn burst(rt: &Runtime, config: &ModelConfig, n: u64, seed: u64) -> u64 {
    let reference = reference_model_of(config, 5);
    let before = rt.stats(Some("m"), None).unwrap()[0].execution_count;
    let calls = (0..n).map(|i| {
        let req = random_request(config, 1, &mut rng(seed + i));
        let want = reference_outputs(reference.as_ref(), &req);
        let rt = rt.clone();
        async move {
            let got = rt.infer("m", None, req).await.unwrap();
            assert_close(f32s(&got.outputs[0]), &want[0], 1e-6);
        }
    });
    futures::future::join_all(calls).await;
    rt.stats(Some("m"), None).unwrap()[0].execution_count - before
}

/// `mlp-tiny` batched at once with whatever is queued (static, no delay, up to 64 rows), its
/// latency calibrated.
async fn calibrated_runtime() -> (Runtime, ModelConfig) {
    let mut config = model("mlp-tiny", BatchingPolicyKind::Static);
    config.batching.max_queue_delay_us = 0;
    config.batching.max_batch_size = Some(64);
    let rt = runtime(2, Duration::from_millis(5), &config);
    sequential(&rt, &config, 60, 0).await;
    (rt, config)
}

/// 200 requests back to back on this thread, each run in place (thousands a second even
/// in a debug build): the arrival rate at which callers expect company. It is read as the
/// next request is queued, so the caller being tested sends right after.
async fn back_to_back(rt: &Runtime, config: &ModelConfig, seed: u64) {
    for i in 0..200 {
        let req = random_request(config, 1, &mut rng(seed + i));
        rt.infer("m", None, req).await.unwrap();
    }
}

/// Tries `attempt` up to 5 times after back-to-back requests, until it says it ran with
/// company expected (`Some`): a thread preempted between the last of them and the attempt
/// sees a quiet queue instead. Fails with what each attempt saw (`Err`).
async fn with_company_expected<T>(
    rt: &Runtime,
    config: &ModelConfig,
    what: &str,
    mut attempt: impl AsyncFnMut(u64) -> Result<T, String>,
) -> T {
    let mut seen = Vec::new();
    for round in 0..5u64 {
        back_to_back(rt, config, 40_000 + round * 1000).await;
        match attempt(round).await {
            Ok(done) => return done,
            Err(why) => seen.push(why),
        }
    }
    panic!("{what}, in 5 attempts after back-to-back requests: {seen:?}")
}

/// Callers on one front-end thread (a current-thread runtime, as the server's single I/O
/// thread on a small machine) that all have a request ready at once, at a rate that makes
/// company likely, form one batch: each queues its request and yields before claiming, so
/// the first to claim takes them all, instead of each running its own one-request batch
/// while the others wait unqueued. At a low rate (the sequential requests) no caller
/// yields: `quick_batches_run_on_the_caller_once_calibrated` sees no lane pass.
#[tokio::test(flavor = "current_thread")]
async fn callers_on_one_thread_batch_together() {
    let (rt, config) = calibrated_runtime().await;
    let what = "16 requests ready together on one thread did not run as <= 4 batches with \
                <= 4 lane wake-ups (a caller whose request another's batch took wakes no lane)";
    with_company_expected(&rt, &config, what, async |round| {
        let (passes, wakes) = (rt.scheduler_passes(), rt.lane_wakes());
        let batches = burst(&rt, &config, 16, 20_000 + round * 100).await;
        let passes = rt.scheduler_passes() - passes;
        let wakes = rt.lane_wakes() - wakes;
        if batches <= 4 && passes <= 4 && wakes <= 4 {
            Ok(())
        } else {
            Err(format!(
                "{batches} batches, {passes} lane passes, {wakes} wake-ups"
            ))
        }
    })
    .await;
    drained_and_shut(&rt);
}

/// At a low rate (requests a millisecond apart) a caller expects no company: its quick
/// batch runs within the first poll, no yield first.
#[tokio::test(flavor = "current_thread")]
async fn a_lone_caller_does_not_yield() {
    let config = model("mlp-tiny", BatchingPolicyKind::None);
    let rt = runtime(2, Duration::from_millis(5), &config);
    sequential(&rt, &config, 60, 0).await;
    let req = random_request(&config, 1, &mut rng(32));
    let mut call = Box::pin(rt.infer("m", None, req));
    let first = futures::poll!(call.as_mut());
    assert!(
        first.is_ready(),
        "a lone quick request yielded before running"
    );
    drained_and_shut(&rt);
}

/// A caller dropped while it yields before claiming leaves its queued request to a lane.
#[tokio::test(flavor = "current_thread")]
async fn a_caller_dropped_before_its_claim_leaves_the_request_to_the_lanes() {
    let (rt, config) = calibrated_runtime().await;
    with_company_expected(&rt, &config, "no caller yielded", async |round| {
        let req = random_request(&config, 1, &mut rng(31 + round));
        let mut call = Box::pin(rt.infer("m", None, req));
        // One poll: the request is queued and its caller yields.
        if futures::poll!(call.as_mut()).is_ready() {
            return Err("answered without yielding".to_string());
        }
        assert_eq!(rt.load("m").unwrap().queued, 1, "the request is queued");
        drop(call);
        Ok(())
    })
    .await;
    left_to_a_lane(&rt, "no lane was woken for it").await;
}

/// A claim on a queue emptied meanwhile wakes no lane, even when none is free to lend (the
/// only lane is lent to a caller's batch of another model, held unrun here), where a claim
/// on a queue that holds a request does.
#[test]
fn a_claim_on_an_emptied_queue_wakes_no_lane() {
    let config = model("mlp-tiny", BatchingPolicyKind::None);
    let m = reference_model_of(&config, 5);
    let sched = Arc::new(
        Scheduler::new(Box::new(EdfFairShare::default()), 1)
            .with_lane_classes(vec![LanePriority::Normal])
            .with_caller_runs(Duration::from_secs(1)),
    );
    let busy = scheduled_queue(&sched, "busy", &config, m.clone(), 1);
    let other = scheduled_queue(&sched, "other", &config, m, 1);
    let lanes = spawn_lanes(vec![Lane::cpu(0)], sched.clone());
    // Borrow the lane for a batch of `busy`: once the lane is calibrated and asleep, the
    // claim gets it (before that the lane takes the request itself).
    let start = Instant::now();
    let (claim, work) = loop {
        let _answer = enqueue(&busy, 1);
        if let Claimed::Run(claim, work) = sched.claim(&busy, None) {
            break (claim, work);
        }
        assert!(start.elapsed() < HANG, "the lane was never free to lend");
        std::thread::sleep(Duration::from_millis(5));
    };
    let wakes = sched.wakes();
    assert!(matches!(sched.claim(&other, None), Claimed::Lanes));
    assert_eq!(
        sched.wakes(),
        wakes,
        "a claim on an empty queue woke a lane"
    );
    // The same claim with a request queued does wake one (for when the lane is back).
    let queued = enqueue(&other, 1);
    assert!(matches!(sched.claim(&other, None), Claimed::Lanes));
    assert_eq!(
        sched.wakes(),
        wakes + 1,
        "a claim on a queued request woke no lane"
    );
    // Finish the held batch by hand (its request answered as failed), then the lane takes
    // the queued one.
    let n = work.batch.requests.len();
    for p in work.batch.requests {
        let _ = p
            .reply
            .send(Err(cohost_runtime::Error::unavailable("test")));
    }
    work.queue.finish(work.batch.id, n, 0.0);
    drop(claim);
    let reply = common::answer_within(queued, HANG).expect("the queued request is answered");
    assert_eq!(reply.outputs[0].shape[0], 1);
    sched.shutdown();
    for h in lanes {
        h.join().expect("lanes never unwind");
    }
}

/// Waits (up to 20 s) for a lane to take the request a dropped caller left queued, then
/// checks nothing is left and shuts down; `why` says what a request left queued means.
async fn left_to_a_lane(rt: &Runtime, why: &str) {
    let what = format!("a lane takes the dropped caller's queued request ({why})");
    until(&what, || rt.load("m").unwrap().queued == 0).await;
    drained_and_shut(rt);
}

/// Off (zero), or for a model whose batches take longer than the bound, every batch runs
/// on a lane thread: at least one pass a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_batches_and_caller_runs_off_stay_on_lanes() {
    let tiny = model("mlp-tiny", BatchingPolicyKind::None);
    lane_passes_at_least(&tiny, Duration::ZERO, 100, "with caller runs off").await;
    // mlp-small's single row is a 1.6 MFLOP forward: far over a 1 µs bound.
    let small = model("mlp-small", BatchingPolicyKind::None);
    lane_passes_at_least(&small, Duration::from_micros(1), 60, "over the bound").await;
}

/// After 50 calibrating requests, `n` sequential ones on a runtime with caller runs up to
/// `max` each make at least one lane pass.
async fn lane_passes_at_least(config: &ModelConfig, max: Duration, n: u64, what: &str) {
    let rt = runtime(2, max, config);
    sequential(&rt, config, 50, 0).await;
    let passes = sequential(&rt, config, n, 500).await;
    assert!(passes >= n, "{passes} passes for {n} requests {what}");
    rt.shutdown();
}

/// Many callers at once, on one lane and on two, with a policy that runs at once and one
/// that waits for company: every answer is the model's, nothing is lost or left queued
/// (a caller that finds the only lane lent out leaves its request to the lane, which the
/// lending caller wakes when it gives the lane back).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_callers_get_the_models_answers() {
    for lanes in [1, 2] {
        for policy in [BatchingPolicyKind::None, BatchingPolicyKind::Static] {
            let config = model("mlp-tiny", policy);
            let reference = reference_model_of(&config, 5);
            let rt = runtime(lanes, Duration::from_millis(5), &config);
            // Calibrate first, so the burst below takes the caller path where it can.
            sequential(&rt, &config, 60, 0).await;
            let tasks: Vec<_> = (0..8u64)
                .map(|t| {
                    let rt = rt.clone();
                    let config = config.clone();
                    let reference = reference.clone();
                    tokio::spawn(async move {
                        for i in 0..150u64 {
                            let seed = 10_000 + t * 1000 + i;
                            let req = random_request(&config, 1 + (i % 4) as usize, &mut rng(seed));
                            let want = reference_outputs(reference.as_ref(), &req);
                            let got = rt.infer("m", None, req).await.unwrap();
                            assert_close(f32s(&got.outputs[0]), &want[0], 1e-6);
                            if i % 16 == 0 {
                                tokio::time::sleep(Duration::from_micros(300)).await;
                            }
                        }
                    })
                })
                .collect();
            let all = async {
                for task in tasks {
                    task.await.unwrap();
                }
            };
            tokio::time::timeout(Duration::from_secs(120), all)
                .await
                .unwrap_or_else(|_| panic!("callers hung ({lanes} lanes, {policy:?})"));
            let stats = &rt.stats(Some("m"), None).unwrap()[0];
            assert_eq!(stats.success.count, 60 + 8 * 150, "every request answered");
            drained_and_shut(&rt);
        }
    }
}

/// Asserts nothing of "m" is left queued or in flight, then shuts the runtime down.
fn drained_and_shut(rt: &Runtime) {
    let load = rt.load("m").unwrap();
    assert_eq!(
        (load.queued, load.in_flight),
        (0, 0),
        "nothing left in flight"
    );
    rt.shutdown();
}
