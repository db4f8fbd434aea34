//! The snapshot transition budget: a new version of a model that already serves loads
//! beside the old one and takes the unversioned traffic only while the slice's utilization
//! is below [`RuntimeOptions::transition_budget`](super::RuntimeOptions::transition_budget)
//! (or once [`RuntimeOptions::transition_max_wait`](super::RuntimeOptions::transition_max_wait)
//! has passed); then the old version stops taking requests, drains and is unloaded.
//!
//! The check runs on a supervisor thread that ticks every [`TRANSITION_TICK`] while a
//! transition waits and sleeps otherwise, not on the lanes' scheduling passes: a pass runs
//! only when requests arrive or batches finish, so an idle slice (the best moment to switch)
//! would never look; a switch takes the load lock and retires queues, work a lane must not
//! do between batches; and with no transition waiting the requests and passes pay nothing.
//! A tick delays a switch by at most [`TRANSITION_TICK`], nothing next to a model's load.

use super::{Inner, Runtime};
use parking_lot::{Condvar, Mutex};
use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// How often the supervisor looks at waiting transitions.
pub const TRANSITION_TICK: Duration = Duration::from_millis(10);

/// Default of [`RuntimeOptions::transition_max_wait`](super::RuntimeOptions::transition_max_wait):
/// a transition waiting this long proceeds anyway, so a saturated slice still rolls over.
pub const DEFAULT_TRANSITION_MAX_WAIT: Duration = Duration::from_secs(60);

/// Where the transition budget reads the slice's utilization, 0 (idle) to 1 (every lane
/// busy). The runtime's own source is the scheduler's recent lane usage (see
/// [`Runtime::utilization`]); tests and embedders may supply another.
pub trait SliceUtilization: Send + Sync {
    /// The slice's utilization now, 0 to 1.
    fn utilization(&self) -> f64;
}

/// An optional [`SliceUtilization`] in [`RuntimeOptions`](super::RuntimeOptions) (None: the
/// scheduler's lane usage).
#[derive(Clone, Default)]
pub struct UtilizationSource(pub Option<Arc<dyn SliceUtilization>>);

impl std::fmt::Debug for UtilizationSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "UtilizationSource(custom)"
        } else {
            "UtilizationSource(scheduler)"
        })
    }
}

/// How a transition ended (the `outcome` label of `cohost_transitions_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionOutcome {
    /// The slice was below the budget (at once or after waiting): the new version took over.
    BelowBudget,
    /// The maximum wait passed with the slice still at or above the budget: it took over anyway.
    MaxWait,
    /// Another load of the model replaced the waiting one before it switched.
    Superseded,
    /// The model was unloaded while its transition waited.
    Unloaded,
}

impl TransitionOutcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            TransitionOutcome::BelowBudget => "below_budget",
            TransitionOutcome::MaxWait => "max_wait",
            TransitionOutcome::Superseded => "superseded",
            TransitionOutcome::Unloaded => "unloaded",
        }
    }
}

/// A transition waiting for the slice to drop below the budget.
struct Waiting {
    /// The version that keeps the unversioned traffic meanwhile.
    from: u64,
    /// The version that takes it over.
    to: u64,
    /// The versions to keep loaded after the switch (None: all).
    keep: Option<Vec<u64>>,
    since: Instant,
}

#[derive(Default)]
struct State {
    waiting: BTreeMap<String, Waiting>,
    finished: Vec<(String, TransitionOutcome)>,
    stop: bool,
}

/// The runtime's waiting transitions and its supervisor's wake-up.
#[derive(Default)]
pub(super) struct Transitions {
    state: Mutex<State>,
    wake: Condvar,
}

