//! Safetensors weight loading and model construction.
//!
//! Tensor names (row-major, PyTorch `nn.Linear` layout `[out, in]`):
//!
//! | family | tensor | shape |
//! |---|---|---|
//! | mlp | `layers.{i}.weight` | `[layers[i+1], layers[i]]` |
//! | mlp | `layers.{i}.bias` | `[layers[i+1]]` |
//! | dlrm | `bottom.{i}.weight`, `bottom.{i}.bias` | `[out, in]`, `[out]`, widths `[dense_features, bottom..]` |
//! | dlrm | `top.{i}.weight`, `top.{i}.bias` | `[out, in]`, `[out]`, widths `[interaction, top..]` |
//! | dlrm | `embeddings.{t}.weight` | `[table_sizes[t], embedding_dim]` |
//!
//! where `interaction = embedding_dim + F(F-1)/2`, `F = tables + 1`. Values are stored as
//! F32; F16 and BF16 are accepted and upcast. A `WeightSource::File` is memory-mapped, and
//! aligned little-endian F32 tensors are read in place without an intermediate copy.

use crate::config::{ConfigError, Family, ModelConfig};
use crate::dlrm::Dlrm;
use crate::mlp::Mlp;
use crate::model::{BackendHandle, Model, ModelError, PlacementOptions, WeightSource};
use cohost_kernels::Ops;
use safetensors::{Dtype, SafeTensors};
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

/// The tensors of one safetensors buffer, converted to f32 on request.
pub struct Weights<'a> {
    st: SafeTensors<'a>,
}

impl<'a> Weights<'a> {
    /// Parses a safetensors buffer.
    pub fn parse(bytes: &'a [u8]) -> Result<Weights<'a>, ModelError> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| ModelError::Weights(format!("not a valid safetensors file: {e}")))?;
        Ok(Weights { st })
    }

    /// Tensor `name` as f32, checked against `shape` (borrowed when stored as aligned F32).
    pub fn matrix(&self, name: &str, shape: &[usize]) -> Result<Cow<'a, [f32]>, ModelError> {
        let view = self.st.tensor(name).map_err(|_| {
            ModelError::Weights(format!(
                "tensor '{name}' is missing (expected shape {shape:?})"
            ))
        })?;
        if view.shape() != shape {
            return Err(ModelError::Weights(format!(
                "tensor '{name}' has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        let data: &'a [u8] = view.data();
        match view.dtype() {
            Dtype::F32 => Ok(f32_from_le(data)),
            Dtype::F16 => Ok(Cow::Owned(
                data.chunks_exact(2)
                    .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
            )),
            Dtype::BF16 => Ok(Cow::Owned(
                data.chunks_exact(2)
                    .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                    .collect(),
            )),
            other => Err(ModelError::Weights(format!(
                "tensor '{name}' has dtype {other:?}; expected F32, F16 or BF16"
            ))),
        }
    }
}

/// Little-endian f32 bytes as floats, borrowed in place when aligned on a little-endian host.
fn f32_from_le(data: &[u8]) -> Cow<'_, [f32]> {
    if cfg!(target_endian = "little") {
        // SAFETY: every bit pattern is a valid f32, and `align_to` only puts whole,
        // correctly aligned elements in the middle slice.
        let (head, mid, tail) = unsafe { data.align_to::<f32>() };
        if head.is_empty() && tail.is_empty() {
            return Cow::Borrowed(mid);
        }
    }
    Cow::Owned(
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// Builds the config's family on `backend` from `weights` (validating the config first).
pub(crate) fn build(
    config: &ModelConfig,
    weights: WeightSource<'_>,
    backend: &BackendHandle,
    placement: &PlacementOptions,
) -> Result<Arc<dyn Model>, ModelError> {
    validate(config, Path::new("<inline>"))?;
    match weights {
        WeightSource::Bytes(bytes) => {
            build_from(config, &Weights::parse(bytes)?, backend, placement)
        }
        WeightSource::File(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| ModelError::Weights(format!("cannot open {}: {e}", path.display())))?;
            // SAFETY: the map is read-only and lives only while the model is built; the
            // weights are copied into backend memory before it is dropped. A file truncated
            // concurrently by another process is outside what we can guard against.
            let map = unsafe { memmap2::Mmap::map(&file) }
                .map_err(|e| ModelError::Weights(format!("cannot map {}: {e}", path.display())))?;
            let w = Weights::parse(&map)
                .map_err(|e| ModelError::Weights(format!("{}: {e}", path.display())))?;
            build_from(config, &w, backend, placement)
        }
    }
}

fn build_from(
    config: &ModelConfig,
    weights: &Weights<'_>,
    backend: &BackendHandle,
    placement: &PlacementOptions,
) -> Result<Arc<dyn Model>, ModelError> {
    match backend {
        BackendHandle::Cpu(ops) => build_on(ops.clone(), config, weights, placement),
        BackendHandle::Cuda(ops) => build_on(ops.clone(), config, weights, placement),
    }
}

/// Builds the config's family on any backend.
pub fn build_on<O: Ops>(
    ops: Arc<O>,
    config: &ModelConfig,
    weights: &Weights<'_>,
    placement: &PlacementOptions,
) -> Result<Arc<dyn Model>, ModelError> {
    Ok(match config.family {
        Family::Mlp => Arc::new(Mlp::new(ops, config, weights)?),
        Family::Dlrm => Arc::new(Dlrm::new(ops, config, weights, placement)?),
    })
}

/// Checks every family rule; errors name `file` and the offending key.
pub(crate) fn validate(config: &ModelConfig, file: &Path) -> Result<(), ConfigError> {
    crate::rules::validate(config, file)
}
