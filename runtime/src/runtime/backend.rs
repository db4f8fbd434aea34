//! Choosing the backend at start-up: CUDA when usable (lanes = streams), else the CPU
//! (lanes = worker threads), with one log line saying why.

use super::Device;
use crate::{DeviceInfo, Error, Result};
use cohost_kernels::{Lane, LanePriority};
use cohost_models::BackendHandle;
use std::sync::Arc;

/// The backend chosen at start-up and the lanes it offers.
pub(super) struct Backend {
    pub(super) handle: BackendHandle,
    pub(super) name: &'static str,
    pub(super) lanes: Vec<Lane>,
    pub(super) device: DeviceInfo,
}

/// Headroom left free on a CUDA device when the budget defaults to its free memory.
pub(super) const CUDA_HEADROOM: f64 = 0.10;

/// Lane `i`'s class of `n` lanes: one in four `High` when `priorities` is on, else all
/// `Normal` (the class-blind baseline).
fn lane_class(i: usize, n: usize, priorities: bool) -> LanePriority {
    if priorities {
        LanePriority::split(i, n)
    } else {
        LanePriority::Normal
    }
}

/// `n` CPU lanes with their classes (the classes only steer routing: lanes are threads at
/// the same nice value).
fn cpu_lanes(n: usize, priorities: bool) -> Vec<Lane> {
    (0..n)
        .map(|i| Lane::cpu(i).with_priority(lane_class(i, n, priorities)))
        .collect()
}

/// `n` CUDA lanes: High lanes are streams at the device's most urgent priority, the rest at
/// its least urgent (CUDA: lower numbers are more urgent; `priority_range` is (least,
/// greatest)); all at priority 0 when `priorities` is off.
fn cuda_lanes(
    ops: &cohost_kernels::cuda::CudaOps,
    n: usize,
    priorities: bool,
) -> std::result::Result<Vec<Lane>, String> {
    let (least, greatest) = ops.priority_range();
    (0..n)
        .map(|i| match lane_class(i, n, priorities) {
            LanePriority::High => ops
                .lane(i, greatest)
                .map(|l| l.with_priority(LanePriority::High)),
            LanePriority::Normal => ops.lane(i, if priorities { least } else { 0 }),
        })
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// CPU ops for `lanes` lanes (0: one per core) and the lane count.
fn cpu_ops(lanes: usize) -> (cohost_kernels::cpu::CpuOps, usize) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let lanes = if lanes == 0 { cores } else { lanes };
    // Lanes are the parallelism: with one lane per core each op runs on its lane's thread;
    // fewer lanes than cores lend the spare cores to each lane's products.
    (
        cohost_kernels::cpu::CpuOps::with_threads(cores / lanes),
        lanes,
    )
}

fn cpu_backend(lanes: usize, priorities: bool, note: Option<String>) -> Backend {
    let (ops, lanes) = cpu_ops(lanes);
    Backend {
        handle: BackendHandle::Cpu(Arc::new(ops)),
        name: "cpu",
        lanes: cpu_lanes(lanes, priorities),
        device: DeviceInfo {
            backend: "cpu",
            name: "cpu".into(),
            note,
            ..Default::default()
        },
    }
}

fn cuda_backend(lanes: usize, priorities: bool) -> std::result::Result<Backend, String> {
    let info = cohost_kernels::cuda::probe()?;
    let ops = cohost_kernels::cuda::CudaOps::open().map_err(|e| e.to_string())?;
    // One stream per ~8 SMs keeps enough kernels in flight to fill the slice without
    // oversubscribing a small MIG instance.
    let lanes = if lanes == 0 {
        (info.sm_count as usize / 8).clamp(2, 16)
    } else {
        lanes
    };
    let lanes = cuda_lanes(&ops, lanes, priorities)?;
    Ok(Backend {
        handle: BackendHandle::Cuda(Arc::new(ops)),
        name: "cuda",
        lanes,
        device: DeviceInfo {
            backend: "cuda",
            name: info.name.clone(),
            sm_count: Some(info.sm_count),
            total_memory: Some(info.total_memory),
            free_memory: Some(info.free_memory),
            mig_profile: info.mig.profile.clone(),
            note: Some(info.to_string()),
        },
    })
}

/// The backend for `device` with `lanes` lanes (0: from the device), one in four at high
/// priority when `priorities` is on.
pub(super) fn choose_backend(device: Device, lanes: usize, priorities: bool) -> Result<Backend> {
    match device {
        Device::Cpu => Ok(cpu_backend(lanes, priorities, None)),
        Device::Cuda => cuda_backend(lanes, priorities).map_err(|e| {
            Error::unavailable(format!("--device cuda: CUDA is not usable here: {e}"))
        }),
        Device::Auto => match cuda_backend(lanes, priorities) {
            Ok(b) => Ok(b),
            Err(e) => {
                tracing::info!("CUDA not usable ({e}); falling back to the CPU backend");
                Ok(cpu_backend(
                    lanes,
                    priorities,
                    Some(format!("CUDA not usable: {e}")),
                ))
            }
        },
    }
}

/// The backend `name` opened again after a sticky fault, with `lanes` lanes: CPU, fresh
/// ops (nothing on a CPU is lost); CUDA, [`cohost_kernels::cuda::CudaOps::reopen`] (the
/// old context's kernels forgotten, the primary context reset, new streams), the lanes in
/// the same classes as at start-up.
pub(super) fn reopen(
    name: &'static str,
    old: Option<BackendHandle>,
    lanes: usize,
    priorities: bool,
) -> std::result::Result<(BackendHandle, Vec<Lane>), String> {
    match name {
        "cuda" => {
            let old = match old {
                Some(BackendHandle::Cuda(ops)) => Some(ops),
                _ => None,
            };
            let ops = cohost_kernels::cuda::CudaOps::reopen(old).map_err(|e| e.to_string())?;
            let lanes = cuda_lanes(&ops, lanes, priorities)?;
            Ok((BackendHandle::Cuda(Arc::new(ops)), lanes))
        }
        _ => {
            drop(old);
            let (ops, lanes) = cpu_ops(lanes);
            Ok((
                BackendHandle::Cpu(Arc::new(ops)),
                cpu_lanes(lanes, priorities),
            ))
        }
    }
}
