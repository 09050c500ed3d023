//! Nodes joined over a broker (Redis, or NATS for routing): a publish, a message to a user or
//! to one connection reaches every node that has a recipient, presence is
//! one truth across nodes, and losing the broker costs only the
//! cross-node part.
//!
//! - [`Uplink`] (here): the `Send + Clone` end the cores and the hub
//!   handle give cross-node messages to — a bounded queue, never waited
//!   on; a message that finds the link down or the queue full is dropped
//!   and counted ([`LinkStats`]).
//! - [`routing`]: which subjects the node subscribes to (only those with
//!   local members, lingering, batched) and the changes the cores report.
//! - [`link_redis`]: the broker link on the control plane's runtime:
//!   connect, subscribe, publish, receive and hand to the cores, probe,
//!   reconnect with backoff; [`link_nats`]: the same over NATS.
//! - [`claim`]: choosing the node id at start (a live one is refused).
//! - [`deliver`]: what both links do with a message (subjects, payloads,
//!   handing to the cores).
//! - [`presence`]: the node's part of cluster-wide presence in Redis (a
//!   lease per node, a hash per channel and user, purged lazily on read).
//! - [`probe`]: the liveness probe's bookkeeping.
//! - [`owner`]: performing another node's request here.
//! - [`request`]: request/reply to another node (an operation on its
//!   connection whose outcome the asker waits for).
//! - [`wire`]: subject names and payloads.
//!
//! Must not touch: any core's state (only [`HubHandle`] and the registry's
//! [`Watch`](crate::hub::registry::Watch)), sockets of clients, HTTP. The
//! broker URL is a secret (it may hold a password): never logged.

pub mod claim;
pub mod deliver;
pub mod link_nats;
pub mod link_redis;
pub mod owner;
pub mod presence;
pub mod probe;
pub mod request;
pub mod routing;
pub mod wire;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::config::ClusterConfig;
use crate::hub::registry::Kind;
use crate::hub::{ConnId, HubHandle, Registry};

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The broker URL does not parse (the URL itself is not shown: it may
    /// hold a password).
    #[error("cluster.broker: not a usable broker URL ({0})")]
    BadUrl(String),
    /// `cluster.node_id` names a node that is live on the broker.
    #[error("cluster.node_id {0} is in use by a live node on this broker (and cluster.prefix): give each node its own id, or 0 for a random one")]
    NodeIdTaken(u32),
}

/// A connection anywhere in the cluster. Text form: `core-key-gen` on a
/// node on its own (as before), `node.core-key-gen` when clustered (e.g.
/// `4711.0-42-7`); a form without a node names one of this node's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeConn {
    pub node: Option<u32>,
    pub conn: ConnId,
}

impl std::str::FromStr for NodeConn {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s.split_once('.') {
            Some((text, conn)) => {
                let node: u32 = text.parse().map_err(|_| ())?;
                // One spelling per id: no sign, no leading zeros.
                if node == 0 || node > 0xFF_FFFF || node.to_string() != text {
                    return Err(());
                }
                Ok(NodeConn {
                    node: Some(node),
                    conn: conn.parse()?,
                })
            }
            None => Ok(NodeConn {
                node: None,
                conn: s.parse()?,
            }),
        }
    }
}

impl std::fmt::Display for NodeConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.node {
            Some(n) => write!(f, "{n}.{}", self.conn),
            None => write!(f, "{}", self.conn),
        }
    }
}

/// The link's counters and state, read by `/metrics`, `/api/status` and
/// `/readyz`.
#[derive(Debug, Default)]
pub struct LinkStats {
    /// True while connected, subscribed and answering probes.
    pub up: AtomicBool,
    /// Messages handed to the broker.
    pub forwarded: AtomicU64,
    /// Messages for other nodes dropped because the link was down.
    pub not_forwarded_down: AtomicU64,
    /// Messages for other nodes dropped because the queue was full.
    pub not_forwarded_full: AtomicU64,
    /// Messages received from other nodes (own ones excluded).
    pub received: AtomicU64,
    /// Received messages that were not ours to read (corrupt, foreign).
    pub malformed: AtomicU64,
    /// Connections made after the first one.
    pub reconnects: AtomicU64,
    /// Probes that did not come back in time.
    pub probe_failures: AtomicU64,
    /// Subjects subscribed now.
    pub subscriptions: AtomicU64,
    /// Presence writes that failed (retried at the next change or lease).
    pub presence_errors: AtomicU64,
    /// Requests sent to other nodes (operations on their connections).
    pub requests_sent: AtomicU64,
    /// Of those, answered within `cluster.request_timeout`.
    pub requests_answered: AtomicU64,
    /// Of those, not answered in time.
    pub requests_timed_out: AtomicU64,
    /// Requests not sent: link down, its queue or the pending table full.
    pub requests_unavailable: AtomicU64,
    /// Replies nobody waited for any more (they came after
    /// `cluster.request_timeout`), dropped.
    pub requests_late: AtomicU64,
    /// Other nodes' requests performed here.
    pub requests_served: AtomicU64,
    /// Other nodes' requests answered busy without running (too many at
    /// once).
    pub requests_refused: AtomicU64,
}

