//! A panic in a lane's own code (gathering, splitting, accounting, metrics) or in the
//! scheduler (a batching or scheduling policy) fails the requests it touched, with an
//! internal error, and nothing else: every lane keeps serving and the queue's in-flight
//! accounting returns to zero.
//!
//! Faults are injected from outside the runtime: a metrics recorder that panics on chosen
//! metrics of a chosen model, policies that panic, and malformed queue entries.

mod common;

use cohost_kernels::Lane;
use cohost_models::{BatchingPolicyKind, InputData, Model, synth};
use cohost_runtime::testing::{
    BatchPolicy, Candidate, Decision, EdfFairShare, MemoryLease, ModelQueue, NoBatching, Pending,
    QueueView, Reply, SchedulePolicy, Scheduler, spawn_lanes,
};
use cohost_runtime::{
    Device, Error, ErrorKind, InferRequest, ModelConfig, Runtime, RuntimeOptions, Tensor,
    TensorData,
};
use common::*;
use common::{ECHO_IN as WIDTH_IN, ECHO_OUT as WIDTH_OUT, echo_outputs as expected};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest a test waits for any answer: a lost reply or a dead lane shows up as this.
const HANG: Duration = Duration::from_secs(20);

/// A metrics recorder whose handles panic on demand, per metric name and model label.
#[path = "lane_panics/faults.rs"]
mod faults;

/// mlp-tiny's config without batching, capped at `max_lanes` lanes.
fn echo_config(max_lanes: Option<usize>) -> ModelConfig {
    let mut config = synth::preset("mlp-tiny").unwrap();
    assert_eq!(config.inputs[0].name, "input");
    assert_eq!(config.inputs[0].dims, [-1, WIDTH_IN as i64]);
    assert_eq!(config.outputs[0].dims, [-1, WIDTH_OUT as i64]);
    config.batching.policy = BatchingPolicyKind::None;
    config.max_lanes = max_lanes;
    config
}

fn values(seed: u64, rows: usize) -> Vec<f32> {
    (0..rows * WIDTH_IN)
        .map(|i| ((seed as usize * 31 + i * 7) % 13) as f32)
        .collect()
}

fn echo_request(seed: u64, rows: usize) -> InferRequest {
    InferRequest {
        inputs: vec![Tensor::new(
            "input",
            vec![rows as i64, WIDTH_IN as i64],
            TensorData::F32(values(seed, rows)),
        )],
        ..Default::default()
    }
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, f).await.unwrap_or_else(|_| {
        panic!("{what}: no answer within {HANG:?} (a lost reply or a dead lane)")
    })
}

/// Sends `n` concurrent echo requests of 1..=3 rows to `model` and checks every answer.
async fn echo_round(rt: &Runtime, model: &'static str, n: u64) {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let rt = rt.clone();
            tokio::spawn(async move {
                let rows = 1 + (i % 3) as usize;
                let resp = rt
                    .infer(model, None, echo_request(i, rows))
                    .await
                    .unwrap_or_else(|e| panic!("{model} #{i}: {e}"));
                assert_eq!(
                    f32s(&resp.outputs[0]),
                    expected(&values(i, rows)),
                    "{model} #{i}"
                );
            })
        })
        .collect();
    within(model, futures::future::try_join_all(tasks))
        .await
        .unwrap();
}

/// Asserts the model holds no queued or running work and its load counter is 0.
fn assert_idle(rt: &Runtime, model: &str) {
    let load = rt.load(model).unwrap();
    assert_eq!(
        (load.queued, load.in_flight, load.model_load),
        (0, 0, 0.0),
        "{model}'s accounting was not released: {load:?}"
    );
}

/// Sends `n` concurrent requests to an [`Echo`] model that pauses in forward, so that
/// every live lane picks some up, and returns the lanes that ran them.
async fn lanes_serving(rt: &Runtime, model: &'static str, echo: &Echo) -> BTreeSet<usize> {
    echo.take_lanes();
    echo_round(rt, model, 8).await;
    echo.take_lanes()
}

