//! Lane supervision: a lane thread that dies is respawned and counted; a batch whose
//! forward does not return is reported, and its requests are answered with a clear error
//! when their deadlines pass; shutdown does not wait for a lane stuck in a forward.
//!
//! Faults come from a model given to the runtime from outside (`load_model_instance`):
//! its forward can hang until released, or panic with a payload whose drop panics again,
//! which is how a panic escapes every `catch_unwind` of a lane and kills its thread.

mod common;

use cohost_kernels::Lane;
use cohost_models::{Batch, BatchingPolicyKind, InputData, MemoryReport, Model, ModelError, synth};
use cohost_runtime::{
    Device, ErrorKind, InferRequest, ModelConfig, Runtime, RuntimeOptions, Tensor, TensorData,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use common::{ECHO_IN as WIDTH_IN, HANG, echo_outputs as expected, until};

/// A panic payload whose drop panics with another one: it escapes every catch.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        std::panic::panic_any(Bomb);
    }
}

/// mlp-tiny's signature over `row sum + j`; its next forward can hang or kill its lane.
struct Faulty {
    config: ModelConfig,
    kill_next: AtomicBool,
    hang_next: AtomicBool,
    /// (hanging now, released)
    gate: Mutex<(bool, bool)>,
    changed: Condvar,
}

impl Faulty {
    fn new(max_lanes: Option<usize>) -> Arc<Faulty> {
        let mut config = synth::preset("mlp-tiny").unwrap();
        config.batching.policy = BatchingPolicyKind::None;
        config.max_lanes = max_lanes;
        Arc::new(Faulty {
            config,
            kill_next: AtomicBool::new(false),
            hang_next: AtomicBool::new(false),
            gate: Mutex::new((false, false)),
            changed: Condvar::new(),
        })
    }

    fn hanging(&self) -> bool {
        self.gate.lock().unwrap().0
    }

    fn release(&self) {
        self.gate.lock().unwrap().1 = true;
        self.changed.notify_all();
    }
}

impl Model for Faulty {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn check(&self, _: &Batch) -> Result<(), ModelError> {
        Ok(())
    }
    fn forward(&self, _: &Lane, batch: &Batch) -> Result<Vec<Vec<f32>>, ModelError> {
        if self.kill_next.swap(false, Ordering::SeqCst) {
            std::panic::panic_any(Bomb);
        }
        if self.hang_next.swap(false, Ordering::SeqCst) {
            let mut gate = self.gate.lock().unwrap();
            gate.0 = true;
            while !gate.1 {
                gate = self.changed.wait(gate).unwrap();
            }
            gate.0 = false;
        }
        let InputData::F32(x) = &batch.inputs[0] else {
            unreachable!("FP32 input")
        };
        Ok(vec![expected(x)])
    }
    fn memory(&self) -> MemoryReport {
        MemoryReport::default()
    }
    fn flops_per_row(&self) -> u64 {
        1000
    }
}

fn values(seed: u64) -> Vec<f32> {
    (0..WIDTH_IN)
        .map(|i| ((seed as usize * 31 + i * 7) % 13) as f32)
        .collect()
}

fn request(seed: u64, timeout: Option<Duration>) -> InferRequest {
    InferRequest {
        inputs: vec![Tensor::new(
            "input",
            vec![1, WIDTH_IN as i64],
            TensorData::F32(values(seed)),
        )],
        timeout,
        ..Default::default()
    }
}

/// Sends `n` requests to `model` one after another and checks every answer.
async fn round(rt: &Runtime, model: &str, n: u64) {
    for i in 0..n {
        let resp = tokio::time::timeout(HANG, rt.infer(model, None, request(i, None)))
            .await
            .unwrap_or_else(|_| panic!("{model} #{i}: no answer within {HANG:?}"))
            .unwrap_or_else(|e| panic!("{model} #{i}: {e}"));
        let TensorData::F32(got) = &resp.outputs[0].data else {
            panic!("FP32 output")
        };
        assert_eq!(got, &expected(&values(i)), "{model} #{i}");
    }
}

