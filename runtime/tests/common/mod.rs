//! Shared helpers of the runtime's integration tests.
#![allow(dead_code)]

use cohost_kernels::Lane;
use cohost_kernels::cpu::CpuOps;
use cohost_models::{
    BackendHandle, Batch, InputData, MemoryReport, Model, ModelError, PlacementOptions,
    WeightSource,
};
use cohost_runtime::{
    DataType, InferRequest, ModelConfig, Runtime, RuntimeOptions, Tensor, TensorData,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// Builds the same model the runtime serves, outside the runtime, as a reference.
#[allow(clippy::default_constructed_unit_structs)]
pub fn reference_model(dir: &Path) -> Arc<dyn Model> {
    let config = ModelConfig::from_file(&dir.join("config.toml")).unwrap();
    let weights = dir.join("1/model.safetensors");
    cohost_models::build_model(
        &config,
        WeightSource::File(&weights),
        &BackendHandle::Cpu(Arc::new(CpuOps::default())),
        &PlacementOptions::default(),
    )
    .unwrap()
}

/// The model `config` describes with `synth::random_weights(config, seed)`, built outside
/// the runtime, as a reference for [`runtime_serving`] with the same seed.
#[allow(clippy::default_constructed_unit_structs)]
pub fn reference_model_of(config: &ModelConfig, seed: u64) -> Arc<dyn Model> {
    let weights = cohost_models::synth::random_weights(config, seed);
    cohost_models::build_model(
        config,
        WeightSource::Bytes(&weights),
        &BackendHandle::Cpu(Arc::new(CpuOps::default())),
        &PlacementOptions::default(),
    )
    .unwrap()
}

/// A random valid request of `rows` rows for `config`.
pub fn random_request(config: &ModelConfig, rows: usize, rng: &mut StdRng) -> InferRequest {
    let inputs = config
        .inputs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let width: i64 = spec.dims[1..].iter().product();
            let n = rows * width as usize;
            let data = match spec.datatype {
                DataType::FP32 => {
                    TensorData::F32((0..n).map(|_| rng.random_range(-1.0..1.0)).collect())
                }
                _ => {
                    // DLRM sparse input: each position belongs to a table; stay inside it.
                    let d = config.dlrm.as_ref().expect("integer input only on dlrm");
                    let hot = |t: usize| {
                        if d.multi_hot.len() == 1 {
                            d.multi_hot[0]
                        } else {
                            d.multi_hot[t]
                        }
                    };
                    let mut limits = Vec::new();
                    for (t, &size) in d.table_sizes.iter().enumerate() {
                        limits.extend(std::iter::repeat_n(size, hot(t)));
                    }
                    assert_eq!(limits.len(), width as usize, "input {i}");
                    TensorData::I64(
                        (0..n)
                            .map(|k| rng.random_range(0..limits[k % limits.len()] as i64))
                            .collect(),
                    )
                }
            };
            Tensor::new(&spec.name, vec![rows as i64, width], data)
        })
        .collect();
    InferRequest {
        inputs,
        ..Default::default()
    }
}

/// Runs a request's rows through the reference model directly.
pub fn reference_outputs(model: &dyn Model, req: &InferRequest) -> Vec<Vec<f32>> {
    let rows = req.inputs[0].shape[0] as usize;
    let inputs = model
        .config()
        .inputs
        .iter()
        .map(|spec| {
            let t = req.inputs.iter().find(|t| t.name == spec.name).unwrap();
            match &t.data {
                TensorData::F32(v) => InputData::F32(v.clone()),
                TensorData::I64(v) => InputData::I64(v.clone()),
                _ => unreachable!(),
            }
        })
        .collect();
    model
        .forward(&Lane::cpu(0), &Batch { rows, inputs })
        .unwrap()
}

/// Asserts two outputs agree within `tol` absolutely: |got − want| ≤ tol.
///
/// Batch invariance is checked absolutely because outputs are O(1)-scale sums whose
/// value can be near 0: a different GEMM blocking for another batch size reorders f32
/// additions, moving results by ~1e-7 absolute, which is large relative to a value of 0.004.
pub fn assert_close(got: &[f32], want: &[f32], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g as f64 - w as f64).abs();
        assert!(
            err <= tol,
            "element {i}: got {g}, want {w} (|error| {err:e} > {tol:e})"
        );
    }
}

/// A seeded RNG.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// The f32 values of an output tensor.
pub fn f32s(t: &Tensor) -> &[f32] {
    match &t.data {
        TensorData::F32(v) => v,
        other => panic!("expected FP32 output, got {:?}", other.datatype()),
    }
}

/// A CPU runtime with `lanes` lanes serving `config` as `name` version 1, with random
/// weights from `seed`.
pub fn runtime_serving(lanes: usize, name: &str, config: &ModelConfig, seed: u64) -> Runtime {
    let rt = Runtime::new(RuntimeOptions::default().lanes(lanes)).unwrap();
    rt.load_model_from(
        name,
        1,
        config.clone(),
        &cohost_models::synth::random_weights(config, seed),
    )
    .unwrap();
    rt
}