fn cpu_runtime(lanes: usize) -> Runtime {
    Runtime::new(RuntimeOptions::default().lanes(lanes).device(Device::Cpu)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_after_forward_fails_its_batch_and_every_lane_keeps_serving() {
    faults::install();
    let rt = cpu_runtime(2);
    // One lane at most: a batch whose lane is never released would block the model.
    let after = Echo::new(echo_config(Some(1)), Duration::ZERO);
    rt.load_model_instance("after-forward", 1, after.clone())
        .unwrap();
    let spread = Echo::new(echo_config(None), Duration::from_millis(20));
    rt.load_model_instance("spread", 1, spread.clone()).unwrap();
    let config = synth::preset("mlp-tiny").unwrap();
    let weights = synth::random_weights(&config, 9);
    rt.load_model_from("healthy", 1, config.clone(), &weights)
        .unwrap();
    let reference = cohost_models::build_model(
        &config,
        cohost_models::WeightSource::Bytes(&weights),
        &cohost_models::BackendHandle::Cpu(Arc::new(Default::default())),
        &Default::default(),
    )
    .unwrap();

    // The batch counter is bumped after forward and the split, before the batch is released.
    faults::arm("cohost_execution_count_total", "after-forward", 1);
    let e = within(
        "the poisoned request",
        rt.infer("after-forward", None, echo_request(1, 2)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert!(e.message.contains("'after-forward'"), "{e}");
    assert!(e.message.contains("injected fault"), "{e}");
    assert_idle(&rt, "after-forward");

    // Same model, other models: all answered, all correct.
    echo_round(&rt, "after-forward", 30).await;
    echo_round(&rt, "spread", 10).await;
    for i in 0..10 {
        let req = random_request(&config, 1 + i % 3, &mut rng(i as u64));
        let want = reference_outputs(reference.as_ref(), &req);
        let got = within("healthy", rt.infer("healthy", None, req))
            .await
            .unwrap();
        assert_close(f32s(&got.outputs[0]), &want[0], 1e-6);
    }
    // Both lanes still take batches, the one that panicked included.
    assert_eq!(
        lanes_serving(&rt, "spread", &spread).await,
        BTreeSet::from([0, 1])
    );
    for model in ["after-forward", "spread", "healthy"] {
        assert_idle(&rt, model);
    }
    let stats = rt.stats(Some("after-forward"), None).unwrap();
    assert_eq!((stats[0].success.count, stats[0].fail.count), (30, 1));
    rt.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_releasing_a_batch_releases_it_once() {
    faults::install();
    let rt = cpu_runtime(2);
    let model = Echo::new(echo_config(Some(1)), Duration::ZERO);
    rt.load_model_instance("release-once", 1, model).unwrap();

    // The in-flight gauge is set when a batch is taken (inside the scheduler) and again
    // after the batch is released: both panic.
    faults::arm("cohost_inflight_requests", "release-once", usize::MAX);
    for seed in 0..3 {
        let e = within(
            "a request whose release panics",
            rt.infer("release-once", None, echo_request(seed, 1)),
        )
        .await
        .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Internal, "{e}");
        assert!(e.message.contains("'release-once'"), "{e}");
        // Released exactly once: a second release would wrap the counters around.
        assert_idle(&rt, "release-once");
    }
    faults::disarm("release-once");
    echo_round(&rt, "release-once", 20).await;
    assert_idle(&rt, "release-once");
    rt.shutdown();
}

// ---- Below the runtime: a scheduler, queues and lanes built by hand. ----

/// A scheduler with `lanes` lanes over the given queues, lanes not started yet.
struct Slice {
    sched: Arc<Scheduler>,
    handles: Vec<JoinHandle<()>>,
    lanes: usize,
}

impl Slice {
    fn new(policy: Box<dyn SchedulePolicy>, lanes: usize) -> Slice {
        Slice {
            sched: Arc::new(Scheduler::new(policy, lanes)),
            handles: Vec::new(),
            lanes,
        }
    }

    fn add(
        &self,
        name: &str,
        model: Arc<dyn Model>,
        policy: Option<Box<dyn BatchPolicy>>,
    ) -> Arc<ModelQueue> {
        let lease = MemoryLease::new(0, Arc::new(AtomicU64::new(0)));
        let config = model.config().clone();
        let mut q = ModelQueue::new(name, 1, config, model, self.lanes, lease);
        if let Some(p) = policy {
            q = q.with_policy(p);
        }
        let q = Arc::new(q);
        self.sched.add(q.clone());
        q
    }

    fn start(&mut self) {
        let lanes = (0..self.lanes).map(Lane::cpu).collect();
        self.handles = spawn_lanes(lanes, self.sched.clone());
    }

    /// Shuts down and joins the lanes, failing the test if they do not stop.
    fn stop(self) {
        self.sched.shutdown();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for h in self.handles {
                h.join().expect("lanes never unwind");
            }
            let _ = tx.send(());
        });
        rx.recv_timeout(HANG).expect("lanes stop after shutdown");
    }
}

use common::Answer;

/// Queues one request (rows of `input`) for outputs `outputs` and wakes a lane.
fn submit(slice: &Slice, q: &ModelQueue, input: InputData, outputs: Vec<usize>) -> Answer {
    let rows = match &input {
        InputData::F32(v) => v.len() / WIDTH_IN,
        InputData::I64(v) => v.len() / WIDTH_IN,
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    q.enqueue(Pending {
        rows,
        inputs: vec![input],
        outputs,
        enqueued: Instant::now(),
        deadline: None,
        reply: tx,
    })
    .unwrap();
    slice.sched.notify();
    rx
}

fn answer(rx: Answer) -> cohost_runtime::Result<Reply> {
    common::answer_within(rx, HANG)
}

fn assert_internal(r: cohost_runtime::Result<Reply>, model: &str) -> Error {
    let Err(e) = r else {
        panic!("expected an internal error from {model}, got outputs")
    };
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert!(e.message.contains(&format!("'{model}'")), "{e}");
    e
}

/// Sends `n` good requests of 1..=3 rows to `q` at once and checks every answer.
fn good_round(slice: &Slice, q: &ModelQueue, n: u64) {
    let sent: Vec<_> = (0..n)
        .map(|i| {
            let x = values(i, 1 + (i % 3) as usize);
            let rx = submit(slice, q, InputData::F32(x.clone()), vec![0]);
            (x, rx)
        })
        .collect();
    for (x, rx) in sent {
        let reply = answer(rx).unwrap_or_else(|e| panic!("{}: {e}", q.name()));
        let TensorData::F32(got) = &reply.outputs[0].data else {
            panic!("FP32 output")
        };
        assert_eq!(got, &expected(&x), "{}", q.name());
    }
}

fn assert_queue_idle(q: &ModelQueue) {
    assert_eq!(
        (q.counts(), q.lanes_busy(), q.outstanding_work()),
        ((0, 0), 0, 0.0),
        "{}'s accounting was not released",
        q.name()
    );
}

#[test]
fn a_panic_gathering_or_splitting_a_batch_fails_it_and_releases_it() {
    let mut slice = Slice::new(Box::new(EdfFairShare::default()), 2);
    let mut config = echo_config(Some(1));
    // Every waiting request joins the batch, so the two below run together.
    config.batching.policy = BatchingPolicyKind::Static;
    config.batching.max_queue_delay_us = 0;
    let q = slice.add("split", Echo::new(config, Duration::ZERO), None);
    let spread = Echo::new(echo_config(None), Duration::from_millis(20));
    let sq = slice.add("spread", spread.clone(), None);

    // Inputs of two types in one batch: gathering them panics.
    let a = submit(&slice, &q, InputData::F32(values(1, 1)), vec![0]);
    let b = submit(&slice, &q, InputData::I64(vec![0; WIDTH_IN]), vec![0]);
    slice.start();
    let e = assert_internal(answer(a), "split");
    assert!(
        e.message.contains("inputs converted per model signature"),
        "{e}"
    );
    assert_internal(answer(b), "split");
    assert_queue_idle(&q);

    // An output index the model does not have: splitting the outputs panics.
    let c = submit(&slice, &q, InputData::F32(values(2, 2)), vec![5]);
    assert_internal(answer(c), "split");
    assert_queue_idle(&q);

    good_round(&slice, &q, 30);
    spread.take_lanes();
    good_round(&slice, &sq, 8);
    assert_eq!(spread.take_lanes(), BTreeSet::from([0, 1]));
    assert_queue_idle(&q);
    assert_queue_idle(&sq);
    slice.stop();
}

/// A batching policy that panics on every call.
struct PanicsAlways(Arc<AtomicUsize>);

impl BatchPolicy for PanicsAlways {
    fn name(&self) -> &'static str {
        "panics-always"
    }
    fn decide(&self, _: &QueueView<'_>) -> Decision {
        self.0.fetch_add(1, Ordering::SeqCst);
        panic!("batching policy bug");
    }
}

#[test]
fn a_batching_policy_that_always_panics_fails_its_requests_without_spinning() {
    let mut slice = Slice::new(Box::new(EdfFairShare::default()), 2);
    let calls = Arc::new(AtomicUsize::new(0));
    let bad = slice.add(
        "bad-policy",
        Echo::new(echo_config(None), Duration::ZERO),
        Some(Box::new(PanicsAlways(calls.clone()))),
    );
    let spread = Echo::new(echo_config(None), Duration::from_millis(20));
    let good = slice.add("good", spread.clone(), Some(Box::new(NoBatching)));
    slice.start();

    let sent: Vec<_> = (0..5)
        .map(|i| submit(&slice, &bad, InputData::F32(values(i, 1)), vec![0]))
        .collect();
    good_round(&slice, &good, 10);
    for rx in sent {
        let e = assert_internal(answer(rx), "bad-policy");
        assert!(e.message.contains("batching policy bug"), "{e}");
    }
    assert_queue_idle(&bad);
    // No spinning on the broken model: one call per request it failed, then quiet.
    let after = calls.load(Ordering::SeqCst);
    assert!(after <= 5, "{after} policy calls for 5 requests");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(calls.load(Ordering::SeqCst), after);

    spread.take_lanes();
    good_round(&slice, &good, 8);
    assert_eq!(spread.take_lanes(), BTreeSet::from([0, 1]));
    let e = assert_internal(
        answer(submit(&slice, &bad, InputData::F32(values(9, 1)), vec![0])),
        "bad-policy",
    );
    assert!(e.message.contains("batching policy bug"), "{e}");
    assert_queue_idle(&bad);
    assert_queue_idle(&good);
    slice.stop();
}

/// A cross-model scheduling policy that panics on every call.
struct PicksNothing;

impl SchedulePolicy for PicksNothing {
    fn name(&self) -> &'static str {
        "picks-nothing"
    }
    fn pick(&self, _: &[Candidate]) -> usize {
        panic!("scheduling policy bug")
    }
}

#[test]
fn a_scheduling_policy_that_panics_falls_back_and_every_model_is_served() {
    let mut slice = Slice::new(Box::new(PicksNothing), 2);
    let one = slice.add("one", Echo::new(echo_config(Some(1)), Duration::ZERO), None);
    let spread = Echo::new(echo_config(None), Duration::from_millis(20));
    let two = slice.add("two", spread.clone(), None);
    slice.start();
    good_round(&slice, &one, 20);
    good_round(&slice, &two, 8);
    assert_eq!(spread.take_lanes(), BTreeSet::from([0, 1]));
    assert_queue_idle(&one);
    assert_queue_idle(&two);
    slice.stop();
}
