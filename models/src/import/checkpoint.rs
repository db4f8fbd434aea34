//! Reading a checkpoint's tensors: a PyTorch `.pt`/`.pth` (zip + pickle, through candle)
//! or a safetensors file, whole into memory, names and stored dtypes kept.

use super::ImportError;
use candle_core::pickle::{PthTensors, read_pth_tensor_info};
use candle_core::{DType, Tensor};
use std::path::Path;

/// How a tensor's values are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stored {
    /// IEEE f32.
    F32,
    /// IEEE f16.
    F16,
    /// bfloat16.
    Bf16,
    /// Anything else (named for the error message); never written.
    Other(String),
}

impl Stored {
    /// Bytes per element of a float dtype.
    pub(crate) fn size(&self) -> usize {
        match self {
            Stored::F32 => 4,
            Stored::F16 | Stored::Bf16 => 2,
            Stored::Other(_) => 0,
        }
    }

    /// The safetensors dtype of a float dtype.
    pub(crate) fn dtype(&self) -> safetensors::Dtype {
        match self {
            Stored::F32 | Stored::Other(_) => safetensors::Dtype::F32,
            Stored::F16 => safetensors::Dtype::F16,
            Stored::Bf16 => safetensors::Dtype::BF16,
        }
    }
}

/// One tensor of the checkpoint: its name, shape and little-endian values.
#[derive(Debug, Clone)]
pub(crate) struct Raw {
    /// The name in the checkpoint.
    pub name: String,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// How the values are stored.
    pub stored: Stored,
    /// The values, little-endian, `stored.size()` bytes each.
    pub bytes: Vec<u8>,
}

impl Raw {
    /// The values widened to f32 (a float dtype only).
    pub(crate) fn to_f32(&self) -> Vec<f32> {
        match self.stored {
            Stored::F32 => self
                .bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Stored::F16 => self
                .bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Stored::Bf16 => self
                .bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Stored::Other(_) => Vec::new(),
        }
    }
}

/// A checkpoint's tensors; `ordered` when they are in the order the model registered them
/// (a PyTorch state_dict keeps it, a safetensors file does not).
pub(crate) struct Checkpoint {
    /// The tensors.
    pub tensors: Vec<Raw>,
    /// True when `tensors` is in the state_dict's order.
    pub ordered: bool,
}

/// Reads a `.pt`/`.pth` (by its zip signature) or safetensors file.
pub(crate) fn read(path: &Path) -> Result<Checkpoint, ImportError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ImportError::Read(format!("cannot read {}: {e}", path.display())))?;
    if bytes.starts_with(b"PK\x03\x04") {
        read_pth(path)
    } else if bytes.starts_with(&[0x80]) {
        Err(ImportError::Read(format!(
            "{}: a legacy (pre-1.6, non-zip) torch.save file; load it in PyTorch and save it \
             again with torch.save(state_dict, path)",
            path.display()
        )))
    } else {
        read_safetensors(path, &bytes)
    }
}

/// State-dict keys tried, in order, when the file's top level holds no tensors (training
/// scripts save `{"epoch": .., "state_dict": ..}` and similar).
const STATE_KEYS: [&str; 3] = ["state_dict", "model_state_dict", "model"];

fn read_pth(path: &Path) -> Result<Checkpoint, ImportError> {
    let fail = |e: candle_core::Error| {
        ImportError::Read(format!(
            "{}: not a readable PyTorch checkpoint: {e}",
            path.display()
        ))
    };
    let mut key = None;
    let mut infos = read_pth_tensor_info(path, false, None).map_err(fail)?;
    for k in STATE_KEYS {
        if !infos.is_empty() {
            break;
        }
        if let Ok(found) = read_pth_tensor_info(path, false, Some(k)) {
            infos = found;
            key = Some(k);
        }
    }
    if infos.is_empty() {
        return Err(ImportError::Read(format!(
            "{}: no tensors at the top level nor under any of {STATE_KEYS:?}",
            path.display()
        )));
    }
    // torch.save numbers storages in the order it pickles the tensors, which is the
    // state_dict's; candle's dict comes back reversed within each SETITEMS batch.
    infos.sort_by_key(|i| {
        let key = i.path.rsplit('/').next().unwrap_or("");
        key.parse::<u64>().unwrap_or(u64::MAX)
    });
    let pth = PthTensors::new(path, key).map_err(fail)?;
    let mut tensors = Vec::with_capacity(infos.len());
    for info in infos {
        let t = pth
            .get(&info.name)
            .map_err(fail)?
            .ok_or_else(|| ImportError::Read(format!("{}: vanished", info.name)))?;
        tensors.push(from_candle(info.name, &t).map_err(fail)?);
    }
    Ok(Checkpoint {
        tensors,
        ordered: true,
    })
}

fn from_candle(name: String, t: &Tensor) -> candle_core::Result<Raw> {
    let shape = t.dims().to_vec();
    let flat = t.flatten_all()?;
    let (stored, bytes) = match t.dtype() {
        DType::F32 => (
            Stored::F32,
            flat.to_vec1::<f32>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::F16 => (
            Stored::F16,
            flat.to_vec1::<half::f16>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        DType::BF16 => (
            Stored::Bf16,
            flat.to_vec1::<half::bf16>()?
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect(),
        ),
        other => (Stored::Other(format!("{other:?}")), Vec::new()),
    };
    Ok(Raw {
        name,
        shape,
        stored,
        bytes,
    })
}

fn read_safetensors(path: &Path, bytes: &[u8]) -> Result<Checkpoint, ImportError> {
    let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| {
        ImportError::Read(format!(
            "{}: neither a PyTorch zip checkpoint nor a valid safetensors file: {e}",
            path.display()
        ))
    })?;
    let mut tensors: Vec<Raw> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let stored = match view.dtype() {
                safetensors::Dtype::F32 => Stored::F32,
                safetensors::Dtype::F16 => Stored::F16,
                safetensors::Dtype::BF16 => Stored::Bf16,
                other => Stored::Other(format!("{other:?}")),
            };
            let bytes = if stored.size() > 0 {
                view.data().to_vec()
            } else {
                Vec::new()
            };
            Raw {
                name,
                shape: view.shape().to_vec(),
                stored,
                bytes,
            }
        })
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Checkpoint {
        tensors,
        ordered: false,
    })
}
