//! `config.toml` text into a validated `ModelConfig` (models crate): no panic; what is
//! accepted serialises back to TOML that parses to the same config; and its weight and
//! memory estimates (the synthetic weight plan, the DLRM placement against a budget) are
//! computed without overflow before the (absent) weights are refused.
#![no_main]

use cohost_kernels::cpu::CpuOps;
use cohost_models::synth::weight_bytes;
use cohost_models::{BackendHandle, ModelConfig, PlacementOptions, WeightSource, build_model};
use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// A safetensors file with no tensors: an 8-byte header `{}` padded with spaces.
const EMPTY_WEIGHTS: &[u8] = b"\x08\0\0\0\0\0\0\0{}      ";

fn backend() -> &'static BackendHandle {
    static CPU: OnceLock<BackendHandle> = OnceLock::new();
    CPU.get_or_init(|| BackendHandle::Cpu(Arc::new(CpuOps::default())))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = Path::new("config.toml");
    let Ok(config) = ModelConfig::from_toml(text, file) else {
        return;
    };
    let again = ModelConfig::from_toml(&config.to_toml(), file).expect("written config parses");
    assert_eq!(config, again);
    let _ = weight_bytes(&config);
    for placement in [
        PlacementOptions::default(),
        PlacementOptions {
            device_budget: Some(1 << 20),
            host_budget: Some(1 << 16),
        },
    ] {
        let built = build_model(
            &config,
            WeightSource::Bytes(EMPTY_WEIGHTS),
            backend(),
            &placement,
        );
        assert!(built.is_err(), "a model was built without weights");
    }
});
