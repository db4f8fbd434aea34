//! Is CUDA usable here? Library checks that never panic, then device 0.

use super::mig::{self, MigInfo};
use cudarc::driver::{CudaContext, sys::CUdevice_attribute};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

/// What [`probe`] found about the visible CUDA device 0.
#[derive(Debug, Clone, PartialEq)]
pub struct CudaInfo {
    /// Device ordinal (always 0: a MIG slice or `CUDA_VISIBLE_DEVICES` picks the device).
    pub ordinal: usize,
    /// Device name as the driver reports it (e.g. "NVIDIA H100 80GB HBM3").
    pub name: String,
    /// Device UUID as NVML prints it ("GPU-…", or "MIG-…" for a MIG instance).
    pub uuid: String,
    /// Streaming multiprocessors visible to this context (a MIG slice's own count).
    pub sm_count: u32,
    /// Total device memory in bytes.
    pub total_memory: u64,
    /// Free device memory in bytes at probe time.
    pub free_memory: u64,
    /// Compute capability `(major, minor)`.
    pub compute_capability: (i32, i32),
    /// CUDA driver API version (e.g. 12080 for 12.8).
    pub driver_version: i32,
    /// NVRTC version `(major, minor)`.
    pub nvrtc_version: (i32, i32),
    /// MIG facts from NVML; every field is `None` where NVML could not tell.
    pub mig: MigInfo,
}

/// Which of the three shared libraries the backend needs are loadable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Libraries {
    /// libcuda (the driver).
    pub driver: bool,
    /// libnvrtc (the run-time compiler).
    pub nvrtc: bool,
    /// libcublas.
    pub cublas: bool,
}

impl Libraries {
    /// Checks each library with cudarc's own loader search (no panic when missing).
    pub fn check() -> Self {
        // SAFETY: these only try `dlopen` on cudarc's candidate names and close them again.
        unsafe {
            Libraries {
                driver: cudarc::driver::sys::is_culib_present(),
                nvrtc: cudarc::nvrtc::sys::is_culib_present(),
                cublas: cudarc::cublas::sys::is_culib_present(),
            }
        }
    }

    /// `Err` naming the first missing library, `Ok` when all three load.
    pub fn require_all(self) -> Result<(), String> {
        if !self.driver {
            return Err("CUDA driver library (libcuda.so) not found".into());
        }
        if !self.nvrtc {
            return Err(
                "NVRTC library (libnvrtc.so) not found; see scripts/install-nvrtc.sh".into(),
            );
        }
        if !self.cublas {
            return Err("cuBLAS library (libcublas.so) not found".into());
        }
        Ok(())
    }
}

/// True when libnvrtc can be loaded (all that compiling kernels to PTX needs).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries `dlopen` on cudarc's candidate names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// NVRTC's version `(major, minor)`; call only after [`nvrtc_present`].
pub fn nvrtc_version() -> Result<(i32, i32), String> {
    guard("nvrtcVersion", || {
        let (mut major, mut minor) = (0, 0);
        // SAFETY: plain out-parameters; the library is loaded (checked by the caller).
        unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) }
            .result()
            .map_err(|e| format!("nvrtcVersion failed: {e:?}"))?;
        Ok((major, minor))
    })
}

/// Runs `f`, turning a panic inside cudarc (a missing symbol in an old library) into `Err`.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(format!("{what}: CUDA library call panicked: {msg}"))
        }
    }
}

