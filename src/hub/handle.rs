//! The hub as the control plane sees it: one `Send + Clone` handle to
//! publish, send, disconnect and ask who is where — the only way the admin
//! plane (and, next, backend callbacks and the broker link) reaches
//! channels, users and connections.
//!
//! Owns: the control plane's side of every hub operation — validating its
//! input, encoding a message once and routing it (the same
//! [`route`] functions a core's own publish takes), and gathering the
//! cores' answers to presence queries with a deadline. Must not touch:
//! any core's state (only inboxes, never blocking on one: a full inbox is
//! [`HubError::Busy`] for a command the caller waits on, a counted drop
//! for a delivery), HTTP (the admin plane maps [`HubError`] to statuses).

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use serde_json::value::RawValue;

use super::id::ConnId;
use super::protocol;
use super::registry::{CoreMask, Registry};
use super::route;
use crate::cluster::request::Asked;
use crate::cluster::wire::Op;
use crate::cluster::{NodeConn, Uplink};
use crate::config::Config;
use crate::inbox::{ChannelInfo, Command, CoreHandle, HubCommand, Membership, Posted, Target};

/// Why a hub operation from the control plane was not done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HubError {
    /// Channel name empty, too long or with control characters.
    InvalidChannel,
    /// The connection id names no core of this server.
    UnknownConnection,
    /// Not a close code a server may send.
    InvalidCloseCode,
    /// A core's inbox is full: try again later.
    Busy,
}

/// A `Send + Clone` handle to the hub of every core.
#[derive(Clone)]
pub struct HubHandle {
    registry: Arc<Registry>,
    cores: Arc<[CoreHandle]>,
    max_channel_len: usize,
    /// How long a presence query waits for the cores' answers
    /// (`admin.query_timeout`); a core that has not answered by then is
    /// left out.
    query_timeout: Duration,
    /// Clustered: the way to the other nodes.
    uplink: Option<Uplink>,
    /// With compression on, the server's window: a publish to several
    /// cores carries one compression cell for them all.
    shared_bits: Option<u8>,
}

impl HubHandle {
    /// The hub of `cores`, sharing `registry` with their [`super::Hub`]s.
    pub fn new(registry: Arc<Registry>, cores: Arc<[CoreHandle]>, cfg: &Config) -> Self {
        Self {
            registry,
            cores,
            max_channel_len: cfg.hub.max_channel_len,
            query_timeout: cfg.admin.query_timeout,
            uplink: None,
            shared_bits: cfg
                .compression
                .enabled()
                .then_some(cfg.compression.server_max_window_bits),
        }
    }

    /// This handle, with publishes and sends also going to the other
    /// nodes of the cluster through `uplink`.
    pub fn with_uplink(mut self, uplink: Uplink) -> Self {
        self.uplink = Some(uplink);
        self
    }

    /// This node's id, when clustered.
    pub fn node(&self) -> Option<u32> {
        self.uplink.as_ref().map(Uplink::node)
    }

    /// The text form of a connection id of this node: `core-key-gen`, or
    /// `node.core-key-gen` when clustered.
    pub fn conn_text(&self, conn: ConnId) -> String {
        NodeConn {
            node: self.node(),
            conn,
        }
        .to_string()
    }

    /// True if `channel` is a name clients may use (so a publish to it
    /// can reach anyone).
    pub fn is_valid_channel(&self, channel: &str) -> bool {
        protocol::validate_channel(channel, self.max_channel_len).is_ok()
    }

    /// Publishes `data` on `channel` to every subscriber on every core,
    /// encoded once. Returns how many cores it was handed to (a core whose
    /// inbox is full misses it, counted there).
    /// Clustered, it also goes to the other nodes (one broker publish).
    pub fn publish(&self, channel: &str, data: &RawValue) -> Result<u32, HubError> {
        if !self.is_valid_channel(channel) {
            return Err(HubError::InvalidChannel);
        }
        let cores = self.publish_local(channel, data)?;
        if let Some(up) = &self.uplink {
            up.publish(&channel.into(), data);
        }
        Ok(cores)
    }

    /// [`HubHandle::publish`] to this node's subscribers only (what a
    /// publish from another node takes here).
    pub fn publish_local(&self, channel: &str, data: &RawValue) -> Result<u32, HubError> {
        if !self.is_valid_channel(channel) {
            return Err(HubError::InvalidChannel);
        }
        let at = Instant::now();
        let frame = route::publish_frame(channel, data);
        let Some((name, mask)) = self.registry.channels.mask(channel) else {
            return Ok(0);
        };
        let deflated = route::shared_deflate(self.shared_bits, &name, mask.count_ones());
        Ok(route::to_cores(
            &self.cores,
            mask,
            route::channel_target(name, deflated.as_ref()),
            &frame,
            at,
        ))
    }

