//! The request path: admission, queueing, waiting for the lane's answer, and the load
//! counter reported with every response.

use super::Runtime;
use crate::queue::{ModelQueue, Pending};
use crate::{Error, ErrorKind, InferRequest, InferResponse, LoadReport, Result, Tensor};
use cohost_models::Batch;
use std::sync::Arc;
use std::time::Instant;

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
        let mut work = 0.0;
        let (mut queued, mut in_flight) = (0, 0);
        let mut lanes = 1;
        for q in versions {
            work += q.outstanding_work();
            let (a, b) = q.counts();
            queued += a;
            in_flight += b;
            lanes = lanes.max(q.max_lanes);
        }
        let model_load = work / lanes as f64;
        let host_load = self.inner.scheduler.total_work() / self.lane_count().max(1) as f64;
        match versions.first() {
            Some(q) => {
                q.metrics.load.set(model_load);
                q.metrics.host_load(host_load);
            }
            None => crate::metrics::host_load(host_load),
        }
        LoadReport {
            model_load,
            host_load,
            queued,
            in_flight,
        }
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
        let deadline = request.timeout.map(|t| arrived + t);
        if let (Some(d), true) = (deadline, q.latency.is_calibrated()) {
            let predicted = q.outstanding_work() / q.max_lanes as f64 + q.latency.predict(rows);
            let budget = d.saturating_duration_since(Instant::now()).as_secs_f64();
            if predicted > budget {
                return Err(Submit::Failed(Error::overloaded(format!(
                    "model '{}' cannot answer within the request's timeout: {:.2} ms of work is ahead, {:.2} ms remain",
                    q.name,
                    predicted * 1e3,
                    budget * 1e3
                ))));
            }
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
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
        self.inner.scheduler.notify();
        let reply = match deadline {
            Some(d) => {
                let wait = d.saturating_duration_since(Instant::now());
                match tokio::time::timeout(wait, rx).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(Submit::Failed(Error::new(
                            ErrorKind::DeadlineExceeded,
                            format!("request to model '{}' timed out", q.name),
                        )));
                    }
                }
            }
            None => rx.await,
        };
        let reply =
            reply.map_err(|_| Error::unavailable("the runtime shut down before answering"))??;
        Ok((reply.outputs, reply.queue_seconds))
    }
}

/// Counts a failed request in the model's statistics and metrics.
fn count_failure(q: &ModelQueue, e: &Error, total_ns: u64) {
    q.stats.request(false, total_ns, 0);
    q.metrics.failure(e.kind.label());
}
