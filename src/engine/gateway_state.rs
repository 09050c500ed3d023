//! The core's gateway bookkeeping, apart from the core: the event link,
//! the gateway connections of this core ([`GwConn`]: id, messages sent and
//! done) and the backlog of disconnects that found the queue full.
//!
//! Owns: that state and sending the backlog. Must not touch: the core or
//! its connections (`engine::gateway` does, through it).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::gateway::conn_id::GatewayId;
use crate::gateway::events::{Event, Link};

/// What the core keeps per gateway connection, from its `Connect` on.
#[derive(Debug)]
pub(crate) struct GwConn {
    pub(super) id: GatewayId,
    /// Messages handed to the gateway.
    pub(super) sent: u32,
    /// Messages the gateway said it finished (a running total).
    pub(super) done: u32,
}

/// The core's gateway state: the link, its connections, the backlog.
#[derive(Default)]
pub(crate) struct GwState {
    pub(crate) link: Option<Link>,
    pub(super) conns: rustc_hash::FxHashMap<u32, GwConn>,
    /// Disconnects that found the queue full, oldest first.
    pub(super) backlog: VecDeque<Event>,
}

impl GwState {
    pub(crate) fn new(link: Option<Link>) -> Self {
        Self {
            link,
            ..Self::default()
        }
    }

    /// True while disconnects wait for room in the queue.
    pub(crate) fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    /// Sends what the backlog holds, oldest first, while there is room.
    pub(crate) fn flush_backlog(&mut self) {
        let Some(link) = &self.link else {
            return;
        };
        while let Some(ev) = self.backlog.pop_front() {
            if let Err(ev) = link.try_send(ev) {
                self.backlog.push_front(ev);
                return;
            }
        }
    }

    /// Before the core exits: sends the backlog, waiting for room up to
    /// `limit` (the core serves no one any more).
    pub(crate) fn flush_backlog_before_exit(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        loop {
            self.flush_backlog();
            if self.backlog.is_empty() {
                return;
            }
            if Instant::now() >= until {
                tracing::error!(
                    disconnects = self.backlog.len(),
                    "the gateway's queue stayed full; these connections' $disconnect is lost"
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