    /// Sends `data` to every connection of `user`; false if it has none
    /// on this node. Clustered, it also goes to the other nodes.
    pub fn send_to_user(&self, user: &str, data: &RawValue) -> bool {
        if let Some(up) = &self.uplink {
            up.send_to_user(user, data);
        }
        self.send_to_user_local(user, data)
    }

    /// [`HubHandle::send_to_user`] on this node only.
    pub fn send_to_user_local(&self, user: &str, data: &RawValue) -> bool {
        let at = Instant::now();
        let frame = route::direct_frame(data);
        let Some((name, mask)) = self.registry.users.mask(user) else {
            return false;
        };
        route::to_cores(&self.cores, mask, Target::User(name), &frame, at);
        true
    }

    /// The core of `id`, if it names one of this server's.
    fn core_of(&self, id: ConnId) -> Result<&CoreHandle, HubError> {
        self.cores
            .get(id.core as usize)
            .ok_or(HubError::UnknownConnection)
    }

    /// True if `id` could name a connection of this server (its core
    /// exists; the connection itself may be gone).
    pub fn is_known_core(&self, id: ConnId) -> bool {
        self.core_of(id).is_ok()
    }

    /// Sends `data` to one connection (if it is still open there).
    pub fn send_to_connection(&self, id: ConnId, data: &RawValue) -> Result<(), HubError> {
        let core = self.core_of(id)?;
        let target = Target::Conn {
            key: id.key,
            gen: id.gen,
        };
        if core.deliver(target, route::direct_frame(data), Instant::now()) {
            Ok(())
        } else {
            Err(HubError::Busy)
        }
    }

    /// Where a connection id of the admin API points: this node's
    /// connection (`Ok(Some)`), another node's (`Ok(None)`: only a
    /// clustered node forwards), or nothing (`Err`).
    pub fn locate(&self, id: NodeConn) -> Result<Option<ConnId>, HubError> {
        match (id.node, self.node()) {
            (None, _) => self.core_of(id.conn).map(|_| Some(id.conn)),
            (Some(n), Some(me)) if n == me => self.core_of(id.conn).map(|_| Some(id.conn)),
            (Some(_), Some(_)) => Ok(None),
            (Some(_), None) => Err(HubError::UnknownConnection),
        }
    }

    /// Queues a ready `frame` on one connection only if it fits under its
    /// `connection.max_pending_bytes`, and says what happened (waits for
    /// its core's answer up to the query timeout: call it off the async
    /// workers). The `@connections` API's POST.
    pub fn post(&self, id: ConnId, frame: bytes::Bytes) -> Result<Posted, HubError> {
        let core = self.core_of(id)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        core.try_send(Command::Post {
            key: id.key,
            gen: id.gen,
            frame,
            reply: tx,
        })
        .map_err(|_| HubError::Busy)?;
        rx.recv_timeout(self.query_timeout)
            .map_err(|_| HubError::Busy)
    }

    /// Hands a ready `frame` to one connection without waiting (the
    /// slow-consumer policy applies there); `Busy` if its core's inbox
    /// is full.
    pub fn send_frame(&self, id: ConnId, frame: bytes::Bytes) -> Result<(), HubError> {
        let core = self.core_of(id)?;
        let target = Target::Conn {
            key: id.key,
            gen: id.gen,
        };
        if core.deliver(target, frame, Instant::now()) {
            Ok(())
        } else {
            Err(HubError::Busy)
        }
    }

    /// Puts one connection into `channel` (`join`) or takes it out, as a
    /// subscribe or unsubscribe of its own would; waits for its core's
    /// answer up to the query timeout. Membership ends with the
    /// connection.
    pub fn membership(
        &self,
        id: ConnId,
        channel: &str,
        join: bool,
    ) -> Result<Membership, HubError> {
        if !self.is_valid_channel(channel) {
            return Ok(Membership::InvalidChannel);
        }
        let core = self.core_of(id)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (key, gen, channel) = (id.key, id.gen, channel.into());
        let cmd = if join {
            HubCommand::Join {
                key,
                gen,
                channel,
                reply: tx,
            }
        } else {
            HubCommand::Leave {
                key,
                gen,
                channel,
                reply: tx,
            }
        };
        core.try_send(Command::Hub(cmd))
            .map_err(|_| HubError::Busy)?;
        rx.recv_timeout(self.query_timeout)
            .map_err(|_| HubError::Busy)
    }