/// The CUDA driver entry points the backend calls (directly through `sys::`/`result::`,
/// or inside the cudarc safe API it uses: `CudaContext::new`/`device_count`/`name`/`uuid`/
/// `attribute`/`total_mem`/`mem_get_info`/`bind_to_thread`/`synchronize`/`check_err`,
/// `new_stream_with_priority`, stream `alloc`/`memcpy_*`/`synchronize`/`join`/`wait`/
/// `record_event`, `new_event`, `load_module`/`load_function`, `launch_builder().launch`,
/// pinned host buffers, and the drops of all of these). cudarc resolves each symbol on
/// its first call and panics when it is missing.
pub const DRIVER_SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDriverGetVersion",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetName",
    "cuDeviceGetUuid",
    "cuDeviceGetAttribute",
    "cuDeviceTotalMem_v2",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuDevicePrimaryCtxReset_v2",
    "cuCtxSetCurrent",
    "cuCtxSynchronize",
    "cuCtxGetStreamPriorityRange",
    "cuMemGetInfo_v2",
    "cuStreamCreateWithPriority",
    "cuStreamDestroy_v2",
    "cuStreamSynchronize",
    "cuStreamQuery",
    "cuStreamWaitEvent",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventDestroy_v2",
    "cuMemAllocAsync",
    "cuMemFreeAsync",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemcpyHtoDAsync_v2",
    "cuMemcpyDtoHAsync_v2",
    "cuMemHostAlloc",
    "cuMemHostGetDevicePointer_v2",
    "cuMemFreeHost",
    "cuModuleLoadData",
    "cuModuleGetFunction",
    "cuModuleUnload",
    "cuLaunchKernel",
    "cuGetErrorName",
    "cuGetErrorString",
];

/// The cuBLAS entry points the backend calls (`CudaBlas::new` creates a handle and sets
/// its stream, `gemm` on f32 is SGEMM, its drop destroys the handle).
pub const CUBLAS_SYMBOLS: &[&str] = &[
    "cublasCreate_v2",
    "cublasSetStream_v2",
    "cublasSgemm_v2",
    "cublasDestroy_v2",
];

/// The NVRTC entry points the backend calls (`compile_ptx_with_opts`, the version and the
/// supported-architecture queries).
pub const NVRTC_SYMBOLS: &[&str] = &[
    "nvrtcVersion",
    "nvrtcGetNumSupportedArchs",
    "nvrtcGetSupportedArchs",
    "nvrtcCreateProgram",
    "nvrtcCompileProgram",
    "nvrtcGetProgramLogSize",
    "nvrtcGetProgramLog",
    "nvrtcGetPTXSize",
    "nvrtcGetPTX",
    "nvrtcDestroyProgram",
];

/// Checks that the first loadable of `candidates` (file names, as `dlopen` takes them)
/// exports every one of `symbols`; `Err` names the library and the missing symbols, or
/// every candidate when none loads. Never panics.
pub fn check_symbols(candidates: &[String], symbols: &[&str]) -> Result<(), String> {
    let mut tried = Vec::new();
    for name in candidates {
        // SAFETY: loading runs the library's initialisers, as cudarc's own loader would.
        let lib = match unsafe { libloading::Library::new(name) } {
            Ok(lib) => lib,
            Err(e) => {
                tried.push(format!("{name} ({e})"));
                continue;
            }
        };
        let missing: Vec<&str> = symbols
            .iter()
            .copied()
            // SAFETY: only looks the symbol up; it is never called through this pointer.
            .filter(|sym| unsafe { lib.get::<*const ()>(sym.as_bytes()) }.is_err())
            .collect();
        return if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{name} lacks {} (too old for this build of cohost)",
                missing.join(", ")
            ))
        };
    }
    Err(format!("none of these loads: {}", tried.join("; ")))
}

/// [`check_symbols`] for the driver, NVRTC and cuBLAS, on the file names cudarc tries.
pub fn check_all_symbols() -> Result<(), String> {
    for (lib, symbols) in [
        ("cuda", DRIVER_SYMBOLS),
        ("nvrtc", NVRTC_SYMBOLS),
        ("cublas", CUBLAS_SYMBOLS),
    ] {
        check_symbols(&cudarc::get_lib_name_candidates(lib), symbols)?;
    }
    Ok(())
}

/// Opens device 0 after checking the libraries: the one way into CUDA that cannot panic.
pub fn open_device() -> Result<Arc<CudaContext>, String> {
    Libraries::check().require_all()?;
    check_all_symbols()?;
    guard("CudaContext::new(0)", || {
        let count = CudaContext::device_count()
            .map_err(|e| format!("CUDA driver present but not usable: {e:?}"))?;
        if count < 1 {
            return Err("no CUDA device visible (device count is 0)".into());
        }
        CudaContext::new(0).map_err(|e| format!("cannot open CUDA device 0: {e:?}"))
    })
}

