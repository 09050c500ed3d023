//! The engine's side of the hub and of the inbox: queueing the frames the
//! core's [`Hub`] hands out (a fan-out to many local connections, a reply
//! to one) and carrying out the commands that reach the core.
//!
//! Owns: turning a hub [`Output`] or [`Fanout`] into pushes on
//! connections (and counting what was queued or dropped), and the inbox
//! commands that are about connections rather than the hub (disconnect,
//! an admission decision, queued bytes). Each connection's part runs
//! under `Core::guarded` (a panic closes that one with 1011). Must not touch: what a hub request means or who receives
//! a frame (the hub decides), sockets (it marks connections dirty; the
//! driver in `core` writes).
//!
//! [`Hub`]: crate::hub::Hub

use std::time::Instant;

use bytes::Bytes;

use super::core::{ctx, Core};
use crate::conn::{Ctx, EndReason, Phase, Push, SharedFrame};
use crate::hub::{Fanout, Output};
use crate::inbox::{Command, Posted};

impl Core {
    /// Queues `frame` for one connection and marks it for flushing.
    pub(super) fn push_to(&mut self, key: usize, frame: Bytes, now: Instant) -> Push {
        let Some(slot) = self.conns.get_mut(key) else {
            return Push::NotOpen;
        };
        let mut ctx = ctx!(self, now);
        let res = slot.conn.push_frame(frame, &mut ctx);
        self.pushed(key, res, now)
    }

    /// Queues a published frame for one connection (compressed if it
    /// agreed permessage-deflate: once per window size for all of them
    /// when their parameters allow sharing, see [`SharedFrame`]).
    fn push_shared_to(&mut self, key: usize, frame: &mut SharedFrame, now: Instant) -> Push {
        let Some(slot) = self.conns.get_mut(key) else {
            return Push::NotOpen;
        };
        let mut ctx = ctx!(self, now);
        let res = slot.conn.push_shared(frame, &mut ctx);
        self.pushed(key, res, now)
    }

    /// Counts and follows up on what a push did.
    fn pushed(&mut self, key: usize, res: Push, now: Instant) -> Push {
        match res {
            Push::Queued => self.mark_dirty(key),
            Push::Dropped => self.counters.dropped_slow_consumer.add(1),
            Push::Closed => {
                self.counters.dropped_slow_consumer.add(1);
                self.route_events(key, now);
                self.mark_dirty(key);
            }
            Push::NotOpen => self.counters.dropped_not_open.add(1),
        }
        res
    }

    /// Queues what a hub request of connection `key` produced: the
    /// publish's local fan-out, then the reply.
    pub(super) fn push_output(&mut self, key: usize, out: Output, now: Instant) {
        if let Some(fanout) = out.fanout {
            self.push_fanout(fanout, now);
        }
        if let Some(reply) = out.reply {
            self.push_to(key, reply, now);
        }
    }

    /// Queues one frame on every connection of a fan-out.
    pub(super) fn push_fanout(&mut self, fanout: Fanout, now: Instant) {
        let Fanout {
            keys,
            frame,
            deflated,
            at,
        } = fanout;
        let mut frame = SharedFrame::with_shared(frame, deflated);
        let mut queued = 0;
        for &key in &keys {
            // Per delivery: a panic in one connection's part closes that
            // one (1011); the others still get the frame.
            let key = key as usize;
            let pushed = self.guarded(key, |core| {
                #[cfg(feature = "fault-injection")]
                if let Some(slot) = core.conns.get(key) {
                    let gen = slot.gen;
                    core.faults
                        .fire(key, gen, crate::panics::fault::Trigger::Delivery);
                }
                core.push_shared_to(key, &mut frame, now)
            });
            queued += u64::from(pushed == Some(Push::Queued));
        }
        self.counters.deliveries.add(queued);
        self.publish_stamps.push(at);
        self.hub.recycle(keys);
    }

    /// One command from another thread.
    pub(super) fn handle_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Hub(cmd) => {
                let conns = &self.conns;
                let fanout = self
                    .hub
                    .command(cmd, now, |key| conns.get(key as usize).map(|s| s.gen));
                if let Some(fanout) = fanout {
                    self.push_fanout(fanout, now);
                }
            }
            Command::QueryQueued { reply } => {
                let bytes = self
                    .conns
                    .iter()
                    .map(|(_, s)| s.conn.queued_bytes() as u64)
                    .sum();
                let _ = reply.send(bytes);
            }
            Command::Disconnect {
                key,
                gen,
                code,
                reply,
            } => {
                let key = key as usize;
                let open = self
                    .conns
                    .get(key)
                    .is_some_and(|s| s.gen == gen && s.conn.phase() == Phase::Open);
                if let Some(reply) = reply {
                    let _ = reply.send(open);
                }
                if self.conns.get(key).is_some_and(|s| s.gen == gen) {
                    self.guarded(key, |core| {
                        let slot = &mut core.conns[key];
                        let mut ctx = ctx!(core, now);
                        slot.conn
                            .close(code, "disconnected", EndReason::Kicked, &mut ctx);
                        core.after(key, now);
                    });
                }
            }
            Command::Post {
                key,
                gen,
                frame,
                reply,
            } => {
                let key = key as usize;
                let posted = if self.conns.get(key).is_some_and(|s| s.gen == gen) {
                    self.guarded(key, |core| {
                        let slot = &mut core.conns[key];
                        let mut ctx = ctx!(core, now);
                        let res = slot.conn.offer_frame(frame, &mut ctx);
                        if res == Push::Queued {
                            core.mark_dirty(key);
                        }
                        res
                    })
                } else {
                    None
                };
                let _ = reply.send(match posted {
                    Some(Push::Queued) => Posted::Queued,
                    Some(Push::Dropped | Push::Closed) => Posted::Full,
                    Some(Push::NotOpen) | None => Posted::Gone,
                });
            }
            Command::GatewayDone { key, gen, done } => {
                self.gateway_done(key as usize, gen, done, now);
            }
            Command::AdmissionDecision { key, gen, verdict } => {
                let key = key as usize;
                if self.conns.get(key).is_some_and(|s| s.gen == gen) {
                    self.guarded(key, |core| core.decided(key, gen, verdict, now));
                }
            }
        }
    }
}
