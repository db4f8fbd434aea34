//! cohost's load generator: open-loop Poisson and closed-loop load against HTTP (JSON or
//! binary), gRPC or the in-process runtime; the search for the maximum throughput under a
//! P99 target; reports as a markdown table, JSON, CSV and an SVG plot.
//!
//! The library API ([`measure`], [`find_max_rate`], [`search::search`]) is what `cohost
//! bench` runs, and what other tools (an oracle, policy comparisons) can call directly.

mod cli;
pub mod failure;
pub mod grpc;
pub mod http_client;
pub mod loadgen;
#[cfg(test)]
mod loadgen_tests;
pub mod oracle;
pub mod plot;
pub mod prepared;
pub mod profile;
pub mod report;
pub mod search;
pub mod server_side;
pub mod server_stats;
#[cfg(test)]
mod smoke_tests;
pub mod target;
pub mod workload;
pub mod zipf;

pub use cli::{BenchArgs, PacingKind, TargetKind, run};
pub use failure::FailKind;
pub use loadgen::{LoadMode, LoadSpec, Pacing, measure};
pub use prepared::{Prepared, prepare};
pub use report::{Recorder, Report, SendLateness, Stats};
pub use search::{SearchResult, SearchSpec, Step, find_max_rate};
pub use target::{HttpTarget, InProcessTarget, Target};
pub use workload::{BatchDist, GenRequest, ModelShare, Workload};
pub use zipf::IndexDist;
