//! Weight loading (missing/mis-shaped tensors, fp16/bf16, files), input checks, memory
//! accounting and the synthetic generator.

mod common;

use cohost_kernels::cpu::CpuOps;
use cohost_kernels::{Lane, TablePlacement};
use cohost_models::{
    BackendHandle, Batch, InputData, Model, ModelConfig, ModelError, PlacementOptions,
    WeightSource, build_model, synth,
};
use common::{Store, random_batch, random_tensors, rounded, to_safetensors};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;

fn cpu() -> BackendHandle {
    BackendHandle::Cpu(Arc::new(CpuOps::new()))
}

fn build_bytes(config: &ModelConfig, bytes: &[u8]) -> Result<Arc<dyn Model>, ModelError> {
    build_model(
        config,
        WeightSource::Bytes(bytes),
        &cpu(),
        &PlacementOptions::default(),
    )
}

fn weights_err(config: &ModelConfig, bytes: &[u8]) -> String {
    match build_bytes(config, bytes) {
        Err(ModelError::Weights(m)) => m,
        Err(e) => panic!("expected a weights error, got {e:?}"),
        Ok(_) => panic!("expected a weights error, got a model"),
    }
}

#[test]
fn missing_tensor_is_named_with_its_expected_shape() {
    let c = synth::preset("dlrm-tiny").unwrap();
    let mut t = random_tensors(&c, 1);
    t.remove("embeddings.2.weight");
    let m = weights_err(&c, &to_safetensors(&t, Store::F32));
    assert_eq!(
        m,
        "tensor 'embeddings.2.weight' is missing (expected shape [1000, 8])"
    );
}

#[test]
fn mis_shaped_tensor_is_named() {
    let c = synth::preset("mlp-tiny").unwrap();
    let mut t = random_tensors(&c, 1);
    t.insert("layers.1.weight".into(), (vec![16, 15], vec![0.0; 240]));
    let m = weights_err(&c, &to_safetensors(&t, Store::F32));
    assert_eq!(
        m,
        "tensor 'layers.1.weight' has shape [16, 15], expected [16, 16]"
    );
}

#[test]
fn garbage_bytes_are_a_weights_error() {
    let c = synth::preset("mlp-tiny").unwrap();
    assert!(weights_err(&c, b"definitely not safetensors").contains("not a valid safetensors"));
}

#[test]
fn missing_file_is_a_weights_error() {
    let c = synth::preset("mlp-tiny").unwrap();
    let path = std::path::Path::new("/nonexistent/model.safetensors");
    let r = build_model(
        &c,
        WeightSource::File(path),
        &cpu(),
        &PlacementOptions::default(),
    );
    assert!(
        matches!(r, Err(ModelError::Weights(m)) if m.contains("/nonexistent/model.safetensors"))
    );
}

fn outputs(model: &dyn Model, batch: &Batch) -> Vec<f32> {
    model.forward(&Lane::cpu(0), batch).unwrap().remove(0)
}

#[test]
fn fp16_and_bf16_weights_load_and_upcast_exactly() {
    let c = synth::preset("dlrm-tiny").unwrap();
    let t = random_tensors(&c, 2);
    let batch = random_batch(&c, 16, &mut StdRng::seed_from_u64(3));
    for store in [Store::F16, Store::Bf16] {
        let half_model = build_bytes(&c, &to_safetensors(&t, store)).unwrap();
        // The same values, already rounded, stored as f32: the upcast must be exact.
        let f32_model = build_bytes(&c, &to_safetensors(&rounded(&t, store), Store::F32)).unwrap();
        assert_eq!(outputs(&*half_model, &batch), outputs(&*f32_model, &batch));
        // And the rounding really happened (bf16 keeps 8 bits of mantissa).
        let full = build_bytes(&c, &to_safetensors(&t, Store::F32)).unwrap();
        assert_ne!(outputs(&*half_model, &batch), outputs(&*full, &batch));
    }
}

#[test]
fn out_of_range_index_fails_the_request_alone() {
    let c = synth::preset("dlrm-tiny").unwrap();
    let model = build_bytes(&c, &to_safetensors(&random_tensors(&c, 4), Store::F32)).unwrap();
    let mut batch = random_batch(&c, 3, &mut StdRng::seed_from_u64(5));
    model.check(&batch).unwrap();
    // Row 1, table 2 (bags 1 + 3 + 2: table 2 starts at offset 4 of the 6-wide row).
    let InputData::I64(sparse) = &mut batch.inputs[1] else {
        panic!()
    };
    sparse[6 + 4] = 1234;
    let e = model.check(&batch).unwrap_err();
    assert_eq!(
        e,
        ModelError::Input(
            "input 'sparse': index 1234 at row 1, table 2 is outside the table's 1000 rows".into()
        )
    );
    let InputData::I64(sparse) = &mut batch.inputs[1] else {
        panic!()
    };
    sparse[6 + 4] = -1;
    assert!(
        matches!(model.check(&batch), Err(ModelError::Input(m)) if m.contains("index -1 at row 1, table 2"))
    );
    // Forward does not panic on it either.
    assert!(model.forward(&Lane::cpu(0), &batch).is_err());
}

#[test]
fn wrong_input_sizes_are_input_errors() {
    let c = synth::preset("dlrm-tiny").unwrap();
    let model = build_bytes(&c, &to_safetensors(&random_tensors(&c, 4), Store::F32)).unwrap();
    let mut batch = random_batch(&c, 2, &mut StdRng::seed_from_u64(5));
    batch.rows = 3;
    let e = model.check(&batch).unwrap_err();
    assert_eq!(
        e,
        ModelError::Input("input 'dense': expected 12 values (3 rows x 4), got 8".into())
    );
    let batch = Batch {
        rows: 1,
        inputs: vec![InputData::F32(vec![0.0; 4])],
    };
    assert!(
        matches!(model.check(&batch), Err(ModelError::Input(m)) if m.contains("expected 2 inputs"))
    );
}

