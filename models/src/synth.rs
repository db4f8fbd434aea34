//! Synthetic model repositories with seeded random weights (`cohost gen`).
//!
//! Presets: `mlp-tiny`, `mlp-small`, `dlrm-tiny`, `dlrm-small`, `dlrm-large-tables` and
//! `dlrm-v2` (MLPerf's DLRM-v2 shape with a DCN interaction, tables capped in rows).
//! Weights are He-scaled (`N(0, 2/in)`) for layers followed by ReLU, Xavier-scaled
//! (`N(0, 2/(in+out))`) for the output layer, biases `N(0, 0.05²)`, and embedding rows
//! `U(-√(3/dim), √(3/dim))` (unit expected norm), so activations stay O(1).
//! Each tensor draws from its own generator seeded from `(seed, tensor index)`.

use crate::config::{
    BatchingConfig, BatchingPolicyKind, DataType, DlrmParams, Family, InteractionKind, MlpParams,
    ModelConfig, TensorSpec, VersionPolicy, WeightPrecision,
};
use crate::st_writer::{self, PlannedTensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Names of every preset, smallest first.
pub fn preset_names() -> &'static [&'static str] {
    &[
        "mlp-tiny",
        "mlp-small",
        "dlrm-tiny",
        "dlrm-small",
        "dlrm-large-tables",
        "dlrm-v2",
    ]
}

/// MLPerf DLRM-v2's (Criteo 1TB multi-hot) rows per table.
pub const DLRM_V2_TABLE_ROWS: [usize; 26] = [
    40_000_000, 39_060, 17_295, 7_424, 20_265, 3, 7_122, 1_543, 63, 40_000_000, 3_067_956, 405_282,
    10, 2_209, 11_938, 155, 4, 976, 14, 40_000_000, 40_000_000, 40_000_000, 590_152, 12_973, 108,
    36,
];

/// MLPerf DLRM-v2's indices per bag for each table.
pub const DLRM_V2_MULTI_HOT: [usize; 26] = [
    3, 2, 1, 2, 6, 1, 1, 1, 1, 7, 3, 8, 1, 6, 9, 5, 1, 1, 1, 12, 100, 27, 10, 3, 1, 1,
];

/// Rows `dlrm-v2`'s tables are capped at without `--rows`: 149,667 rows in all, 77 MB of
/// f32 at dim 128 (a cap of 100,000 would make 472 MB, too much for a demo).
pub const DLRM_V2_DEFAULT_ROWS: usize = 10_000;

/// `dlrm-v2` with every table capped at `cap` rows.
fn dlrm_v2(cap: usize) -> ModelConfig {
    let rows = DLRM_V2_TABLE_ROWS.iter().map(|&r| r.min(cap)).collect();
    let mut c = dlrm(
        13,
        vec![512, 256, 128],
        vec![1024, 1024, 512, 256, 1],
        128,
        rows,
        DLRM_V2_MULTI_HOT.to_vec(),
        512,
    );
    let p = c.dlrm.as_mut().expect("a DLRM preset");
    p.interaction = InteractionKind::Dcn;
    p.dcn_layers = 3;
    p.dcn_low_rank = 512;
    c
}

/// The configuration of a preset, or `None` for an unknown name.
pub fn preset(name: &str) -> Option<ModelConfig> {
    Some(match name {
        "mlp-tiny" => mlp(vec![8, 16, 16, 4], false, 32),
        "mlp-small" => mlp(vec![256, 1024, 512, 64], false, 256),
        // Three small tables, two of them multi-hot.
        "dlrm-tiny" => dlrm(
            4,
            vec![16, 8],
            vec![16, 8, 1],
            8,
            vec![100, 250, 1000],
            vec![1, 3, 2],
            32,
        ),
        // The MLPerf-style shape: 13 dense features, 26 one-hot tables of dim 64.
        "dlrm-small" => dlrm(
            13,
            vec![512, 256, 64],
            vec![512, 256, 1],
            64,
            vec![100_000; 26],
            vec![1],
            512,
        ),
        // 8 tables of 4M rows x 64 (8.2 GB of f32) behind MLPs of well under 1 MB.
        "dlrm-large-tables" => dlrm(
            13,
            vec![256, 64],
            vec![256, 1],
            64,
            vec![4_000_000; 8],
            vec![1],
            512,
        ),
        // MLPerf DLRM-v2: 26 multi-hot tables of dim 128, DCN-v2 interaction.
        "dlrm-v2" => dlrm_v2(DLRM_V2_DEFAULT_ROWS),
        _ => return None,
    })
}