impl LinkStats {
    /// Whether the link is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// A snapshot, as JSON for `/api/status`.
    pub fn json(&self, node: u32) -> serde_json::Value {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        serde_json::json!({
            "node": node,
            "link": if self.is_up() { "up" } else { "down" },
            "forwarded": g(&self.forwarded),
            "not_forwarded": {
                "link_down": g(&self.not_forwarded_down),
                "queue_full": g(&self.not_forwarded_full),
            },
            "received": g(&self.received),
            "reconnects": g(&self.reconnects),
            "probe_failures": g(&self.probe_failures),
            "subscriptions": g(&self.subscriptions),
            "presence_errors": g(&self.presence_errors),
            "requests": {
                "sent": g(&self.requests_sent),
                "answered": g(&self.requests_answered),
                "timed_out": g(&self.requests_timed_out),
                "unavailable": g(&self.requests_unavailable),
                "late": g(&self.requests_late),
                "served": g(&self.requests_served),
                "refused": g(&self.requests_refused),
            },
        })
    }
}

/// A message on its way to other nodes.
#[derive(Debug)]
pub enum Out {
    /// A publish on a channel.
    Channel { channel: Arc<str>, data: Box<str> },
    /// A message to every connection of a user.
    User { user: Arc<str>, data: Box<str> },
    /// A request to node `node`, whose reply this node waits for.
    Request { node: u32, id: u64, op: wire::Op },
    /// The outcome of node `node`'s request `id`.
    Reply {
        node: u32,
        id: u64,
        outcome: wire::Outcome,
    },
}

/// The cores' and the hub handle's way to other nodes: a bounded queue
/// to the link, never waited on.
#[derive(Clone)]
pub struct Uplink {
    node: u32,
    tx: tokio::sync::mpsc::Sender<Out>,
    stats: Arc<LinkStats>,
    requests: Arc<request::Requests>,
    confirmed: Arc<routing::Confirmed>,
    request_timeout: std::time::Duration,
}

impl Uplink {
    /// This node's id.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// True while the link is up.
    pub fn is_up(&self) -> bool {
        self.stats.is_up()
    }

    /// Asks node `node` to perform `op` on one of its connections and
    /// waits for the outcome (up to `cluster.request_timeout`). Blocks:
    /// call it on a blocking thread, never on a core or an async worker.
    pub fn ask(&self, node: u32, op: wire::Op) -> request::Asked {
        self.requests.ask(self, node, op)
    }

    /// Request/reply with other nodes.
    pub fn requests(&self) -> &Arc<request::Requests> {
        &self.requests
    }

    /// The channels whose broker subscription is confirmed.
    pub fn confirmed(&self) -> &Arc<routing::Confirmed> {
        &self.confirmed
    }

    /// `cluster.request_timeout`: also the longest a subscribe ack is
    /// held for the broker subscription.
    pub fn request_timeout(&self) -> std::time::Duration {
        self.request_timeout
    }

