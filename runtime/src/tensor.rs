//! Named, typed tensors with KServe datatypes, as requests carry them and responses
//! return them, and the lossless conversion to what a model consumes.

use crate::{Error, Result};
pub use cohost_models::DataType;
use cohost_models::InputData;
use half::{bf16, f16};

/// The elements of a tensor, one variant per KServe datatype.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

macro_rules! each_numeric {
    ($data:expr, $v:ident => $body:expr, bytes => $bytes:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::F16($v) => $body,
            TensorData::BF16($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::Bytes(_) => $bytes,
        }
    };
}

impl TensorData {
    /// The KServe datatype of these elements.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::BOOL,
            TensorData::U8(_) => DataType::UINT8,
            TensorData::U16(_) => DataType::UINT16,
            TensorData::U32(_) => DataType::UINT32,
            TensorData::U64(_) => DataType::UINT64,
            TensorData::I8(_) => DataType::INT8,
            TensorData::I16(_) => DataType::INT16,
            TensorData::I32(_) => DataType::INT32,
            TensorData::I64(_) => DataType::INT64,
            TensorData::F16(_) => DataType::FP16,
            TensorData::BF16(_) => DataType::BF16,
            TensorData::F32(_) => DataType::FP32,
            TensorData::F64(_) => DataType::FP64,
            TensorData::Bytes(_) => DataType::BYTES,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::Bytes(v) => v.len(),
            other => each_numeric!(other, v => v.len(), bytes => unreachable!()),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Little-endian raw bytes (KServe binary extension; BYTES elements are
    /// 4-byte-length-prefixed).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_le_bytes(&mut out);
        out
    }

    /// Appends the little-endian raw bytes of [`TensorData::to_le_bytes`] to `out`.
    pub fn write_le_bytes(&self, out: &mut Vec<u8>) {
        fn put<const N: usize, T: Copy>(out: &mut Vec<u8>, v: &[T], f: impl Fn(T) -> [u8; N]) {
            out.reserve(v.len() * N);
            for &x in v {
                out.extend_from_slice(&f(x));
            }
        }
        match self {
            TensorData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
            TensorData::U8(v) => out.extend_from_slice(v),
            TensorData::U16(v) => put(out, v, u16::to_le_bytes),
            TensorData::U32(v) => put(out, v, u32::to_le_bytes),
            TensorData::U64(v) => put(out, v, u64::to_le_bytes),
            TensorData::I8(v) => put(out, v, i8::to_le_bytes),
            TensorData::I16(v) => put(out, v, i16::to_le_bytes),
            TensorData::I32(v) => put(out, v, i32::to_le_bytes),
            TensorData::I64(v) => put(out, v, i64::to_le_bytes),
            TensorData::F16(v) => put(out, v, f16::to_le_bytes),
            TensorData::BF16(v) => put(out, v, bf16::to_le_bytes),
            TensorData::F32(v) => put(out, v, f32::to_le_bytes),
            TensorData::F64(v) => put(out, v, f64::to_le_bytes),
            TensorData::Bytes(v) => {
                for b in v {
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    out.extend_from_slice(b);
                }
            }
        }
    }

