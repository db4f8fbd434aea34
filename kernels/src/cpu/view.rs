//! Borrowing the f32 (or f16) data of a contiguous CPU tensor without copying it.

use crate::{KernelError, Result};
use candle_core::{CpuStorage, Storage, StorageRef, Tensor};
use half::f16;

/// A read-locked, contiguous f32 slice of a CPU tensor.
pub(crate) struct View<'a> {
    guard: StorageRef<'a>,
    start: usize,
    end: usize,
}

impl<'a> View<'a> {
    /// Borrows `t`'s data; fails unless it is a contiguous f32 CPU tensor.
    pub(crate) fn of(t: &'a Tensor) -> Result<View<'a>> {
        Self::checked(t, false)
    }

    /// [`View::of`] for a weight matrix, which may also be stored as f16.
    pub(crate) fn of_weights(t: &'a Tensor) -> Result<View<'a>> {
        Self::checked(t, true)
    }

    fn checked(t: &'a Tensor, f16_too: bool) -> Result<View<'a>> {
        let (guard, layout) = t.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Err(KernelError::Shape("expected a contiguous matrix".into()));
        };
        match &*guard {
            Storage::Cpu(CpuStorage::F32(_)) => {}
            Storage::Cpu(CpuStorage::F16(_)) if f16_too => {}
            _ => {
                return Err(KernelError::Cpu(format!(
                    "expected an f32{} CPU tensor, got {:?} on {:?}",
                    if f16_too { " or f16" } else { "" },
                    t.dtype(),
                    t.device()
                )));
            }
        }
        Ok(View { guard, start, end })
    }

    /// The tensor's values, row-major: a [`View::of`] view is always f32; a weights view
    /// is read with [`View::halves`] first.
    pub(crate) fn as_slice(&self) -> &[f32] {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F32(v)) => &v[self.start..self.end],
            _ => panic!("View::as_slice on an f16 weights view"),
        }
    }

    /// The values of an f16 tensor, row-major; `None` for f32.
    pub(crate) fn halves(&self) -> Option<&[f16]> {
        match &*self.guard {
            Storage::Cpu(CpuStorage::F16(v)) => Some(&v[self.start..self.end]),
            _ => None,
        }
    }
}
