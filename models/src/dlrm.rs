//! DLRM family, with the inference semantics of facebookresearch/dlrm:
//!
//! - input 0 `dense` FP32 `[-1, dense_features]` → bottom MLP, ReLU after every layer
//!   (last width = `embedding_dim`);
//! - input 1 `sparse` INT64 `[-1, Σ multi_hot]`, per row table 0's bag of `multi_hot[0]`
//!   indices, then table 1's bag, …; each table sum-pools its bag;
//! - the interaction of `[bottom output, pooled_0, ..]` (`dlrm.interaction`): `dot`
//!   (default; strict lower triangle of their Gram matrix after the bottom output, or with
//!   the diagonal when `interaction_itself`), `cat` (the features side by side) or `dcn`
//!   (TorchRec `InteractionDCNArch`: a [`CrossNet`] over the features side by side);
//! - top MLP, ReLU on hidden layers, final layer linear then sigmoid → `[-1, 1]`.
//!
//! Weights: `bottom.{i}.weight` / `bottom.{i}.bias`, `top.{i}.weight` / `top.{i}.bias`
//! (`[out, in]` / `[out]`), `embeddings.{t}.weight` `[rows, embedding_dim]`; with `dcn`,
//! `crossnet.{l}.v` `[low_rank, W]`, `crossnet.{l}.w` `[W, low_rank]`, `crossnet.{l}.bias`
//! `[W]` (W = (tables + 1) · embedding_dim).
//!
//! Tables are placed at load time ([`placement`]): resident, or offloaded to host RAM or
//! the mapped weights file behind a hot-row cache; `forward` does not know which.

mod crossnet;
mod placement;

use crossnet::CrossNet;

use crate::config::{DlrmParams, InteractionKind, ModelConfig, WeightPrecision};
use crate::layers::{DenseStack, f32_input, i64_input, input_name, layer_bytes};
use crate::model::{Batch, MemoryReport, Model, ModelError, PlacementOptions};
use crate::st_reader::Weights;
use cohost_kernels::offload::{CacheTier, HostRows, OffloadedTable};
use cohost_kernels::{Activation, EmbeddingStore, Lane, Ops};
use placement::Tier;
use std::sync::Arc;

/// A loaded DLRM on backend `O`.
pub struct Dlrm<O: Ops> {
    ops: Arc<O>,
    config: ModelConfig,
    bottom: DenseStack<O>,
    top: DenseStack<O>,
    interaction: InteractionKind,
    itself: bool,
    crossnet: Option<CrossNet<O>>,
    tables: Vec<Box<dyn EmbeddingStore<O>>>,
    /// Per table: (offset of its bag inside a sparse row, bag size).
    bags: Vec<(usize, usize)>,
    dense: usize,
    sparse_width: usize,
}

/// Bytes the model's dense layers and cross net take (weights and biases), saturating at
/// `u64::MAX`.
pub(crate) fn dense_bytes(p: &DlrmParams, precision: WeightPrecision) -> u64 {
    let bottom = std::iter::once(p.dense_features).chain(p.bottom.iter().copied());
    let top = std::iter::once(p.interaction_width()).chain(p.top.iter().copied());
    let stack = |w: Vec<usize>| -> u64 {
        w.windows(2)
            .map(|p| layer_bytes(p[0], p[1], precision))
            .fold(0, u64::saturating_add)
    };
    stack(bottom.collect())
        .saturating_add(stack(top.collect()))
        .saturating_add(p.crossnet_bytes())
}

/// Bytes of one `rows × dim` f32 table, saturating at `u64::MAX`.
pub(crate) fn rows_bytes(rows: usize, dim: usize) -> u64 {
    (rows as u64)
        .saturating_mul(dim as u64)
        .saturating_mul(size_of::<f32>() as u64)
}

/// Bytes of every embedding table (f32), saturating at `u64::MAX`.
pub(crate) fn table_bytes(p: &DlrmParams) -> u64 {
    p.table_sizes
        .iter()
        .map(|&r| rows_bytes(r, p.embedding_dim))
        .fold(0, u64::saturating_add)
}