    /// Parses little-endian raw bytes of `datatype`; errors name `what` on a size mismatch.
    pub fn from_le_bytes(datatype: DataType, raw: &[u8], what: &str) -> Result<TensorData> {
        fn get<const N: usize, T>(
            raw: &[u8],
            what: &str,
            f: impl Fn([u8; N]) -> T,
        ) -> Result<Vec<T>> {
            if !raw.len().is_multiple_of(N) {
                return Err(Error::invalid(format!(
                    "{what}: {} bytes of raw data is not a whole number of {N}-byte elements",
                    raw.len()
                )));
            }
            Ok(raw
                .chunks_exact(N)
                .map(|c| f(c.try_into().unwrap()))
                .collect())
        }
        Ok(match datatype {
            DataType::BOOL => TensorData::Bool(raw.iter().map(|&b| b != 0).collect()),
            DataType::UINT8 => TensorData::U8(raw.to_vec()),
            DataType::UINT16 => TensorData::U16(get(raw, what, u16::from_le_bytes)?),
            DataType::UINT32 => TensorData::U32(get(raw, what, u32::from_le_bytes)?),
            DataType::UINT64 => TensorData::U64(get(raw, what, u64::from_le_bytes)?),
            DataType::INT8 => TensorData::I8(get(raw, what, i8::from_le_bytes)?),
            DataType::INT16 => TensorData::I16(get(raw, what, i16::from_le_bytes)?),
            DataType::INT32 => TensorData::I32(get(raw, what, i32::from_le_bytes)?),
            DataType::INT64 => TensorData::I64(get(raw, what, i64::from_le_bytes)?),
            DataType::FP16 => TensorData::F16(get(raw, what, f16::from_le_bytes)?),
            DataType::BF16 => TensorData::BF16(get(raw, what, bf16::from_le_bytes)?),
            DataType::FP32 => TensorData::F32(get(raw, what, f32::from_le_bytes)?),
            DataType::FP64 => TensorData::F64(get(raw, what, f64::from_le_bytes)?),
            DataType::BYTES => {
                let mut items = Vec::new();
                let mut rest = raw;
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(Error::invalid(format!(
                            "{what}: truncated BYTES length prefix"
                        )));
                    }
                    let n = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
                    rest = &rest[4..];
                    if rest.len() < n {
                        return Err(Error::invalid(format!(
                            "{what}: BYTES element of {n} bytes but only {} remain",
                            rest.len()
                        )));
                    }
                    items.push(rest[..n].to_vec());
                    rest = &rest[n..];
                }
                TensorData::Bytes(items)
            }
        })
    }

    /// Converts to f32 where every value is exactly representable, else an error naming `what`.
    pub fn to_f32_lossless(&self, what: &str) -> Result<Vec<f32>> {
        fn exact<T: Copy + PartialEq>(
            v: &[T],
            what: &str,
            to: impl Fn(T) -> f32,
            back: impl Fn(f32) -> T,
        ) -> Result<Vec<f32>> {
            v.iter()
                .map(|&x| {
                    let y = to(x);
                    if back(y) == x {
                        Ok(y)
                    } else {
                        Err(Error::invalid(format!(
                            "{what}: a value cannot be converted to FP32 without loss; send FP32"
                        )))
                    }
                })
                .collect()
        }
        Ok(match self {
            TensorData::F32(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::Bool(v) => v.iter().map(|&b| b as u8 as f32).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U16(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::U32(v) => exact(v, what, |x| x as f32, |y| y as u32)?,
            TensorData::I32(v) => exact(v, what, |x| x as f32, |y| y as i32)?,
            TensorData::U64(v) => exact(v, what, |x| x as f32, |y| y as u64)?,
            TensorData::I64(v) => exact(v, what, |x| x as f32, |y| y as i64)?,
            TensorData::F64(v) => v
                .iter()
                .map(|&x| {
                    let y = x as f32;
                    if (y as f64) == x || (x.is_nan() && y.is_nan()) {
                        Ok(y)
                    } else {
                        Err(Error::invalid(format!(
                            "{what}: FP64 value {x} cannot be converted to FP32 without loss; send FP32"
                        )))
                    }
                })
                .collect::<Result<_>>()?,
            TensorData::Bytes(_) => {
                return Err(Error::invalid(format!(
                    "{what}: BYTES is not accepted by this numeric model; send FP32"
                )));
            }
        })
    }

    /// Converts to i64 where every value is an integer in range, else an error naming `what`.
    pub fn to_i64_lossless(&self, what: &str) -> Result<Vec<i64>> {
        let int_float = |x: f64| -> Result<i64> {
            if x.fract() == 0.0 && x.abs() < 9.007_199_254_740_992e15 {
                Ok(x as i64)
            } else {
                Err(Error::invalid(format!(
                    "{what}: value {x} is not an integer index; send INT64 or INT32"
                )))
            }
        };
        Ok(match self {
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I16(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::I8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U8(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U16(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::U64(v) => v
                .iter()
                .map(|&x| {
                    i64::try_from(x).map_err(|_| {
                        Error::invalid(format!("{what}: UINT64 value {x} does not fit INT64"))
                    })
                })
                .collect::<Result<_>>()?,
            TensorData::F16(v) => v
                .iter()
                .map(|x| int_float(x.to_f64()))
                .collect::<Result<_>>()?,
            TensorData::BF16(v) => v
                .iter()
                .map(|x| int_float(x.to_f64()))
                .collect::<Result<_>>()?,
            TensorData::F32(v) => v
                .iter()
                .map(|&x| int_float(x as f64))
                .collect::<Result<_>>()?,
            TensorData::F64(v) => v.iter().map(|&x| int_float(x)).collect::<Result<_>>()?,
            TensorData::Bytes(_) => {
                return Err(Error::invalid(format!(
                    "{what}: BYTES is not accepted by this numeric model; send INT64"
                )));
            }
        })
    }

    /// Converts to what a model input of `datatype` consumes.
    pub fn to_input(&self, datatype: DataType, what: &str) -> Result<InputData> {
        match datatype {
            DataType::FP32 | DataType::FP16 | DataType::BF16 | DataType::FP64 => {
                Ok(InputData::F32(self.to_f32_lossless(what)?))
            }
            DataType::BYTES => Err(Error::invalid(format!(
                "{what}: BYTES inputs are not supported"
            ))),
            _ => Ok(InputData::I64(self.to_i64_lossless(what)?)),
        }
    }
}

/// A named tensor with its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// Tensor name.
    pub name: String,
    /// Shape, batch dimension first.
    pub shape: Vec<i64>,
    /// Elements, row-major.
    pub data: TensorData,
}

impl Tensor {
    /// A new tensor; the datatype follows from `data`.
    pub fn new(name: impl Into<String>, shape: Vec<i64>, data: TensorData) -> Self {
        Tensor {
            name: name.into(),
            shape,
            data,
        }
    }

    /// The KServe datatype.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// The element count the shape implies, or None if a dim is negative or it overflows.
    pub fn shape_elements(shape: &[i64]) -> Option<usize> {
        shape.iter().try_fold(1usize, |acc, &d| {
            usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
        })
    }
}
