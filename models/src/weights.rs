//! Model construction from safetensors weights: the family dispatch above MLP and DLRM
//! ([`Weights`] reads the tensors).
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
//! Embedding tables placed `MappedFile` keep the map alive and read their rows from it
//! for the model's lifetime ([`Weights::mapped_rows`]).

use crate::config::{Family, ModelConfig};
use crate::dlrm::Dlrm;
use crate::mlp::Mlp;
use crate::model::{BackendHandle, Model, ModelError, PlacementOptions, WeightSource};
use cohost_kernels::Ops;
use std::path::Path;
use std::sync::Arc;

pub use crate::st_reader::Weights;

/// Builds a model of the config's family on `backend` from its weights (validating the
/// config first).
pub fn build_model(
    config: &ModelConfig,
    weights: WeightSource<'_>,
    backend: &BackendHandle,
    placement: &PlacementOptions,
) -> Result<Arc<dyn Model>, ModelError> {
    config.validate(Path::new("<inline>"))?;
    match weights {
        WeightSource::Bytes(bytes) => {
            build_from(config, &Weights::parse(bytes)?, backend, placement)
        }
        WeightSource::File(path) => {
            let file = std::fs::File::open(path)
                .map_err(|e| ModelError::Weights(format!("cannot open {}: {e}", path.display())))?;
            // SAFETY: the map is read-only. Tables placed `MappedFile` hold it (shared) for
            // the model's lifetime and read rows from it; everything else is copied into
            // backend memory during the build. A file truncated or rewritten in place by
            // another process is outside what we can guard against (replace files by
            // rename, as `cohost gen` does).
            let map = unsafe { memmap2::Mmap::map(&file) }
                .map_err(|e| ModelError::Weights(format!("cannot map {}: {e}", path.display())))?;
            let map: Arc<memmap2::Mmap> = Arc::new(map);
            let w = Weights::parse(&map)
                .map_err(|e| ModelError::Weights(format!("{}: {e}", path.display())))?
                .with_file(map.clone());
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
