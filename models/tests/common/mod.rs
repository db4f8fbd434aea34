//! Helpers shared by the model tests: random named tensors, safetensors bytes written
//! with the `safetensors` crate (not the crate under test), random batches, the CUDA
//! backend or a skip.
#![allow(dead_code)]

use cohost_models::{Batch, InputData, InteractionKind, ModelConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use std::collections::BTreeMap;

/// Named f32 tensors: name → (shape, values).
pub type Tensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn uniform(rng: &mut StdRng, n: usize, a: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-a..a)).collect()
}

fn stack(t: &mut Tensors, rng: &mut StdRng, prefix: &str, widths: &[usize]) {
    for (i, p) in widths.windows(2).enumerate() {
        let (inp, out) = (p[0], p[1]);
        let a = (3.0 / inp as f32).sqrt() * 1.4;
        t.insert(
            format!("{prefix}.{i}.weight"),
            (vec![out, inp], uniform(rng, out * inp, a)),
        );
        t.insert(
            format!("{prefix}.{i}.bias"),
            (vec![out], uniform(rng, out, 0.3)),
        );
    }
}

/// Random weights for `config` (its own generator, independent of `synth`).
pub fn random_tensors(config: &ModelConfig, seed: u64) -> Tensors {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = Tensors::new();
    if let Some(p) = &config.mlp {
        stack(&mut t, &mut rng, "layers", &p.layers);
    }
    if let Some(p) = &config.dlrm {
        let mut bottom = vec![p.dense_features];
        bottom.extend(&p.bottom);
        let f = p.table_sizes.len() + 1;
        let width = match p.interaction {
            InteractionKind::Dot if p.interaction_itself => p.embedding_dim + f * (f + 1) / 2,
            InteractionKind::Dot => p.embedding_dim + f * (f - 1) / 2,
            InteractionKind::Dcn | InteractionKind::Cat => f * p.embedding_dim,
        };
        let mut top = vec![width];
        top.extend(&p.top);
        stack(&mut t, &mut rng, "bottom", &bottom);
        stack(&mut t, &mut rng, "top", &top);
        for (i, &rows) in p.table_sizes.iter().enumerate() {
            let data = uniform(&mut rng, rows * p.embedding_dim, 0.5);
            t.insert(
                format!("embeddings.{i}.weight"),
                (vec![rows, p.embedding_dim], data),
            );
        }
        if p.interaction == InteractionKind::Dcn {
            // Uniform with variance 1/(4·fan-in): each layer adds O(x_0²/4) to x_l.
            let r = p.dcn_low_rank;
            for l in 0..p.dcn_layers {
                let (av, aw) = ((0.75 / width as f32).sqrt(), (0.75 / r as f32).sqrt());
                let v = uniform(&mut rng, r * width, av);
                t.insert(format!("crossnet.{l}.v"), (vec![r, width], v));
                let w = uniform(&mut rng, width * r, aw);
                t.insert(format!("crossnet.{l}.w"), (vec![width, r], w));
                let b = uniform(&mut rng, width, 0.3);
                t.insert(format!("crossnet.{l}.bias"), (vec![width], b));
            }
        }
    }
    t
}

/// Which dtype to store tensors in.
#[derive(Clone, Copy)]
pub enum Store {
    F32,
    F16,
    Bf16,
}

/// Safetensors bytes for `t`, stored as `store`.
pub fn to_safetensors(t: &Tensors, store: Store) -> Vec<u8> {
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = t
        .iter()
        .map(|(name, (shape, v))| {
            let bytes = match store {
                Store::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                Store::F16 => v
                    .iter()
                    .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                    .collect(),
                Store::Bf16 => v
                    .iter()
                    .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                    .collect(),
            };
            (name.clone(), shape.clone(), bytes)
        })
        .collect();
    let dtype = match store {
        Store::F32 => Dtype::F32,
        Store::F16 => Dtype::F16,
        Store::Bf16 => Dtype::BF16,
    };
    let views: Vec<(String, TensorView<'_>)> = bufs
        .iter()
        .map(|(n, s, b)| (n.clone(), TensorView::new(dtype, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// `t` with every value rounded through `store` (what a model loaded from it sees).
pub fn rounded(t: &Tensors, store: Store) -> Tensors {
    t.iter()
        .map(|(n, (s, v))| {
            let v = v
                .iter()
                .map(|&x| match store {
                    Store::F32 => x,
                    Store::F16 => half::f16::from_f32(x).to_f32(),
                    Store::Bf16 => half::bf16::from_f32(x).to_f32(),
                })
                .collect();
            (n.clone(), (s.clone(), v))
        })
        .collect()
}

/// A random batch of `rows` rows for `config` (dense U(-1, 1), indices uniform in range).
pub fn random_batch(config: &ModelConfig, rows: usize, rng: &mut StdRng) -> Batch {
    if let Some(p) = &config.mlp {
        return Batch {
            rows,
            inputs: vec![InputData::F32(uniform(rng, rows * p.layers[0], 1.0))],
        };
    }
    let p = config.dlrm.as_ref().unwrap();
    let dense = uniform(rng, rows * p.dense_features, 1.0);
    let mut sparse = Vec::new();
    for _ in 0..rows {
        for (t, &size) in p.table_sizes.iter().enumerate() {
            let bag = if p.multi_hot.len() == 1 {
                p.multi_hot[0]
            } else {
                p.multi_hot[t]
            };
            for _ in 0..bag {
                sparse.push(rng.random_range(0..size as i64));
            }
        }
    }
    Batch {
        rows,
        inputs: vec![InputData::F32(dense), InputData::I64(sparse)],
    }
}

/// Rows `range` of `batch` as a batch of its own.
pub fn slice_rows(batch: &Batch, from: usize, to: usize) -> Batch {
    let inputs = batch
        .inputs
        .iter()
        .map(|inp| {
            let w = inp.len() / batch.rows;
            match inp {
                InputData::F32(v) => InputData::F32(v[from * w..to * w].to_vec()),
                InputData::I64(v) => InputData::I64(v[from * w..to * w].to_vec()),
            }
        })
        .collect();
    Batch {
        rows: to - from,
        inputs,
    }
}

/// The CUDA backend when a device is usable; None (the test skips, saying why) without one,
/// unless `COHOST_REQUIRE_CUDA` is set, which makes a missing device fail the test.
pub fn cuda_or_skip() -> Option<std::sync::Arc<cohost_kernels::cuda::CudaOps>> {
    match cohost_kernels::cuda::probe() {
        Ok(info) => println!("CUDA device: {info}"),
        Err(e) => {
            let required =
                std::env::var("COHOST_REQUIRE_CUDA").is_ok_and(|v| !v.is_empty() && v != "0");
            assert!(
                !required,
                "COHOST_REQUIRE_CUDA is set but CUDA is unusable: {e}"
            );
            println!("skipped: no CUDA device ({e})");
            return None;
        }
    }
    Some(std::sync::Arc::new(
        cohost_kernels::cuda::CudaOps::open().expect("probe succeeded"),
    ))
}
