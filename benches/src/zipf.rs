//! Sparse-index samplers: uniform or Zipf(α) over a table's rows, with the popularity
//! rank mapped to a row through a fixed per-table permutation so hot rows are spread out.

use rand::Rng;
use rand_distr::Distribution;

/// An affine bijection `rank ↦ (a·rank + b) mod n` with `gcd(a, n) = 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowPermutation {
    n: u64,
    a: u64,
    b: u64,
}

fn gcd(mut x: u64, mut y: u64) -> u64 {
    while y != 0 {
        (x, y) = (y, x % y);
    }
    x
}

impl RowPermutation {
    /// A permutation of `0..n` chosen by `rng` (deterministic for a seeded rng).
    pub fn new(n: u64, rng: &mut impl Rng) -> Self {
        assert!(n > 0, "a table has at least one row");
        if n == 1 {
            return RowPermutation { n, a: 1, b: 0 };
        }
        let b = rng.random_range(0..n);
        let mut a = rng.random_range(1..n);
        while gcd(a, n) != 1 {
            a = if a + 1 >= n { 1 } else { a + 1 };
        }
        RowPermutation { n, a, b }
    }

    /// The row a rank maps to.
    pub fn apply(&self, rank: u64) -> u64 {
        ((self.a as u128 * rank as u128 + self.b as u128) % self.n as u128) as u64
    }
}

/// How sparse indices are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IndexDist {
    /// Every row equally likely.
    Uniform,
    /// Rank `k` (1-based) has probability ∝ `k^-alpha`.
    Zipf(f64),
}

/// Draws row indices for one table.
#[derive(Debug, Clone)]
pub struct IndexSampler {
    rows: u64,
    zipf: Option<rand_distr::Zipf<f64>>,
    perm: RowPermutation,
}

impl IndexSampler {
    /// A sampler over `rows` rows; the permutation comes from `rng`.
    pub fn new(rows: u64, dist: IndexDist, rng: &mut impl Rng) -> anyhow::Result<Self> {
        anyhow::ensure!(rows > 0, "a table has no rows");
        let zipf = match dist {
            IndexDist::Uniform => None,
            IndexDist::Zipf(alpha) => Some(
                rand_distr::Zipf::new(rows as f64, alpha)
                    .map_err(|e| anyhow::anyhow!("--zipf {alpha}: {e}"))?,
            ),
        };
        Ok(IndexSampler {
            rows,
            zipf,
            perm: RowPermutation::new(rows, rng),
        })
    }

    /// A popularity rank in `0..rows` (0 = hottest).
    pub fn rank(&self, rng: &mut impl Rng) -> u64 {
        match &self.zipf {
            None => rng.random_range(0..self.rows),
            Some(z) => (z.sample(rng) as u64).clamp(1, self.rows) - 1,
        }
    }

    /// A row index: a rank mapped through this table's permutation.
    pub fn sample(&self, rng: &mut impl Rng) -> u64 {
        self.perm.apply(self.rank(rng))
    }

    /// The row the hottest rank maps to.
    pub fn hottest_row(&self) -> u64 {
        self.perm.apply(0)
    }
}

/// Theoretical probability of the top rank under Zipf(α) over `n` items: `1 / H(n, α)`.
pub fn zipf_top_probability(n: u64, alpha: f64) -> f64 {
    let h: f64 = (1..=n).map(|k| (k as f64).powf(-alpha)).sum();
    1.0 / h
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn permutation_is_a_bijection() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in [1u64, 2, 10, 97, 1000, 1024] {
            let p = RowPermutation::new(n, &mut rng);
            let mut seen = vec![false; n as usize];
            for r in 0..n {
                let row = p.apply(r) as usize;
                assert!(!seen[row], "n={n}: row {row} hit twice");
                seen[row] = true;
            }
        }
    }

    #[test]
    fn zipf_top_rank_frequency_matches_theory() {
        let mut rng = StdRng::seed_from_u64(1);
        let (n, alpha, draws) = (1000u64, 1.1, 200_000usize);
        let s = IndexSampler::new(n, IndexDist::Zipf(alpha), &mut rng).unwrap();
        let hot = s.hottest_row();
        let hits = (0..draws).filter(|_| s.sample(&mut rng) == hot).count();
        let freq = hits as f64 / draws as f64;
        let theory = zipf_top_probability(n, alpha);
        assert!(theory > 0.1, "theory {theory}");
        assert!(
            (freq - theory).abs() < 0.05 * theory,
            "top-rank frequency {freq} vs theory {theory}"
        );
        // Rank 2 should be hit about 2^-alpha as often as rank 1.
        let second = s.perm.apply(1);
        let hits2 = (0..draws).filter(|_| s.sample(&mut rng) == second).count() as f64;
        let ratio = hits2 / hits as f64;
        assert!(
            (ratio - 2f64.powf(-alpha)).abs() < 0.05,
            "rank-2/rank-1 ratio {ratio}"
        );
    }

    #[test]
    fn uniform_is_flat_and_hot_row_is_not_zero() {
        let mut rng = StdRng::seed_from_u64(3);
        let s = IndexSampler::new(10, IndexDist::Uniform, &mut rng).unwrap();
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            counts[s.sample(&mut rng) as usize] += 1;
        }
        for c in counts {
            assert!((c as f64 - 10_000.0).abs() < 500.0, "{counts:?}");
        }
        // Different tables get different permutations: hot rows are spread.
        let hots: std::collections::HashSet<u64> = (0..20)
            .map(|_| {
                IndexSampler::new(100_000, IndexDist::Zipf(1.0), &mut rng)
                    .unwrap()
                    .hottest_row()
            })
            .collect();
        assert!(hots.len() > 15, "hot rows {hots:?}");
    }
}
