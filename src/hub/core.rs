//! One core's hub: what each of the core's connections is to the hub (its
//! user, its subscriptions, its token's grants), the answers to its `/ws`
//! requests, and the publishes and deliveries that reach the core.
//!
//! Owns: per-connection membership ([`Member`], by slab key), the client
//! protocol's request handling (subscribe/unsubscribe/publish/ping, with
//! grant checks, limits, acks and error frames), publishing from this core
//! (encoded once, handed to the other cores through [`route`]), resolving
//! a delivery to local connection keys, and answering the control plane's
//! presence queries. Must not touch: sockets or connections — it returns
//! [`Output`] and [`Fanout`]s (frames and the keys to queue them on) and
//! the engine queues them; the clock (`now` comes in); other cores' state
//! (only their inboxes).
//!
//! Call order, per connection: [`Hub::admitted`] (if admission knew a user
//! or grants), [`Hub::upgrading`] as its upgrade to `/ws` is answered,
//! [`Hub::opened`] once it completed, then any number of
//! [`Hub::request`]; [`Hub::leave_all`] when it stops being open
//! (idempotent; [`Hub::forget`] after a panic), and [`Hub::remove`] when
//! its slab key is freed.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::held::{HeldAcks, Waiting};
use super::local::LocalHub;
use super::protocol::{self, ClientRequest, RequestError};
use super::registry::{Registry, Stale};
use super::route;
use crate::admission::TokenGrants;
use crate::config::HubConfig;
use crate::conn::SharedDeflate;
use crate::inbox::{ChannelInfo, CoreHandle, HubCommand, Membership, Target};
use crate::stats::counters::CoreCounters;

/// What the hub knows of one connection.
#[derive(Debug, Default)]
pub struct Member {
    /// The user id, if known (from its token, or the dev query parameter).
    user: Option<Arc<str>>,
    /// Channels it subscribes to (the interned names of the local index).
    subs: Vec<Arc<str>>,
    /// Channel grants from its token, if it came with one.
    grants: Option<TokenGrants>,
}

impl Member {
    /// The user admission took a per-user quota slot for: a token's (a
    /// user from the dev query parameter holds none).
    pub fn token_user(&self) -> Option<&Arc<str>> {
        self.grants.as_ref().and(self.user.as_ref())
    }
}

/// One frame for many local connections: the engine queues `frame` on
/// each of `keys`, then gives `keys` back ([`Hub::recycle`]).
#[derive(Debug)]
pub struct Fanout {
    pub keys: Vec<u32>,
    pub frame: Bytes,
    /// The publish's compression cell shared with its other cores, if it
    /// went to several with compression on ([`SharedDeflate`]).
    pub deflated: Option<SharedDeflate>,
    /// When it was published (for the publish-to-write histogram).
    pub at: Instant,
}

/// What a client request produced, in the order to queue it: a publish's
/// local fan-out first, then the reply (ack, pong or error) to the
/// requester.
#[derive(Debug, Default)]
pub struct Output {
    pub fanout: Option<Fanout>,
    pub reply: Option<Bytes>,
}

impl Output {
    fn reply(frame: Bytes) -> Self {
        Output {
            fanout: None,
            reply: Some(frame),
        }
    }

    fn ack(id: Option<u64>) -> Self {
        Output {
            fanout: None,
            reply: id.map(protocol::ack_frame),
        }
    }
}

/// The hub of one core. `!Send` in spirit: only its core uses it.
pub struct Hub {
    cfg: HubConfig,
    index: LocalHub,
    /// By slab key; `None` for connections the hub knows nothing of (an
    /// anonymous one without subscriptions costs one pointer).
    members: Vec<Option<Box<Member>>>,
    cores: Arc<[CoreHandle]>,
    counters: Arc<CoreCounters>,
    /// Reused key lists for fan-outs.
    scratch: Vec<u32>,
    /// Clustered: the way to the other nodes.
    uplink: Option<crate::cluster::Uplink>,
    /// With compression on, the server's window: a publish to several
    /// cores carries one compression cell for them all.
    shared_bits: Option<u8>,
    /// Clustered: subscribe acks waiting for the node's broker
    /// subscription to their channel.
    held: HeldAcks,
}

