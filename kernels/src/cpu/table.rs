//! A resident CPU embedding table and the sum-pooling embedding-bag loop.

use super::CpuOps;
use crate::table::check_bags;
use crate::{EmbeddingStore, KernelError, Lane, Result, TableMemory, TablePlacement};
use candle_core::{Device, Tensor};

/// Sum-pools fixed-size bags: `out[r] = Σ_{b<bag} table[indices[r·bag + b]]`, each row
/// `dim` wide; `out.len()` must be `indices.len() / bag · dim`.
///
/// Indices must already be validated (`0 <= i < table.len() / dim`); an index outside
/// the table panics on the slice bound check rather than reading out of bounds.
pub fn embedding_bag_sum(table: &[f32], dim: usize, indices: &[i64], bag: usize, out: &mut [f32]) {
    if dim == 0 {
        return;
    }
    if bag == 0 {
        out.fill(0.0);
        return;
    }
    assert_eq!(indices.len() % bag, 0, "embedding_bag_sum: ragged bags");
    assert_eq!(
        out.len(),
        indices.len() / bag * dim,
        "embedding_bag_sum: output size"
    );
    for (o, bag_idx) in out.chunks_exact_mut(dim).zip(indices.chunks_exact(bag)) {
        let first = bag_idx[0] as usize * dim;
        o.copy_from_slice(&table[first..first + dim]);
        for &i in &bag_idx[1..] {
            let start = i as usize * dim;
            for (a, b) in o.iter_mut().zip(&table[start..start + dim]) {
                *a += *b;
            }
        }
    }
}

/// A `rows x dim` table held wholly in host memory (the CPU backend's "device" tier).
#[derive(Debug)]
pub struct CpuTable {
    name: String,
    rows: usize,
    dim: usize,
    data: Vec<f32>,
}

impl CpuTable {
    /// Wraps `data` (`rows x dim`, row-major) as a resident table.
    pub fn new(name: &str, data: Vec<f32>, rows: usize, dim: usize) -> Result<CpuTable> {
        if data.len() != rows * dim {
            return Err(KernelError::Shape(format!(
                "table '{name}': {} values cannot form {rows} x {dim}",
                data.len()
            )));
        }
        Ok(CpuTable {
            name: name.to_string(),
            rows,
            dim,
            data,
        })
    }

    /// The table's values, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }
}

impl EmbeddingStore<CpuOps> for CpuTable {
    fn name(&self) -> &str {
        &self.name
    }

    fn rows(&self) -> usize {
        self.rows
    }

    fn dim(&self) -> usize {
        self.dim
    }

    fn placement(&self) -> TablePlacement {
        TablePlacement::Resident
    }

    fn bag_sum(&self, _ops: &CpuOps, _lane: &Lane, indices: &[i64], bag: usize) -> Result<Tensor> {
        let n = check_bags(&self.name, indices, self.rows, bag)?;
        let mut out = vec![0f32; n * self.dim];
        embedding_bag_sum(&self.data, self.dim, indices, bag, &mut out);
        Ok(Tensor::from_vec(out, (n, self.dim), &Device::Cpu)?)
    }

    fn memory(&self) -> TableMemory {
        TableMemory {
            resident_bytes: (self.data.capacity() * std::mem::size_of::<f32>()) as u64,
            ..TableMemory::default()
        }
    }

    /// Asks the CPU to start loading every cache line of the rows (x86-64 `prefetcht0`),
    /// so the misses of a batch's random rows overlap instead of coming one by one.
    fn prefetch(&self, indices: &[i64]) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            const LINE: usize = 64 / std::mem::size_of::<f32>();
            for &i in indices {
                if i < 0 || i as u64 >= self.rows as u64 {
                    continue;
                }
                let row = &self.data[i as usize * self.dim..(i as usize + 1) * self.dim];
                for c in (0..row.len()).step_by(LINE) {
                    // SAFETY: a prefetch never faults, and the address is inside `row`.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(row[c..].as_ptr().cast()) };
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = indices;
    }
}
