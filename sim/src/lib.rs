//! cohost-sim: the runtime's own batching policies, scheduler (EDF + fair share, lane
//! caps, refusals), latency fit and load counter, driven on a virtual clock by a
//! discrete-event loop, from one slice (`run`) to a fleet behind a router (`fleet`).
//! Lanes take a profile's `t(n)` per batch (`profile`); the same seed gives the same
//! report, bit for bit.

pub mod events;
pub mod fleet;
pub mod plot;
pub mod policy;
pub mod profile;
pub mod run;
pub mod slice;
pub mod tally;
pub mod transition;

pub use fleet::{FleetReport, FleetSpec, Freshness, Router};
pub use policy::Batching;
pub use profile::{Cost, Point, Profile};
pub use run::{ArrivalKind, Goal, Peak, SliceReport, SliceRun, lane_speed, run, search};
pub use slice::{ModelSpec, Slice};
