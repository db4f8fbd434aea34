//! The request path: admission, queueing, waiting for the lane's answer, and the load
//! counter reported with every response.

use super::Runtime;
use crate::queue::{ModelQueue, Pending, Reply};
use crate::scheduler::{Claimed, Scheduler, spin_wait};
use crate::{Error, ErrorKind, InferRequest, InferResponse, LoadReport, Result, Tensor};
use cohost_models::Batch;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Slack on top of twice the predicted batch time that a front-end thread spins for a
/// quick answer (see [`spin_for_reply`]).
const REPLY_SPIN_SLACK: Duration = Duration::from_micros(20);

/// Why a submission failed: refused at admission because its version closed (nothing
/// ran, so it may go to the successor), or anything else.
enum Submit {
    Closed(Error),
    Failed(Error),
}

impl From<Error> for Submit {
    fn from(e: Error) -> Self {
        Submit::Failed(e)
    }
}

impl Runtime {
    /// The model's load counter and the host's.
    pub fn load(&self, name: &str) -> Result<LoadReport> {
        let versions = self.inner.registry.versions(name);
        if versions.is_empty() {
            return Err(Error::not_found(format!("model '{name}' is not loaded")));
        }
        Ok(self.load_report(&versions))
    }

    fn load_report(&self, versions: &[Arc<ModelQueue>]) -> LoadReport {
        let report = self.inner.scheduler.load_report(versions);
        match versions.first() {
            Some(q) => {
                q.metrics.load.set(report.model_load);
                q.metrics.host_load(report.host_load);
            }
            None => crate::metrics::host_load(report.host_load),
        }
        report
    }

    /// Refuses a request to a model whose queue is full before the front end decodes
    /// its payload (counted like the runtime's own refusals); `Ok` lets it be submitted,
    /// and every other check, lookups included, is left to [`Runtime::infer`].
    pub fn refuse_if_full(&self, name: &str, version: Option<u64>) -> Result<()> {
        let Ok(q) = self.inner.registry.get(name, version) else {
            return Ok(());
        };
        match q.full() {
            None => Ok(()),
            Some(e) => {
                count_failure(&q, &e, 0);
                Err(e)
            }
        }
    }

    /// Runs one request through the model's queue, batcher and a lane.
    pub async fn infer(
        &self,
        name: &str,
        version: Option<u64>,
        request: InferRequest,
    ) -> Result<InferResponse> {
        let arrived = Instant::now();
        // While the device is being rebuilt no model is registered: say so, not 404.
        if let Some(e) = self.device_unavailable() {
            return Err(e);
        }
        let mut q = self.inner.registry.get(name, version)?;
        let mut result = self.submit(&q, &request, arrived).await;
        // The version we resolved may close between the lookup and the enqueue (a new
        // version taking over); a request for "the latest" then goes to its successor.
        // Only a refusal at admission is retried: nothing of the request ran.
        for _ in 0..3 {
            let Err(Submit::Closed(_)) = &result else {
                break;
            };
            if version.is_some() {
                break;
            }
            match self.inner.registry.get(name, None) {
                Ok(next) if !Arc::ptr_eq(&next, &q) => q = next,
                _ => break,
            }
            result = self.submit(&q, &request, arrived).await;
        }
        let result = result.map_err(|e| match e {
            Submit::Closed(e) | Submit::Failed(e) => e,
        });
        let id = request.id;
        let total = arrived.elapsed();
        let total_ns = total.as_nanos() as u64;
        match result {
            Ok((outputs, queue_seconds)) => {
                q.stats
                    .request(true, total_ns, (queue_seconds * 1e9) as u64);
                q.metrics.success.increment(1);
                q.metrics.request_duration.record(total.as_secs_f64());
                q.metrics.queue_duration.record(queue_seconds);
                Ok(InferResponse {
                    model_name: q.name.clone(),
                    model_version: q.version,
                    id,
                    outputs,
                    load: self.load_report(std::slice::from_ref(&q)),
                })
            }
            Err(e) => {
                count_failure(&q, &e, total_ns);
                Err(e)
            }
        }
    }