    /// Closes one connection with `code`.
    pub fn disconnect(&self, id: ConnId, code: u16) -> Result<(), HubError> {
        if !crate::protocol::close::is_valid_close_code(code) {
            return Err(HubError::InvalidCloseCode);
        }
        let cmd = Command::Disconnect {
            key: id.key,
            gen: id.gen,
            code,
            reply: None,
        };
        self.core_of(id)?.try_send(cmd).map_err(|_| HubError::Busy)
    }

    /// Closes one connection with `code` and says whether it was open
    /// (false: gone or already closing); waits for its core's answer up
    /// to the query timeout (call it off the async workers).
    pub fn disconnect_checked(&self, id: ConnId, code: u16) -> Result<bool, HubError> {
        if !crate::protocol::close::is_valid_close_code(code) {
            return Err(HubError::InvalidCloseCode);
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        let cmd = Command::Disconnect {
            key: id.key,
            gen: id.gen,
            code,
            reply: Some(tx),
        };
        self.core_of(id)?
            .try_send(cmd)
            .map_err(|_| HubError::Busy)?;
        rx.recv_timeout(self.query_timeout)
            .map_err(|_| HubError::Busy)
    }

    /// Sends `data` to one connection if it is open and it fits under its
    /// `connection.max_pending_bytes`, and says which (waits for its
    /// core's answer up to the query timeout: call it off the async
    /// workers). The admin API's send to one connection.
    pub fn send_checked(&self, id: ConnId, data: &RawValue) -> Result<Posted, HubError> {
        self.post(id, route::direct_frame(data))
    }

    /// Clustered: asks node `node` to perform `op` on one of its
    /// connections and waits for the outcome (up to
    /// `cluster.request_timeout`; call it on a blocking thread).
    /// [`Asked::Unavailable`] on a node on its own.
    pub fn ask_node(&self, node: u32, op: Op) -> Asked {
        match &self.uplink {
            Some(up) => up.ask(node, op),
            None => Asked::Unavailable,
        }
    }

    /// Clustered: tells every core the link confirmed subscriptions (or
    /// went down), so they send the subscribe acks that waited. A core
    /// whose inbox is full is not told (it looks again after its next
    /// turn, and sends each held ack after `cluster.request_timeout` at
    /// the latest).
    pub fn subscriptions_confirmed(&self) {
        for core in self.cores.iter() {
            let _ = core.try_send(Command::Hub(HubCommand::Subscribed));
        }
    }

    /// Subscribers of `channel` on every core, with their distinct users.
    pub fn channel(&self, channel: &str) -> Result<ChannelInfo, HubError> {
        let mask = self.registry.channels.mask(channel).map_or(0, |(_, m)| m);
        let mut total = ChannelInfo::default();
        for (_, info) in self.ask(mask, |reply| HubCommand::QueryChannel {
            channel: channel.into(),
            reply,
        })? {
            total.subscribers += info.subscribers;
            total.users.extend(info.users);
        }
        total.users.sort_unstable();
        total.users.dedup();
        Ok(total)
    }

    /// The connections of `user`, on every core, sorted by their text.
    pub fn user_connections(&self, user: &str) -> Result<Vec<ConnId>, HubError> {
        let mask = self.registry.users.mask(user).map_or(0, |(_, m)| m);
        let mut ids: Vec<ConnId> = self
            .ask(mask, |reply| HubCommand::QueryUser {
                user: user.into(),
                reply,
            })?
            .into_iter()
            .flat_map(|(core, conns)| {
                conns.into_iter().map(move |(key, gen)| ConnId {
                    core: core as u16,
                    key,
                    gen,
                })
            })
            .collect();
        ids.sort_unstable_by_key(|id| id.to_string());
        Ok(ids)
    }

    /// Each core's `n` largest channels, summed by name, largest first:
    /// exact for channels in every core's list, a lower bound for the rest.
    pub fn top_channels(&self, n: usize) -> Result<Vec<(Arc<str>, usize)>, HubError> {
        let all = CoreMask::MAX >> (64 - self.cores.len().clamp(1, 64));
        let mut merged: rustc_hash::FxHashMap<Arc<str>, usize> = Default::default();
        for (_, list) in self.ask(all, |reply| HubCommand::TopChannels { n, reply })? {
            for (name, k) in list {
                *merged.entry(name).or_default() += k;
            }
        }
        let mut top: Vec<(Arc<str>, usize)> = merged.into_iter().collect();
        top.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(n);
        Ok(top)
    }

    /// Channels with at least one subscriber anywhere.
    pub fn channel_count(&self) -> u64 {
        self.registry.channel_count()
    }

    /// Users with at least one connection anywhere.
    pub fn users_online(&self) -> u64 {
        self.registry.users_online()
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.cores.len()
    }

    /// Sends a query to every core in `mask` and gathers the answers that
    /// come within the query timeout, each with the core that gave it. Each
    /// core answers on a channel of its own with room for the answer, so a
    /// core never waits to give one.
    fn ask<T>(
        &self,
        mask: CoreMask,
        make: impl Fn(Sender<T>) -> HubCommand,
    ) -> Result<Vec<(usize, T)>, HubError> {
        let mut asked = Vec::with_capacity(mask.count_ones() as usize);
        for core in route::mask_cores(mask) {
            let handle = self.cores.get(core).ok_or(HubError::UnknownConnection)?;
            let (tx, rx) = crossbeam_channel::bounded(1);
            handle
                .try_send(Command::Hub(make(tx)))
                .map_err(|_| HubError::Busy)?;
            asked.push((core, rx));
        }
        let deadline = Instant::now() + self.query_timeout;
        Ok(asked
            .into_iter()
            .filter_map(|(core, rx)| Some((core, rx.recv_deadline(deadline).ok()?)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inbox::{inbox, Inbox};
    use mio::{Poll, Token, Waker};

    /// One core nobody drains, with an inbox of `capacity`.
    fn stalled_core(capacity: usize) -> (HubHandle, Arc<Registry>, Inbox, Poll) {
        let poll = Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), Token(1)).unwrap();
        let (core, inbox) = inbox(capacity, waker);
        let registry = Arc::new(Registry::default());
        let hub = HubHandle::new(registry.clone(), vec![core].into(), &Config::default());
        (hub, registry, inbox, poll)
    }

    /// The admin API's publish takes the hub's validation: format
    /// characters (U+202E …) are refused as from clients.
    #[test]
    fn the_admin_path_refuses_format_characters_in_channel_names() {
        let (hub, _registry, _inbox, _poll) = stalled_core(4);
        assert!(hub.is_valid_channel("news"));
        for name in ["news\u{202E}txt", "a\u{200B}b", "\u{FEFF}x", "t\u{E0041}"] {
            assert!(!hub.is_valid_channel(name), "{name:?}");
            let data = RawValue::from_string("1".into()).unwrap();
            assert!(matches!(
                hub.publish(name, &data),
                Err(HubError::InvalidChannel)
            ));
        }
    }

    #[test]
    fn a_full_inbox_makes_control_commands_busy_and_drops_deliveries_counted() {
        let (hub, registry, inbox, _poll) = stalled_core(2);
        registry.channels.join(&"news".into(), 0);
        let data = RawValue::from_string("1".into()).unwrap();
        assert_eq!(hub.publish("news", &data), Ok(1));
        assert_eq!(
            hub.publish("nobody", &data),
            Ok(0),
            "no subscriber: nothing sent"
        );
        assert_eq!(hub.publish("", &data), Err(HubError::InvalidChannel));
        let id = ConnId {
            core: 0,
            key: 1,
            gen: 1,
        };
        assert_eq!(hub.send_to_connection(id, &data), Ok(()));
        // Full now.
        assert_eq!(hub.publish("news", &data), Ok(0), "dropped");
        assert_eq!(hub.send_to_connection(id, &data), Err(HubError::Busy));
        assert_eq!(hub.disconnect(id, 1000), Err(HubError::Busy));
        assert_eq!(hub.channel("news").unwrap_err(), HubError::Busy);
        assert_eq!(hub.disconnect(id, 1005), Err(HubError::InvalidCloseCode));
        let elsewhere = ConnId { core: 1, ..id };
        assert_eq!(
            hub.send_to_connection(elsewhere, &data),
            Err(HubError::UnknownConnection)
        );
        let mut queued = 0;
        inbox.drain(|_| queued += 1);
        assert_eq!(queued, 2);
        assert_eq!(
            hub.cores
                .first()
                .unwrap()
                .counters()
                .dropped_inbox_full
                .get(),
            2
        );
        // Nobody subscribed to "ghost": presence needs no core at all.
        assert_eq!(hub.channel("ghost"), Ok(ChannelInfo::default()));
    }
}
