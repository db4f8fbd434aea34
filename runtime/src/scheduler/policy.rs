//! Cross-model scheduling policies: which of the ready batches a free lane takes. The
//! baseline ([`OldestFirst`]) sits next to the deadline-and-fair-share policy
//! ([`EdfFairShare`]), and the fair-share cap ([`share_caps`]) that holds back a model
//! over its share.

use std::time::{Duration, Instant};

/// A model whose queue has a batch ready, as a scheduling policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// When its oldest request arrived.
    pub oldest: Instant,
    /// The earliest deadline among its requests (or its latency target from `oldest`).
    pub deadline: Instant,
    /// Priority (higher first on ties).
    pub priority: i32,
    /// Weighted lane-seconds it consumed so far.
    pub virtual_time: f64,
    /// Predicted seconds of the batch it would run now (its latency model).
    pub predicted: f64,
}

/// Chooses which ready model a free lane serves.
pub trait SchedulePolicy: Send + Sync {
    /// Short name for logs and reports.
    fn name(&self) -> &'static str;
    /// Index into `ready` (never empty) of the model to serve.
    fn pick(&self, ready: &[Candidate]) -> usize;
    /// While two or more models are active, a model whose recent lane usage exceeds this
    /// multiple of its weighted share of the lanes starts no batch until it falls back
    /// (its excess queues, then is refused); None lets any model use idle lanes.
    fn share_cap(&self) -> Option<f64> {
        None
    }
}

/// First come, first served across models: the oldest waiting request wins.
#[derive(Debug, Default, Clone, Copy)]
pub struct OldestFirst;

impl SchedulePolicy for OldestFirst {
    fn name(&self) -> &'static str {
        "fifo"
    }
    fn pick(&self, ready: &[Candidate]) -> usize {
        (0..ready.len())
            .min_by_key(|&i| ready[i].oldest)
            .unwrap_or(0)
    }
}

/// Earliest deadline first among the models within `window` lane-seconds of the least
/// served one (weighted fair share), so a flooded model cannot starve the others; with
/// `share_cap`, a model over its share does not borrow idle lanes while others are active.
#[derive(Debug, Clone, Copy)]
pub struct EdfFairShare {
    /// How far ahead of the least-served model (weighted lane-seconds) a model may run.
    pub window: f64,
    /// See [`SchedulePolicy::share_cap`].
    pub share_cap: Option<f64>,
}

impl Default for EdfFairShare {
    fn default() -> Self {
        EdfFairShare {
            window: 0.05,
            share_cap: Some(1.25),
        }
    }
}

impl SchedulePolicy for EdfFairShare {
    fn name(&self) -> &'static str {
        if self.share_cap.is_some() {
            "edf-fair"
        } else {
            "edf-fair-work-conserving"
        }
    }
    fn share_cap(&self) -> Option<f64> {
        self.share_cap
    }
    fn pick(&self, ready: &[Candidate]) -> usize {
        let least = ready
            .iter()
            .map(|c| c.virtual_time)
            .fold(f64::INFINITY, f64::min);
        (0..ready.len())
            .filter(|&i| ready[i].virtual_time <= least + self.window)
            .min_by(|&a, &b| {
                let (x, y) = (&ready[a], &ready[b]);
                x.deadline
                    .cmp(&y.deadline)
                    .then(y.priority.cmp(&x.priority))
            })
            .unwrap_or(0)
    }
}

/// Which cross-model policy a runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ScheduleKind {
    /// Earliest deadline first within a weighted fair-share window, with a share cap:
    /// isolates tenants on a contended slice.
    #[default]
    EdfFair,
    /// The same without the share cap: any model may use idle lanes.
    EdfFairWorkConserving,
    /// The oldest waiting request first, across models: the baseline.
    Fifo,
}

