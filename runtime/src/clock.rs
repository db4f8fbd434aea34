//! The time the runtime's policies read: the machine's monotonic clock, or a virtual one
//! that a discrete-event simulator moves forward.
//!
//! Policies compute with [`Instant`]s and differences between them, never with absolute
//! times, so a virtual clock is an [`Instant`] origin plus a count of nanoseconds that the
//! simulator sets: the queue, batching, scheduling, latency-fit and load-counter code runs
//! unchanged on either. The real clock is a unit variant, so reading it costs one
//! predictable branch on top of [`Instant::now`] (no lock, no dynamic call).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Where queues and the scheduler read "now".
#[derive(Debug, Clone, Default)]
pub enum Clock {
    /// The machine's monotonic clock ([`Instant::now`]).
    #[default]
    Real,
    /// A clock that moves only when its owner sets it.
    Virtual(Arc<VirtualClock>),
}

impl Clock {
    /// Now, as this clock reads it.
    #[inline]
    pub fn now(&self) -> Instant {
        match self {
            Clock::Real => Instant::now(),
            Clock::Virtual(v) => v.now(),
        }
    }
}

/// Virtual time: a fixed origin plus nanoseconds set by its owner (never moving backwards).
#[derive(Debug)]
pub struct VirtualClock {
    origin: Instant,
    nanos: AtomicU64,
}

impl VirtualClock {
    /// A virtual clock at 0 ns past an arbitrary origin.
    pub fn new() -> Self {
        VirtualClock {
            origin: Instant::now(),
            nanos: AtomicU64::new(0),
        }
    }

    /// Now: the origin plus the nanoseconds set so far.
    #[inline]
    pub fn now(&self) -> Instant {
        self.at(self.nanos.load(Ordering::Relaxed))
    }

    /// Nanoseconds past the origin now.
    pub fn nanos(&self) -> u64 {
        self.nanos.load(Ordering::Relaxed)
    }

    /// The instant `nanos` past the origin.
    #[inline]
    pub fn at(&self, nanos: u64) -> Instant {
        self.origin + Duration::from_nanos(nanos)
    }

    /// Nanoseconds from the origin to `t` (0 before it).
    pub fn nanos_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.origin).as_nanos() as u64
    }

    /// Moves the clock to `nanos` past the origin; an earlier time leaves it where it is.
    pub fn set(&self, nanos: u64) {
        self.nanos.fetch_max(nanos, Ordering::Relaxed);
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_clock_reads_what_was_set_and_never_goes_back() {
        let v = Arc::new(VirtualClock::new());
        let clock = Clock::Virtual(v.clone());
        let t0 = clock.now();
        v.set(1_500);
        assert_eq!(clock.now().duration_since(t0), Duration::from_nanos(1_500));
        v.set(1_000);
        assert_eq!(v.nanos(), 1_500);
        assert_eq!(v.nanos_of(v.at(42)), 42);
        // The real clock moves by itself.
        let r = Clock::Real.now();
        assert!(Clock::Real.now() >= r);
    }
}