#[test]
fn memory_reports_allocated_bytes_and_budget_is_enforced() {
    let c = synth::preset("dlrm-tiny").unwrap();
    let bytes = to_safetensors(&random_tensors(&c, 6), Store::F32);
    let model = build_bytes(&c, &bytes).unwrap();
    let mem = model.memory();
    // bottom 4-16-8, top (8 + 6)-16-8-1: weights + biases, f32.
    let dense = (4 * 16 + 16) + (16 * 8 + 8) + (14 * 16 + 16) + (16 * 8 + 8) + (8 + 1);
    assert_eq!(mem.weight_bytes, 4 * dense as u64);
    let rows = [100u64, 250, 1000];
    assert_eq!(mem.tables.len(), 3);
    for ((name, placement, m), (t, r)) in mem.tables.iter().zip(rows.iter().enumerate()) {
        assert_eq!(name, &format!("embeddings.{t}"));
        assert_eq!(*placement, TablePlacement::Resident);
        assert_eq!(m.resident_bytes, r * 8 * 4);
    }
    let need = mem.device_bytes();
    assert_eq!(need, 4 * dense as u64 + 1350 * 32);

    let fits = PlacementOptions {
        device_budget: Some(need),
        host_budget: None,
    };
    assert!(build_model(&c, WeightSource::Bytes(&bytes), &cpu(), &fits).is_ok());
    let tight = PlacementOptions {
        device_budget: Some(need - 1),
        host_budget: None,
    };
    // With offload (the default) a table moves to host memory; without, it is refused.
    let offloaded = build_model(&c, WeightSource::Bytes(&bytes), &cpu(), &tight).unwrap();
    assert!(offloaded.memory().device_bytes() < need);
    let mut c = c;
    c.dlrm.as_mut().unwrap().offload = false;
    match build_model(&c, WeightSource::Bytes(&bytes), &cpu(), &tight) {
        Err(ModelError::Memory(m)) => {
            assert!(m.contains(&format!("budget is {}", need - 1)), "{m}")
        }
        other => panic!("expected a memory error, got {:?}", other.err()),
    }
}

#[test]
fn flops_per_row_counts_gemms_interaction_and_bags() {
    let c = synth::preset("dlrm-tiny").unwrap();
    let model = build_bytes(&c, &to_safetensors(&random_tensors(&c, 7), Store::F32)).unwrap();
    let gemm = 2 * (4 * 16 + 16 * 8 + 14 * 16 + 16 * 8 + 8);
    let interaction = 2 * 6 * 8; // 4 features → 6 pairs of dim 8
    let bags = (1 + 3 + 2) * 8;
    assert_eq!(model.flops_per_row(), (gemm + interaction + bags) as u64);
    let m = synth::preset("mlp-tiny").unwrap();
    let mlp = build_bytes(&m, &to_safetensors(&random_tensors(&m, 7), Store::F32)).unwrap();
    assert_eq!(mlp.flops_per_row(), 2 * (8 * 16 + 16 * 16 + 16 * 4));
}

#[test]
fn random_weights_are_deterministic_and_load() {
    let c = synth::preset("dlrm-tiny").unwrap();
    let a = synth::random_weights(&c, 9);
    assert_eq!(a, synth::random_weights(&c, 9));
    assert_ne!(a, synth::random_weights(&c, 10));
    let model = build_bytes(&c, &a).unwrap();
    let out = outputs(
        &*model,
        &random_batch(&c, 32, &mut StdRng::seed_from_u64(1)),
    );
    // Scaled init: sigmoid outputs neither saturated nor constant.
    assert!(out.iter().all(|&p| p > 0.01 && p < 0.99), "{out:?}");
    assert!(out.iter().any(|&p| (p - out[0]).abs() > 1e-4));
}

#[test]
fn generate_writes_a_loadable_repository() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = (0, 0);
    let dirs = synth::generate(dir.path(), "dlrm-tiny", 2, 7, Some(50), &mut |d, t| {
        last = (d, t)
    })
    .unwrap();
    assert_eq!(
        dirs,
        vec![
            dir.path().join("dlrm-tiny-0"),
            dir.path().join("dlrm-tiny-1")
        ]
    );
    assert!(last.1 > 0 && last.0 == last.1, "progress ended at {last:?}");
    let config = ModelConfig::from_file(&dirs[1].join("config.toml")).unwrap();
    assert_eq!(config.dlrm.as_ref().unwrap().table_sizes, vec![50, 50, 50]);
    let file = dirs[1].join("1/model.safetensors");
    let model = build_model(
        &config,
        WeightSource::File(&file),
        &cpu(),
        &PlacementOptions::default(),
    )
    .unwrap();
    let batch = random_batch(&config, 4, &mut StdRng::seed_from_u64(2));
    assert_eq!(outputs(&*model, &batch).len(), 4);
    // Model i uses seed + i, the same bytes as random_weights.
    assert_eq!(
        std::fs::read(&file).unwrap(),
        synth::random_weights(&config, 8)
    );

    assert!(synth::generate(dir.path(), "mlp-tiny", 1, 0, Some(5), &mut |_, _| {}).is_err());
    assert!(synth::generate(dir.path(), "nope", 1, 0, None, &mut |_, _| {}).is_err());
    let one = synth::generate(dir.path(), "mlp-tiny", 1, 0, None, &mut |_, _| {}).unwrap();
    assert_eq!(one, vec![dir.path().join("mlp-tiny")]);
}
