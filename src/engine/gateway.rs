//! The core's side of gateway mode: what it tells the gateway of its
//! gateway connections (the `$connect` to decide, each message, the end)
//! through the bounded event queue ([`Link`](crate::gateway::events::Link)), and the back-pressure that
//! keeps a slow backend from costing more than `gateway.max_in_flight`
//! messages per connection.
//!
//! Owns: the per-connection bookkeeping of gateway connections on this
//! core (kept in `gateway_state`: its id, messages sent and done), the rule that every
//! connection whose `Connect` was sent gets exactly one `Disconnect`
//! (sent when it ends, or when its slot is freed if it never reported an
//! end), and the backlog of disconnects that found the queue full (sent
//! again every turn, and before the core exits). Must not touch: what the
//! gateway does with events, the connection's protocol (it holds and
//! resumes a [`Conn`](crate::conn::Conn) through `hold`).
//!
//! Never blocks: every event is `try_send`. A connect that finds the
//! queue full is refused 503 and a message closes its connection 1013
//! (counted); a disconnect is never dropped.

use std::time::Instant;

use bytes::Bytes;

use super::core::{ctx, Core};
use super::gateway_state::GwConn;
use crate::admission::{Refusal, Ticket};
use crate::conn::{Ctx, EndReason};
use crate::gateway::conn_id::GatewayId;
use crate::gateway::events::{disconnect_status, ConnectInfo, Event, PASSED_HEADERS};
use crate::protocol::close::code;

impl Core {
    /// A gateway upgrade left pending: ask the gateway (its `$connect`),
    /// or refuse it 503 when the queue is full.
    pub(super) fn gateway_connect(&mut self, key: usize, now: Instant) {
        let conn_id = self.conn_id(key);
        let slot = &mut self.conns[key];
        let Some(req) = slot.conn.request() else {
            return;
        };
        let id = self
            .gw
            .link
            .as_ref()
            .and_then(|l| GatewayId::new(l.instance, conn_id));
        let (Some(link), Some(id)) = (self.gw.link.as_ref(), id) else {
            let mut ctx = ctx!(self, now);
            return slot.conn.refuse(Refusal::GatewayBusy.into(), &mut ctx);
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let info = ConnectInfo {
            query: req.query().map(str::to_string),
            headers: PASSED_HEADERS
                .iter()
                .filter_map(|&n| Some((n, text(req.header(n)?))))
                .collect(),
            user_agent: req.header("user-agent").map(text),
            source_ip: Some(slot.ip),
        };
        let ticket = Ticket {
            core: self.id,
            key: key as u32,
            gen: slot.gen,
        };
        let ev = Event::Connect {
            id,
            ticket,
            info: Box::new(info),
        };
        match link.try_send(ev) {
            Ok(()) => {
                self.gw.conns.insert(
                    key as u32,
                    GwConn {
                        id,
                        sent: 0,
                        done: 0,
                    },
                );
            }
            Err(_) => {
                link.count(|c| &c.connects_refused_full);
                let mut ctx = ctx!(self, now);
                slot.conn.refuse(Refusal::GatewayBusy.into(), &mut ctx);
            }
        }
    }

    /// A message of gateway connection `key`: to the gateway, in order;
    /// reading stops once `gateway.max_in_flight` are unanswered.
    pub(super) fn gateway_message(&mut self, key: usize, text: bool, payload: Bytes, now: Instant) {
        let (Some(link), Some(g)) = (self.gw.link.as_ref(), self.gw.conns.get_mut(&(key as u32)))
        else {
            return;
        };
        let ev = Event::Message {
            id: g.id,
            text,
            payload,
        };
        let slot = &mut self.conns[key];
        match link.try_send(ev) {
            Ok(()) => {
                g.sent = g.sent.wrapping_add(1);
                if g.sent.wrapping_sub(g.done) >= link.max_in_flight {
                    slot.conn.hold(true);
                }
            }
            Err(_) => {
                link.count(|c| &c.messages_refused_full);
                let mut ctx = ctx!(self, now);
                slot.conn.close(
                    code::TRY_AGAIN_LATER,
                    "backend busy",
                    EndReason::BackendBusy,
                    &mut ctx,
                );
            }
        }
    }

    /// Gateway connection `key` ended (or its slot is being freed without
    /// having reported an end): its one `Disconnect`. Nothing for a
    /// connection without a `Connect`, or after the first call.
    pub(super) fn gateway_ended(&mut self, key: usize, why: EndReason) {
        let Some(g) = self.gw.conns.remove(&(key as u32)) else {
            return;
        };
        let (status, reason) = disconnect_status(why);
        let ev = Event::Disconnect {
            id: g.id,
            status,
            reason,
        };
        let Some(link) = &self.gw.link else {
            return;
        };
        // Behind any older one still waiting, so ends stay in order.
        if !self.gw.backlog.is_empty() {
            link.count(|c| &c.disconnects_delayed);
            self.gw.backlog.push_back(ev);
            return;
        }
        if let Err(ev) = link.try_send(ev) {
            link.count(|c| &c.disconnects_delayed);
            self.gw.backlog.push_back(ev);
        }
    }

    /// The gateway finished `done` messages of connection (`key`, `gen`):
    /// a held connection below `gateway.max_in_flight` reads again.
    pub(super) fn gateway_done(&mut self, key: usize, gen: u32, done: u32, now: Instant) {
        let Some(max) = self.gw.link.as_ref().map(|l| l.max_in_flight) else {
            return;
        };
        if !self.conns.get(key).is_some_and(|s| s.gen == gen) {
            return;
        }
        let Some(g) = self.gw.conns.get_mut(&(key as u32)) else {
            return;
        };
        // Running totals: only ever forward (wrapping).
        if (done.wrapping_sub(g.done) as i32) > 0 {
            g.done = done;
        }
        let resume = g.sent.wrapping_sub(g.done) < max;
        if resume && self.conns[key].conn.is_held() {
            self.guarded(key, |core| {
                core.conns[key].conn.hold(false);
                core.after(key, now);
            });
        }
    }
}