    /// Queues `out` for the broker; false (and counted) if the link is
    /// down or the queue full.
    pub fn send(&self, out: Out) -> bool {
        if !self.stats.is_up() {
            self.stats
                .not_forwarded_down
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        match self.tx.try_send(out) {
            Ok(()) => true,
            Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                self.stats
                    .not_forwarded_full
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                self.stats
                    .not_forwarded_down
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// A publish on `channel`, for the other nodes.
    pub fn publish(&self, channel: &Arc<str>, data: &RawValue) -> bool {
        self.send(Out::Channel {
            channel: channel.clone(),
            data: data.get().into(),
        })
    }

    /// A message to `user`'s connections on the other nodes.
    pub fn send_to_user(&self, user: &str, data: &RawValue) -> bool {
        self.send(Out::User {
            user: user.into(),
            data: data.get().into(),
        })
    }
}

/// What every broker task of a node (the link, the presence writer) works
/// with: its counters, the hub to deliver through, the registry to read
/// members from, and the changes the registry reports.
#[derive(Clone)]
pub struct NodeParts {
    pub stats: Arc<LinkStats>,
    pub hub: HubHandle,
    pub registry: Arc<Registry>,
    pub changes: Arc<routing::Changes>,
}

/// The cluster of a running server: the uplink to hand out and what the
/// admin plane reads.
pub struct Cluster {
    pub node: u32,
    pub stats: Arc<LinkStats>,
    pub uplink: Uplink,
    /// Cluster-wide presence (Redis only; with NATS presence is
    /// node-local).
    pub presence: Option<Arc<presence::Reader>>,
    required: bool,
    start: Option<(tokio::sync::mpsc::Receiver<Out>, Arc<routing::Changes>)>,
    cfg: ClusterConfig,
}

impl Cluster {
    /// The cluster part of node `node` (not yet running:
    /// [`Cluster::spawn`]; the id chosen by [`claim::claim`]): its uplink,
    /// and the registry told to report membership changes to it.
    pub fn new(cfg: &ClusterConfig, node: u32, registry: &Registry) -> Result<Self, ClusterError> {
        let url = cfg.broker.as_deref().unwrap_or_default();
        // NATS routes only; Redis also holds presence.
        let client = match url.starts_with("nats://") {
            true => None,
            false => Some(
                redis::Client::open(url).map_err(|e| ClusterError::BadUrl(e.category().into()))?,
            ),
        };
        let stats = Arc::new(LinkStats::default());
        let (tx, rx) = tokio::sync::mpsc::channel(cfg.queue_capacity.max(1));
        let changes = Arc::new(routing::Changes::default());
        registry.channels.set_watch(
            Kind::Channel,
            changes.clone() as Arc<dyn crate::hub::registry::Watch>,
        );
        registry.users.set_watch(
            Kind::User,
            changes.clone() as Arc<dyn crate::hub::registry::Watch>,
        );
        let presence = client.map(|client| Arc::new(presence::Reader::new(client, cfg, node)));
        Ok(Cluster {
            node,
            uplink: Uplink {
                node,
                tx,
                stats: stats.clone(),
                requests: Arc::new(request::Requests::new(cfg.request_timeout, stats.clone())),
                confirmed: Arc::default(),
                request_timeout: cfg.request_timeout,
            },
            stats,
            presence,
            required: cfg.required,
            start: Some((rx, changes)),
            cfg: cfg.clone(),
        })
    }

    /// Starts the link and the presence writer on `rt`, delivering what
    /// arrives through `hub`.
    pub fn spawn(&mut self, rt: &tokio::runtime::Handle, hub: HubHandle, registry: Arc<Registry>) {
        let Some((rx, changes)) = self.start.take() else {
            return;
        };
        let parts = NodeParts {
            stats: self.stats.clone(),
            hub,
            registry,
            changes,
        };
        let Some(presence) = &self.presence else {
            let link = link_nats::Link::new(&self.cfg, self.uplink.clone(), parts);
            rt.spawn(link.run(rx));
            return;
        };
        presence.set_runtime(rt.clone());
        let client = presence.client();
        let link = link_redis::Link::new(
            &self.cfg,
            self.uplink.clone(),
            client.clone(),
            parts.clone(),
        );
        rt.spawn(link.run(rx));
        let writer = presence::Writer::new(&self.cfg, self.node, client.clone(), parts);
        rt.spawn(writer.run());
    }

    /// `/readyz`: ready, degraded (link down) or not ready (link down and
    /// `cluster.required`).
    pub fn readiness(&self) -> Readiness {
        if self.stats.is_up() {
            Readiness::Ready
        } else if self.required {
            Readiness::Down
        } else {
            Readiness::Degraded
        }
    }
}

/// What `/readyz` says of the cluster link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Link down; this node still serves its own connections.
    Degraded,
    /// Link down and `cluster.required`: 503.
    Down,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_name_their_node_when_clustered() {
        let conn = ConnId {
            core: 1,
            key: 42,
            gen: 7,
        };
        let local = NodeConn { node: None, conn };
        let there = NodeConn {
            node: Some(4711),
            conn,
        };
        assert_eq!(local.to_string(), "1-42-7");
        assert_eq!(there.to_string(), "4711.1-42-7");
        assert_eq!("1-42-7".parse(), Ok(local));
        assert_eq!("4711.1-42-7".parse(), Ok(there));
        for bad in [
            "0.1-2-3",
            "16777216.1-2-3",
            "x.1-2-3",
            ".1-2-3",
            "1.1-2",
            "1.2.1-2-3",
        ] {
            assert!(bad.parse::<NodeConn>().is_err(), "{bad}");
        }
    }
}
