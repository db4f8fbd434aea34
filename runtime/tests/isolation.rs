//! A model that fails or panics while running a batch fails that batch only: not the lane,
//! not the process, not the other tenants.

mod common;

use cohost_kernels::Lane;
use cohost_models::{Batch, InputData, MemoryReport, Model, ModelConfig, ModelError, synth};
use cohost_runtime::{ErrorKind, Runtime, RuntimeOptions};
use common::*;
use std::sync::Arc;

/// Panics when the first dense value is 666, returns an error at 777, else zeros.
struct Fragile(ModelConfig);

impl Model for Fragile {
    fn config(&self) -> &ModelConfig {
        &self.0
    }
    fn check(&self, _: &Batch) -> Result<(), ModelError> {
        Ok(())
    }
    fn forward(&self, _: &Lane, batch: &Batch) -> Result<Vec<Vec<f32>>, ModelError> {
        let InputData::F32(x) = &batch.inputs[0] else {
            unreachable!()
        };
        if x.contains(&666.0) {
            panic!("fragile model hit 666");
        }
        if x.contains(&777.0) {
            return Err(ModelError::Kernel(cohost_kernels::KernelError::Cpu(
                "bad 777".into(),
            )));
        }
        let width: i64 = self.0.outputs[0].dims[1..].iter().product();
        Ok(vec![vec![0.0; batch.rows * width as usize]])
    }
    fn memory(&self) -> MemoryReport {
        MemoryReport::default()
    }
    fn flops_per_row(&self) -> u64 {
        1000
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_model_fails_its_batch_and_everything_else_keeps_serving() {
    let rt = Runtime::new(RuntimeOptions::default().lanes(1)).unwrap();
    let mut config = synth::preset("mlp-tiny").unwrap();
    config.batching.policy = cohost_models::BatchingPolicyKind::None;
    rt.load_model_instance("fragile", 1, Arc::new(Fragile(config.clone())))
        .unwrap();
    rt.load_model_from(
        "healthy",
        1,
        config.clone(),
        &synth::random_weights(&config, 3),
    )
    .unwrap();

    let mut poison = random_request(&config, 1, &mut rng(1));
    if let cohost_runtime::TensorData::F32(v) = &mut poison.inputs[0].data {
        v[0] = 666.0;
    }
    let e = rt.infer("fragile", None, poison.clone()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");
    assert!(e.message.contains("fragile model hit 666"), "{e}");

    if let cohost_runtime::TensorData::F32(v) = &mut poison.inputs[0].data {
        v[0] = 777.0;
    }
    let e = rt.infer("fragile", None, poison).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Internal, "{e}");

    // The same lane serves both tenants afterwards.
    let ok = rt
        .infer("fragile", None, random_request(&config, 2, &mut rng(2)))
        .await
        .unwrap();
    assert_eq!(f32s(&ok.outputs[0]), &[0.0; 8]);
    let req = random_request(&config, 1, &mut rng(3));
    assert!(rt.infer("healthy", None, req).await.is_ok());
    let stats = rt.stats(Some("fragile"), None).unwrap();
    assert_eq!((stats[0].success.count, stats[0].fail.count), (1, 2));
    rt.shutdown();
}

#[test]
fn a_model_instance_with_an_invalid_config_is_refused_not_served() {
    let rt = Runtime::new(RuntimeOptions::default().lanes(1)).unwrap();
    let mut config = synth::preset("mlp-tiny").unwrap();
    config.batching.policy = cohost_models::BatchingPolicyKind::Adaptive;
    // Would overflow the scheduler's Duration arithmetic if it were ever served.
    config.batching.p99_target_ms = Some(1e300);
    let err = rt
        .load_model_instance("huge-target", 1, Arc::new(Fragile(config)))
        .unwrap_err();
    assert_eq!(
        err.kind,
        cohost_runtime::ErrorKind::InvalidArgument,
        "{err}"
    );
    assert!(err.message.contains("batching.p99_target_ms"), "{err}");
    assert!(rt.metadata("huge-target", None).is_err());
    rt.shutdown();
}
