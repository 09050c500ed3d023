//! The control plane's read-only view of every core's published numbers.
//!
//! Owns: gathering per-core counter snapshots and latency histograms, and
//! asking each core for the bytes it has queued (the one figure a core
//! does not publish by itself). Must not touch: the cells (only reads
//! them), a core's state (only its inbox, never waiting on a full one).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::counters::Stats;
use super::latency::LatencyHistograms;
use crate::inbox::{Command, CoreHandle};

/// A `Send + Clone` reader of every core's counters and histograms.
#[derive(Clone)]
pub struct StatsView {
    cores: Arc<[CoreHandle]>,
}

impl StatsView {
    /// The view of `cores`.
    pub fn new(cores: Arc<[CoreHandle]>) -> Self {
        Self { cores }
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// Counters of each core, in core order.
    pub fn per_core(&self) -> Vec<Stats> {
        self.cores.iter().map(|c| c.counters().snapshot()).collect()
    }

    /// Counters summed over all cores.
    pub fn total(&self) -> Stats {
        let mut total = Stats::default();
        for s in self.per_core() {
            total.merge(&s);
        }
        total
    }

    /// Each core's latency histograms as last merged (once a second).
    pub fn latency(&self) -> Vec<LatencyHistograms> {
        self.cores.iter().map(|c| c.latency()).collect()
    }

    /// Bytes queued for writing on each core, asked of every core and
    /// waited for until `timeout`; `None` for a core that did not answer
    /// in time or whose inbox was full.
    pub fn queued_bytes(&self, timeout: Duration) -> Vec<Option<u64>> {
        let asked: Vec<_> = self
            .cores
            .iter()
            .map(|c| {
                let (tx, rx) = crossbeam_channel::bounded(1);
                c.try_send(Command::QueryQueued { reply: tx })
                    .ok()
                    .map(|()| rx)
            })
            .collect();
        let deadline = Instant::now() + timeout;
        asked
            .into_iter()
            .map(|rx| rx?.recv_deadline(deadline).ok())
            .collect()
    }
}