fn spec(name: &str, datatype: DataType, width: usize) -> TensorSpec {
    TensorSpec {
        name: name.into(),
        datatype,
        dims: vec![-1, width as i64],
    }
}

fn base(
    family: Family,
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    max_batch: usize,
) -> ModelConfig {
    ModelConfig {
        family,
        inputs,
        outputs,
        max_batch_size: max_batch,
        batching: BatchingConfig {
            policy: BatchingPolicyKind::Static,
            max_batch_size: None,
            max_queue_delay_us: 500,
            p99_target_ms: None,
        },
        priority: 0,
        weight: 1.0,
        max_queue_len: 1024,
        max_lanes: None,
        memory_budget: None,
        version_policy: VersionPolicy::Latest(1),
        weight_precision: WeightPrecision::Fp32,
        mlp: None,
        dlrm: None,
    }
}

fn mlp(layers: Vec<usize>, sigmoid: bool, max_batch: usize) -> ModelConfig {
    let (inp, out) = (layers[0], *layers.last().unwrap());
    let mut c = base(
        Family::Mlp,
        vec![spec("input", DataType::FP32, inp)],
        vec![spec("output", DataType::FP32, out)],
        max_batch,
    );
    c.mlp = Some(MlpParams { layers, sigmoid });
    c
}

fn dlrm(
    dense: usize,
    bottom: Vec<usize>,
    top: Vec<usize>,
    dim: usize,
    table_sizes: Vec<usize>,
    multi_hot: Vec<usize>,
    max_batch: usize,
) -> ModelConfig {
    let hot: usize = if multi_hot.len() == 1 {
        multi_hot[0] * table_sizes.len()
    } else {
        multi_hot.iter().sum()
    };
    let inputs = vec![
        spec("dense", DataType::FP32, dense),
        spec("sparse", DataType::INT64, hot),
    ];
    let mut c = base(
        Family::Dlrm,
        inputs,
        vec![spec("prediction", DataType::FP32, 1)],
        max_batch,
    );
    c.dlrm = Some(DlrmParams {
        dense_features: dense,
        bottom,
        top,
        embedding_dim: dim,
        table_sizes,
        multi_hot,
        offload: true,
        cache_rows: None,
        cache_bytes: None,
        cache_policy: Default::default(),
        interaction: InteractionKind::Dot,
        interaction_itself: false,
        dcn_layers: 3,
        dcn_low_rank: 512,
    });
    c
}

/// The tensors of `config` with their seeded initialisers, in file order.
fn plan(config: &ModelConfig, seed: u64) -> Vec<PlannedTensor<'static>> {
    let mut out = Vec::new();
    let rng_for =
        |i: usize| StdRng::seed_from_u64(seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let stack = |out: &mut Vec<PlannedTensor<'static>>,
                 prefix: &str,
                 widths: &[usize],
                 last_linear: bool| {
        for (i, p) in widths.windows(2).enumerate() {
            let (inp, o) = (p[0], p[1]);
            let is_last = i + 2 == widths.len();
            let var = if is_last && last_linear {
                2.0 / (inp + o) as f32
            } else {
                2.0 / inp as f32
            };
            let n = out.len();
            out.push(normal(
                format!("{prefix}.{i}.weight"),
                vec![o, inp],
                var.sqrt(),
                rng_for(n),
            ));
            out.push(normal(
                format!("{prefix}.{i}.bias"),
                vec![o],
                0.05,
                rng_for(n + 1),
            ));
        }
    };
    if let Some(p) = &config.mlp {
        stack(&mut out, "layers", &p.layers, true);
    }
    if let Some(p) = &config.dlrm {
        let bottom: Vec<usize> = std::iter::once(p.dense_features)
            .chain(p.bottom.iter().copied())
            .collect();
        let top: Vec<usize> = std::iter::once(p.interaction_width())
            .chain(p.top.iter().copied())
            .collect();
        stack(&mut out, "bottom", &bottom, false);
        stack(&mut out, "top", &top, true);
        if p.interaction == InteractionKind::Dcn {
            // x_l keeps O(1) entries: V_l x_l and W_l u have unit-variance entries scaled
            // down by 1/4 each, so x_0 ⊙ (·) adds about 1/16 of x_0's square per layer.
            let (w, r) = (p.interaction_width(), p.dcn_low_rank);
            for l in 0..p.dcn_layers {
                let n = out.len();
                let v_std = 0.25 / (w as f32).sqrt();
                let w_std = 0.25 / (r as f32).sqrt();
                out.push(normal(
                    format!("crossnet.{l}.v"),
                    vec![r, w],
                    v_std,
                    rng_for(n),
                ));
                out.push(normal(
                    format!("crossnet.{l}.w"),
                    vec![w, r],
                    w_std,
                    rng_for(n + 1),
                ));
                out.push(normal(
                    format!("crossnet.{l}.bias"),
                    vec![w],
                    0.05,
                    rng_for(n + 2),
                ));
            }
        }
        let a = (3.0 / p.embedding_dim as f32).sqrt();
        for (t, &rows) in p.table_sizes.iter().enumerate() {
            let mut rng = rng_for(out.len());
            out.push(PlannedTensor {
                name: format!("embeddings.{t}.weight"),
                shape: vec![rows, p.embedding_dim],
                fill: Box::new(move |v| v.iter_mut().for_each(|x| *x = rng.random_range(-a..a))),
            });
        }
    }
    out
}

