//! A measured run with the server's side of it: the load generator's [`Report`] plus what
//! the server's statistics and CPU totals, read before and after, say it did.

use crate::loadgen::LoadSpec;
use crate::prepared::Prepared;
use crate::report::Report;
use crate::server_stats;
use crate::target::Target;
use std::sync::Arc;

/// [`crate::measure`], with [`Report::server`] filled from the target's statistics read
/// before and after (left empty where the target cannot read them), and [`Report::cpu`]
/// from this process's CPU time and the server's `process_cpu_seconds_total`.
pub async fn measure<T: Target>(
    target: Arc<T>,
    prepared: Arc<Prepared<T::Encoded>>,
    spec: &LoadSpec,
) -> Report {
    let models: Vec<String> = prepared.models.iter().map(|m| m.name.clone()).collect();
    let before = target.server_stats().await;
    let server_cpu_before = target.server_cpu_seconds().await;
    let client_cpu_before = server_stats::process_cpu_seconds();
    let mut report = crate::loadgen::measure(target.clone(), prepared, spec).await;
    let client_cpu_after = server_stats::process_cpu_seconds();
    let server_cpu_after = target.server_cpu_seconds().await;
    if let (Some(b), Some(a)) = (before, target.server_stats().await) {
        let names: Vec<&str> = models.iter().map(String::as_str).collect();
        report.server = server_stats::window(&b, &a, &names);
        let requests = report.server.iter().map(|w| w.requests).sum();
        report.cpu = server_stats::cpu_window(
            requests,
            client_cpu_before.zip(client_cpu_after),
            server_cpu_before.zip(server_cpu_after),
            target.shares_process(),
        );
    }
    report
}
