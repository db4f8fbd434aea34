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
//! Embedding tables placed `MappedFile` keep the map alive and read their rows from it
//! for the model's lifetime ([`Weights::mapped_rows`]).

use crate::config::{ConfigError, Family, ModelConfig};
use crate::dlrm::Dlrm;
use crate::mlp::Mlp;
use crate::model::{BackendHandle, Model, ModelError, PlacementOptions, WeightSource};
use cohost_kernels::Ops;
use cohost_kernels::offload::{MappedRows, SharedBytes, StoredType};
use safetensors::{Dtype, SafeTensors};
use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

/// The tensors of one safetensors buffer, converted to f32 on request.
pub struct Weights<'a> {
    st: SafeTensors<'a>,
    /// The whole buffer `st` was parsed from (tensor offsets are relative to it).
    bytes: &'a [u8],
    /// The same bytes as a shareable handle when they are a memory-mapped file.
    file: Option<SharedBytes>,
}

impl<'a> Weights<'a> {
    /// Parses a safetensors buffer.
    pub fn parse(bytes: &'a [u8]) -> Result<Weights<'a>, ModelError> {
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| ModelError::Weights(format!("not a valid safetensors file: {e}")))?;
        Ok(Weights {
            st,
            bytes,
            file: None,
        })
    }

    /// Records that the parsed bytes are `file` (e.g. its memory map), so tables may be
    /// served from it in place; `file` must hold exactly the bytes given to `parse`.
    pub fn with_file(mut self, file: SharedBytes) -> Self {
        let same = {
            let f: &[u8] = (*file).as_ref();
            f.as_ptr() == self.bytes.as_ptr() && f.len() == self.bytes.len()
        };
        assert!(same, "Weights::with_file: not the parsed buffer");
        self.file = Some(file);
        self
    }

    /// True when tables can be memory-mapped from the weights file.
    pub fn is_file(&self) -> bool {
        self.file.is_some()
    }

    /// Tensor `name` (checked against `[rows, dim]`) read in place from the mapped file,
    /// or `None` when the weights are not a file. F16/BF16 rows are upcast on read.
    pub fn mapped_rows(
        &self,
        name: &str,
        rows: usize,
        dim: usize,
    ) -> Result<Option<MappedRows>, ModelError> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        let view = self.view(name, &[rows, dim])?;
        let stored = match view.dtype() {
            Dtype::F32 => StoredType::F32,
            Dtype::F16 => StoredType::F16,
            Dtype::BF16 => StoredType::BF16,
            other => {
                return Err(ModelError::Weights(format!(
                    "tensor '{name}' has dtype {other:?}; expected F32, F16 or BF16"
                )));
            }
        };
        let offset = view.data().as_ptr() as usize - self.bytes.as_ptr() as usize;
        let rows = MappedRows::new(file.clone(), offset, rows, dim, stored)?;
        Ok(Some(rows))
    }

    fn view(
        &self,
        name: &str,
        shape: &[usize],
    ) -> Result<safetensors::tensor::TensorView<'a>, ModelError> {
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
        Ok(view)
    }

    /// Tensor `name` as f32, checked against `shape` (borrowed when stored as aligned F32).
    pub fn matrix(&self, name: &str, shape: &[usize]) -> Result<Cow<'a, [f32]>, ModelError> {
        let view = self.view(name, shape)?;
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

/// Checks every family rule; errors name `file` and the offending key.
pub(crate) fn validate(config: &ModelConfig, file: &Path) -> Result<(), ConfigError> {
    crate::rules::validate(config, file)
}
