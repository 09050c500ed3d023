//! The hub's side of a core: client requests on `/ws`, the per-core
//! channel and user indexes, fan-out of one encoded frame to local
//! connections and to the other cores, and the admin plane's commands.
//!
//! Owns: what a core does with hub messages and commands. Must not touch:
//! sockets (it queues output and marks connections dirty; the driver in
//! `core` writes), other cores' state (only their inboxes).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::command::{ChannelInfo, Command, Target};
use super::core::{ctx, Core};
use crate::conn::{Ctx, EndReason, Push};
use crate::hub::protocol::{self, ClientRequest, RequestError};
use crate::hub::ConnId;

impl Core {
    /// A `/ws` connection opened: index its user — from its token, or in
    /// dev mode from the query (both set on the slot at the upgrade).
    pub(super) fn hub_opened(&mut self, key: usize) {
        if let Some(user) = self.conns[key].user().cloned() {
            let name = self.hub.add_user(&user, key as u32);
            self.conns[key].hub_mut().user = Some(name);
        }
    }

    /// Removes a connection from every hub index (idempotent).
    pub(super) fn detach(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let Some(state) = slot.hub.as_mut() else {
            return;
        };
        let subs = std::mem::take(&mut state.subs);
        // Kept on the slot: the quota release at removal needs it.
        let user = state.user.clone();
        for ch in &subs {
            if self.hub.unsubscribe(ch, key as u32) {
                self.counters.subscriptions.sub(1);
            }
        }
        if let Some(user) = user {
            self.hub.remove_user(&user, key as u32);
        }
    }

