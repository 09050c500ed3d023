//! Deadlines of one core: the hierarchical [`TimingWheel`].
//!
//! Owns: ordering deadlines, O(1) per insert and cancel, and handing back
//! the ones that are due. Must not touch: sockets, connections or the
//! clock — it knows nothing of what a value stands for, and time is passed
//! in as `u64` ticks (the core uses milliseconds since it started).

mod wheel;

pub use wheel::{TimerKey, TimingWheel};
