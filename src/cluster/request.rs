//! Request/reply between nodes: an operation on another node's connection
//! whose outcome the asker waits for (the gateway's `@connections` and the
//! admin API's send and disconnect of another node's id).
//!
//! Owns: the asker's bounded table of pending requests ([`Requests::ask`],
//! called on the admin plane's blocking pool, never on a core or an async
//! worker), matching replies to it, and the owner's side: running a
//! request on the blocking pool through the [`Responder`] the server
//! installed (the same hub and gateway calls the local path makes),
//! bounded, and queuing the reply. Must not touch: the broker connection
//! (requests and replies travel as [`Out`] through the link's queue), any
//! core's state, HTTP (callers map [`Asked`] to statuses).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rustc_hash::FxHashMap;

use super::wire::{Op, Outcome};
use super::{LinkStats, Out, Uplink};

/// Requests this node may wait on at once; beyond, a request is refused
/// at once ([`Asked::Unavailable`]).
pub const MAX_PENDING: usize = 1_024;

/// Other nodes' requests this node runs at once; beyond, they are
/// answered [`Outcome::Busy`] without running.
pub const MAX_SERVING: usize = 256;

/// Performs another node's request on this node (installed by the
/// server: the hub, and the gateway in gateway mode). Called on a
/// blocking thread: it may wait on a core's answer.
pub trait Responder: Send + Sync {
    fn perform(&self, op: Op) -> Outcome;
}

/// What asking another node came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// The owner's answer.
    Answer(Outcome),
    /// Not sent: the link is down, its queue full, or too many requests
    /// pending here.
    Unavailable,
    /// Sent, not answered within `cluster.request_timeout`: whether it was
    /// done is unknown.
    TimedOut,
}

/// One pending request: the node asked and where its answer goes.
struct Pending {
    node: u32,
    tx: crossbeam_channel::Sender<Outcome>,
}

/// Both sides of request/reply on one node.
pub struct Requests {
    timeout: Duration,
    next: AtomicU64,
    pending: Mutex<FxHashMap<u64, Pending>>,
    serving: AtomicUsize,
    responder: OnceLock<Arc<dyn Responder>>,
    stats: Arc<LinkStats>,
}

impl Requests {
    /// Requests waiting `timeout` for their answer, counted in `stats`.
    pub fn new(timeout: Duration, stats: Arc<LinkStats>) -> Self {
        Self {
            timeout,
            next: AtomicU64::new(1),
            pending: Mutex::new(FxHashMap::default()),
            serving: AtomicUsize::new(0),
            responder: OnceLock::new(),
            stats,
        }
    }

    /// Installs what performs other nodes' requests here (once; without
    /// one they are answered busy).
    pub fn set_responder(&self, r: Arc<dyn Responder>) {
        let _ = self.responder.set(r);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, FxHashMap<u64, Pending>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks node `node` to perform `op` and waits for its answer (up to
    /// the timeout). Blocks: call it on a blocking thread.
    pub fn ask(&self, uplink: &Uplink, node: u32, op: Op) -> Asked {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = crossbeam_channel::bounded(1);
        {
            let mut t = self.table();
            if t.len() >= MAX_PENDING {
                self.stats
                    .requests_unavailable
                    .fetch_add(1, Ordering::Relaxed);
                return Asked::Unavailable;
            }
            t.insert(id, Pending { node, tx });
        }
        if !uplink.send(Out::Request { node, id, op }) {
            self.table().remove(&id);
            self.stats
                .requests_unavailable
                .fetch_add(1, Ordering::Relaxed);
            return Asked::Unavailable;
        }
        self.stats.requests_sent.fetch_add(1, Ordering::Relaxed);
        match rx.recv_timeout(self.timeout) {
            Ok(outcome) => {
                self.stats.requests_answered.fetch_add(1, Ordering::Relaxed);
                Asked::Answer(outcome)
            }
            Err(_) => {
                self.table().remove(&id);
                self.stats
                    .requests_timed_out
                    .fetch_add(1, Ordering::Relaxed);
                Asked::TimedOut
            }
        }
    }

    /// A reply from node `origin` to request `id`: to its asker, if it is
    /// still waiting and asked that node. False if nobody waits on it
    /// (late, or not ours), counted as `late`.
    pub fn answered(&self, origin: u32, id: u64, outcome: Outcome) -> bool {
        let mut t = self.table();
        let taken = match t.get(&id) {
            Some(p) if p.node == origin => {
                let p = t.remove(&id).expect("present");
                drop(t);
                p.tx.try_send(outcome).is_ok()
            }
            _ => false,
        };
        if !taken {
            self.stats.requests_late.fetch_add(1, Ordering::Relaxed);
        }
        taken
    }

    /// Node `origin`'s request `id`: performed on a blocking thread of the
    /// current runtime (at most [`MAX_SERVING`] at once), its outcome sent
    /// back through `uplink`.
    pub fn serve(self: &Arc<Self>, uplink: &Uplink, origin: u32, id: u64, op: Op) {
        let Some(responder) = self.responder.get().cloned() else {
            uplink.send(Out::Reply {
                node: origin,
                id,
                outcome: Outcome::Busy,
            });
            return;
        };
        if self.serving.fetch_add(1, Ordering::AcqRel) >= MAX_SERVING {
            self.serving.fetch_sub(1, Ordering::AcqRel);
            self.stats.requests_refused.fetch_add(1, Ordering::Relaxed);
            uplink.send(Out::Reply {
                node: origin,
                id,
                outcome: Outcome::Busy,
            });
            return;
        }
        let (me, uplink) = (self.clone(), uplink.clone());
        tokio::task::spawn_blocking(move || {
            let outcome = responder.perform(op);
            me.serving.fetch_sub(1, Ordering::AcqRel);
            me.stats.requests_served.fetch_add(1, Ordering::Relaxed);
            uplink.send(Out::Reply {
                node: origin,
                id,
                outcome,
            });
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_reaches_only_its_asker_and_the_table_is_bounded() {
        let stats: Arc<LinkStats> = Arc::default();
        let r = Requests::new(Duration::from_millis(50), stats.clone());
        let (tx, rx) = crossbeam_channel::bounded(1);
        r.table().insert(7, Pending { node: 3, tx });
        assert!(!r.answered(4, 7, Outcome::Done), "another node's reply");
        assert!(!r.answered(3, 8, Outcome::Done), "another id");
        assert!(r.answered(3, 7, Outcome::Gone));
        assert_eq!(rx.try_recv(), Ok(Outcome::Gone));
        assert!(!r.answered(3, 7, Outcome::Done), "answered once");
        assert!(r.table().is_empty());
        // The three replies nobody took are counted.
        assert_eq!(stats.requests_late.load(Ordering::Relaxed), 3);
    }
}
