//! What the cores publish about themselves for everyone else to read:
//! counters and latency histograms, and the control plane's view of them.
//!
//! - [`counters`]: each core's counter cells and plain [`Stats`] snapshots.
//! - [`latency`]: each core's latency histograms (loop iteration,
//!   publish-to-write) and their once-a-second merged copy.
//! - [`view`]: [`StatsView`], the `Send + Clone` reader the admin plane and
//!   the binary's stats log hold.
//!
//! Owns: the shapes shared by the data plane (which writes them) and the
//! control plane (which reads them), so neither imports the other. Must
//! not touch: deciding what is counted (engine and hub) or formatting for
//! a reader (`/metrics`, `/api/stats` are the admin plane's).

pub mod counters;
pub mod latency;
pub mod view;

pub use counters::{CoreCounters, Counter, SharedCounter, Stats};
pub use latency::LatencyHistograms;
pub use view::StatsView;