impl ScheduleKind {
    /// Every kind with its name, as the CLI spells it.
    pub const ALL: [(ScheduleKind, &'static str); 3] = [
        (ScheduleKind::EdfFair, "edf-fair"),
        (
            ScheduleKind::EdfFairWorkConserving,
            "edf-fair-work-conserving",
        ),
        (ScheduleKind::Fifo, "fifo"),
    ];

    /// The policy object, for a scheduler built by hand.
    #[cfg(feature = "testing")]
    pub fn policy_object(self) -> Box<dyn SchedulePolicy> {
        self.policy()
    }

    /// The policy object.
    pub(crate) fn policy(self) -> Box<dyn SchedulePolicy> {
        match self {
            ScheduleKind::EdfFair => Box::new(EdfFairShare::default()),
            ScheduleKind::EdfFairWorkConserving => Box::new(EdfFairShare {
                share_cap: None,
                ..EdfFairShare::default()
            }),
            ScheduleKind::Fifo => Box::new(OldestFirst),
        }
    }
}

impl std::str::FromStr for ScheduleKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        ScheduleKind::ALL
            .iter()
            .find(|(_, n)| *n == s)
            .map(|(k, _)| *k)
            .ok_or_else(|| {
                let names: Vec<&str> = ScheduleKind::ALL.iter().map(|(_, n)| *n).collect();
                format!(
                    "unknown schedule policy '{s}' (one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// One model as the fair-share cap sees it.
#[derive(Debug, Clone, Copy)]
pub struct Tenant {
    /// Has work or had an arrival recently.
    pub active: bool,
    /// Fair-share weight.
    pub weight: f64,
    /// Lanes it kept busy recently (see [`crate::queue::usage::USAGE_TAU`]).
    pub usage: f64,
}

/// Until when each tenant is held back: while two or more are active, one whose usage
/// exceeds `slack` × its weighted share of `lanes` waits until its usage (decaying as
/// `exp(-t/τ)`) is back under that cap; None for the others.
pub fn share_caps(
    slack: f64,
    lanes: usize,
    tenants: &[Tenant],
    now: Instant,
) -> Vec<Option<Instant>> {
    let weight = |t: &Tenant| t.weight.max(1e-6);
    let active = tenants.iter().filter(|t| t.active);
    if active.clone().count() < 2 {
        return vec![None; tenants.len()];
    }
    let total: f64 = active.map(weight).sum();
    tenants
        .iter()
        .map(|t| {
            let cap = slack * lanes as f64 * weight(t) / total;
            (t.active && t.usage > cap).then(|| {
                now + Duration::from_secs_f64(crate::queue::usage::USAGE_TAU * (t.usage / cap).ln())
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(t0: Instant, oldest_us: u64, deadline_us: u64, vt: f64) -> Candidate {
        Candidate {
            oldest: t0 + Duration::from_micros(oldest_us),
            deadline: t0 + Duration::from_micros(deadline_us),
            priority: 0,
            virtual_time: vt,
            predicted: 0.0,
        }
    }

    fn tenant(active: bool, weight: f64, usage: f64) -> Tenant {
        Tenant {
            active,
            weight,
            usage,
        }
    }

    #[test]
    fn share_cap_holds_back_only_a_model_over_its_share_among_active_ones() {
        let now = Instant::now();
        let tau = crate::queue::usage::USAGE_TAU;
        // 4 active equal models on 2 lanes: share 0.5 lanes each, cap 1.25 x 0.5 = 0.625.
        let t = [
            tenant(true, 1.0, 0.1),
            tenant(true, 1.0, 0.2),
            tenant(true, 1.0, 0.6),
            tenant(true, 1.0, 1.0),
        ];
        let caps = share_caps(1.25, 2, &t, now);
        assert_eq!(&caps[..3], &[None, None, None]);
        let until = caps[3].expect("the model over its share is held back");
        let want = tau * (1.0f64 / 0.625).ln();
        assert!((until.duration_since(now).as_secs_f64() - want).abs() < 1e-6);
        // Alone (the others idle), any usage is allowed: no lane is kept idle for nobody.
        let t = [tenant(true, 1.0, 2.0), tenant(false, 1.0, 0.0)];
        assert_eq!(share_caps(1.25, 2, &t, now), vec![None, None]);
        // Weights: 3:1 on 2 lanes gives caps 1.875 and 0.625.
        let t = [tenant(true, 3.0, 1.8), tenant(true, 1.0, 0.7)];
        let caps = share_caps(1.25, 2, &t, now);
        assert!(caps[0].is_none() && caps[1].is_some(), "{caps:?}");
        // An inactive model is never held back (it has nothing to run).
        let t = [
            tenant(true, 1.0, 0.1),
            tenant(true, 1.0, 0.1),
            tenant(false, 1.0, 5.0),
        ];
        assert_eq!(share_caps(1.25, 2, &t, now), vec![None, None, None]);
    }

    #[test]
    fn fifo_picks_the_oldest_request() {
        let t0 = Instant::now();
        let c = [
            cand(t0, 30, 100, 0.0),
            cand(t0, 10, 900, 0.0),
            cand(t0, 20, 50, 0.0),
        ];
        assert_eq!(OldestFirst.pick(&c), 1);
    }

    #[test]
    fn edf_picks_earliest_deadline_within_fair_share() {
        let t0 = Instant::now();
        let p = EdfFairShare {
            window: 0.05,
            share_cap: None,
        };
        // All within the window: earliest deadline wins.
        let c = [
            cand(t0, 30, 100, 0.0),
            cand(t0, 10, 900, 0.01),
            cand(t0, 20, 50, 0.02),
        ];
        assert_eq!(p.pick(&c), 2);
        // The earliest deadline belongs to a model far ahead on lane time: skipped.
        let c = [
            cand(t0, 30, 100, 0.0),
            cand(t0, 10, 900, 0.01),
            cand(t0, 20, 50, 1.0),
        ];
        assert_eq!(p.pick(&c), 0);
    }
}
