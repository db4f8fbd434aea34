//! MIG facts from NVML (best effort): is the CUDA device a MIG instance, and which profile.

use nvml_wrapper::{Device, Nvml};

/// `NVML_DEVICE_MIG_ENABLE`: the value of `MigMode::current` when MIG is on.
const NVML_DEVICE_MIG_ENABLE: u32 = 1;

/// MIG facts about the visible device; `None` wherever NVML could not tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigInfo {
    /// Whether the visible device is a MIG instance (`None`: NVML unavailable or no match).
    pub is_mig: Option<bool>,
    /// Profile name derived from the instance's slices and memory, e.g. `1g.10gb`.
    pub profile: Option<String>,
    /// SMs of the instance (or of the whole GPU when not MIG).
    pub sm_count: Option<u32>,
    /// Memory of the instance (or of the whole GPU) in bytes.
    pub memory_bytes: Option<u64>,
    /// Name of the physical GPU the instance lives on.
    pub parent_name: Option<String>,
    /// UUID as NVML prints it ("MIG-…" or "GPU-…").
    pub uuid: Option<String>,
    /// Why the facts are missing, when they are.
    pub note: Option<String>,
}

/// `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx` from 16 raw UUID bytes.
pub fn format_uuid(b: &[u8; 16]) -> String {
    let h: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        h[0..4].concat(),
        h[4..6].concat(),
        h[6..8].concat(),
        h[8..10].concat(),
        h[10..16].concat()
    )
}

/// The 32 hex digits of an NVML UUID string ("GPU-…"/"MIG-…"), lower case.
fn hex_digits(uuid: &str) -> String {
    let body = uuid
        .strip_prefix("MIG-")
        .or_else(|| uuid.strip_prefix("GPU-"))
        .unwrap_or(uuid);
    body.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// NVIDIA's profile naming: `<gi slices>g.<GiB rounded up>gb`, with a `<ci>c.` prefix when
/// the compute instance uses fewer slices than its GPU instance (e.g. `1c.3g.40gb`).
pub fn profile_name(gi_slices: u32, ci_slices: u32, memory_mib: u64) -> Option<String> {
    if gi_slices == 0 || memory_mib == 0 {
        return None;
    }
    let gb = memory_mib.div_ceil(1024);
    if ci_slices != 0 && ci_slices < gi_slices {
        Some(format!("{ci_slices}c.{gi_slices}g.{gb}gb"))
    } else {
        Some(format!("{gi_slices}g.{gb}gb"))
    }
}

/// Finds the device whose UUID is `cuda_uuid` in NVML and reports its MIG facts.
pub fn query(cuda_uuid: &[u8; 16]) -> MigInfo {
    let env_says_mig = std::env::var("CUDA_VISIBLE_DEVICES")
        .map(|v| v.trim_start().starts_with("MIG-"))
        .unwrap_or(false);
    let mut info = match Nvml::init() {
        Ok(nvml) => search(&nvml, &format_uuid(cuda_uuid).replace('-', "")),
        Err(e) => MigInfo {
            note: Some(format!("NVML unavailable: {e}")),
            ..MigInfo::default()
        },
    };
    if info.is_mig.is_none() && env_says_mig {
        info.is_mig = Some(true);
    }
    info
}

fn search(nvml: &Nvml, want: &str) -> MigInfo {
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(e) => {
            return MigInfo {
                note: Some(format!("NVML device count failed: {e}")),
                ..MigInfo::default()
            };
        }
    };
    for i in 0..count {
        let Ok(gpu) = nvml.device_by_index(i) else {
            continue;
        };
        let gpu_uuid = gpu.uuid().ok();
        if gpu_uuid.as_deref().map(hex_digits).as_deref() == Some(want) {
            let mut info = describe(&gpu, false);
            info.uuid = gpu_uuid;
            return info;
        }
        let mig_enabled = gpu
            .mig_mode()
            .map(|m| m.current == NVML_DEVICE_MIG_ENABLE)
            .unwrap_or(false);
        if !mig_enabled {
            continue;
        }
        let slots = gpu.mig_device_count().unwrap_or(0);
        for j in 0..slots {
            let Ok(inst) = gpu.mig_device_by_index(j) else {
                continue;
            };
            let inst_uuid = inst.uuid().ok();
            if inst_uuid.as_deref().map(hex_digits).as_deref() == Some(want) {
                let mut info = describe(&inst, true);
                info.parent_name = gpu.name().ok();
                info.uuid = inst_uuid;
                return info;
            }
        }
    }
    MigInfo {
        note: Some("the CUDA device was not found among NVML's devices".into()),
        ..MigInfo::default()
    }
}

fn describe(dev: &Device<'_>, is_mig: bool) -> MigInfo {
    let memory_bytes = dev.memory_info().ok().map(|m| m.total);
    let mut info = MigInfo {
        is_mig: Some(is_mig),
        memory_bytes,
        ..MigInfo::default()
    };
    // nvmlDeviceGetAttributes answers for MIG handles (and, on some drivers, whole GPUs).
    if let Ok(a) = dev.attributes() {
        info.sm_count = Some(a.multiprocessor_count);
        if is_mig {
            info.profile = profile_name(
                a.gpu_instance_slice_count,
                a.compute_instance_slice_count,
                a.memory_size_mb,
            );
        }
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names_follow_nvidia_naming() {
        assert_eq!(profile_name(1, 1, 9856).as_deref(), Some("1g.10gb"));
        assert_eq!(profile_name(1, 1, 4864).as_deref(), Some("1g.5gb"));
        assert_eq!(profile_name(3, 3, 19968).as_deref(), Some("3g.20gb"));
        assert_eq!(profile_name(3, 1, 40192).as_deref(), Some("1c.3g.40gb"));
        assert_eq!(profile_name(0, 0, 1024), None);
    }

    #[test]
    fn uuid_round_trip() {
        let b: [u8; 16] = core::array::from_fn(|i| i as u8 * 17);
        let s = format_uuid(&b);
        assert_eq!(s.len(), 36);
        assert_eq!(hex_digits(&format!("MIG-{s}")), s.replace('-', ""));
        assert_eq!(hex_digits(&format!("GPU-{s}")), s.replace('-', ""));
    }
}