impl Transitions {
    /// Stops the supervisor thread (the runtime is going away).
    pub(super) fn stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_all();
    }

    /// Starts the supervisor thread of the runtime behind `inner`; it ends with the runtime.
    pub(super) fn supervise(self: &Arc<Self>, inner: Weak<Inner>) -> std::io::Result<()> {
        let me = self.clone();
        std::thread::Builder::new()
            .name("cohost-transitions".into())
            .spawn(move || me.run(inner))
            .map(drop)
    }

    fn run(&self, inner: Weak<Inner>) {
        loop {
            {
                let mut s = self.state.lock();
                if s.stop {
                    return;
                }
                if s.waiting.is_empty() {
                    self.wake.wait(&mut s);
                    continue;
                }
                self.wake.wait_for(&mut s, TRANSITION_TICK);
                if s.stop {
                    return;
                }
            }
            let Some(inner) = inner.upgrade() else {
                return;
            };
            Runtime { inner }.check_transitions(Instant::now());
        }
    }

    fn count(&self) -> usize {
        self.state.lock().waiting.len()
    }

    /// Takes `name`'s waiting transition out, if any (with `since`: only the one that
    /// began then, not one a later load put in its place).
    fn take(&self, name: &str, since: Option<Instant>) -> Option<Waiting> {
        let mut s = self.state.lock();
        if since.is_some() && s.waiting.get(name).map(|w| w.since) != since {
            return None;
        }
        let w = s.waiting.remove(name);
        drop(s);
        if w.is_some() {
            crate::metrics::transitions_waiting(-1.0);
        }
        w
    }

    fn record(&self, name: &str, outcome: TransitionOutcome) {
        crate::metrics::transition_finished(name, outcome.label());
        let mut s = self.state.lock();
        // Kept for `Runtime::transitions_finished`, the latest few hundred.
        if s.finished.len() >= 256 {
            s.finished.remove(0);
        }
        s.finished.push((name.to_string(), outcome));
    }
}

/// The transition budget's decision for one waiting transition: switch now because the
/// slice's utilization `u` is below `budget` (`BelowBudget`), or because it has waited
/// `waited` ≥ `max_wait` (`MaxWait`), or keep waiting (None). The supervisor's tick decides
/// with it; the simulator calls it with its virtual clock's times.
pub fn transition_decision(
    u: f64,
    budget: f64,
    waited: Duration,
    max_wait: Duration,
) -> Option<TransitionOutcome> {
    if u < budget {
        Some(TransitionOutcome::BelowBudget)
    } else if waited >= max_wait {
        Some(TransitionOutcome::MaxWait)
    } else {
        None
    }
}

impl Runtime {
    /// The slice's utilization as the transition budget sees it, 0 to 1: by default the
    /// lanes kept busy over the last half second or so (the scheduler's recent lane usage,
    /// the figure fair shares use) over all lanes.
    pub fn utilization(&self) -> f64 {
        let u = match &self.inner.options.utilization.0 {
            Some(source) => source.utilization(),
            None => self.inner.scheduler.utilization(),
        };
        if u.is_nan() { 1.0 } else { u.clamp(0.0, 1.0) }
    }

    /// Version transitions waiting now for the slice to drop below the budget (the
    /// `cohost_transitions_waiting` gauge's share of this runtime).
    pub fn transitions_waiting(&self) -> usize {
        self.inner.transitions.count()
    }

    /// The transitions finished so far (the latest 256): model and outcome, oldest first.
    pub fn transitions_finished(&self) -> Vec<(String, TransitionOutcome)> {
        self.inner.transitions.state.lock().finished.clone()
    }