/// Checks driver, NVRTC and cuBLAS, then describes device 0; `Err` says what is missing.
pub fn probe() -> Result<CudaInfo, String> {
    let ctx = open_device()?;
    describe(&ctx)
}

/// Describes the device of an open context (name, SMs, memory, MIG).
pub fn describe(ctx: &Arc<CudaContext>) -> Result<CudaInfo, String> {
    let nvrtc_version = nvrtc_version()?;
    guard("device query", || {
        let err = |what: &str| {
            let what = what.to_string();
            move |e: cudarc::driver::DriverError| format!("{what} failed: {e:?}")
        };
        let name = ctx.name().map_err(err("cuDeviceGetName"))?;
        let uuid_raw = ctx.uuid().map_err(err("cuDeviceGetUuid"))?;
        let uuid_bytes: [u8; 16] = uuid_raw.bytes.map(|b| b as u8);
        let sm_count = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(err("cuDeviceGetAttribute(MULTIPROCESSOR_COUNT)"))?;
        let total = ctx.total_mem().map_err(err("cuDeviceTotalMem"))?;
        let (free, _) = ctx.mem_get_info().map_err(err("cuMemGetInfo"))?;
        let compute_capability = ctx
            .compute_capability()
            .map_err(err("compute capability"))?;
        let mut driver_version = 0;
        // SAFETY: a plain out-parameter; the driver library is loaded.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) }
            .result()
            .map_err(err("cuDriverGetVersion"))?;
        let mig = mig::query(&uuid_bytes);
        let uuid = mig
            .uuid
            .clone()
            .unwrap_or_else(|| format!("GPU-{}", mig::format_uuid(&uuid_bytes)));
        Ok(CudaInfo {
            ordinal: ctx.ordinal(),
            name,
            uuid,
            sm_count: sm_count.max(0) as u32,
            total_memory: total as u64,
            free_memory: free as u64,
            compute_capability,
            driver_version,
            nvrtc_version,
            mig,
        })
    })
}

impl std::fmt::Display for CudaInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        write!(
            f,
            "{} (sm_{}{}, {} SMs, {:.1}/{:.1} GiB free, driver {}.{}, nvrtc {}.{})",
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.sm_count,
            gib(self.free_memory),
            gib(self.total_memory),
            self.driver_version / 1000,
            (self.driver_version % 1000) / 10,
            self.nvrtc_version.0,
            self.nvrtc_version.1,
        )?;
        if self.mig.is_mig == Some(true) {
            write!(
                f,
                ", MIG {}",
                self.mig.profile.as_deref().unwrap_or("instance")
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod symbol_tests {
    use super::*;

    fn libc() -> Vec<String> {
        vec!["libc.so.6".to_string()]
    }

    #[test]
    fn present_symbols_pass_and_a_missing_one_is_named_with_its_library() {
        assert_eq!(check_symbols(&libc(), &["malloc", "free"]), Ok(()));
        let e = check_symbols(&libc(), &["malloc", "cohostNoSuchSymbol42"]).unwrap_err();
        assert!(e.contains("libc.so.6"), "{e}");
        assert!(e.contains("lacks cohostNoSuchSymbol42"), "{e}");
        assert!(!e.contains("malloc"), "{e}");
    }

    #[test]
    fn no_loadable_library_is_an_error_naming_each_candidate() {
        let names = vec!["libcohost-absent.so.1".to_string(), "libc.so.6".to_string()];
        assert_eq!(
            check_symbols(&names, &["malloc"]),
            Ok(()),
            "falls to the next"
        );
        let e = check_symbols(&names[..1], &["malloc"]).unwrap_err();
        assert!(e.contains("libcohost-absent.so.1"), "{e}");
    }

    #[test]
    fn the_real_nvrtc_exports_every_symbol_the_backend_calls() {
        if !nvrtc_present() {
            eprintln!("skipped: no libnvrtc (see scripts/install-nvrtc.sh)");
            return;
        }
        let names = cudarc::get_lib_name_candidates("nvrtc");
        assert_eq!(check_symbols(&names, NVRTC_SYMBOLS), Ok(()));
    }
}
