//! Classifying CUDA driver results into [`FaultKind`], and the batch-boundary check that
//! attributes a context's stored error to the batch whose lane finds it.

use super::backend::CudaOps;
use crate::{DeviceFault, FaultKind, Lane, LaneKind};
use cudarc::driver::sys::CUresult;

/// Whether a driver error leaves the context usable: the driver documents these as
/// corrupting the context ("the context cannot be used, so it must be destroyed (and a new
/// one should be created)"); every other error fails only the call that returned it.
pub fn classify(code: CUresult) -> FaultKind {
    use CUresult::*;
    match code {
        CUDA_ERROR_ILLEGAL_ADDRESS
        | CUDA_ERROR_ILLEGAL_INSTRUCTION
        | CUDA_ERROR_MISALIGNED_ADDRESS
        | CUDA_ERROR_INVALID_ADDRESS_SPACE
        | CUDA_ERROR_INVALID_PC
        | CUDA_ERROR_LAUNCH_FAILED
        | CUDA_ERROR_LAUNCH_TIMEOUT
        | CUDA_ERROR_HARDWARE_STACK_ERROR
        | CUDA_ERROR_ECC_UNCORRECTABLE
        | CUDA_ERROR_NVLINK_UNCORRECTABLE
        | CUDA_ERROR_ASSERT
        | CUDA_ERROR_CONTEXT_IS_DESTROYED
        | CUDA_ERROR_DEINITIALIZED
        | CUDA_ERROR_EXTERNAL_DEVICE
        | CUDA_ERROR_UNKNOWN => FaultKind::Sticky,
        _ => FaultKind::Transient,
    }
}

/// The [`DeviceFault`] for a driver error code found by the check named `seen_at`.
pub fn fault(code: CUresult, seen_at: &'static str) -> DeviceFault {
    DeviceFault {
        kind: classify(code),
        code: format!("{code:?}"),
        seen_at,
    }
}

impl CudaOps {
    /// The batch-boundary check, on the lane's thread after a batch's forward and before
    /// the lane takes its next batch: the context's stored error (raised while dropping,
    /// which the next `bind_to_thread` anywhere would otherwise return to another lane)
    /// and the lane's stream state. Clears the stored error, so it is reported once.
    pub fn batch_boundary(&self, lane: &Lane) -> Result<(), DeviceFault> {
        if let Err(e) = self.ctx.check_err() {
            return Err(fault(e.0, "stored context error"));
        }
        let LaneKind::Cuda(stream) = &lane.kind else {
            return Ok(());
        };
        // SAFETY: the stream is alive (the lane holds it); the query only reads its state.
        let state = unsafe { cudarc::driver::sys::cuStreamQuery(stream.cu_stream()) };
        match state {
            CUresult::CUDA_SUCCESS | CUresult::CUDA_ERROR_NOT_READY => Ok(()),
            code => Err(fault(code, "stream state")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_corrupting_errors_are_sticky() {
        for code in [
            CUresult::CUDA_ERROR_ILLEGAL_ADDRESS,
            CUresult::CUDA_ERROR_ILLEGAL_INSTRUCTION,
            CUresult::CUDA_ERROR_MISALIGNED_ADDRESS,
            CUresult::CUDA_ERROR_INVALID_PC,
            CUresult::CUDA_ERROR_LAUNCH_FAILED,
            CUresult::CUDA_ERROR_ECC_UNCORRECTABLE,
            CUresult::CUDA_ERROR_HARDWARE_STACK_ERROR,
            CUresult::CUDA_ERROR_ASSERT,
        ] {
            assert_eq!(classify(code), FaultKind::Sticky, "{code:?}");
        }
    }

    #[test]
    fn call_local_errors_are_transient() {
        for code in [
            CUresult::CUDA_ERROR_OUT_OF_MEMORY,
            CUresult::CUDA_ERROR_INVALID_VALUE,
            CUresult::CUDA_ERROR_INVALID_HANDLE,
            CUresult::CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES,
            CUresult::CUDA_ERROR_NOT_READY,
            CUresult::CUDA_ERROR_NOT_SUPPORTED,
        ] {
            assert_eq!(classify(code), FaultKind::Transient, "{code:?}");
        }
    }

    #[test]
    fn a_fault_names_its_code_and_check() {
        let f = fault(CUresult::CUDA_ERROR_ILLEGAL_ADDRESS, "stream state");
        assert!(f.is_sticky());
        assert_eq!(f.code, "CUDA_ERROR_ILLEGAL_ADDRESS");
        let text = f.to_string();
        assert!(
            text.contains("sticky") && text.contains("stream state"),
            "{text}"
        );
    }
}
