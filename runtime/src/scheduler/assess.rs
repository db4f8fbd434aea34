//! One scheduling pass's look at a queue: whether its batching policy has a batch ready
//! (and the candidate it offers the cross-model policy), and the active-set rescan.

use super::State;
use super::policy::Candidate;
use crate::Error;
use crate::batcher::Decision;
use crate::panic::panic_message;
use crate::queue::{ModelQueue, SliceShare};
use std::any::Any;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Drops drained queues and puts every queue with work or a recent arrival in the active
/// set (after a wake-up that named no queue).
pub(super) fn rescan(state: &mut State, now: Instant) {
    state.queues.retain(|q| !q.is_drained());
    let State { queues, active, .. } = state;
    for q in queues.iter() {
        if q.recently_active(now) && !active.iter().any(|a| Arc::ptr_eq(a, q)) {
            active.push(q.clone());
        }
    }
}

/// One queue's state for this scheduling pass.
pub(super) enum Assessment {
    /// A batch of at most this many rows may run now.
    Ready(usize, Candidate),
    /// Nothing to run before this instant (or a new request).
    WaitUntil(Instant),
}

/// Asks a queue's batching policy (or, at shutdown, nobody) whether a batch is ready;
/// None when the queue is empty.
pub(super) fn assess(
    q: &ModelQueue,
    now: Instant,
    share: SliceShare,
    shutdown: bool,
) -> Option<Assessment> {
    let (view, deadline) = q.view(now, share)?;
    let decision = if shutdown {
        Decision::Ready(q.max_rows)
    } else {
        q.policy.decide(&view)
    };
    Some(match decision {
        Decision::Ready(limit) => {
            let target = q
                .config
                .batching
                .p99_target_ms
                .map(|ms| view.oldest + Duration::from_secs_f64(ms / 1e3))
                .unwrap_or(deadline);
            Assessment::Ready(
                limit,
                Candidate {
                    oldest: view.oldest,
                    deadline: target.min(deadline),
                    priority: q.config.priority,
                    virtual_time: q.virtual_time(),
                    predicted: view.latency.predict(limit.min(view.rows).max(1)),
                },
            )
        }
        Decision::WaitUntil(t) => Assessment::WaitUntil(t),
    })
}

/// Deciding `q`'s batch panicked: fails its oldest request so the next pass moves on;
/// false when it had none.
#[cold]
pub(super) fn decision_panicked(q: &ModelQueue, panic: &(dyn Any + Send)) -> bool {
    let msg = panic_message(panic);
    tracing::error!(
        model = %q.name,
        version = q.version,
        policy = q.policy.name(),
        "deciding a batch panicked: {msg}; failing the oldest request"
    );
    q.fail_oldest(Error::internal(format!(
        "model '{}' could not be scheduled: deciding its batch panicked: {msg}",
        q.name
    )))
}
