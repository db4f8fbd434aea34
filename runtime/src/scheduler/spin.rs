//! When idle lanes spin for work instead of sleeping: [`SpinGate`] turns spinning off
//! while it does not pay; [`spin_wait`] is the spin itself.

use std::time::Instant;

/// Spins until `done()` holds or `until` passes, reading the clock every 64 polls and
/// yielding the CPU between rounds (the thread that would end the wait may need it);
/// whether `done()` held.
pub(crate) fn spin_wait(until: Instant, mut done: impl FnMut() -> bool) -> bool {
    loop {
        for _ in 0..64 {
            if done() {
                return true;
            }
            std::hint::spin_loop();
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::yield_now();
    }
}

/// Whether idle lanes have lately found work soon enough for a spin to pay. An idle period
/// (from a lane finding nothing to do to the next batch starting, on whichever lane) that
/// ends within twice the spin counts as a hit, whether a lane spun or slept meanwhile (so
/// arrivals a little further apart than the spin, which spinning would bring closer, still
/// count); once fewer than a quarter of recent idle periods are hits, lanes sleep at once
/// until arrivals pick up again.
#[derive(Debug, Clone, Copy)]
pub(super) struct SpinGate {
    /// Share of recent idle periods that ended in work within twice the spin, decaying.
    hit_rate: f64,
}

impl SpinGate {
    /// Below this share of hits, lanes stop spinning.
    const MIN_HIT_RATE: f64 = 0.25;
    /// Weight of the past in `hit_rate` (about the last 8 idle periods count).
    const KEEP: f64 = 0.875;

    pub(super) fn new() -> Self {
        SpinGate { hit_rate: 1.0 }
    }

    /// Whether a lane going idle now should spin.
    pub(super) fn admit(&self) -> bool {
        self.hit_rate >= Self::MIN_HIT_RATE
    }

    /// Learns whether an idle period ended in work soon enough (`hit`).
    pub(super) fn record(&mut self, hit: bool) {
        self.hit_rate = Self::KEEP * self.hit_rate + (1.0 - Self::KEEP) * f64::from(u8::from(hit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_stop_spinning_when_work_comes_late_and_start_again_when_it_comes_soon() {
        let mut gate = SpinGate::new();
        // Fresh: spin.
        assert!(gate.admit());
        // Ten idle periods in a row end late: 0.875^10 = 0.26, still over the bar.
        for _ in 0..10 {
            gate.record(false);
        }
        assert!(gate.admit());
        // The eleventh: 0.23, under it.
        gate.record(false);
        assert!(!gate.admit());
        // One idle period that ends soon (observed while sleeping) lifts it back over.
        gate.record(true);
        assert!(gate.admit());
    }

    #[test]
    fn idle_periods_that_end_soon_a_third_of_the_time_keep_lanes_spinning() {
        let mut gate = SpinGate::new();
        for i in 0..300 {
            gate.record(i % 3 == 0);
        }
        assert!(gate.admit(), "hit rate {}", gate.hit_rate);
    }
}
