//! What the data plane tells the gateway, and the one road it takes: the
//! [`Event`]s of gateway connections (a `$connect` to decide, each
//! message, the end) through a bounded queue the cores `try_send` into
//! ([`Link`]).
//!
//! Owns: the event types, the queue's sending end with its counters, and
//! the mapping of a connection's [`EndReason`] to the close status and
//! reason the backend is told. Must not touch: what the gateway does with
//! an event (`service`), the cores' state (a core keeps its own per
//! connection bookkeeping, `engine::gateway`).
//!
//! Never blocks a core: [`Link::try_send`] hands the event back when the
//! queue is full, and the core decides (a connect refused 503, a message
//! closing its connection 1013, a disconnect kept by the core and sent
//! again next turn — never lost).

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::conn_id::GatewayId;
use crate::admission::Ticket;
use crate::conn::EndReason;
use crate::protocol::close::code;

/// What the backend's `$connect` is told of the client's upgrade.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectInfo {
    /// The upgrade's query string, without `?`, as sent.
    pub query: Option<String>,
    /// `Cookie`, `Origin`, `Sec-WebSocket-Extensions`, `Sec-WebSocket-Key`,
    /// `Sec-WebSocket-Version`, as sent (those present), in that order.
    pub headers: Vec<(&'static str, String)>,
    /// The client's `User-Agent`, if it sent one.
    pub user_agent: Option<String>,
    /// The client's address (the trusted proxy's client, if any).
    pub source_ip: Option<IpAddr>,
}

/// The client's upgrade headers passed to `$connect`, in order.
pub const PASSED_HEADERS: [&str; 5] = [
    "Cookie",
    "Origin",
    "Sec-WebSocket-Extensions",
    "Sec-WebSocket-Key",
    "Sec-WebSocket-Version",
];

/// One thing that happened to a gateway connection, in its order.
#[derive(Debug)]
pub enum Event {
    /// An upgrade waits for the backend's `$connect`; answer through the
    /// ticket's core.
    Connect {
        id: GatewayId,
        ticket: Ticket,
        info: Box<ConnectInfo>,
    },
    /// A complete message from the client.
    Message {
        id: GatewayId,
        text: bool,
        payload: Bytes,
    },
    /// The connection ended (sent once for every connection whose
    /// `Connect` was sent, whatever ended it).
    Disconnect {
        id: GatewayId,
        status: u16,
        reason: &'static str,
    },
}

impl Event {
    /// The connection the event is about.
    pub fn id(&self) -> GatewayId {
        match self {
            Event::Connect { id, .. }
            | Event::Message { id, .. }
            | Event::Disconnect { id, .. } => *id,
        }
    }
}

/// Counts of the cores' side of the queue (any core writes them).
#[derive(Debug, Default)]
pub struct LinkCounters {
    /// Connects refused 503 because the queue was full.
    pub connects_refused_full: AtomicU64,
    /// Connections closed 1013 because a message found the queue full.
    pub messages_refused_full: AtomicU64,
    /// Disconnects that found the queue full and waited on their core.
    pub disconnects_delayed: AtomicU64,
    /// Events queued and not yet taken by the gateway (a gauge).
    pub in_queue: AtomicU64,
}

/// The cores' sending end of the gateway's event queue (`Send + Clone`;
/// each core holds one).
#[derive(Clone)]
pub struct Link {
    tx: mpsc::Sender<Event>,
    /// This process's id instance (see [`GatewayId`]).
    pub instance: u32,
    /// `gateway.max_in_flight`.
    pub max_in_flight: u32,
    pub counters: Arc<LinkCounters>,
}

impl Link {
    /// A queue of `capacity` events: the cores' end and the gateway's.
    pub fn new(
        capacity: usize,
        instance: u32,
        max_in_flight: u32,
    ) -> (Link, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let link = Link {
            tx,
            instance,
            max_in_flight,
            counters: Arc::default(),
        };
        (link, rx)
    }

    /// Queues `ev` without waiting; a full queue hands it back. A gateway
    /// that is gone (the server stopping) takes it and drops it.
    pub fn try_send(&self, ev: Event) -> Result<(), Event> {
        // Counted before it can be taken, so the gauge never goes below 0.
        self.counters.in_queue.fetch_add(1, Ordering::AcqRel);
        match self.tx.try_send(ev) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.counters.in_queue.fetch_sub(1, Ordering::AcqRel);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(ev)) => {
                self.counters.in_queue.fetch_sub(1, Ordering::AcqRel);
                Err(ev)
            }
        }
    }

    /// Counts one of the queue-full outcomes.
    pub fn count(&self, cell: impl Fn(&LinkCounters) -> &AtomicU64) {
        cell(&self.counters).fetch_add(1, Ordering::Relaxed);
    }
}

/// 1006: the connection ended without a close frame (never sent on the
/// wire; API Gateway reports it the same way).
const ABNORMAL: u16 = 1006;

/// The status code and reason the backend's `$disconnect` is told for a
/// connection that ended for `why` (`disconnectStatusCode`,
/// `disconnectReason` of the Lambda event).
pub fn disconnect_status(why: EndReason) -> (u16, &'static str) {
    match why {
        EndReason::PeerClose => (code::NORMAL, "Client closed the connection"),
        EndReason::PeerGone | EndReason::IoError | EndReason::CloseTimeout => {
            (ABNORMAL, "Connection lost")
        }
        EndReason::PingTimeout => (ABNORMAL, "Ping timeout"),
        EndReason::IdleTimeout => (code::GOING_AWAY, "Idle timeout"),
        EndReason::Shutdown => (code::GOING_AWAY, "Server shutting down"),
        EndReason::HandshakeFailed | EndReason::HandshakeTimeout => {
            (ABNORMAL, "Upgrade not completed")
        }
        EndReason::ProtocolError | EndReason::BadClose => (code::PROTOCOL_ERROR, "Protocol error"),
        EndReason::InvalidUtf8 => (code::INVALID_PAYLOAD, "Invalid UTF-8"),
        EndReason::TooLarge => (code::MESSAGE_TOO_BIG, "Message too big"),
        EndReason::SlowConsumer => (code::POLICY_VIOLATION, "Slow consumer"),
        EndReason::RateLimited => (code::POLICY_VIOLATION, "Rate limited"),
        EndReason::Kicked => (code::NORMAL, "Disconnected by the server"),
        EndReason::InternalError => (code::INTERNAL_ERROR, "Internal error"),
        EndReason::BackendBusy => (code::TRY_AGAIN_LATER, "Backend busy"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_end_has_a_close_status() {
        for why in EndReason::ALL {
            let (status, reason) = disconnect_status(why);
            assert!((1000..1015).contains(&status), "{why:?}");
            assert!(!reason.is_empty());
        }
        assert_eq!(disconnect_status(EndReason::PeerGone).0, 1006);
        assert_eq!(disconnect_status(EndReason::Shutdown).0, 1001);
    }

    #[test]
    fn a_full_queue_hands_the_event_back() {
        let (link, mut rx) = Link::new(1, 7, 8);
        let id = GatewayId::new(
            7,
            crate::hub::ConnId {
                core: 0,
                key: 1,
                gen: 1,
            },
        )
        .unwrap();
        let ev = || Event::Disconnect {
            id,
            status: 1000,
            reason: "x",
        };
        assert!(link.try_send(ev()).is_ok());
        assert!(matches!(link.try_send(ev()), Err(Event::Disconnect { .. })));
        assert_eq!(rx.try_recv().unwrap().id(), id);
        drop(rx);
        assert!(link.try_send(ev()).is_ok(), "gone: taken and dropped");
    }
}