fn runtime(lanes: usize) -> Runtime {
    let options = RuntimeOptions::default()
        .lanes(lanes)
        .device(Device::Cpu)
        .batch_overrun(10.0, Duration::from_millis(100));
    Runtime::new(options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_thread_that_dies_is_respawned_and_counted() {
    // One lane: after it dies, nothing is served unless it is respawned.
    let rt = runtime(1);
    let model = Faulty::new(None);
    rt.load_model_instance("dies", 1, model.clone()).unwrap();
    round(&rt, "dies", 3).await;
    assert_eq!(rt.lane_restarts(), 0);

    model.kill_next.store(true, Ordering::SeqCst);
    let e = tokio::time::timeout(HANG, rt.infer("dies", None, request(1, None)))
        .await
        .expect("the request of the batch that killed its lane is answered")
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert!(e.message.contains("'dies'"), "{e}");
    until("the dead lane is respawned", || rt.lane_restarts() == 1).await;

    round(&rt, "dies", 10).await;
    let load = rt.load("dies").unwrap();
    assert_eq!((load.queued, load.in_flight), (0, 0), "{load:?}");
    assert_eq!(rt.lane_restarts(), 1);
    assert!(rt.shutdown_within(HANG).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_that_never_returns_is_reported_and_its_requests_answered_at_their_deadlines() {
    let rt = runtime(2);
    // At most one lane: the other stays free for the other model.
    let stuck = Faulty::new(Some(1));
    rt.load_model_instance("stuck", 1, stuck.clone()).unwrap();
    rt.load_model_instance("other", 1, Faulty::new(None))
        .unwrap();
    round(&rt, "stuck", 3).await;
    assert_eq!(rt.batch_overruns(), 0);

    stuck.hang_next.store(true, Ordering::SeqCst);
    let timeout = Some(Duration::from_millis(1500));
    let hung = tokio::spawn({
        let rt = rt.clone();
        async move { rt.infer("stuck", None, request(7, timeout)).await }
    });
    until("the forward hangs", || stuck.hanging()).await;
    // A request queued behind the stuck batch (the model's only lane is taken).
    let queued = tokio::spawn({
        let rt = rt.clone();
        async move { rt.infer("stuck", None, request(8, timeout)).await }
    });
    until("the stuck batch is reported", || rt.batch_overruns() == 1).await;
    // The other model is served on the other lane meanwhile.
    round(&rt, "other", 10).await;

    for (what, task) in [("in the stuck batch", hung), ("queued behind it", queued)] {
        let e = tokio::time::timeout(HANG, task)
            .await
            .unwrap_or_else(|_| panic!("the request {what} is answered at its deadline"))
            .unwrap()
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::DeadlineExceeded, "{what}: {e}");
        assert!(
            e.message.contains("'stuck'") && e.message.contains("has not returned"),
            "{what}: {e}"
        );
    }
    // Reported once, however long it runs.
    assert_eq!(rt.batch_overruns(), 1);

    stuck.release();
    until("the released batch finishes", || {
        rt.load("stuck").unwrap().in_flight == 0
    })
    .await;
    round(&rt, "stuck", 5).await;
    assert_eq!(rt.batch_overruns(), 1);
    assert!(rt.shutdown_within(HANG).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_reports_a_lane_stuck_in_a_forward_and_does_not_wait_for_it() {
    let rt = runtime(1);
    let stuck = Faulty::new(None);
    rt.load_model_instance("stuck", 1, stuck.clone()).unwrap();
    round(&rt, "stuck", 2).await;

    stuck.hang_next.store(true, Ordering::SeqCst);
    let hung = tokio::spawn({
        let rt = rt.clone();
        async move { rt.infer("stuck", None, request(1, None)).await }
    });
    until("the forward hangs", || stuck.hanging()).await;
    let queued = tokio::spawn({
        let rt = rt.clone();
        async move { rt.infer("stuck", None, request(2, None)).await }
    });
    until("the second request queues", || {
        rt.load("stuck").unwrap().queued == 1
    })
    .await;

    let stuck_lanes = rt.shutdown_within_async(Duration::from_millis(300)).await;
    assert_eq!(stuck_lanes, vec![0]);
    let e = tokio::time::timeout(HANG, queued)
        .await
        .expect("the queued request is answered at shutdown")
        .unwrap()
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(e.message.contains("shut down"), "{e}");

    // Released, the stuck batch still answers its request.
    stuck.release();
    let resp = tokio::time::timeout(HANG, hung)
        .await
        .expect("the released batch answers")
        .unwrap()
        .unwrap();
    let TensorData::F32(got) = &resp.outputs[0].data else {
        panic!("FP32 output")
    };
    assert_eq!(got, &expected(&values(1)));
}
