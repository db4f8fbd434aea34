//! MLP and DLRM outputs against an independent f64 reference written with plain loops
//! (no model code, no candle), for every batch size 1..=max_batch_size, plus batch
//! invariance.
//!
//! Tolerance: `|got - ref| <= 1e-5 * max(|ref|, 0.1)`: 1e-5 relative for outputs of
//! magnitude >= 0.1, and 1e-6 absolute below that (f32 rounding of O(1) partial sums
//! cannot be judged relative to a result that happens to be near zero).

mod common;

use cohost_kernels::Lane;
use cohost_kernels::cpu::CpuOps;
use cohost_models::{
    BackendHandle, Batch, InputData, InteractionKind, Model, ModelConfig, PlacementOptions,
    WeightPrecision, WeightSource, build_model, synth,
};
use common::{Store, Tensors, random_batch, random_tensors, slice_rows, to_safetensors};
use rand::SeedableRng;
use rand::rngs::StdRng;
use std::sync::Arc;

fn build(config: &ModelConfig, t: &Tensors) -> Arc<dyn Model> {
    let bytes = to_safetensors(t, Store::F32);
    let backend = BackendHandle::Cpu(Arc::new(CpuOps::new()));
    build_model(
        config,
        WeightSource::Bytes(&bytes),
        &backend,
        &PlacementOptions::default(),
    )
    .unwrap()
}

/// `y = x · wᵀ + b` in f64 for one row, then `act`.
fn linear64(t: &Tensors, name: &str, x: &[f64], act: fn(f64) -> f64) -> Vec<f64> {
    let (ws, w) = &t[&format!("{name}.weight")];
    let (_, b) = &t[&format!("{name}.bias")];
    let (out, inp) = (ws[0], ws[1]);
    assert_eq!(x.len(), inp);
    (0..out)
        .map(|o| {
            let mut s = b[o] as f64;
            for i in 0..inp {
                s += w[o * inp + i] as f64 * x[i];
            }
            act(s)
        })
        .collect()
}

/// `m · x` in f64 for the `[out, in]` matrix `name`.
fn matvec64(t: &Tensors, name: &str, x: &[f64]) -> Vec<f64> {
    let (shape, m) = &t[name];
    let (out, inp) = (shape[0], shape[1]);
    assert_eq!(x.len(), inp, "{name}");
    (0..out)
        .map(|o| (0..inp).map(|i| m[o * inp + i] as f64 * x[i]).sum())
        .collect()
}

fn relu(v: f64) -> f64 {
    v.max(0.0)
}
fn ident(v: f64) -> f64 {
    v
}
fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

fn mlp_reference(config: &ModelConfig, t: &Tensors, batch: &Batch) -> Vec<f64> {
    let p = config.mlp.as_ref().unwrap();
    let InputData::F32(x) = &batch.inputs[0] else {
        panic!()
    };
    let layers = p.layers.len() - 1;
    let mut out = Vec::new();
    for r in 0..batch.rows {
        let mut h: Vec<f64> = x[r * p.layers[0]..(r + 1) * p.layers[0]]
            .iter()
            .map(|&v| v as f64)
            .collect();
        for i in 0..layers {
            let last = i + 1 == layers;
            let act = if !last {
                relu
            } else if p.sigmoid {
                sigmoid
            } else {
                ident
            };
            h = linear64(t, &format!("layers.{i}"), &h, act);
        }
        out.extend(h);
    }
    out
}