/// Inputs per row of the hand-written models in the lane tests (mlp-tiny's shape).
pub const ECHO_IN: usize = 8;
/// Outputs per row of those models.
pub const ECHO_OUT: usize = 4;

/// What those models answer for rows `x`: per row, the row's sum plus the output's index.
pub fn echo_outputs(x: &[f32]) -> Vec<f32> {
    x.chunks(ECHO_IN)
        .flat_map(|row| {
            let s: f32 = row.iter().sum();
            (0..ECHO_OUT).map(move |j| s + j as f32)
        })
        .collect()
}

/// A request's reply channel, as a test that queues by hand holds it.
pub type Answer =
    tokio::sync::oneshot::Receiver<cohost_runtime::Result<cohost_runtime::testing::Reply>>;

/// A queue for `model` as `name`, on up to `lanes` lanes, added to `sched` by hand.
pub fn scheduled_queue(
    sched: &cohost_runtime::testing::Scheduler,
    name: &str,
    config: &ModelConfig,
    model: Arc<dyn Model>,
    lanes: usize,
) -> Arc<cohost_runtime::testing::ModelQueue> {
    use cohost_runtime::testing::{MemoryLease, ModelQueue};
    let lease = MemoryLease::new(0, Arc::new(std::sync::atomic::AtomicU64::new(0)));
    let q = Arc::new(ModelQueue::new(
        name,
        1,
        config.clone(),
        model,
        lanes,
        lease,
    ));
    sched.add(q.clone());
    q
}

/// Queues `rows` rows of mlp-tiny input (8 values a row) on `q` by hand, waking no lane.
pub fn enqueue(q: &cohost_runtime::testing::ModelQueue, rows: usize) -> Answer {
    let (tx, rx) = tokio::sync::oneshot::channel();
    q.enqueue(cohost_runtime::testing::Pending {
        rows,
        inputs: vec![InputData::F32(vec![0.5; rows * 8])],
        outputs: vec![0],
        enqueued: std::time::Instant::now(),
        deadline: None,
        reply: tx,
    })
    .unwrap();
    rx
}

/// The answer on `rx`, failing the test on a dropped reply channel or no answer within `hang`.
pub fn answer_within(
    mut rx: Answer,
    hang: std::time::Duration,
) -> cohost_runtime::Result<cohost_runtime::testing::Reply> {
    let until = std::time::Instant::now() + hang;
    loop {
        match rx.try_recv() {
            Ok(r) => return r,
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                panic!("the reply channel was dropped without an answer")
            }
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {
                assert!(
                    std::time::Instant::now() < until,
                    "no answer within {hang:?}"
                );
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
    }
}

/// mlp-tiny's signature (8 inputs, 4 outputs) over a deterministic function of the inputs:
/// output `j` of a row is the row's sum plus `j`, after a pause. Records which lanes ran it.
pub struct Echo {
    config: ModelConfig,
    lanes: Mutex<BTreeSet<usize>>,
    pause: Duration,
}

impl Echo {
    pub fn new(config: ModelConfig, pause: Duration) -> Arc<Echo> {
        Arc::new(Echo {
            config,
            lanes: Mutex::new(BTreeSet::new()),
            pause,
        })
    }

    pub fn take_lanes(&self) -> BTreeSet<usize> {
        std::mem::take(&mut *self.lanes.lock().unwrap())
    }
}

impl Model for Echo {
    fn config(&self) -> &ModelConfig {
        &self.config
    }
    fn check(&self, _: &Batch) -> Result<(), ModelError> {
        Ok(())
    }
    fn forward(&self, lane: &Lane, batch: &Batch) -> Result<Vec<Vec<f32>>, ModelError> {
        self.lanes.lock().unwrap().insert(lane.index);
        std::thread::sleep(self.pause);
        let InputData::F32(x) = &batch.inputs[0] else {
            unreachable!("echo takes FP32")
        };
        Ok(vec![echo_outputs(x)])
    }
    fn memory(&self) -> MemoryReport {
        MemoryReport::default()
    }
    fn flops_per_row(&self) -> u64 {
        1000
    }
}

/// How long a test waits for something that must happen before calling it a hang: a guard
/// far beyond any expected time, not a timing assertion.
pub const HANG: Duration = Duration::from_secs(20);

/// Polls `cond` until it holds, failing the test ("never: `what`") after [`HANG`].
pub async fn until(what: &str, cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < HANG, "never within {HANG:?}: {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// [`until`] for a test without an async runtime: polls on this thread.
pub fn until_blocking(what: &str, cond: impl Fn() -> bool) {
    let start = std::time::Instant::now();
    while !cond() {
        assert!(start.elapsed() < HANG, "never within {HANG:?}: {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}