    /// Queues `frame` for one connection and marks it for flushing.
    pub(super) fn push_to(&mut self, key: usize, frame: Bytes, now: Instant) -> Push {
        let Some(slot) = self.conns.get_mut(key) else {
            return Push::NotOpen;
        };
        let mut ctx = ctx!(self, now);
        let res = slot.conn.push_frame(frame, &mut ctx);
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

    fn reply(&mut self, key: usize, frame: Bytes, now: Instant) {
        self.push_to(key, frame, now);
    }

    fn reply_error(&mut self, key: usize, id: Option<u64>, err: RequestError, now: Instant) {
        self.counters.request_errors.add(1);
        self.reply(key, protocol::error_frame(id, err), now);
    }

    /// One client request on `/ws`.
    pub(super) fn hub_request(&mut self, key: usize, text: bool, payload: &[u8], now: Instant) {
        if !text {
            return self.reply_error(key, None, RequestError::BinaryNotSupported, now);
        }
        let req = match protocol::parse_request(payload) {
            Ok(req) => req,
            Err(e) => return self.reply_error(key, protocol::request_id(payload), e, now),
        };
        match req {
            ClientRequest::Ping { id } => self.reply(key, protocol::pong_frame(id), now),
            ClientRequest::Subscribe { channel, id } => {
                if let Err(e) = protocol::validate_channel(&channel, self.cfg.hub.max_channel_len) {
                    return self.reply_error(key, id, e, now);
                }
                let slot = &self.conns[key];
                if slot.grants().is_some_and(|g| !g.subscribe.allows(&channel)) {
                    return self.reply_error(key, id, RequestError::SubscribeForbidden, now);
                }
                if !slot.subs().iter().any(|s| **s == *channel) {
                    if slot.subs().len() >= self.cfg.hub.max_subscriptions {
                        return self.reply_error(key, id, RequestError::TooManySubscriptions, now);
                    }
                    if let Some(name) = self.hub.subscribe(&channel, key as u32) {
                        self.conns[key].hub_mut().subs.push(name);
                        self.counters.subscriptions.add(1);
                    }
                }
                if let Some(id) = id {
                    self.reply(key, protocol::ack_frame(id), now);
                }
            }
            ClientRequest::Unsubscribe { channel, id } => {
                if self.hub.unsubscribe(&channel, key as u32) {
                    self.counters.subscriptions.sub(1);
                    if let Some(state) = self.conns[key].hub.as_mut() {
                        state.subs.retain(|s| **s != *channel);
                    }
                }
                if let Some(id) = id {
                    self.reply(key, protocol::ack_frame(id), now);
                }
            }
            ClientRequest::Publish { channel, data, id } => {
                if let Err(e) = protocol::validate_channel(&channel, self.cfg.hub.max_channel_len) {
                    return self.reply_error(key, id, e, now);
                }
                // A token's grants decide; without a token only the dev
                // switch lets clients publish.
                let allowed = match self.conns[key].grants() {
                    Some(g) => g.publish.allows(&channel),
                    None => self.cfg.hub.dev_client_publish,
                };
                if !allowed {
                    return self.reply_error(key, id, RequestError::PublishForbidden, now);
                }
                let frame = protocol::message_frame(Some(&channel), data);
                let channel: Arc<str> = Arc::from(&*channel);
                self.publish_channel(channel, frame, now);
                if let Some(id) = id {
                    self.reply(key, protocol::ack_frame(id), now);
                }
            }
        }
    }

    /// Publishes an encoded frame on `channel`: local subscribers now,
    /// other cores with subscribers through their inboxes.
    pub(super) fn publish_channel(&mut self, channel: Arc<str>, frame: Bytes, now: Instant) {
        self.counters.publishes.add(1);
        let mask = self.hub.registry().channel_cores(&channel) & !(1u64 << self.id);
        for core in mask_cores(mask) {
            self.peers[core].send(Command::Deliver {
                target: Target::Channel(channel.clone()),
                frame: frame.clone(),
                at: now,
            });
        }
        self.deliver(&Target::Channel(channel), frame, now, now);
    }

    /// Delivers a frame, published at `at`, to the target's local
    /// connections.
    pub(super) fn deliver(&mut self, target: &Target, frame: Bytes, at: Instant, now: Instant) {
        let mut keys = std::mem::take(&mut self.scratch);
        keys.clear();
        match target {
            Target::Channel(ch) => {
                if let Some(set) = self.hub.subscribers(ch) {
                    keys.extend(set.iter().copied());
                }
            }
            Target::User(user) => {
                if let Some(set) = self.hub.user_conns(user) {
                    keys.extend(set.iter().copied());
                }
            }
            Target::Conn { key, gen } => {
                if self.conns.get(*key as usize).is_some_and(|s| s.gen == *gen) {
                    keys.push(*key);
                } else {
                    self.counters.dropped_not_open.add(1);
                }
            }
        }
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
                core.push_to(key, frame.clone(), now)
            });
            queued += u64::from(pushed == Some(Push::Queued));
        }
        self.counters.deliveries.add(queued);
        if !keys.is_empty() {
            self.publish_stamps.push(at);
        }
        self.scratch = keys;
    }

    /// Commands from other threads (all but shutdown).
    pub(super) fn handle_command(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Shutdown => {}
            Command::Deliver { target, frame, at } => self.deliver(&target, frame, at, now),
            Command::QueryOutbound { reply } => {
                let bytes = self
                    .conns
                    .iter()
                    .map(|(_, s)| s.conn.queued_bytes() as u64)
                    .sum();
                let _ = reply.send(bytes);
            }
            Command::TopChannels { n, reply } => {
                let _ = reply.send(self.hub.top_channels(n));
            }
            Command::Disconnect { key, gen, code } => {
                let key = key as usize;
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
            Command::AdmissionDecision { key, gen, verdict } => {
                let key = key as usize;
                if self.conns.get(key).is_some_and(|s| s.gen == gen) {
                    self.guarded(key, |core| core.decided(key, gen, verdict, now));
                }
            }
            Command::QueryChannel { channel, reply } => {
                let mut info = ChannelInfo::default();
                if let Some(set) = self.hub.subscribers(&channel) {
                    info.subscribers = set.len();
                    let mut users: Vec<String> = set
                        .iter()
                        .filter_map(|&k| self.conns.get(k as usize)?.user().map(|u| u.to_string()))
                        .collect();
                    users.sort_unstable();
                    users.dedup();
                    info.users = users;
                }
                let _ = reply.send(info);
            }
            Command::QueryUser { user, reply } => {
                let ids = self
                    .hub
                    .user_conns(&user)
                    .map(|set| {
                        set.iter()
                            .filter_map(|&k| {
                                let slot = self.conns.get(k as usize)?;
                                Some(ConnId {
                                    core: self.id as u16,
                                    key: k,
                                    gen: slot.gen,
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let _ = reply.send(ids);
            }
        }
    }
}

/// The core indexes set in `mask`.
pub(crate) fn mask_cores(mut mask: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(i)
    })
}