impl Hub {
    /// The hub of core `core`, one of `cores`, over the shared `registry`.
    pub fn new(
        core: usize,
        cfg: HubConfig,
        registry: Arc<Registry>,
        cores: Arc<[CoreHandle]>,
    ) -> Self {
        let counters = cores[core].counters_arc();
        Self {
            cfg,
            index: LocalHub::new(core, registry),
            members: Vec::new(),
            cores,
            counters,
            scratch: Vec::new(),
            uplink: None,
            shared_bits: None,
            held: HeldAcks::new(std::time::Duration::ZERO),
        }
    }

    /// This hub, with its publishes also going to the other nodes of the
    /// cluster through `uplink` (never waited on: a full queue or a down
    /// link drops the cross-node copy, counted there).
    pub fn with_uplink(mut self, uplink: Option<crate::cluster::Uplink>) -> Self {
        if let Some(up) = &uplink {
            self.held = HeldAcks::new(up.request_timeout());
        }
        self.uplink = uplink;
        self
    }

    /// This hub, with compression on (`compression.enabled()`): a publish
    /// from this core to subscribers on more than one core carries one
    /// cell for compressing it once for all of them (server window
    /// `bits`, see [`SharedDeflate`]).
    pub fn with_compression(mut self, cfg: &crate::config::CompressionConfig) -> Self {
        self.shared_bits = cfg.enabled().then_some(cfg.server_max_window_bits);
        self
    }

    /// Clustered, link up, and this node's broker subscription to
    /// `channel` not confirmed yet: its subscribe ack must wait.
    fn ack_must_wait(&self, channel: &str) -> bool {
        self.uplink
            .as_ref()
            .is_some_and(|up| up.is_up() && !up.confirmed().contains(channel))
    }

    /// True while subscribe acks are held.
    pub fn has_held_acks(&self) -> bool {
        !self.held.is_empty()
    }

    /// When the oldest held ack is sent anyway.
    pub fn held_deadline(&self) -> Option<Instant> {
        self.held.deadline()
    }

    /// The held subscribe acks to send now (their channel's broker
    /// subscription is confirmed, the link is down, or they waited
    /// `cluster.request_timeout`), as (connection key, frame).
    pub fn release_acks(&mut self, now: Instant, out: &mut Vec<(u32, Bytes)>) {
        let Some(up) = &self.uplink else {
            return;
        };
        let confirmed = up.confirmed();
        self.held
            .release(now, up.is_up(), |c| confirmed.contains(c), out);
    }

    fn member(&self, key: usize) -> Option<&Member> {
        self.members.get(key)?.as_deref()
    }

    /// The connection's membership, created on first use.
    fn member_mut(&mut self, key: usize) -> &mut Member {
        if self.members.len() <= key {
            self.members.resize_with(key + 1, || None);
        }
        self.members[key].get_or_insert_with(Default::default)
    }

    /// Admission let connection `key` in with this user and these grants
    /// (from its token).
    pub fn admitted(&mut self, key: usize, user: Option<Arc<str>>, grants: Option<TokenGrants>) {
        if user.is_none() && grants.is_none() {
            return;
        }
        let m = self.member_mut(key);
        m.user = user;
        m.grants = grants;
    }

