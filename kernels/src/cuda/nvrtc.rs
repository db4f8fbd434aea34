//! The CUDA C sources (embedded from `kernels/cuda/*.cu`), NVRTC compilation, and the
//! per-device cache of loaded kernels.

use super::probe::guard;
use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// One CUDA C source file of the backend and the kernels it defines.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    /// File name under `kernels/cuda/`.
    pub file: &'static str,
    /// The CUDA C text.
    pub src: &'static str,
    /// `extern "C"` kernel entry points the backend loads from it.
    pub entries: &'static [&'static str],
}

/// Every `.cu` file the backend embeds (the NVRTC test checks this matches the folder).
pub const SOURCES: &[KernelSource] = &[
    KernelSource {
        file: "elementwise.cu",
        src: include_str!("../../cuda/elementwise.cu"),
        entries: &["bias_act_f32", "sigmoid_f32", "cross_f32"],
    },
    KernelSource {
        file: "interaction.cu",
        src: include_str!("../../cuda/interaction.cu"),
        entries: &["dot_interaction_f32", "cat_interaction_f32"],
    },
    KernelSource {
        file: "embedding.cu",
        src: include_str!("../../cuda/embedding.cu"),
        entries: &[
            "embedding_bag_sum_f32",
            "gather_rows_f32",
            "embedding_bag_cached_f32",
        ],
    },
];

/// NVRTC options used for every kernel: IEEE f32 (no fast math, precise div/sqrt, no
/// flush-to-zero), so results stay within 1e-5 of the CPU reference. `arch` is a
/// `compute_XY` virtual architecture (`None`: NVRTC's default).
pub fn compile_options(file: &str, arch: Option<&str>) -> CompileOptions {
    let mut options = vec!["--std=c++17".to_string()];
    if let Some(arch) = arch {
        options.push(format!("--gpu-architecture={arch}"));
    }
    CompileOptions {
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        use_fast_math: Some(false),
        options,
        name: Some(file.to_string()),
        ..CompileOptions::default()
    }
}

/// Compiles one source to PTX; the `Err` carries NVRTC's log.
pub fn compile(source: &KernelSource, arch: Option<&str>) -> Result<Ptx, String> {
    compile_ptx_with_opts(source.src, compile_options(source.file, arch)).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { nvrtc, log, .. } => format!(
            "NVRTC failed on {} ({nvrtc:?}):\n{}",
            source.file,
            log.to_string_lossy()
        ),
        other => format!("NVRTC failed on {}: {other:?}", source.file),
    })
}

/// Virtual architectures this NVRTC can target, as `major * 10 + minor` (e.g. 90).
pub fn supported_archs() -> Result<Vec<i32>, String> {
    guard("nvrtcGetSupportedArchs", || {
        use cudarc::nvrtc::sys;
        let mut n = 0;
        // SAFETY: out-parameters sized by the preceding call; the library is loaded.
        unsafe {
            sys::nvrtcGetNumSupportedArchs(&mut n)
                .result()
                .map_err(|e| format!("nvrtcGetNumSupportedArchs: {e:?}"))?;
            let mut archs = vec![0; n.max(0) as usize];
            sys::nvrtcGetSupportedArchs(archs.as_mut_ptr())
                .result()
                .map_err(|e| format!("nvrtcGetSupportedArchs: {e:?}"))?;
            Ok(archs)
        }
    })
}

/// The `compute_XY` to compile for on a device of compute capability `cc`: the device's own
/// when NVRTC knows it, else the newest older one it knows (the driver JITs the PTX).
pub fn arch_for(cc: (i32, i32), supported: &[i32]) -> Result<String, String> {
    let want = cc.0 * 10 + cc.1;
    supported
        .iter()
        .copied()
        .filter(|&a| a <= want)
        .max()
        .map(|a| format!("compute_{a}"))
        .ok_or_else(|| {
            format!(
                "this NVRTC cannot target compute capability {}.{}",
                cc.0, cc.1
            )
        })
}

/// The loaded kernels of one device context.
#[derive(Debug)]
pub struct Kernels {
    /// `compute_XY` the PTX was built for.
    pub arch: String,
    pub(crate) bias_act: CudaFunction,
    pub(crate) sigmoid: CudaFunction,
    pub(crate) dot_interaction: CudaFunction,
    pub(crate) cat_interaction: CudaFunction,
    pub(crate) cross: CudaFunction,
    pub(crate) embedding_bag_sum: CudaFunction,
    pub(crate) gather_rows: CudaFunction,
    pub(crate) embedding_bag_cached: CudaFunction,
}

type Cache = Mutex<HashMap<usize, Arc<Kernels>>>;

/// Compiled-and-loaded kernels for `ctx`, built on first use and cached per context.
///
/// The cache key is the raw `CUcontext`; a cached entry keeps its context alive through its
/// modules, so the key cannot be reused by another context while the entry exists.
pub fn kernels_for(ctx: &Arc<CudaContext>) -> Result<Arc<Kernels>, String> {
    let cache = cache();
    let key = ctx.cu_ctx() as usize;
    // Holding the lock while compiling makes concurrent first users wait for one build.
    let mut map = cache.lock();
    if let Some(k) = map.get(&key) {
        return Ok(k.clone());
    }
    let built = Arc::new(build(ctx)?);
    map.insert(key, built.clone());
    Ok(built)
}

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Cache::default)
}

/// Drops the cached kernels of `ctx` (its context was lost): the next [`kernels_for`] on
/// a context with the same raw handle (a reset primary context) compiles and loads again.
pub fn forget_kernels(ctx: &Arc<CudaContext>) -> bool {
    cache().lock().remove(&(ctx.cu_ctx() as usize)).is_some()
}

fn build(ctx: &Arc<CudaContext>) -> Result<Kernels, String> {
    let cc = guard("compute capability", || {
        ctx.compute_capability()
            .map_err(|e| format!("compute capability: {e:?}"))
    })?;
    let arch = arch_for(cc, &supported_archs()?)?;
    let mut functions: HashMap<&'static str, CudaFunction> = HashMap::new();
    for source in SOURCES {
        let ptx = guard("NVRTC", || compile(source, Some(&arch)))?;
        let module = guard("cuModuleLoadData", || {
            ctx.load_module(ptx)
                .map_err(|e| format!("loading the PTX of {} failed: {e:?}", source.file))
        })?;
        for &entry in source.entries {
            let f = guard("cuModuleGetFunction", || {
                module
                    .load_function(entry)
                    .map_err(|e| format!("kernel {entry} missing from {}: {e:?}", source.file))
            })?;
            functions.insert(entry, f);
        }
    }
    let mut take = |name: &str| {
        functions
            .remove(name)
            .ok_or_else(|| format!("kernel {name} is not listed in SOURCES"))
    };
    Ok(Kernels {
        bias_act: take("bias_act_f32")?,
        sigmoid: take("sigmoid_f32")?,
        dot_interaction: take("dot_interaction_f32")?,
        cat_interaction: take("cat_interaction_f32")?,
        cross: take("cross_f32")?,
        embedding_bag_sum: take("embedding_bag_sum_f32")?,
        gather_rows: take("gather_rows_f32")?,
        embedding_bag_cached: take("embedding_bag_cached_f32")?,
        arch,
    })
}
