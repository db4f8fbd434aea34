//! A device fault found at a batch boundary fails the batch that ran on the lane where it
//! was found, and only that batch: sticky faults (context lost) answer 503 Unavailable,
//! transient ones an internal error; every other request is served with correct outputs
//! and none hangs.
//!
//! Faults are injected through the lanes' batch-boundary hook (`spawn_lanes_checked`), the
//! same seam the CUDA backend's `CudaOps::batch_boundary` plugs into; no GPU is needed.

mod common;

use cohost_kernels::{DeviceFault, FaultKind, Lane};
use cohost_models::{BatchingPolicyKind, InputData, synth};
use cohost_runtime::testing::{
    Boundary, EdfFairShare, MemoryLease, ModelQueue, Pending, Reply, Scheduler, spawn_lanes_checked,
};
use cohost_runtime::{ErrorKind, TensorData};
use common::{ECHO_IN, Echo, echo_outputs};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest a test waits for any answer: a lost reply shows up as this.
const HANG: Duration = Duration::from_secs(20);

/// A batch-boundary hook that reports an armed fault once, at the next boundary.
#[derive(Default)]
struct Injector {
    armed: Mutex<Option<DeviceFault>>,
    fired: AtomicUsize,
}

impl Injector {
    fn arm(&self, kind: FaultKind) {
        *self.armed.lock().unwrap() = Some(DeviceFault {
            kind,
            code: "INJECTED".into(),
            seen_at: "test injector",
        });
    }

    fn boundary(self: &Arc<Self>) -> Boundary {
        let me = self.clone();
        Arc::new(move |_: &Lane| match me.armed.lock().unwrap().take() {
            Some(f) => {
                me.fired.fetch_add(1, Ordering::SeqCst);
                Err(f)
            }
            None => Ok(()),
        })
    }
}

struct Slice {
    sched: Arc<Scheduler>,
    handles: Vec<JoinHandle<()>>,
    queues: Vec<Arc<ModelQueue>>,
    injector: Arc<Injector>,
}

const LANES: usize = 2;

impl Slice {
    /// Two echo models ("a", "b") on two lanes, one request per batch.
    fn start() -> Slice {
        let sched = Arc::new(Scheduler::new(Box::new(EdfFairShare::default()), LANES));
        let queues = ["a", "b"]
            .into_iter()
            .map(|name| {
                let mut config = synth::preset("mlp-tiny").unwrap();
                config.batching.policy = BatchingPolicyKind::None;
                let model = Echo::new(config.clone(), Duration::from_millis(1));
                let lease = MemoryLease::new(0, Arc::new(AtomicU64::new(0)));
                let q = Arc::new(ModelQueue::new(name, 1, config, model, LANES, lease));
                sched.add(q.clone());
                q
            })
            .collect();
        let injector = Arc::new(Injector::default());
        let lanes = (0..LANES).map(Lane::cpu).collect();
        let handles = spawn_lanes_checked(lanes, sched.clone(), injector.boundary());
        Slice {
            sched,
            handles,
            queues,
            injector,
        }
    }

    fn stop(self) {
        self.sched.shutdown();
        for h in self.handles {
            h.join().expect("lanes never unwind");
        }
    }
}

use common::Answer;

fn values(seed: u64) -> Vec<f32> {
    (0..ECHO_IN)
        .map(|i| ((seed as usize * 31 + i * 7) % 13) as f32)
        .collect()
}

fn submit(slice: &Slice, q: &ModelQueue, x: Vec<f32>) -> Answer {
    let (tx, rx) = tokio::sync::oneshot::channel();
    q.enqueue(Pending {
        rows: 1,
        inputs: vec![InputData::F32(x)],
        outputs: vec![0],
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

/// Sends `n` requests alternating between the two models, arming `kind` after the
/// `arm_at`-th; returns the errors seen (each other answer is checked exactly).
fn load_with_fault(
    slice: &Slice,
    n: u64,
    arm_at: u64,
    kind: FaultKind,
) -> Vec<cohost_runtime::Error> {
    let mut sent = Vec::new();
    for i in 0..n {
        if i == arm_at {
            slice.injector.arm(kind);
        }
        let q = &slice.queues[(i % 2) as usize];
        let x = values(i);
        let x2 = x.clone();
        sent.push((q.name().to_string(), x2, submit(slice, q, x)));
    }
    let mut errors = Vec::new();
    for (name, x, rx) in sent {
        match answer(rx) {
            Ok(reply) => {
                let TensorData::F32(got) = &reply.outputs[0].data else {
                    panic!("FP32 output")
                };
                assert_eq!(got, &echo_outputs(&x), "model {name}: wrong output");
            }
            Err(e) => errors.push(e),
        }
    }
    errors
}

fn assert_idle(slice: &Slice) {
    for q in &slice.queues {
        assert_eq!(
            q.counts(),
            (0, 0),
            "{}'s accounting was not released",
            q.name()
        );
    }
}

#[test]
fn a_sticky_fault_fails_its_batch_with_unavailable_and_nothing_else() {
    let slice = Slice::start();
    let errors = load_with_fault(&slice, 200, 50, FaultKind::Sticky);
    assert_eq!(slice.injector.fired.load(Ordering::SeqCst), 1);
    assert_eq!(
        errors.len(),
        1,
        "exactly the faulted batch fails: {errors:?}"
    );
    let e = &errors[0];
    assert_eq!(e.kind, ErrorKind::Unavailable, "{e}");
    assert!(
        e.message.contains("sticky") && e.message.contains("INJECTED"),
        "{e}"
    );
    assert!(
        e.message.contains("model 'a'") || e.message.contains("model 'b'"),
        "{e}"
    );
    // Both models keep serving correct outputs afterwards.
    assert!(load_with_fault(&slice, 100, u64::MAX, FaultKind::Sticky).is_empty());
    assert_idle(&slice);
    slice.stop();
}

#[test]
fn a_transient_fault_fails_only_its_batch_with_an_internal_error() {
    let slice = Slice::start();
    let errors = load_with_fault(&slice, 200, 20, FaultKind::Transient);
    assert_eq!(slice.injector.fired.load(Ordering::SeqCst), 1);
    assert_eq!(
        errors.len(),
        1,
        "exactly the faulted batch fails: {errors:?}"
    );
    assert_eq!(errors[0].kind, ErrorKind::Internal, "{}", errors[0]);
    assert!(errors[0].message.contains("transient"), "{}", errors[0]);
    assert!(load_with_fault(&slice, 100, u64::MAX, FaultKind::Transient).is_empty());
    assert_idle(&slice);
    slice.stop();
}

#[test]
fn the_fault_is_attributed_to_the_batch_on_whose_boundary_it_is_found() {
    // One request at a time: the armed fault can only land on the next one sent.
    let slice = Slice::start();
    for (i, q) in slice.queues.iter().enumerate() {
        slice.injector.arm(FaultKind::Sticky);
        let Err(e) = answer(submit(&slice, q, values(i as u64))) else {
            panic!("the faulted batch must fail")
        };
        assert!(e.message.contains(&format!("model '{}'", q.name())), "{e}");
        let Ok(ok) = answer(submit(&slice, q, values(7))) else {
            panic!("the next batch is served")
        };
        let TensorData::F32(got) = &ok.outputs[0].data else {
            panic!("FP32 output")
        };
        assert_eq!(got, &echo_outputs(&values(7)));
    }
    assert_idle(&slice);
    slice.stop();
}
