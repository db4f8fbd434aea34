//! Launch geometry of every backend kernel, as pure functions of the work and the SM count.
//!
//! Every kernel loops grid-stride, so any grid is correct; these pick one that fills the
//! device without launching more blocks than there is work. The host-shim test
//! (`kernels/tests/cuda_host.rs`) runs the kernels on the CPU with exactly these shapes.

use cudarc::driver::LaunchConfig;

/// Threads per block of the element-wise kernels (`bias_act_f32`, `sigmoid_f32`).
pub const ELEMENTWISE_THREADS: u32 = 256;

/// Threads per block of `dot_interaction_f32`.
pub const INTERACTION_THREADS: u32 = 128;

/// Most blocks per SM a grid-stride launch asks for.
pub const BLOCKS_PER_SM: usize = 32;

/// Shared memory a block may use without opting in (48 KiB).
pub const MAX_SMEM_BYTES: usize = 48 << 10;

/// One launch: blocks in the (1-D) grid, threads per block, dynamic shared memory bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// Blocks in the grid.
    pub grid: u32,
    /// Threads per block.
    pub block: u32,
    /// Dynamic shared memory per block, in bytes.
    pub smem: u32,
}

impl From<Launch> for LaunchConfig {
    fn from(l: Launch) -> Self {
        LaunchConfig {
            grid_dim: (l.grid, 1, 1),
            block_dim: (l.block, 1, 1),
            shared_mem_bytes: l.smem,
        }
    }
}

/// A grid-stride launch over `items` blocks' worth of work: at least 1 block, at most
/// [`BLOCKS_PER_SM`] per SM (an `sm_count` of 0 counts as 1).
pub fn grid(items: usize, threads: u32, smem: u32, sm_count: u32) -> Launch {
    let max_blocks = (sm_count.max(1) as usize) * BLOCKS_PER_SM;
    Launch {
        grid: items.clamp(1, max_blocks) as u32,
        block: threads,
        smem,
    }
}

/// The launch of an element-wise kernel over `elems` values.
pub fn elementwise(elems: usize, sm_count: u32) -> Launch {
    grid(
        elems.div_ceil(ELEMENTWISE_THREADS as usize),
        ELEMENTWISE_THREADS,
        0,
        sm_count,
    )
}

/// Threads per block of a row kernel over rows of `dim` values: `dim` rounded up to whole
/// warps, 32 to 256.
pub fn row_threads(dim: usize) -> u32 {
    dim.next_multiple_of(32).clamp(32, 256) as u32
}

/// The launch of a one-block-per-row kernel (`embedding_bag_sum_f32`, `gather_rows_f32`)
/// over `rows` rows of `dim` values.
pub fn rows(rows: usize, dim: usize, sm_count: u32) -> Launch {
    grid(rows, row_threads(dim), 0, sm_count)
}

/// The launch of `dot_interaction_f32` and whether its block stages the row in shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InteractionLaunch {
    /// Grid, block and shared memory (0 unless `use_smem`).
    pub launch: Launch,
    /// Whether the `feats x d` values of a row are staged in shared memory.
    pub use_smem: bool,
}

/// The dot interaction over `n` rows of `feats` features of `d` values: one block per row,
/// the row staged in shared memory when `feats * d * 4` bytes fit [`MAX_SMEM_BYTES`].
pub fn interaction(n: usize, feats: usize, d: usize, sm_count: u32) -> InteractionLaunch {
    let bytes = feats
        .checked_mul(d)
        .and_then(|v| v.checked_mul(size_of::<f32>()));
    let use_smem = bytes.is_some_and(|b| b <= MAX_SMEM_BYTES);
    let smem = if use_smem {
        bytes.unwrap_or(0) as u32
    } else {
        0
    };
    InteractionLaunch {
        launch: grid(n, INTERACTION_THREADS, smem, sm_count),
        use_smem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_is_one_block_per_item_up_to_32_per_sm() {
        assert_eq!(grid(0, 64, 0, 4).grid, 1);
        assert_eq!(grid(1, 64, 0, 4).grid, 1);
        assert_eq!(grid(127, 64, 0, 4).grid, 127);
        assert_eq!(grid(128, 64, 0, 4).grid, 128);
        assert_eq!(grid(129, 64, 0, 4).grid, 128);
        assert_eq!(grid(1 << 40, 64, 0, 132).grid, 132 * 32);
        // A zero SM count (never reported, but not a panic either) counts as one SM.
        assert_eq!(grid(1000, 64, 0, 0).grid, 32);
        let g = grid(5, 96, 1024, 2);
        assert_eq!((g.block, g.smem), (96, 1024));
        let c = LaunchConfig::from(g);
        assert_eq!(
            (c.grid_dim, c.block_dim, c.shared_mem_bytes),
            ((5, 1, 1), (96, 1, 1), 1024)
        );
    }

    #[test]
    fn elementwise_uses_256_threads_and_rounds_up() {
        assert_eq!(
            elementwise(1, 8),
            Launch {
                grid: 1,
                block: 256,
                smem: 0
            }
        );
        assert_eq!(elementwise(256, 8).grid, 1);
        assert_eq!(elementwise(257, 8).grid, 2);
        assert_eq!(elementwise(256 * 32 + 1, 1).grid, 32);
    }

    #[test]
    fn row_kernels_use_whole_warps_up_to_256() {
        assert_eq!(row_threads(0), 32);
        assert_eq!(row_threads(1), 32);
        assert_eq!(row_threads(33), 64);
        assert_eq!(row_threads(256), 256);
        assert_eq!(row_threads(300), 256);
        assert_eq!(
            rows(7, 24, 1),
            Launch {
                grid: 7,
                block: 32,
                smem: 0
            }
        );
        assert_eq!(rows(70, 24, 1).grid, 32);
    }

    #[test]
    fn interaction_stages_in_shared_memory_only_when_it_fits() {
        // 27 features of 64: 6912 bytes.
        let i = interaction(512, 27, 64, 132);
        assert!(i.use_smem);
        assert_eq!(
            i.launch,
            Launch {
                grid: 512,
                block: 128,
                smem: 27 * 64 * 4
            }
        );
        // Exactly 48 KiB fits; one float more does not.
        assert!(interaction(1, 12, 1024, 1).use_smem);
        let over = interaction(1, 12, 1025, 1);
        assert!(!over.use_smem);
        assert_eq!(over.launch.smem, 0);
        assert!(!interaction(1, usize::MAX, 2, 1).use_smem);
    }
}