impl<O: Ops> Dlrm<O> {
    /// Builds a DLRM from a validated config and its weights, placing each table resident
    /// or offloaded against `placement`'s budgets (see `docs/OFFLOAD.md`).
    pub fn new(
        ops: Arc<O>,
        config: &ModelConfig,
        weights: &Weights<'_>,
        placement: &PlacementOptions,
    ) -> Result<Self, ModelError> {
        let p = config
            .dlrm
            .as_ref()
            .ok_or_else(|| ModelError::Weights("config has no [dlrm] table".into()))?;
        // The CPU backend's "device tier" is a separate bounded cache; CUDA's is a cache of
        // slots in device memory (`Ops::offloaded_table`); any other backend keeps it in
        // host RAM and counts it there.
        let tier = if matches!(ops.name(), "cpu" | "cuda") {
            CacheTier::Device
        } else {
            CacheTier::Host
        };
        let plans = placement::plan(config, p, placement, weights.is_file(), tier)?;
        // A table the backend declines (CUDA: over the process-wide pinned budget, see
        // docs/CUDA.md) falls back to the generic offloaded table, whose cache is in host RAM
        // on CUDA.
        let fallback = if ops.name() == "cuda" {
            CacheTier::Host
        } else {
            tier
        };
        let bottom_w: Vec<usize> = std::iter::once(p.dense_features)
            .chain(p.bottom.iter().copied())
            .collect();
        let top_w: Vec<usize> = std::iter::once(p.interaction_width())
            .chain(p.top.iter().copied())
            .collect();
        let precision = config.weight_precision;
        let bottom = DenseStack::load(&*ops, weights, "bottom", &bottom_w, precision, |_| {
            Activation::Relu
        })?;
        let last = p.top.len() - 1;
        let top = DenseStack::load(&*ops, weights, "top", &top_w, precision, |i| {
            if i == last {
                Activation::Sigmoid
            } else {
                Activation::Relu
            }
        })?;
        let crossnet = match p.interaction {
            InteractionKind::Dcn => Some(CrossNet::load(
                &*ops,
                weights,
                p.interaction_width(),
                p.dcn_layers,
                p.dcn_low_rank,
            )?),
            _ => None,
        };
        let mut tables = Vec::with_capacity(p.table_sizes.len());
        for (t, (&rows, plan)) in p.table_sizes.iter().zip(&plans).enumerate() {
            let name = format!("embeddings.{t}");
            let (tensor, dim) = (format!("{name}.weight"), p.embedding_dim);
            let table: Box<dyn EmbeddingStore<O>> = match plan.tier {
                Tier::Resident => {
                    ops.resident_table(&name, &weights.matrix(&tensor, &[rows, dim])?, rows, dim)?
                }
                Tier::Host => {
                    let data = weights.matrix(&tensor, &[rows, dim])?.into_owned();
                    match ops.offloaded_table(&name, &data, rows, dim, plan.cache)? {
                        // The backend's own table (CUDA: pinned mapped rows + device cache).
                        Some(table) => table,
                        None => {
                            let src = Box::new(HostRows::new(data, rows, dim)?);
                            Box::new(OffloadedTable::new(&name, src, plan.cache, fallback))
                        }
                    }
                }
                // A backend with its own offloaded table gets the mapped file's rows copied
                // into its memory (CUDA: pinned host memory, while the pinned budget allows;
                // past it the mapping is read on the host); the CPU reads the mapping.
                Tier::Mapped if ops.name() != "cpu" => {
                    let data = weights.matrix(&tensor, &[rows, dim])?;
                    match ops.offloaded_table(&name, &data, rows, dim, plan.cache)? {
                        Some(table) => table,
                        None => {
                            let src =
                                weights.mapped_rows(&tensor, rows, dim)?.ok_or_else(|| {
                                    ModelError::Weights(format!(
                                        "{tensor}: weights are not a mapped file"
                                    ))
                                })?;
                            let src = Box::new(src);
                            Box::new(OffloadedTable::new(&name, src, plan.cache, fallback))
                        }
                    }
                }
                Tier::Mapped => {
                    let src = weights.mapped_rows(&tensor, rows, dim)?.ok_or_else(|| {
                        ModelError::Weights(format!("{tensor}: weights are not a mapped file"))
                    })?;
                    Box::new(OffloadedTable::new(&name, Box::new(src), plan.cache, tier))
                }
            };
            tables.push(table);
        }
        let bags = p.bag_layout();
        let sparse_width = bags.iter().map(|b| b.1).sum();
        Ok(Dlrm {
            ops,
            config: config.clone(),
            bottom,
            top,
            interaction: p.interaction,
            itself: p.interaction_itself,
            crossnet,
            tables,
            bags,
            dense: p.dense_features,
            sparse_width,
        })
    }
}

/// Batches with at most this many embedding rows in all have every row prefetched before
/// the bottom MLP (256 KiB at dim 64: half this machine's L2, so they are still there).
const PREFETCH_ALL_ROWS: usize = 1024;