fn dlrm_reference(config: &ModelConfig, t: &Tensors, batch: &Batch) -> Vec<f64> {
    let p = config.dlrm.as_ref().unwrap();
    let (InputData::F32(dense), InputData::I64(sparse)) = (&batch.inputs[0], &batch.inputs[1])
    else {
        panic!()
    };
    let d = p.embedding_dim;
    let bags: Vec<usize> = (0..p.table_sizes.len())
        .map(|i| {
            if p.multi_hot.len() == 1 {
                p.multi_hot[0]
            } else {
                p.multi_hot[i]
            }
        })
        .collect();
    let width: usize = bags.iter().sum();
    let mut out = Vec::new();
    for r in 0..batch.rows {
        // Bottom MLP, ReLU after every layer.
        let mut x: Vec<f64> = dense[r * p.dense_features..(r + 1) * p.dense_features]
            .iter()
            .map(|&v| v as f64)
            .collect();
        for i in 0..p.bottom.len() {
            x = linear64(t, &format!("bottom.{i}"), &x, relu);
        }
        // Sum-pooled bags, table by table.
        let mut feats = vec![x.clone()];
        let mut at = r * width;
        for (ti, &bag) in bags.iter().enumerate() {
            let (_, table) = &t[&format!("embeddings.{ti}.weight")];
            let mut e = vec![0f64; d];
            for &idx in &sparse[at..at + bag] {
                for c in 0..d {
                    e[c] += table[idx as usize * d + c] as f64;
                }
            }
            at += bag;
            feats.push(e);
        }
        let mut z = match p.interaction {
            // Dot interaction: [x, T_i·T_j for j < i (j <= i with interaction_itself),
            // ordered by i then j].
            InteractionKind::Dot => {
                let mut z = x;
                for i in 0..feats.len() {
                    let last = if p.interaction_itself { i + 1 } else { i };
                    for j in 0..last {
                        z.push((0..d).map(|c| feats[i][c] * feats[j][c]).sum());
                    }
                }
                z
            }
            // Cat interaction: the features side by side.
            InteractionKind::Cat => feats.concat(),
            // DCN: x_{l+1} = x_0 ⊙ (W_l (V_l x_l) + b_l) + x_l over x_0 = the cat.
            InteractionKind::Dcn => {
                let x0 = feats.concat();
                let mut xl = x0.clone();
                for l in 0..p.dcn_layers {
                    let u = matvec64(t, &format!("crossnet.{l}.v"), &xl);
                    let y = matvec64(t, &format!("crossnet.{l}.w"), &u);
                    let (_, b) = &t[&format!("crossnet.{l}.bias")];
                    xl = (0..x0.len())
                        .map(|k| x0[k] * (y[k] + b[k] as f64) + xl[k])
                        .collect();
                }
                xl
            }
        };
        // Top MLP: ReLU on hidden layers, sigmoid on the last.
        let n = p.top.len();
        for i in 0..n {
            z = linear64(
                t,
                &format!("top.{i}"),
                &z,
                if i + 1 == n { sigmoid } else { relu },
            );
        }
        out.extend(z);
    }
    out
}

/// Asserts the documented tolerance and returns the largest `|got-ref| / max(|ref|, 0.1)`.
fn assert_close(got: &[f32], want: &[f64], what: &str) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: output length");
    let mut worst = 0f64;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let scale = w.abs().max(0.1);
        let err = (g as f64 - w).abs();
        assert!(
            err <= 1e-5 * scale,
            "{what}[{i}]: got {g}, reference {w}, error {err:e}"
        );
        worst = worst.max(err / scale);
    }
    worst
}

type Reference = fn(&ModelConfig, &Tensors, &Batch) -> Vec<f64>;

fn every_batch_size(config: &ModelConfig, seed: u64, reference: Reference) {
    let t = random_tensors(config, seed);
    every_batch_size_against(config, &t, &t, seed, reference);
}

/// The model built from `t` against `reference` computed on `held` (the weights as the
/// model holds them), for every batch size.
fn every_batch_size_against(
    config: &ModelConfig,
    t: &Tensors,
    held: &Tensors,
    seed: u64,
    reference: Reference,
) {
    let model = build(config, t);
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(seed + 1);
    let mut worst = 0f64;
    for n in 1..=config.max_batch_size {
        let batch = random_batch(config, n, &mut rng);
        model.check(&batch).unwrap();
        let got = model.forward(&lane, &batch).unwrap();
        assert_eq!(got.len(), 1);
        let want = reference(config, held, &batch);
        worst = worst.max(assert_close(&got[0], &want, &format!("batch {n}")));
    }
    eprintln!("worst scaled error: {worst:e}");
}