    /// Connection `key`'s upgrade to `/ws` is being answered: in dev mode
    /// (`hub.dev_user_param`), a connection without a token user takes its
    /// user from that parameter of the request's query string `query`.
    pub fn upgrading(&mut self, key: usize, query: Option<&str>) {
        let Some(param) = self.cfg.dev_user_param.as_deref() else {
            return;
        };
        if self.user(key).is_some() {
            return;
        }
        let user = query.and_then(|q| {
            q.split('&').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k == param && !v.is_empty()).then_some(v)
            })
        });
        if let Some(user) = user {
            self.member_mut(key).user = Some(user.into());
        }
    }

    /// Connection `key` completed its upgrade to `/ws`: its user (its
    /// token's, or the dev parameter's) joins the user index.
    pub fn opened(&mut self, key: usize) {
        if let Some(user) = self.user(key).cloned() {
            let name = self.index.add_user(&user, key as u32);
            self.member_mut(key).user = Some(name);
        }
    }

    /// The connection's user, if known.
    pub fn user(&self, key: usize) -> Option<&Arc<str>> {
        self.member(key)?.user.as_ref()
    }

    /// Takes connection `key` out of every channel and its user's set
    /// (idempotent). Its user and grants stay until [`Hub::remove`].
    pub fn leave_all(&mut self, key: usize) {
        self.held.forget(key as u32);
        let Some(m) = self.members.get_mut(key).and_then(|m| m.as_deref_mut()) else {
            return;
        };
        let subs = std::mem::take(&mut m.subs);
        let user = m.user.clone();
        for ch in &subs {
            if self.index.unsubscribe(ch, key as u32) {
                self.counters.subscriptions.sub(1);
            }
        }
        if let Some(user) = user {
            self.index.remove_user(&user, key as u32);
        }
    }

    /// After a panic in connection `key`'s handling: out of every index,
    /// its own lists and a sweep of every set for what they may have
    /// missed (a subscribe cut short between the two). Its user and grants
    /// stay until [`Hub::remove`].
    pub fn forget(&mut self, key: usize) {
        self.leave_all(key);
        let stray = self.index.forget(key as u32);
        self.counters.subscriptions.sub(stray as u64);
    }

    /// Forgets connection `key` (its slab key is being freed): out of
    /// every index, membership dropped and returned (for the quota slot).
    pub fn remove(&mut self, key: usize) -> Option<Box<Member>> {
        self.leave_all(key);
        self.members.get_mut(key)?.take()
    }

    /// One client message on `/ws` from connection `key`.
    pub fn request(&mut self, key: usize, text: bool, payload: &[u8], now: Instant) -> Output {
        if !text {
            return self.refuse(None, RequestError::BinaryNotSupported);
        }
        let req = match protocol::parse_request(payload) {
            Ok(req) => req,
            Err(e) => return self.refuse(protocol::request_id(payload), e),
        };
        match req {
            ClientRequest::Ping { id } => Output::reply(protocol::pong_frame(id)),
            ClientRequest::Subscribe { channel, id } => match self.subscribe(key, &channel) {
                // Clustered: the ack waits for the broker subscription
                // (the registry told the link above), so a publish made
                // anywhere once the client has it reaches it.
                Ok(()) if id.is_some() && self.ack_must_wait(&channel) => {
                    let frame = protocol::ack_frame(id.unwrap_or_default());
                    let reply = match self
                        .held
                        .hold(key as u32, &channel, Waiting::Ack(frame), now)
                    {
                        Some(Waiting::Ack(frame)) => Some(frame),
                        _ => None,
                    };
                    Output {
                        fanout: None,
                        reply,
                    }
                }
                Ok(()) => Output::ack(id),
                Err(e) => self.refuse(id, e),
            },
            ClientRequest::Unsubscribe { channel, id } => {
                self.unsubscribe(key, &channel);
                Output::ack(id)
            }
            ClientRequest::Publish { channel, data, id } => {
                match self.client_publish(key, &channel, data, now) {
                    Ok(fanout) => Output {
                        fanout,
                        reply: id.map(protocol::ack_frame),
                    },
                    Err(e) => self.refuse(id, e),
                }
            }
        }
    }

    fn refuse(&mut self, id: Option<u64>, err: RequestError) -> Output {
        self.counters.request_errors.add(1);
        Output::reply(protocol::error_frame(id, err))
    }

    /// Subscribes `key` to `channel`; done (the registry updated) before
    /// the caller sends the ack.
    fn subscribe(&mut self, key: usize, channel: &str) -> Result<(), RequestError> {
        protocol::validate_channel(channel, self.cfg.max_channel_len)?;
        let m = self.member(key);
        if m.and_then(|m| m.grants.as_ref())
            .is_some_and(|g| !g.subscribe.allows(channel))
        {
            return Err(RequestError::SubscribeForbidden);
        }
        let subs = m.map_or(&[][..], |m| &m.subs);
        if subs.iter().any(|s| **s == *channel) {
            return Ok(());
        }
        if subs.len() >= self.cfg.max_subscriptions {
            return Err(RequestError::TooManySubscriptions);
        }
        if let Some(name) = self.index.subscribe(channel, key as u32) {
            self.member_mut(key).subs.push(name);
            self.counters.subscriptions.add(1);
        }
        Ok(())
    }

    fn unsubscribe(&mut self, key: usize, channel: &str) {
        if self.index.unsubscribe(channel, key as u32) {
            self.counters.subscriptions.sub(1);
            if let Some(m) = self.members.get_mut(key).and_then(|m| m.as_deref_mut()) {
                m.subs.retain(|s| **s != *channel);
            }
        }
    }

    fn client_publish(
        &mut self,
        key: usize,
        channel: &str,
        data: &RawValue,
        now: Instant,
    ) -> Result<Option<Fanout>, RequestError> {
        protocol::validate_channel(channel, self.cfg.max_channel_len)?;
        // A token's grants decide; without a token only the dev switch
        // lets clients publish.
        let allowed = match self.member(key).and_then(|m| m.grants.as_ref()) {
            Some(g) => g.publish.allows(channel),
            None => self.cfg.dev_client_publish,
        };
        if !allowed {
            return Err(RequestError::PublishForbidden);
        }
        Ok(self.publish(channel, data, now))
    }

    /// Publishes `data` on `channel` from this core: encoded once; the
    /// other cores with subscribers get the frame through their inboxes,
    /// the local subscribers through the returned fan-out.
    pub fn publish(&mut self, channel: &str, data: &RawValue, at: Instant) -> Option<Fanout> {
        self.counters.publishes.add(1);
        let frame = route::publish_frame(channel, data);
        let others = match self.index.other_cores(channel) {
            Ok(others) => others,
            Err(Stale) => {
                self.index.refresh(channel);
                self.index.other_cores(channel).unwrap_or((0, None))
            }
        };
        // Only with compression on (the plain path pays nothing): one
        // compression cell when the publish reaches more than one core.
        let deflated = match (self.shared_bits, &others) {
            (Some(bits), (mask, Some(name))) => {
                let local = u32::from(self.index.subscribers(channel).is_some());
                route::shared_deflate(Some(bits), name, mask.count_ones() + local)
            }
            _ => None,
        };
        if let (mask, Some(name)) = others {
            let target = route::channel_target(name.clone(), deflated.as_ref());
            route::to_cores(&self.cores, mask, target, &frame, at);
        }
        if let Some(up) = &self.uplink {
            up.publish(&channel.into(), data);
        }
        let mut keys = self.take_scratch();
        if let Some(set) = self.index.subscribers(channel) {
            keys.extend(set.iter().copied());
        }
        self.fanout(keys, frame, deflated, at)
    }

    /// A command from another thread. `gen_of` tells the generation of a
    /// live connection key (the engine's slab knows).
    pub fn command(
        &mut self,
        cmd: HubCommand,
        now: Instant,
        gen_of: impl Fn(u32) -> Option<u32>,
    ) -> Option<Fanout> {
        match cmd {
            HubCommand::Deliver { target, frame, at } => {
                let mut keys = self.take_scratch();
                let mut deflated = None;
                match target {
                    Target::Channel(ch) => {
                        if let Some(set) = self.index.subscribers(&ch) {
                            keys.extend(set.iter().copied());
                        }
                    }
                    Target::ChannelDeflate(d) => {
                        if let Some(set) = self.index.subscribers(d.channel()) {
                            keys.extend(set.iter().copied());
                        }
                        deflated = Some(d);
                    }
                    Target::User(user) => {
                        if let Some(set) = self.index.user_conns(&user) {
                            keys.extend(set.iter().copied());
                        }
                    }
                    Target::Conn { key, gen } => {
                        if gen_of(key) == Some(gen) {
                            keys.push(key);
                        } else {
                            self.counters.dropped_not_open.add(1);
                        }
                    }
                }
                return self.fanout(keys, frame, deflated, at);
            }
            HubCommand::QueryChannel { channel, reply } => {
                let _ = reply.send(self.channel_info(&channel));
            }
            HubCommand::QueryUser { user, reply } => {
                let conns = self.index.user_conns(&user).map_or_else(Vec::new, |set| {
                    set.iter()
                        .filter_map(|&key| Some((key, gen_of(key)?)))
                        .collect()
                });
                let _ = reply.send(conns);
            }
            HubCommand::TopChannels { n, reply } => {
                let _ = reply.send(self.index.top_channels(n));
            }
            // The engine releases held acks after every turn.
            HubCommand::Subscribed => {}
            HubCommand::Join {
                key,
                gen,
                channel,
                reply,
            } => {
                let answer = if gen_of(key) != Some(gen) {
                    Membership::Gone
                } else {
                    match self.subscribe(key as usize, &channel) {
                        // Clustered: answered once the node's broker
                        // subscription holds, as a client's ack.
                        Ok(()) if self.ack_must_wait(&channel) => {
                            let what = Waiting::Join(reply);
                            if let Some(Waiting::Join(reply)) =
                                self.held.hold(key, &channel, what, now)
                            {
                                // Full: answered at once.
                                let _ = reply.send(Membership::Done);
                            }
                            return None;
                        }
                        Ok(()) => Membership::Done,
                        Err(RequestError::TooManySubscriptions) => Membership::TooManyChannels,
                        Err(_) => Membership::InvalidChannel,
                    }
                };
                let _ = reply.send(answer);
            }
            HubCommand::Leave {
                key,
                gen,
                channel,
                reply,
            } => {
                let answer = if gen_of(key) != Some(gen) {
                    Membership::Gone
                } else {
                    self.unsubscribe(key as usize, &channel);
                    Membership::Done
                };
                let _ = reply.send(answer);
            }
        }
        None
    }

    fn channel_info(&self, channel: &str) -> ChannelInfo {
        let Some(set) = self.index.subscribers(channel) else {
            return ChannelInfo::default();
        };
        let mut users: Vec<String> = set
            .iter()
            .filter_map(|&k| Some(self.user(k as usize)?.to_string()))
            .collect();
        users.sort_unstable();
        users.dedup();
        ChannelInfo {
            subscribers: set.len(),
            users,
        }
    }

    fn take_scratch(&mut self) -> Vec<u32> {
        let mut keys = std::mem::take(&mut self.scratch);
        keys.clear();
        keys
    }

    fn fanout(
        &mut self,
        keys: Vec<u32>,
        frame: Bytes,
        deflated: Option<SharedDeflate>,
        at: Instant,
    ) -> Option<Fanout> {
        if keys.is_empty() {
            self.recycle(keys);
            return None;
        }
        Some(Fanout {
            keys,
            frame,
            deflated,
            at,
        })
    }

    /// Takes back a fan-out's key list for reuse.
    pub fn recycle(&mut self, keys: Vec<u32>) {
        if keys.capacity() > self.scratch.capacity() {
            self.scratch = keys;
        }
    }

    /// Channels with local subscribers.
    pub fn channel_count(&self) -> usize {
        self.index.channel_count()
    }

    /// Subscriptions held by local connections.
    pub fn subscription_count(&self) -> usize {
        self.index.subscription_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Grants;
    use crate::inbox::{inbox, Command, Inbox};
    use mio::{Poll, Token, Waker};

    /// `n` cores' handles and inboxes (polls kept alive beside them).
    fn cores(n: usize) -> (Arc<[CoreHandle]>, Vec<Inbox>, Vec<Poll>) {
        let mut handles = Vec::new();
        let mut inboxes = Vec::new();
        let mut polls = Vec::new();
        for _ in 0..n {
            let poll = Poll::new().unwrap();
            let waker = Waker::new(poll.registry(), Token(1)).unwrap();
            let (h, i) = inbox(16, waker);
            handles.push(h);
            inboxes.push(i);
            polls.push(poll);
        }
        (handles.into(), inboxes, polls)
    }

    fn dev_cfg() -> HubConfig {
        HubConfig {
            dev_client_publish: true,
            max_subscriptions: 2,
            ..HubConfig::default()
        }
    }

    fn text(frame: &Bytes) -> &str {
        // Server frames under 126 bytes: a 2-byte header.
        std::str::from_utf8(&frame[2..]).unwrap()
    }

    fn delivered(inbox: &Inbox) -> Vec<(String, Bytes)> {
        let mut out = Vec::new();
        inbox.drain(|cmd| {
            if let Command::Hub(HubCommand::Deliver {
                target: Target::Channel(ch),
                frame,
                ..
            }) = cmd
            {
                out.push((ch.to_string(), frame));
            }
        });
        out
    }

    #[test]
    fn requests_are_answered_and_a_publish_reaches_both_cores_as_one_frame() {
        let reg = Arc::new(Registry::default());
        let (handles, inboxes, _polls) = cores(2);
        let mut a = Hub::new(0, dev_cfg(), reg.clone(), handles.clone());
        let mut b = Hub::new(1, dev_cfg(), reg.clone(), handles.clone());
        let now = Instant::now();
        let out = b.request(
            4,
            true,
            br#"{"type":"subscribe","channel":"news","id":1}"#,
            now,
        );
        assert_eq!(
            text(out.reply.as_ref().unwrap()),
            r#"{"type":"ack","id":1}"#
        );
        let out = a.request(2, true, br#"{"type":"subscribe","channel":"news"}"#, now);
        assert!(out.reply.is_none() && out.fanout.is_none(), "no id, no ack");
        let out = a.request(
            3,
            true,
            br#"{"type":"publish","channel":"news","data":[1],"id":9}"#,
            now,
        );
        let fanout = out.fanout.unwrap();
        assert_eq!(fanout.keys, vec![2]);
        assert_eq!(
            text(&fanout.frame),
            r#"{"type":"message","channel":"news","data":[1]}"#
        );
        assert_eq!(text(&out.reply.unwrap()), r#"{"type":"ack","id":9}"#);
        let got = delivered(&inboxes[1]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "news");
        assert_eq!(
            got[0].1.as_ptr(),
            fanout.frame.as_ptr(),
            "encoded once: both cores hold the same bytes"
        );
        assert!(delivered(&inboxes[0]).is_empty(), "not to itself");
        let keys = b
            .command(
                HubCommand::Deliver {
                    target: Target::Channel("news".into()),
                    frame: got[0].1.clone(),
                    at: now,
                },
                now,
                Some,
            )
            .unwrap()
            .keys;
        assert_eq!(keys, vec![4]);
        assert_eq!(handles[0].counters().publishes.get(), 1);
        assert_eq!(handles[0].counters().subscriptions.get(), 1);
    }

    #[test]
    fn grants_limits_and_bad_requests_get_error_frames() {
        let reg = Arc::new(Registry::default());
        let (handles, _inboxes, _polls) = cores(1);
        let mut hub = Hub::new(0, dev_cfg(), reg, handles.clone());
        let grants = TokenGrants {
            subscribe: Grants::new(["room:*"]),
            publish: Grants::default(),
        };
        hub.admitted(1, Some("ann".into()), Some(grants));
        hub.upgrading(1, Some("user=mallory"));
        hub.opened(1);
        assert_eq!(
            hub.user(1).map(|u| &**u),
            Some("ann"),
            "a token's user wins"
        );
        let now = Instant::now();
        let code = |out: Output| -> String {
            let v: serde_json::Value = serde_json::from_str(text(&out.reply.unwrap())).unwrap();
            v["code"].as_str().unwrap_or("").to_string()
        };
        let mut ask = |msg: &str| hub.request(1, true, msg.as_bytes(), now);
        assert_eq!(
            code(ask(r#"{"type":"subscribe","channel":"news","id":1}"#)),
            "subscribe_forbidden"
        );
        assert_eq!(
            code(ask(
                r#"{"type":"publish","channel":"room:1","data":1,"id":2}"#
            )),
            "publish_forbidden",
            "a token's grants decide, not the dev switch"
        );
        ask(r#"{"type":"subscribe","channel":"room:1"}"#);
        ask(r#"{"type":"subscribe","channel":"room:2"}"#);
        assert_eq!(
            code(ask(r#"{"type":"subscribe","channel":"room:3","id":3}"#)),
            "too_many_subscriptions"
        );
        assert_eq!(code(ask("nope")), "bad_request");
        assert_eq!(
            code(hub.request(1, false, b"{}", now)),
            "binary_not_supported"
        );
        assert_eq!(handles[0].counters().request_errors.get(), 5);
        assert_eq!(hub.subscription_count(), 2);
        let m = hub.remove(1).unwrap();
        assert_eq!(m.token_user().map(|u| &**u), Some("ann"));
        assert_eq!(hub.subscription_count(), 0);
        assert_eq!(handles[0].counters().subscriptions.get(), 0);
        assert!(hub.remove(1).is_none(), "once");
    }

    #[test]
    fn presence_and_direct_deliveries_resolve_to_live_connections() {
        let reg = Arc::new(Registry::default());
        let (handles, _inboxes, _polls) = cores(1);
        let cfg = HubConfig {
            dev_user_param: Some("user".into()),
            ..dev_cfg()
        };
        let mut hub = Hub::new(0, cfg, reg.clone(), handles.clone());
        for (key, query) in [(5, Some("x=1&user=bob")), (6, Some("user=bob")), (7, None)] {
            hub.upgrading(key, query);
            hub.opened(key);
        }
        let now = Instant::now();
        for key in [5, 6, 7] {
            hub.request(key, true, br#"{"type":"subscribe","channel":"c"}"#, now);
        }
        assert_eq!(reg.users_online(), 1);
        let (tx, rx) = crossbeam_channel::bounded(1);
        hub.command(
            HubCommand::QueryChannel {
                channel: "c".into(),
                reply: tx,
            },
            now,
            Some,
        );
        let info = rx.recv().unwrap();
        assert_eq!((info.subscribers, info.users), (3, vec!["bob".to_string()]));
        let (tx, rx) = crossbeam_channel::bounded(1);
        hub.command(
            HubCommand::QueryUser {
                user: "bob".into(),
                reply: tx,
            },
            now,
            |k| Some(k + 100),
        );
        let mut conns = rx.recv().unwrap();
        conns.sort();
        assert_eq!(conns, vec![(5, 105), (6, 106)]);
        let frame = Bytes::from_static(b"\x81\x00");
        let deliver = |target| HubCommand::Deliver {
            target,
            frame: frame.clone(),
            at: now,
        };
        let fan = hub.command(deliver(Target::Conn { key: 7, gen: 3 }), now, |_| Some(3));
        assert_eq!(fan.unwrap().keys, vec![7]);
        assert!(hub
            .command(deliver(Target::Conn { key: 7, gen: 3 }), now, |_| Some(4))
            .is_none());
        assert_eq!(handles[0].counters().dropped_not_open.get(), 1);
        let mut keys = hub
            .command(deliver(Target::User("bob".into())), now, Some)
            .unwrap()
            .keys;
        keys.sort();
        assert_eq!(keys, vec![5, 6]);
        hub.leave_all(5);
        hub.leave_all(5);
        hub.remove(6);
        assert_eq!(reg.users_online(), 0);
        assert_eq!(hub.channel_count(), 1);
    }
}
