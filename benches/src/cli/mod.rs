//! `cohost bench`: its arguments (`args`), running them (`run`), a model's configuration
//! from a server's metadata (`metadata`) and what gets printed (`print`).

mod args;
mod metadata;
mod print;
mod run;

pub use args::{BenchArgs, PacingKind, TargetKind};
pub use run::run;