#[test]
fn mlp_matches_f64_reference_for_every_batch_size() {
    let config = synth::preset("mlp-tiny").unwrap();
    every_batch_size(&config, 10, mlp_reference);
}

#[test]
fn mlp_with_sigmoid_matches_f64_reference_for_every_batch_size() {
    let mut config = synth::preset("mlp-tiny").unwrap();
    config.mlp.as_mut().unwrap().sigmoid = true;
    every_batch_size(&config, 20, mlp_reference);
}

#[test]
fn dlrm_with_multi_hot_matches_f64_reference_for_every_batch_size() {
    let config = synth::preset("dlrm-tiny").unwrap();
    assert!(
        config
            .dlrm
            .as_ref()
            .unwrap()
            .multi_hot
            .iter()
            .any(|&h| h > 1)
    );
    every_batch_size(&config, 30, dlrm_reference);
}

#[test]
fn dlrm_single_multi_hot_value_applies_to_every_table() {
    let mut config = synth::preset("dlrm-tiny").unwrap();
    let p = config.dlrm.as_mut().unwrap();
    p.multi_hot = vec![2];
    let width = 2 * p.table_sizes.len() as i64;
    config.inputs[1].dims = vec![-1, width];
    config.max_batch_size = 8;
    every_batch_size(&config, 40, dlrm_reference);
}

#[test]
fn fp16_weights_match_the_f64_reference_over_the_rounded_weights() {
    // `weight_precision = "fp16"` rounds each dense weight matrix to f16 at load (biases and
    // tables stay f32) and computes in f32: against a reference over those rounded weights
    // the f32 tolerance holds; against the exact weights it would not need to.
    let cases: [(&str, u64, Reference); 2] = [
        ("mlp-tiny", 70, mlp_reference),
        ("dlrm-tiny", 80, dlrm_reference),
    ];
    for (preset, seed, reference) in cases {
        let mut config = synth::preset(preset).unwrap();
        config.weight_precision = WeightPrecision::Fp16;
        let t = random_tensors(&config, seed);
        let held: Tensors = t
            .iter()
            .map(|(name, (shape, v))| {
                let matrix = name.ends_with(".weight") && !name.starts_with("embeddings.");
                let v = if matrix {
                    v.iter().map(|&x| half::f16::from_f32(x).to_f32()).collect()
                } else {
                    v.clone()
                };
                (name.clone(), (shape.clone(), v))
            })
            .collect();
        assert_ne!(held, t, "{preset}: rounding changed nothing");
        every_batch_size_against(&config, &t, &held, seed, reference);
        // Half the bytes for the matrices, f32 biases.
        let fp32 = build(&synth::preset(preset).unwrap(), &t)
            .memory()
            .weight_bytes;
        let fp16 = build(&config, &t).memory().weight_bytes;
        let (matrices, biases) = t.iter().fold((0u64, 0u64), |(m, b), (name, (_, v))| {
            if name.starts_with("embeddings.") {
                (m, b)
            } else if name.ends_with(".weight") {
                (m + v.len() as u64, b)
            } else {
                (m, b + v.len() as u64)
            }
        });
        assert_eq!(fp32, 4 * (matrices + biases), "{preset}");
        assert_eq!(fp16, 2 * matrices + 4 * biases, "{preset}");
    }
}

