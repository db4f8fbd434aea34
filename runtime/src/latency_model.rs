//! The per-model latency fit: an online model `t(n) ≈ a + b·n` of a batch's seconds as
//! a function of its rows, learned from measured batches. Batching policies, deadline
//! admission and the load counter (predicted seconds of work per lane) read it.

use parking_lot::Mutex;

/// Samples before the fit is trusted over the prior.
const CALIBRATION_SAMPLES: u64 = 16;
/// Per-sample decay of old observations (≈ the last 200 batches dominate).
const DECAY: f64 = 0.995;
/// A sample more than this many times the prediction is clipped (robust to stalls).
const OUTLIER_FACTOR: f64 = 4.0;

#[derive(Debug, Clone, Copy)]
struct Fit {
    a: f64,
    b: f64,
    // Exponentially weighted sums for least squares of y on n.
    sw: f64,
    sn: f64,
    sy: f64,
    snn: f64,
    sny: f64,
    samples: u64,
}

impl Fit {
    /// `a + b·rows`.
    fn predict(&self, rows: usize) -> f64 {
        self.a + self.b * rows as f64
    }
}

/// Online estimate of a model's batch latency as a function of batch rows.
#[derive(Debug)]
pub struct LatencyModel {
    fit: Mutex<Fit>,
}

impl LatencyModel {
    /// A model with prior `t(n) = a + b·n` seconds, used until enough batches are seen.
    pub fn new(a: f64, b: f64) -> Self {
        LatencyModel {
            fit: Mutex::new(Fit {
                a,
                b,
                sw: 0.0,
                sn: 0.0,
                sy: 0.0,
                snn: 0.0,
                sny: 0.0,
                samples: 0,
            }),
        }
    }

    /// A prior from the model's FLOPs per row and an assumed lane speed.
    pub fn from_flops(flops_per_row: u64, flops_per_second: f64) -> Self {
        Self::new(50e-6, flops_per_row as f64 / flops_per_second)
    }

    /// Predicted seconds for a batch of `rows` rows.
    pub fn predict(&self, rows: usize) -> f64 {
        self.fit.lock().predict(rows)
    }

    /// `(a, b)` of the current fit.
    pub fn coefficients(&self) -> (f64, f64) {
        let f = self.fit.lock();
        (f.a, f.b)
    }

    /// [`LatencyModel::predict`] once the fit is calibrated, else None (one lock).
    pub fn calibrated_prediction(&self, rows: usize) -> Option<f64> {
        let f = self.fit.lock();
        (f.samples >= CALIBRATION_SAMPLES).then(|| f.predict(rows))
    }

    /// True once enough batches were measured to trust the fit.
    pub fn is_calibrated(&self) -> bool {
        self.fit.lock().samples >= CALIBRATION_SAMPLES
    }

    /// Learns from one measured batch of `rows` rows that took `seconds`.
    pub fn observe(&self, rows: usize, seconds: f64) {
        if !seconds.is_finite() || seconds < 0.0 {
            return;
        }
        let mut f = self.fit.lock();
        let n = rows as f64;
        let predicted = f.a + f.b * n;
        let y = if f.samples >= CALIBRATION_SAMPLES && predicted > 0.0 {
            seconds.min(OUTLIER_FACTOR * predicted)
        } else {
            seconds
        };
        f.sw = f.sw * DECAY + 1.0;
        f.sn = f.sn * DECAY + n;
        f.sy = f.sy * DECAY + y;
        f.snn = f.snn * DECAY + n * n;
        f.sny = f.sny * DECAY + n * y;
        f.samples += 1;
        let mean_n = f.sn / f.sw;
        let mean_y = f.sy / f.sw;
        let var_n = f.snn / f.sw - mean_n * mean_n;
        let (a, b) = if var_n > 1e-9 {
            let b = ((f.sny / f.sw - mean_n * mean_y) / var_n).max(0.0);
            ((mean_y - b * mean_n).max(0.0), b)
        } else {
            // One batch size seen so far: keep the slope, move the intercept.
            let b = f.b;
            ((mean_y - b * mean_n).max(0.0), b)
        };
        if f.samples >= 2 || a + b * n > 0.0 {
            f.a = a;
            f.b = b;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibrated_prediction_is_none_until_calibrated_then_the_prediction() {
        let m = LatencyModel::new(1e-4, 1e-5);
        assert_eq!(m.calibrated_prediction(3), None);
        for _ in 0..CALIBRATION_SAMPLES {
            m.observe(4, 1.4e-4);
        }
        assert!(m.is_calibrated());
        assert_eq!(m.calibrated_prediction(3), Some(m.predict(3)));
    }

    #[test]
    fn learns_a_linear_cost_and_resists_outliers() {
        let m = LatencyModel::new(1e-3, 1e-3);
        for i in 0..400 {
            let n = 1 + (i % 64);
            let t = 200e-6 + 10e-6 * n as f64;
            // every 50th batch stalls 100x
            let t = if i % 50 == 49 { t * 100.0 } else { t };
            m.observe(n, t);
        }
        let (a, b) = m.coefficients();
        assert!((b - 10e-6).abs() / 10e-6 < 0.25, "slope {b}");
        assert!(a > 50e-6 && a < 600e-6, "intercept {a}");
        assert!(m.is_calibrated());
        let p = m.predict(32);
        let truth = 200e-6 + 320e-6;
        assert!((p - truth).abs() / truth < 0.3, "predict {p} vs {truth}");
    }
}
