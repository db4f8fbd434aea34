//! A workload's requests generated and encoded for one target before measuring: per model
//! a pool of ready-to-send requests, and the weighted choice of the model.

use crate::target::Target;
use crate::workload::{RequestGenerator, Workload};
use anyhow::{Context, ensure};
use rand::distr::weighted::WeightedIndex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::Distribution;

/// One model's pre-encoded requests.
pub struct PreparedModel<E> {
    /// Model name.
    pub name: String,
    /// Encoded requests and their rows.
    pub pool: Vec<(E, usize)>,
}

/// A workload encoded for one target: ready to send, nothing left to compute.
pub struct Prepared<E> {
    /// Per model, in the workload's order.
    pub models: Vec<PreparedModel<E>>,
    /// Picks a model by weight.
    pub chooser: WeightedIndex<f64>,
}

impl<E> Prepared<E> {
    /// Picks a model by weight and one of its requests at random: (model, request) indices.
    pub fn pick(&self, rng: &mut impl Rng) -> (usize, usize) {
        let m = self.chooser.sample(rng);
        (m, rng.random_range(0..self.models[m].pool.len()))
    }
}

/// Generates and encodes `pool_size` requests per model for `target`.
pub fn prepare<T: Target>(target: &T, workload: &Workload) -> anyhow::Result<Prepared<T::Encoded>> {
    ensure!(
        !workload.models.is_empty(),
        "no model to benchmark (use --model NAME)"
    );
    let mut rng = StdRng::seed_from_u64(workload.seed);
    let mut models = Vec::new();
    for m in &workload.models {
        let generator = RequestGenerator::new(&m.config, workload.index, &mut rng)
            .with_context(|| format!("model '{}'", m.name))?;
        let limit = m.config.max_batch_size.max(1);
        let mut pool = Vec::with_capacity(workload.pool_size.max(1));
        for _ in 0..workload.pool_size.max(1) {
            let rows = workload.batch.sample(&mut rng).min(limit);
            let req = generator.generate(rows, &mut rng)?;
            pool.push((target.encode(&m.name, &req)?, rows));
        }
        models.push(PreparedModel {
            name: m.name.clone(),
            pool,
        });
    }
    let chooser = WeightedIndex::new(workload.models.iter().map(|m| m.weight))?;
    Ok(Prepared { models, chooser })
}