#[test]
fn fp16_weights_outside_the_f16_range_are_refused_at_load() {
    let mut config = synth::preset("mlp-tiny").unwrap();
    config.weight_precision = WeightPrecision::Fp16;
    let mut t = random_tensors(&config, 90);
    t.get_mut("layers.0.weight").unwrap().1[3] = 1e6;
    let bytes = to_safetensors(&t, Store::F32);
    let backend = BackendHandle::Cpu(Arc::new(CpuOps::new()));
    let err = build_model(
        &config,
        WeightSource::Bytes(&bytes),
        &backend,
        &PlacementOptions::default(),
    )
    .err()
    .expect("a weight of 1e6 cannot be f16");
    let msg = err.to_string();
    assert!(
        msg.contains("layers.0.weight") && msg.contains("1000000") && msg.contains("fp32"),
        "{msg}"
    );
}

fn assert_batch_invariant(config: &ModelConfig, seed: u64) {
    let model = build(config, &random_tensors(config, seed));
    let lane = Lane::cpu(0);
    let mut rng = StdRng::seed_from_u64(seed + 1);
    let n = config.max_batch_size;
    let batch = random_batch(config, n, &mut rng);
    let all = model.forward(&lane, &batch).unwrap().remove(0);
    let width = all.len() / n;
    for r in 0..n {
        let one = model
            .forward(&lane, &slice_rows(&batch, r, r + 1))
            .unwrap()
            .remove(0);
        for (c, (&a, &b)) in all[r * width..(r + 1) * width].iter().zip(&one).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * a.abs().max(1.0),
                "row {r} col {c}: batched {a}, alone {b}"
            );
        }
    }
}

#[test]
fn mlp_rows_together_equal_rows_alone() {
    assert_batch_invariant(&synth::preset("mlp-tiny").unwrap(), 50);
}

#[test]
fn dlrm_rows_together_equal_rows_alone() {
    assert_batch_invariant(&synth::preset("dlrm-tiny").unwrap(), 60);
}

/// `dlrm-tiny` with `interaction` (and `itself`); DCN with 2 cross layers of rank 5 (the
/// features are 4 x 8 = 32 wide, so the factorisation is a real low rank).
fn dlrm_with(interaction: InteractionKind, itself: bool) -> ModelConfig {
    let mut config = synth::preset("dlrm-tiny").unwrap();
    let p = config.dlrm.as_mut().unwrap();
    p.interaction = interaction;
    p.interaction_itself = itself;
    p.dcn_layers = 2;
    p.dcn_low_rank = 5;
    config
}

#[test]
fn dlrm_dot_with_self_products_matches_f64_reference_for_every_batch_size() {
    every_batch_size(&dlrm_with(InteractionKind::Dot, true), 100, dlrm_reference);
}

#[test]
fn dlrm_cat_matches_f64_reference_for_every_batch_size() {
    every_batch_size(&dlrm_with(InteractionKind::Cat, false), 110, dlrm_reference);
}

#[test]
fn dlrm_dcn_matches_f64_reference_for_every_batch_size() {
    let config = dlrm_with(InteractionKind::Dcn, false);
    assert_eq!(config.max_batch_size, 32);
    every_batch_size(&config, 120, dlrm_reference);
}

#[test]
fn dlrm_dcn_rows_together_equal_rows_alone() {
    assert_batch_invariant(&dlrm_with(InteractionKind::Dcn, false), 130);
}

#[test]
fn dlrm_dcn_memory_counts_the_cross_net() {
    let config = dlrm_with(InteractionKind::Dcn, false);
    let t = random_tensors(&config, 140);
    let dense: u64 = t
        .iter()
        .filter(|(name, _)| !name.starts_with("embeddings."))
        .map(|(_, (_, v))| 4 * v.len() as u64)
        .sum();
    // The cross net's weights and biases, plus the [1, low_rank] zero bias of its V products.
    let low_rank = config.dlrm.as_ref().unwrap().dcn_low_rank as u64;
    assert_eq!(
        build(&config, &t).memory().weight_bytes,
        dense + 4 * low_rank
    );
}
