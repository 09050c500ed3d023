//! Latency histograms of one core: how long an event-loop iteration takes
//! and how long a published message takes from its publish to the write
//! of its frames.
//!
//! Owns: the core-local histograms (recorded without locks on the hot
//! path) and their shared, merged copy that readers (the admin plane's
//! `/metrics`) lock. The core folds its local histograms into the shared
//! one at most once per [`MERGE_EVERY`], so the lock is taken once a
//! second, not per event. Must not touch: deciding what is measured (the
//! core does) or formatting (the admin plane does).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// How often a core folds its local histograms into the shared ones.
pub const MERGE_EVERY: Duration = Duration::from_secs(1);

/// Longest duration recorded, in nanoseconds (longer ones are clamped):
/// one minute.
const MAX_NS: u64 = 60_000_000_000;

/// The histograms of one core, in nanoseconds.
#[derive(Debug, Clone)]
pub struct LatencyHistograms {
    /// Busy time of one event-loop iteration (from `poll` returning to the
    /// next `poll`).
    pub loop_iteration: Histogram<u64>,
    /// From a publish entering the server (the admin API request or the
    /// client's message being handled) to the end of the loop iteration
    /// on a core that wrote its frames to the subscribers' sockets.
    pub publish_to_write: Histogram<u64>,
}

impl Default for LatencyHistograms {
    fn default() -> Self {
        let h = || Histogram::new_with_max(MAX_NS, 2).expect("valid histogram bounds");
        Self {
            loop_iteration: h(),
            publish_to_write: h(),
        }
    }
}

impl LatencyHistograms {
    /// Adds another core's (or a later interval's) counts into these.
    pub fn merge(&mut self, o: &LatencyHistograms) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.loop_iteration.add(&o.loop_iteration);
        let _ = self.publish_to_write.add(&o.publish_to_write);
    }

    fn reset(&mut self) {
        self.loop_iteration.reset();
        self.publish_to_write.reset();
    }
}

/// A core's recorder: local histograms plus the shared copy.
pub(crate) struct LatencyRecorder {
    local: LatencyHistograms,
    shared: Arc<Mutex<LatencyHistograms>>,
    next_merge: Instant,
}

fn ns(d: Duration) -> u64 {
    (d.as_nanos() as u64).clamp(1, MAX_NS)
}

impl LatencyRecorder {
    pub(crate) fn new(shared: Arc<Mutex<LatencyHistograms>>, now: Instant) -> Self {
        Self {
            local: LatencyHistograms::default(),
            shared,
            next_merge: now + MERGE_EVERY,
        }
    }

    /// One loop iteration took `d`.
    #[inline]
    pub(crate) fn loop_iteration(&mut self, d: Duration) {
        let _ = self.local.loop_iteration.record(ns(d));
    }

    /// A publish's frames were written `d` after it was published.
    #[inline]
    pub(crate) fn publish_to_write(&mut self, d: Duration) {
        let _ = self.local.publish_to_write.record(ns(d));
    }

    /// When the next merge is due, if there is anything to merge.
    pub(crate) fn pending_merge(&self) -> Option<Instant> {
        let empty = self.local.loop_iteration.is_empty() && self.local.publish_to_write.is_empty();
        (!empty).then_some(self.next_merge)
    }

    /// Folds the local counts into the shared histograms when due (or
    /// always, with `force`).
    pub(crate) fn maybe_merge(&mut self, now: Instant, force: bool) {
        if !force && now < self.next_merge {
            return;
        }
        self.next_merge = now + MERGE_EVERY;
        if self.local.loop_iteration.is_empty() && self.local.publish_to_write.is_empty() {
            return;
        }
        if let Ok(mut shared) = self.shared.lock() {
            shared.merge(&self.local);
        }
        self.local.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_counts_reach_the_shared_copy_only_when_merged() {
        let shared = Arc::new(Mutex::new(LatencyHistograms::default()));
        let t0 = Instant::now();
        let mut r = LatencyRecorder::new(shared.clone(), t0);
        r.loop_iteration(Duration::from_micros(3));
        r.publish_to_write(Duration::from_millis(2));
        r.maybe_merge(t0, false);
        assert_eq!(
            shared.lock().unwrap().loop_iteration.len(),
            0,
            "not due yet"
        );
        r.maybe_merge(t0 + MERGE_EVERY, false);
        let s = shared.lock().unwrap().clone();
        assert_eq!(s.loop_iteration.len(), 1);
        assert_eq!(s.publish_to_write.len(), 1);
        let p = s.publish_to_write.value_at_quantile(0.5);
        assert!(s.publish_to_write.equivalent(p, 2_000_000), "{p}");
        // Merged counts are not merged twice.
        r.maybe_merge(t0 + MERGE_EVERY * 3, true);
        assert_eq!(shared.lock().unwrap().loop_iteration.len(), 1);
    }

    #[test]
    fn zero_and_huge_durations_are_clamped_not_lost() {
        let shared = Arc::new(Mutex::new(LatencyHistograms::default()));
        let mut r = LatencyRecorder::new(shared.clone(), Instant::now());
        r.loop_iteration(Duration::ZERO);
        r.loop_iteration(Duration::from_secs(3600));
        r.maybe_merge(Instant::now(), true);
        assert_eq!(shared.lock().unwrap().loop_iteration.len(), 2);
    }
}
