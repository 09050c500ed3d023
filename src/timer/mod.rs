//! Deadlines of one core: the hierarchical [`TimingWheel`].
//!
//! Owns: ordering deadlines in O(1) per insert and cancel. Must not touch:
//! sockets, connections or the clock — time comes in as ticks.

mod wheel;

pub use wheel::{TimerKey, TimingWheel};