fn normal(name: String, shape: Vec<usize>, std: f32, mut rng: StdRng) -> PlannedTensor<'static> {
    let dist = Normal::new(0.0f32, std).expect("finite std");
    PlannedTensor {
        name,
        shape,
        fill: Box::new(move |v| v.iter_mut().for_each(|x| *x = dist.sample(&mut rng))),
    }
}

/// Seeded random weights for `config` as safetensors bytes (deterministic per seed).
pub fn random_weights(config: &ModelConfig, seed: u64) -> Vec<u8> {
    let mut out = Vec::new();
    st_writer::write(plan(config, seed), &mut out, &mut |_| {})
        .expect("writing to memory cannot fail");
    out
}

/// Bytes of weight data `config` needs (without the safetensors header).
pub fn weight_bytes(config: &ModelConfig) -> u64 {
    st_writer::data_bytes(&plan(config, 0))
}

/// Writes `count` models of `preset` under `out_dir` and returns their directories.
///
/// Each model is `<out>/<name>/config.toml` and `<out>/<name>/1/model.safetensors`, where
/// `<name>` is the preset name, or `<preset>-<i>` (i from 0) when `count > 1`; model `i`
/// uses seed `seed + i`. `rows` overrides every table's row count (DLRM presets only;
/// for `dlrm-v2` it caps MLPerf's row counts instead).
/// Weights stream to disk chunk by chunk; `progress(done, total)` counts weight bytes.
pub fn generate(
    out_dir: &Path,
    preset_name: &str,
    count: usize,
    seed: u64,
    rows: Option<usize>,
    progress: &mut dyn FnMut(u64, u64),
) -> io::Result<Vec<PathBuf>> {
    let mut config = preset(preset_name).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "unknown preset '{preset_name}' (known: {})",
                preset_names().join(", ")
            ),
        )
    })?;
    if let Some(r) = rows {
        let Some(p) = config.dlrm.as_mut() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a row count applies only to DLRM presets",
            ));
        };
        if r == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a table needs at least 1 row",
            ));
        }
        if preset_name == "dlrm-v2" {
            config = dlrm_v2(r);
        } else {
            p.table_sizes.iter_mut().for_each(|t| *t = r);
        }
    }
    let per_model = weight_bytes(&config);
    let total = per_model * count as u64;
    progress(0, total);
    let mut dirs = Vec::with_capacity(count);
    for i in 0..count {
        let name = if count == 1 {
            preset_name.to_string()
        } else {
            format!("{preset_name}-{i}")
        };
        let dir = out_dir.join(&name);
        std::fs::create_dir_all(dir.join("1"))?;
        std::fs::write(dir.join("config.toml"), config.to_toml())?;
        let path = dir.join("1").join("model.safetensors");
        let tmp = path.with_extension("safetensors.partial");
        {
            let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
            let before = per_model * i as u64;
            st_writer::write(
                plan(&config, seed.wrapping_add(i as u64)),
                &mut w,
                &mut |done| progress(before + done, total),
            )?;
            w.flush()?;
        }
        std::fs::rename(&tmp, &path)?;
        dirs.push(dir);
    }
    Ok(dirs)
}