impl<O: Ops> Model for Dlrm<O> {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn check(&self, batch: &Batch) -> Result<(), ModelError> {
        f32_input(&self.config, batch, 0, self.dense)?;
        let sparse = i64_input(&self.config, batch, 1, self.sparse_width)?;
        for (r, row) in sparse.chunks_exact(self.sparse_width.max(1)).enumerate() {
            for (t, (&(off, bag), table)) in self.bags.iter().zip(&self.tables).enumerate() {
                let rows = table.rows();
                if let Some(&i) = row[off..off + bag]
                    .iter()
                    .find(|&&i| i < 0 || i as u64 >= rows as u64)
                {
                    return Err(ModelError::Input(format!(
                        "input '{}': index {i} at row {r}, table {t} is outside the table's {rows} rows",
                        input_name(&self.config, 1)
                    )));
                }
            }
        }
        Ok(())
    }

    fn forward(&self, lane: &Lane, batch: &Batch) -> Result<Vec<Vec<f32>>, ModelError> {
        let dense = f32_input(&self.config, batch, 0, self.dense)?;
        let sparse = i64_input(&self.config, batch, 1, self.sparse_width)?;
        let n = batch.rows;
        if n == 0 {
            return Ok(vec![Vec::new()]);
        }
        let ops = &*self.ops;
        // Each table's indices, table after table, so its rows can be prefetched early.
        let mut idx = Vec::with_capacity(n * self.sparse_width);
        let mut ranges = Vec::with_capacity(self.tables.len());
        for &(off, bag) in &self.bags {
            let start = idx.len();
            for row in sparse.chunks_exact(self.sparse_width) {
                idx.extend_from_slice(&row[off..off + bag]);
            }
            ranges.push(start..idx.len());
        }
        // Small batches have all their rows requested before the bottom MLP runs, so the
        // random reads overlap with it and with each other; larger ones one table ahead.
        let ahead = if idx.len() <= PREFETCH_ALL_ROWS {
            self.tables.len()
        } else {
            self.tables.len().min(1)
        };
        let prefetch = |t: usize| self.tables[t].prefetch(&idx[ranges[t].clone()]);
        (0..ahead).for_each(prefetch);
        let x = ops.upload(lane, dense, n, self.dense)?;
        let x = self.bottom.forward(ops, lane, x)?;
        let mut pooled = Vec::with_capacity(self.tables.len());
        for (t, (&(_, bag), table)) in self.bags.iter().zip(&self.tables).enumerate() {
            if t + 1 >= ahead && t + 1 < self.tables.len() {
                prefetch(t + 1);
            }
            pooled.push(table.bag_sum(ops, lane, &idx[ranges[t].clone()], bag)?);
        }
        let z = match (self.interaction, &self.crossnet) {
            (InteractionKind::Dot, _) if self.itself => {
                ops.dot_interaction_itself(lane, &x, &pooled)?
            }
            (InteractionKind::Dot, _) => ops.dot_interaction(lane, &x, &pooled)?,
            (InteractionKind::Cat, _) => ops.cat_interaction(lane, &x, &pooled)?,
            (InteractionKind::Dcn, Some(net)) => {
                net.forward(ops, lane, ops.cat_interaction(lane, &x, &pooled)?)?
            }
            (InteractionKind::Dcn, None) => {
                return Err(ModelError::Weights(
                    "dcn interaction without a cross net".into(),
                ));
            }
        };
        let y = self.top.forward(ops, lane, z)?;
        Ok(vec![ops.download(lane, &y)?])
    }

    fn memory(&self) -> MemoryReport {
        MemoryReport {
            weight_bytes: self.bottom.bytes()
                + self.top.bytes()
                + self.crossnet.as_ref().map_or(0, CrossNet::bytes),
            tables: self
                .tables
                .iter()
                .map(|t| (t.name().to_string(), t.placement(), t.memory()))
                .collect(),
        }
    }

    /// Bottom and top GEMMs (2 FLOPs per multiply-add), the interaction (dot products, or
    /// the cross net's GEMMs and combine) and the bag sums (one add per pooled element).
    fn flops_per_row(&self) -> u64 {
        let d = self.tables.first().map_or(0, |t| t.dim()) as u64;
        let f = self.tables.len() as u64 + 1;
        let interaction = match self.interaction {
            InteractionKind::Dot if self.itself => 2 * (f * (f + 1) / 2) * d,
            InteractionKind::Dot => 2 * (f * (f - 1) / 2) * d,
            InteractionKind::Cat => 0,
            InteractionKind::Dcn => self.crossnet.as_ref().map_or(0, CrossNet::flops_per_row),
        };
        let bag_adds: u64 = self.bags.iter().map(|b| b.1 as u64 * d).sum();
        self.bottom.flops_per_row() + self.top.flops_per_row() + interaction + bag_adds
    }
}
