//! What `cohost bench` prints while and after it measures: search steps and server-side
//! tables.

use crate::report::{self, Report};
use crate::search::Step;
use crate::server_stats;

/// Prints the server-side table of `report`, when the server's statistics were read.
pub fn print_server_side(report: &Report) {
    if !report.server.is_empty() {
        println!(
            "\nserver side at {:.1} req/s offered (its statistics over warm-up and window):\n{}",
            report.offered,
            server_stats::markdown(&report.server)
        );
    }
    if let Some(cpu) = &report.cpu {
        println!("{}", server_stats::cpu_line(cpu));
    }
}

/// One line for a search step: offered and achieved rates, percentiles, errors, verdict.
pub fn step_line(i: usize, s: &Step) -> String {
    let o = &s.report.overall;
    format!(
        "step {i:>2} {:<6} offered {:>9.1} req/s  achieved {:>9.1} req/s  p50 {:>8.3} ms  p99 {:>8.3} ms  errors {:.3}% {}  {}",
        s.phase,
        s.rate,
        o.throughput,
        o.p50_ms,
        o.p99_ms,
        o.error_rate * 100.0,
        report::errors_line(o),
        if s.pass { "PASS" } else { "FAIL" }
    )
}
