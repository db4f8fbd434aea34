//! Helpers shared by the op tests: random inputs and the f64 activation reference.
#![allow(dead_code)]

use cohost_kernels::Activation;
use rand::Rng;
use rand::rngs::StdRng;

/// `n` values uniform in [-1, 1).
pub fn random(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The activation in f64, the reference the f32 ops are checked against.
pub fn act64(v: f64, act: Activation) -> f64 {
    match act {
        Activation::None => v,
        Activation::Relu => v.max(0.0),
        Activation::Sigmoid => 1.0 / (1.0 + (-v).exp()),
    }
}
