//! The scheduler's view of fair shares: each active model's weighted part of the lanes and
//! the work ahead of it, and which models are held back for using more than their share.

use super::Scheduler;
use super::policy::{Tenant, share_caps};
use crate::queue::{ModelQueue, SliceShare};
use std::sync::Arc;
use std::time::Instant;

impl Scheduler {
    /// Each queue's weighted share of the lanes among the recently active models (`active`,
    /// one flag per queue), and the other models' running work per lane when every lane is
    /// busy. Recent activity, not work at this instant, so that a model's share does not
    /// swing with which of its neighbours happen to have a request queued right now.
    pub(super) fn shares(
        &self,
        queues: &[Arc<ModelQueue>],
        active: &[bool],
        now: Instant,
    ) -> Vec<SliceShare> {
        let running: Vec<f64> = queues.iter().map(|q| q.running_work(now)).collect();
        let weight = |q: &ModelQueue| q.config.weight.max(1e-6);
        let active_weight: f64 = queues
            .iter()
            .zip(active)
            .filter(|(_, a)| **a)
            .map(|(q, _)| weight(q))
            .sum();
        let total_running: f64 = running.iter().sum();
        let lanes = self.lanes as f64;
        // Other models' running batches delay this one only when no lane is free.
        let all_busy = queues.iter().map(|q| q.lanes_busy()).sum::<usize>() >= self.lanes;
        queues
            .iter()
            .zip(&running)
            .map(|(q, &mine)| SliceShare {
                lane_share: if active_weight > 0.0 {
                    (lanes * weight(q) / active_weight).min(lanes)
                } else {
                    lanes
                },
                others_ahead: if all_busy {
                    (total_running - mine).max(0.0) / lanes
                } else {
                    0.0
                },
            })
            .collect()
    }

    /// For each queue, until when it is held back for using more than its share of the
    /// lanes (None: free to run). Only while two or more models are active.
    pub(super) fn share_caps(
        &self,
        queues: &[Arc<ModelQueue>],
        active: &[bool],
        now: Instant,
    ) -> Vec<Option<Instant>> {
        let Some(slack) = self.policy.share_cap() else {
            return vec![None; queues.len()];
        };
        let tenants: Vec<Tenant> = queues
            .iter()
            .zip(active)
            .map(|(q, &active)| Tenant {
                active,
                weight: q.config.weight,
                usage: if active { q.lane_usage(now) } else { 0.0 },
            })
            .collect();
        share_caps(slack, self.lanes, &tenants, now)
    }
}
