//! [`Weights`]: the tensors of a safetensors buffer, read as f32 (in place when stored as
//! aligned F32; F16/BF16 upcast).

use crate::model::ModelError;
use cohost_kernels::offload::{MappedRows, SharedBytes, StoredType};
use safetensors::{Dtype, SafeTensors};
use std::borrow::Cow;

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