    /// After a load installed versions of `name`: routes its unversioned requests and
    /// retires the versions not in `keep` (None: keep all). `serving` is the version that
    /// took the unversioned requests before the load. Without a budget, or with the slice
    /// below it, that happens at once; otherwise `serving` keeps the unversioned requests
    /// and stays loaded until the supervisor switches. The caller holds the load lock.
    pub(super) fn settle(&self, name: &str, serving: Option<u64>, keep: Option<Vec<u64>>) {
        let registry = &self.inner.registry;
        let target = registry.highest(name);
        self.end_waiting(
            name,
            TransitionOutcome::Superseded,
            "superseded by another load",
        );
        let changes = serving.is_some() && target.is_some() && serving != target;
        let wait = match (self.inner.options.transition_budget, changes) {
            (Some(budget), true) => {
                let u = self.utilization();
                if u < budget {
                    self.inner
                        .transitions
                        .record(name, TransitionOutcome::BelowBudget);
                    tracing::info!(
                        model = name,
                        from = serving,
                        to = target,
                        utilization = u,
                        "transition: slice below the budget, switching at once"
                    );
                    None
                } else {
                    serving
                }
            }
            _ => None,
        };
        let wanted = |v: u64| keep.as_ref().is_none_or(|k| k.contains(&v));
        for q in registry.versions(name) {
            if !wanted(q.version) && Some(q.version) != wait {
                self.retire(name, q.version);
            }
        }
        registry.pin(name, wait);
        if let (Some(from), Some(to)) = (wait, target) {
            let mut s = self.inner.transitions.state.lock();
            s.waiting.insert(
                name.to_string(),
                Waiting {
                    from,
                    to,
                    keep,
                    since: Instant::now(),
                },
            );
            crate::metrics::transitions_waiting(1.0);
            self.inner.transitions.wake.notify_all();
            drop(s);
            tracing::info!(
                model = name,
                from,
                to,
                budget = self.inner.options.transition_budget.unwrap_or(1.0),
                utilization = self.utilization(),
                max_wait_s = self.inner.options.transition_max_wait.as_secs_f64(),
                "transition waiting: the slice is at or above the budget; the old version keeps the unversioned traffic"
            );
        }
    }

    /// Drops `name`'s waiting transition because the model is being unloaded.
    pub(super) fn cancel_transition(&self, name: &str) {
        self.end_waiting(name, TransitionOutcome::Unloaded, "dropped: model unloaded");
    }

    /// Ends `name`'s waiting transition, if any, without switching: logged and counted.
    fn end_waiting(&self, name: &str, outcome: TransitionOutcome, why: &str) {
        if let Some(w) = self.inner.transitions.take(name, None) {
            tracing::info!(model = name, from = w.from, to = w.to, "transition {why}");
            self.inner.transitions.record(name, outcome);
        }
    }

    /// Switches every waiting transition that may go now: the slice is below the budget,
    /// or it waited [`RuntimeOptions::transition_max_wait`](super::RuntimeOptions::transition_max_wait).
    fn check_transitions(&self, now: Instant) {
        let Some(budget) = self.inner.options.transition_budget else {
            return;
        };
        let u = self.utilization();
        let max_wait = self.inner.options.transition_max_wait;
        let due: Vec<(String, Instant, TransitionOutcome)> = {
            let s = self.inner.transitions.state.lock();
            s.waiting
                .iter()
                .filter_map(|(name, w)| {
                    let waited = now.saturating_duration_since(w.since);
                    transition_decision(u, budget, waited, max_wait)
                        .map(|outcome| (name.clone(), w.since, outcome))
                })
                .collect()
        };
        for (name, since, outcome) in due {
            let _guard = self.inner.load_lock.lock();
            // A load or unload may have settled or replaced it meanwhile.
            let Some(w) = self.inner.transitions.take(&name, Some(since)) else {
                continue;
            };
            self.inner.registry.pin(&name, None);
            for q in self.inner.registry.versions(&name) {
                if w.keep.as_ref().is_some_and(|k| !k.contains(&q.version)) {
                    self.retire(&name, q.version);
                }
            }
            self.inner.transitions.record(&name, outcome);
            tracing::info!(
                model = %name,
                from = w.from,
                to = w.to,
                waited_ms = now.saturating_duration_since(w.since).as_millis() as u64,
                utilization = u,
                budget,
                outcome = outcome.label(),
                "transition: the new version takes the unversioned traffic; the old one drains"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decision_switches_below_the_budget_or_after_the_maximum_wait() {
        let ms = Duration::from_millis;
        let d = |u, w| transition_decision(u, 0.5, ms(w), ms(100));
        assert_eq!(d(0.49, 0), Some(TransitionOutcome::BelowBudget));
        assert_eq!(d(0.5, 0), None, "at the budget it waits");
        assert_eq!(d(0.9, 99), None);
        assert_eq!(d(0.9, 100), Some(TransitionOutcome::MaxWait));
        assert_eq!(d(0.1, 500), Some(TransitionOutcome::BelowBudget));
    }
}
