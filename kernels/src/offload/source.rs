//! The host tier of an offloaded table: where a row comes from on a cache miss.

use crate::{KernelError, Result, TablePlacement};
use std::sync::Arc;

/// The full rows of an offloaded table, read on a cache miss (immutable once built, so
/// any number of lanes may read it at once).
pub trait RowSource: Send + Sync {
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Values per row.
    fn dim(&self) -> usize;
    /// Writes row `row` (must be `< rows`) as f32 into `out` (`dim` values).
    fn read_row(&self, row: usize, out: &mut [f32]);
    /// Anonymous host RAM this source holds (a copy of the table).
    fn host_bytes(&self) -> u64;
    /// File bytes it maps (page cache: reclaimable, not an allocation).
    fn mapped_bytes(&self) -> u64;
    /// Which offloaded placement this is.
    fn placement(&self) -> TablePlacement;
}

/// A full f32 copy of the table in host RAM.
#[derive(Debug)]
pub struct HostRows {
    data: Vec<f32>,
    rows: usize,
    dim: usize,
}

impl HostRows {
    /// Takes `data` (`rows x dim`, row-major) as the host copy.
    pub fn new(data: Vec<f32>, rows: usize, dim: usize) -> Result<Self> {
        if rows.checked_mul(dim) != Some(data.len()) {
            return Err(KernelError::Shape(format!(
                "{} values cannot form {rows} x {dim}",
                data.len()
            )));
        }
        Ok(HostRows { data, rows, dim })
    }
}

impl RowSource for HostRows {
    fn rows(&self) -> usize {
        self.rows
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn read_row(&self, row: usize, out: &mut [f32]) {
        out.copy_from_slice(&self.data[row * self.dim..(row + 1) * self.dim]);
    }
    fn host_bytes(&self) -> u64 {
        (self.data.capacity() * size_of::<f32>()) as u64
    }
    fn mapped_bytes(&self) -> u64 {
        0
    }
    fn placement(&self) -> TablePlacement {
        TablePlacement::HostOffloaded
    }
}

/// How a mapped table's values are stored in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredType {
    /// Little-endian f32.
    F32,
    /// Little-endian IEEE half, upcast to f32 on read.
    F16,
    /// Little-endian bfloat16, upcast to f32 on read.
    BF16,
}

impl StoredType {
    /// Bytes per stored value.
    pub fn size(self) -> usize {
        match self {
            StoredType::F32 => 4,
            StoredType::F16 | StoredType::BF16 => 2,
        }
    }
}

/// Bytes that stay valid as long as the handle lives (e.g. a `memmap2::Mmap`).
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A table read in place from a memory-mapped file: no copy, rows converted on read.
pub struct MappedRows {
    bytes: SharedBytes,
    offset: usize,
    rows: usize,
    dim: usize,
    stored: StoredType,
}

impl MappedRows {
    /// Rows `rows x dim` of type `stored` starting `offset` bytes into `bytes`.
    pub fn new(
        bytes: SharedBytes,
        offset: usize,
        rows: usize,
        dim: usize,
        stored: StoredType,
    ) -> Result<Self> {
        let len = rows
            .checked_mul(dim)
            .and_then(|n| n.checked_mul(stored.size()));
        let fits = len
            .and_then(|l| offset.checked_add(l))
            .is_some_and(|end| end <= (*bytes).as_ref().len());
        if !fits {
            return Err(KernelError::Shape(format!(
                "mapped table {rows} x {dim} ({stored:?}) at offset {offset} overruns {} bytes",
                (*bytes).as_ref().len()
            )));
        }
        Ok(MappedRows {
            bytes,
            offset,
            rows,
            dim,
            stored,
        })
    }
}

impl RowSource for MappedRows {
    fn rows(&self) -> usize {
        self.rows
    }
    fn dim(&self) -> usize {
        self.dim
    }
    fn read_row(&self, row: usize, out: &mut [f32]) {
        let w = self.dim * self.stored.size();
        let start = self.offset + row * w;
        let src = &(*self.bytes).as_ref()[start..start + w];
        match self.stored {
            StoredType::F32 => {
                for (o, b) in out.iter_mut().zip(src.chunks_exact(4)) {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            StoredType::F16 => {
                for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            StoredType::BF16 => {
                for (o, b) in out.iter_mut().zip(src.chunks_exact(2)) {
                    *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
        }
    }
    fn host_bytes(&self) -> u64 {
        0
    }
    fn mapped_bytes(&self) -> u64 {
        (self.rows * self.dim * self.stored.size()) as u64
    }
    fn placement(&self) -> TablePlacement {
        TablePlacement::MappedFile
    }
}
