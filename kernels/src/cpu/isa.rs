//! Which vector instruction set the CPU kernels use: the best the CPU has (AVX-512, AVX2 or
//! portable loops), detected once, or a lower one forced with `COHOST_CPU_ISA` (`avx2` or
//! `portable`).
//!
//! [`cap`] does the same from code (tests and benchmarks that compare the paths in one
//! process). Forcing covers cohost's own kernels (the row-dot product); the `gemm` crate behind the
//! large-batch product detects AVX-512 by itself and cannot be forced down at run time.

use std::sync::atomic::{AtomicU8, Ordering};

/// The environment variable that caps the instruction set (read once per process).
pub const ISA_VAR: &str = "COHOST_CPU_ISA";

/// An instruction set the CPU kernels have code for, lowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Isa {
    /// Plain Rust loops (any CPU).
    Portable = 1,
    /// AVX2 + FMA + F16C (256-bit vectors).
    Avx2,
    /// AVX-512 F on top of [`Isa::Avx2`] (512-bit vectors).
    Avx512,
}

impl Isa {
    /// The name `COHOST_CPU_ISA` takes for this instruction set.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "portable" | "scalar" | "none" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2),
            "avx512" | "avx-512" | "avx512f" => Some(Isa::Avx512),
            _ => None,
        }
    }
}

/// The best instruction set this CPU runs.
pub fn detected() -> Isa {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx2") && has!("fma") && has!("f16c") {
            if has!("avx512f") {
                return Isa::Avx512;
            }
            return Isa::Avx2;
        }
    }
    Isa::Portable
}

/// The instruction set in use, 0 until first asked.
static CURRENT: AtomicU8 = AtomicU8::new(0);

fn from_u8(v: u8) -> Isa {
    match v {
        1 => Isa::Portable,
        2 => Isa::Avx2,
        _ => Isa::Avx512,
    }
}

/// The instruction set the kernels use: [`detected`], capped by `COHOST_CPU_ISA` when set
/// (a value above what the CPU has, or not understood, leaves the detected one) or by
/// [`cap`].
#[inline]
pub fn isa() -> Isa {
    match CURRENT.load(Ordering::Relaxed) {
        0 => {
            let chosen = from_env();
            CURRENT.store(chosen as u8, Ordering::Relaxed);
            chosen
        }
        v => from_u8(v),
    }
}

/// Uses at most `isa` from now on (never more than [`detected`]) and returns what is used.
pub fn cap(isa: Isa) -> Isa {
    let chosen = isa.min(detected());
    CURRENT.store(chosen as u8, Ordering::Relaxed);
    chosen
}

fn from_env() -> Isa {
    let best = detected();
    match std::env::var(ISA_VAR) {
        Ok(v) => match Isa::parse(&v) {
            Some(cap) => cap.min(best),
            None => {
                tracing::warn!("{ISA_VAR}={v:?} not understood (avx512, avx2, portable)");
                best
            }
        },
        // The AVX-512 kernels passed the f64 reference tests and the bit-for-bit AVX2
        // comparison on an AVX-512 machine (AMD Zen5, 2026-12-02): the default is the best.
        Err(_) => best,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back_and_the_cap_never_exceeds_the_cpu() {
        for set in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
            assert_eq!(Isa::parse(set.name()), Some(set));
        }
        assert_eq!(Isa::parse("sse9"), None);
        assert!(isa() <= detected());
    }
}