    async fn submit(
        &self,
        q: &Arc<ModelQueue>,
        request: &InferRequest,
        arrived: Instant,
    ) -> std::result::Result<(Vec<Tensor>, f64), Submit> {
        // A full queue refuses before the inputs are converted and checked.
        if let Some(e) = q.full() {
            return Err(Submit::Failed(e));
        }
        let (rows, inputs, outputs) = crate::validate::prepare(q, request)?;
        let batch = Batch { rows, inputs };
        q.model
            .check(&batch)
            .map_err(|e| Error::invalid(format!("model '{}': {e}", q.name)))?;
        // A deadline beyond what an Instant can represent is no deadline.
        let deadline = request.timeout.and_then(|t| arrived.checked_add(t));
        if let Some(e) = deadline.and_then(|d| q.refuse_late(rows, d, Instant::now())) {
            return Err(Submit::Failed(e));
        }
        let (tx, mut rx) = oneshot::channel();
        q.enqueue(Pending {
            rows,
            inputs: batch.inputs,
            outputs,
            enqueued: arrived,
            deadline,
            reply: tx,
        })
        .map_err(|e| {
            if q.is_closed() {
                Submit::Closed(e)
            } else {
                Submit::Failed(e)
            }
        })?;
        // A spinning lane takes this request at once: when its batch is predicted to take
        // microseconds, spin for the answer too instead of sleeping and being woken for it.
        let lane_waiting = self.inner.scheduler.lanes_spinning() > 0;
        // A quick batch ready now runs here, as a sleeping lane, and one that waits for
        // company may keep its timer here (no thread woken either way); else a lane is
        // woken for it.
        let mut placed = self.place(q, Some(rows));
        if placed == Placed::Yield {
            // Let the requests already readable on this front-end thread be queued first
            // (tokio runs a yielded task after it next polls for I/O), so they join this
            // batch. Cancelled meanwhile, the request is left to a lane.
            let kept = KeptByCaller {
                scheduler: &self.inner.scheduler,
                queue: q,
            };
            tokio::task::yield_now().await;
            std::mem::forget(kept);
            placed = self.place(q, None);
        }
        let timer = match placed {
            Placed::At(at) => Some(at),
            Placed::Done | Placed::Yield => None,
        };
        // Only then look at the model's latency (a lock round trip).
        let early = (lane_waiting && timer.is_none())
            .then(|| reply_spin(self.inner.options.lane_spin, q, rows))
            .flatten()
            .and_then(|limit| spin_for_reply(&mut rx, limit));
        let reply = match (early, deadline) {
            (Some(reply), _) => reply,
            (None, Some(d)) => {
                let wait = d.saturating_duration_since(Instant::now());
                match tokio::time::timeout(wait, self.answer(q, rx, timer)).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(Submit::Failed(self.timed_out(q)));
                    }
                }
            }
            (None, None) => self.answer(q, rx, timer).await,
        };
        let reply =
            reply.ok_or_else(|| Error::unavailable("the runtime shut down before answering"))??;
        Ok((reply.outputs, reply.queue_seconds))
    }
}

impl Runtime {
    /// After a request was queued on `q`: runs a quick batch of `q` here if one is ready
    /// (caller runs), else leaves it to the lanes; or says to come back at an instant (this
    /// caller keeps the batch's timer, [`Claimed::At`]) or, with `yield_for` (the request's
    /// rows), after a yield.
    fn place(&self, q: &Arc<ModelQueue>, yield_for: Option<usize>) -> Placed {
        let scheduler = &self.inner.scheduler;
        match catch_unwind(AssertUnwindSafe(|| scheduler.claim(q, yield_for))) {
            Ok(Claimed::Run(claim, work)) => {
                self.inner.lanes.run_as(claim.lane(), work);
                Placed::Done
            }
            Ok(Claimed::At(at)) => Placed::At(at),
            Ok(Claimed::Yield) => Placed::Yield,
            Ok(Claimed::Lanes) => Placed::Done,
            Err(panic) => {
                // Deciding in place failed (the lanes' own pass catches the same): leave
                // the request to a lane.
                tracing::error!(
                    model = %q.name,
                    "scheduling a request in place panicked: {}",
                    crate::panic::panic_message(&*panic)
                );
                scheduler.notify_queue(q);
                Placed::Done
            }
        }
    }

    /// The answer to a queued request (None: dropped unanswered). Meanwhile, while `at` is
    /// set, keeps `q`'s batching timer: claims again when it ends, and leaves the queue to
    /// the lanes when it cannot (a timer failing, too many rounds, this future dropped).
    async fn answer(
        &self,
        q: &Arc<ModelQueue>,
        mut rx: oneshot::Receiver<Result<Reply>>,
        mut at: Option<Instant>,
    ) -> Option<Result<Reply>> {
        let scheduler = &self.inner.scheduler;
        let mut rounds = 0;
        while let Some(when) = at {
            let kept = KeptByCaller {
                scheduler,
                queue: q,
            };
            tokio::select! {
                biased;
                reply = &mut rx => {
                    std::mem::forget(kept);
                    return reply.ok();
                }
                woke = crate::timer::sleep_until(when) => {
                    std::mem::forget(kept);
                    rounds += 1;
                    at = match woke {
                        // Taken meanwhile (by a lane, or a caller whose timer ended first).
                        Ok(()) if !q.has_queued() => None,
                        Ok(()) if rounds < MAX_TIMER_ROUNDS => match self.place(q, None) {
                            Placed::At(at) => Some(at),
                            Placed::Done | Placed::Yield => None,
                        },
                        Ok(()) => {
                            scheduler.notify_queue(q);
                            None
                        }
                        Err(e) => {
                            tracing::warn!(model = %q.name, "a batching timer failed ({e}); left to the lanes");
                            scheduler.notify_queue(q);
                            None
                        }
                    };
                }
            }
        }
        rx.await.ok()
    }
}

