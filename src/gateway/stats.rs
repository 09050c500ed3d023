//! The gateway's counters: backend calls by route and outcome, their
//! latency, and what became of `$connect`s and `$disconnect`s; read by
//! `/metrics` as a [`Snapshot`].
//!
//! Owns: the cells and the snapshot. Route labels are configured route
//! keys (`$connect`, `$disconnect`, `$default` and `[[gateway.routes]]`),
//! never a client's text, so the label set is bounded. Must not touch:
//! the metric names (`admin::metrics`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use super::backend::CallError;
use super::events::LinkCounters;

/// The gateway's counters (any task writes them).
pub struct Stats {
    calls: Mutex<BTreeMap<(String, String), u64>>,
    /// Backend call latency, in nanoseconds.
    latency: Mutex<Histogram<u64>>,
    pub connects_accepted: AtomicU64,
    pub connects_refused: AtomicU64,
    pub disconnects_sent: AtomicU64,
    pub disconnect_retries: AtomicU64,
    pub disconnects_given_up: AtomicU64,
    /// Messages answered Forbidden (no route and no `$default`).
    pub forbidden: AtomicU64,
    /// Backend answers sent back to clients (two-way routes).
    pub replies: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Self {
            calls: Mutex::default(),
            latency: Mutex::new(
                Histogram::new_with_bounds(1_000, 600_000_000_000, 2)
                    .expect("valid histogram bounds"),
            ),
            connects_accepted: AtomicU64::new(0),
            connects_refused: AtomicU64::new(0),
            disconnects_sent: AtomicU64::new(0),
            disconnect_retries: AtomicU64::new(0),
            disconnects_given_up: AtomicU64::new(0),
            forbidden: AtomicU64::new(0),
            replies: AtomicU64::new(0),
        }
    }
}

/// What `/metrics` reports of the gateway.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// (route, outcome: status or `timeout`/`unreachable`, calls).
    pub calls: Vec<(String, String, u64)>,
    pub latency: Histogram<u64>,
    pub connects_accepted: u64,
    pub connects_refused: u64,
    pub disconnects_sent: u64,
    pub disconnect_retries: u64,
    pub disconnects_given_up: u64,
    pub forbidden: u64,
    pub replies: u64,
    pub connections: u64,
    /// The cores' side of the event queue.
    pub connects_refused_full: u64,
    pub messages_refused_full: u64,
    pub disconnects_delayed: u64,
}

impl Stats {
    /// One backend call on `route` that took `took` and ended in
    /// `outcome`.
    pub fn call(&self, route: &str, outcome: Result<u16, &CallError>, took: Duration) {
        let label = match outcome {
            Ok(status) => status.to_string(),
            Err(CallError::Timeout) => "timeout".into(),
            Err(CallError::Unreachable) => "unreachable".into(),
        };
        *self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((route.to_string(), label))
            .or_default() += 1;
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .saturating_record(ns.max(1_000));
    }

    /// Everything, now; `connections` registered, `link` the cores' side.
    pub fn snapshot(&self, connections: usize, link: &LinkCounters) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            calls: self
                .calls
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|((r, o), n)| (r.clone(), o.clone(), *n))
                .collect(),
            latency: self
                .latency
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            connects_accepted: get(&self.connects_accepted),
            connects_refused: get(&self.connects_refused),
            disconnects_sent: get(&self.disconnects_sent),
            disconnect_retries: get(&self.disconnect_retries),
            disconnects_given_up: get(&self.disconnects_given_up),
            forbidden: get(&self.forbidden),
            replies: get(&self.replies),
            connections: connections as u64,
            connects_refused_full: get(&link.connects_refused_full),
            messages_refused_full: get(&link.messages_refused_full),
            disconnects_delayed: get(&link.disconnects_delayed),
        }
    }
}
