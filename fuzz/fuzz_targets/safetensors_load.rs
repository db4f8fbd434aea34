//! A safetensors file given to the model loader (`build_model`), as bytes or as a
//! memory-mapped file: hostile headers, wrong shapes and dtypes, truncated data, offsets
//! out of range. The first byte picks the config (bits 0-1: mlp-tiny, dlrm-tiny,
//! dlrm-tiny with a DCN interaction, mlp-tiny in f16), the source (bit 2: file) and the
//! placement (bit 3: budgets that offload tables to host RAM and to the mapped file).
//! The rest is the file. Whatever it holds, the load returns; it never panics.
#![no_main]

use cohost_fuzz::{config, file_path};
use cohost_kernels::cpu::CpuOps;
use cohost_models::{BackendHandle, PlacementOptions, WeightSource, build_model};
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};

fn backend() -> &'static BackendHandle {
    static CPU: OnceLock<BackendHandle> = OnceLock::new();
    CPU.get_or_init(|| BackendHandle::Cpu(Arc::new(CpuOps::default())))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let config = config(mode);
    let placement = if mode & 8 != 0 {
        PlacementOptions {
            device_budget: Some(12_000),
            host_budget: Some(4_000),
        }
    } else {
        PlacementOptions::default()
    };
    let built = if mode & 4 != 0 {
        let path = file_path();
        std::fs::write(&path, bytes).expect("write the weights file");
        build_model(&config, WeightSource::File(&path), backend(), &placement)
    } else {
        build_model(&config, WeightSource::Bytes(bytes), backend(), &placement)
    };
    if let Ok(model) = built {
        // Whatever loaded accounts for its memory without overflow.
        let m = model.memory();
        let _ = (m.device_bytes(), m.host_bytes());
    }
});
