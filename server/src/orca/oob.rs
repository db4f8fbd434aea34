//! `xds.service.orca.v3.OpenRcaService/StreamCoreMetrics`: a report of the endpoint as a
//! whole every `report_interval` (at least [`MIN_REPORT_INTERVAL`]) until the client
//! cancels or the server shuts down.

use super::LoadReporter;
use cohost_protocol::xds::data::orca::v3::OrcaLoadReport;
use cohost_protocol::xds::service::orca::v3::OrcaLoadReportRequest;
use cohost_protocol::xds::service::orca::v3::open_rca_service_server::OpenRcaService;
use futures::Stream;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

/// The shortest interval between two reports on one stream (a shorter request is raised
/// to it): reports are sampled every 100 ms and averaged over a second.
pub const MIN_REPORT_INTERVAL: Duration = Duration::from_secs(1);

type ReportStream = Pin<Box<dyn Stream<Item = Result<OrcaLoadReport, Status>> + Send + 'static>>;

/// The out-of-band service: its reporter and the signal that ends every stream.
#[derive(Clone)]
pub struct OutOfBand {
    reporter: LoadReporter,
    stopping: watch::Receiver<bool>,
}

impl OutOfBand {
    /// The service over `reporter`; its streams end once `stopping` turns true.
    pub fn new(reporter: LoadReporter, stopping: watch::Receiver<bool>) -> Self {
        OutOfBand { reporter, stopping }
    }
}

/// The interval a request asks for, raised to [`MIN_REPORT_INTERVAL`].
fn interval(req: &OrcaLoadReportRequest) -> Duration {
    let asked = req.report_interval.as_ref().map_or(Duration::ZERO, |d| {
        let secs = u64::try_from(d.seconds).unwrap_or(0);
        let nanos = u32::try_from(d.nanos).unwrap_or(0).min(999_999_999);
        Duration::new(secs, nanos)
    });
    asked.max(MIN_REPORT_INTERVAL)
}

#[tonic::async_trait]
impl OpenRcaService for OutOfBand {
    type StreamCoreMetricsStream = ReportStream;

    async fn stream_core_metrics(
        &self,
        req: Request<OrcaLoadReportRequest>,
    ) -> Result<Response<ReportStream>, Status> {
        let mut ticker = tokio::time::interval(interval(req.get_ref()));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let state = (self.reporter.clone(), ticker, self.stopping.clone());
        let stream = futures::stream::unfold(state, |(reporter, mut ticker, mut stopping)| {
            async move {
                tokio::select! {
                    _ = ticker.tick() => {}
                    // Shutdown (or a server gone): end the stream so the drain can finish.
                    _ = stopping.wait_for(|stop| *stop) => return None,
                }
                let report = reporter.report(None);
                Some((Ok(report), (reporter, ticker, stopping)))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_has_a_floor() {
        let ask = |seconds, nanos| OrcaLoadReportRequest {
            report_interval: Some(prost_types_duration(seconds, nanos)),
            request_cost_names: vec![],
        };
        assert_eq!(
            interval(&OrcaLoadReportRequest::default()),
            MIN_REPORT_INTERVAL
        );
        assert_eq!(interval(&ask(0, 1_000_000)), MIN_REPORT_INTERVAL);
        assert_eq!(interval(&ask(-5, 0)), MIN_REPORT_INTERVAL);
        assert_eq!(
            interval(&ask(10, 500_000_000)),
            Duration::from_millis(10_500)
        );
    }

    fn prost_types_duration(seconds: i64, nanos: i32) -> cohost_protocol::prost_types::Duration {
        cohost_protocol::prost_types::Duration { seconds, nanos }
    }
}