/// What [`Runtime::place`] left the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    /// Run here, or left to the lanes.
    Done,
    /// Its timer is this caller's: claim again at this instant.
    At(Instant),
    /// Yield, then place again.
    Yield,
}

/// Most times one request's caller keeps its queue's timer before leaving it to the lanes
/// (each round ends with a claim: a batch taken, or a later instant for a newer request).
const MAX_TIMER_ROUNDS: u32 = 4;

/// A queued request whose placing a caller still owes (its batching timer kept, or a yield
/// before its claim); dropped unfinished (the request's future cancelled, its deadline
/// passed), it wakes a lane for the queue instead.
struct KeptByCaller<'a> {
    scheduler: &'a Scheduler,
    queue: &'a Arc<ModelQueue>,
}

impl Drop for KeptByCaller<'_> {
    fn drop(&mut self) {
        self.scheduler.notify_queue(self.queue);
    }
}

impl Runtime {
    /// The error of a request whose deadline passed before its answer: it says so when a
    /// batch of the model is overrunning (a forward that has not returned).
    fn timed_out(&self, q: &ModelQueue) -> Error {
        let overrun = self.inner.options.overrun();
        let message = match overrun.worst(q, Instant::now()) {
            Some((ran, predicted)) => format!(
                "request to model '{}' timed out: a batch of this model has been running for {:.1} s, over {}x its predicted {:.2} ms, and has not returned",
                q.name,
                ran.as_secs_f64(),
                overrun.factor,
                predicted * 1e3
            ),
            None => format!("request to model '{}' timed out", q.name),
        };
        Error::new(ErrorKind::DeadlineExceeded, message)
    }
}

/// How long to spin for the answer to a request of `rows` rows that a spinning lane takes
/// at once: twice its predicted batch time and some slack, if that is within the lanes'
/// own spin; None when the lanes do not spin, the model's times are not learnt yet, or
/// its batches take too long to be worth a spinning front-end thread.
fn reply_spin(lane_spin: Duration, q: &ModelQueue, rows: usize) -> Option<Duration> {
    if lane_spin.is_zero() {
        return None;
    }
    let predicted = q.latency.calibrated_prediction(rows)?;
    let expected = Duration::try_from_secs_f64(predicted.max(0.0)).ok()?;
    Some(expected * 2 + REPLY_SPIN_SLACK).filter(|limit| *limit <= lane_spin)
}

/// The answer, if it arrives (or the lane drops it) within `limit`; spins meanwhile,
/// yielding the CPU now and then (the lane computing the answer may be waiting for it).
/// `Some(None)`: the sender was dropped unanswered.
fn spin_for_reply<T>(rx: &mut oneshot::Receiver<T>, limit: Duration) -> Option<Option<T>> {
    let mut answer = None;
    spin_wait(Instant::now() + limit, || match rx.try_recv() {
        Ok(reply) => {
            answer = Some(Some(reply));
            true
        }
        Err(oneshot::error::TryRecvError::Closed) => {
            answer = Some(None);
            true
        }
        Err(oneshot::error::TryRecvError::Empty) => false,
    });
    answer
}

/// Counts a failed request in the model's statistics and metrics.
fn count_failure(q: &ModelQueue, e: &Error, total_ns: u64) {
    q.stats.request(false, total_ns, 0);
    q.metrics.failure(e.kind.label());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_spin_returns_the_answer_sent_meanwhile() {
        let (tx, mut rx) = oneshot::channel();
        let sender = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(5));
            tx.send(7u32).unwrap();
        });
        // Generous limit: the answer comes long before it.
        assert_eq!(
            spin_for_reply(&mut rx, Duration::from_secs(30)),
            Some(Some(7))
        );
        sender.join().unwrap();
    }

    #[test]
    fn a_reply_spin_reports_a_dropped_sender() {
        let (tx, mut rx) = oneshot::channel::<u32>();
        drop(tx);
        assert_eq!(spin_for_reply(&mut rx, Duration::from_secs(30)), Some(None));
    }

    #[tokio::test]
    async fn a_reply_spin_gives_up_at_its_limit_and_the_answer_can_still_be_awaited() {
        let (tx, mut rx) = oneshot::channel();
        assert_eq!(spin_for_reply(&mut rx, Duration::from_micros(200)), None);
        tx.send(3u32).unwrap();
        assert_eq!(rx.await.unwrap(), 3);
    }
}
