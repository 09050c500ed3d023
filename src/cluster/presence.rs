//! Cluster-wide presence in Redis, with no cron: who subscribes to a
//! channel and where a user's connections are, on every node, and no
//! ghost of a node that died.
//!
//! Owns: the node's lease and its part of each presence hash
//! ([`Writer`]), and reading the other nodes' parts ([`Reader`]). Must not
//! touch: routing or the pub/sub link (their own task), any core's state
//! (it asks the hub handle, off the async workers).
//!
//! Layout under `cluster.prefix` (`wsedge:` by default):
//! - `{prefix}nodes`: a sorted set of node leases, member = node id,
//!   score = the lease's expiry in Unix milliseconds. Each node renews its
//!   own every third of `cluster.presence_ttl`.
//! - `{prefix}p:c:{channel}` and `{prefix}p:u:{user}`: a hash per channel
//!   and per user, field = node id, value = that node's part as JSON
//!   (`{"n":subscribers,"u":[users]}` for a channel, `["4711.0-1-1",…]`
//!   for a user). A node writes its field whenever its part changes
//!   (batched, a few per second at most per name) and deletes it when it
//!   has none.
//!
//! A read takes the hash and the live leases in one round trip, keeps the
//! fields of live nodes and deletes the others' (lazily, on read): a node
//! that was `kill -9`ed drops out of every answer within the TTL, without
//! any sweeper. The expiry lives in one sorted set of leases rather than
//! one per key, so a renewal is one command, not one per name.
//! What is not purged until read: the dead node's fields in hashes nobody
//! reads (bounded by what it had).
//! Clocks: leases are compared with each reader's clock, so nodes' clocks
//! must agree to well within the TTL (NTP).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;

use super::wire::{self, Subject};
use super::{NodeConn, NodeParts};
use crate::config::ClusterConfig;
use crate::hub::registry::Kind;
use crate::hub::HubHandle;
use crate::inbox::ChannelInfo;

/// How often the writer looks for changed names.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Why presence could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PresenceError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("timed out")]
    Timeout,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A lazily made, shared connection for presence commands.
struct Conn {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    timeout: Duration,
}

impl Conn {
    /// Not connected yet (at the first command); commands time out after
    /// `cluster.probe_interval`.
    fn new(client: redis::Client, cfg: &ClusterConfig) -> Self {
        Self {
            client,
            conn: Default::default(),
            timeout: cfg.probe_interval,
        }
    }

    async fn get(&self) -> Result<MultiplexedConnection, PresenceError> {
        let mut g = self.conn.lock().await;
        if let Some(c) = &*g {
            return Ok(c.clone());
        }
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let c = tokio::time::timeout(
            self.timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await
        .map_err(|_| PresenceError::Timeout)??;
        *g = Some(c.clone());
        Ok(c)
    }

    /// Forgets the connection after an error (the next use reconnects).
    async fn reset(&self) {
        *self.conn.lock().await = None;
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, PresenceError> {
        let mut c = self.get().await?;
        let r = match tokio::time::timeout(self.timeout, pipe.query_async(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(PresenceError::Timeout),
        };
        if r.is_err() {
            self.reset().await;
        }
        r
    }
}

/// Reads the cluster's presence (for the admin API).
pub struct Reader {
    conn: Conn,
    prefix: String,
    node: u32,
    /// The runtime the reads run on (the admin routes call from its
    /// blocking pool).
    rt: Mutex<Option<tokio::runtime::Handle>>,
}

impl Reader {
    pub fn new(client: redis::Client, cfg: &ClusterConfig, node: u32) -> Self {
        Self {
            conn: Conn::new(client, cfg),
            prefix: cfg.prefix.clone(),
            node,
            rt: Mutex::new(None),
        }
    }

    /// The broker client.
    pub fn client(&self) -> &redis::Client {
        &self.conn.client
    }

    /// Reads run on `rt`.
    pub fn set_runtime(&self, rt: tokio::runtime::Handle) {
        *self.rt.lock().unwrap_or_else(|e| e.into_inner()) = Some(rt);
    }

    /// The other live nodes' parts of `s`'s presence hash (raw JSON),
    /// purging dead nodes' fields. Blocking: call it off the async
    /// workers.
    fn others(&self, s: &Subject<'_>) -> Result<Vec<(u32, String)>, PresenceError> {
        let rt = self
            .rt
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(PresenceError::Timeout)?;
        let key = wire::presence_key(&self.prefix, s);
        rt.block_on(async {
            let now = now_ms();
            let mut pipe = redis::pipe();
            pipe.hgetall(&key)
                .zrangebyscore(wire::leases_key(&self.prefix), now, "+inf");
            let (fields, live): (Vec<(String, String)>, Vec<String>) = self.conn.run(&pipe).await?;
            let mut dead = Vec::new();
            let mut out = Vec::new();
            for (node, value) in fields {
                if !live.contains(&node) {
                    dead.push(node);
                    continue;
                }
                match node.parse::<u32>() {
                    Ok(n) if n != self.node => out.push((n, value)),
                    _ => {}
                }
            }
            if !dead.is_empty() {
                let mut pipe = redis::pipe();
                pipe.hdel(&key, &dead).ignore();
                // Lazy purge: a failure is retried at the next read.
                let _: Result<(), _> = self.conn.run(&pipe).await;
            }
            Ok(out)
        })
    }

    /// The other nodes' subscribers of `channel`: added to `info`.
    pub fn channel(&self, channel: &str, info: &mut ChannelInfo) -> Result<(), PresenceError> {
        for (_, v) in self.others(&Subject::channel(channel))? {
            if let Ok(part) = serde_json::from_str::<ChannelPart>(&v) {
                info.subscribers += part.n;
                info.users.extend(part.u);
            }
        }
        info.users.sort_unstable();
        info.users.dedup();
        Ok(())
    }

    /// The other nodes' connections of `user`: added to `ids`.
    pub fn user(&self, user: &str, ids: &mut Vec<String>) -> Result<(), PresenceError> {
        for (_, v) in self.others(&Subject::user(user))? {
            if let Ok(part) = serde_json::from_str::<Vec<String>>(&v) {
                ids.extend(part);
            }
        }
        ids.sort_unstable();
        Ok(())
    }
}

/// A node's part of a channel's presence.
#[derive(serde::Serialize, serde::Deserialize)]
struct ChannelPart {
    n: usize,
    u: Vec<String>,
}

/// Writes this node's lease and presence parts.
pub struct Writer {
    conn: Conn,
    prefix: String,
    node: u32,
    ttl: Duration,
    /// Counters, hub, registry and its changes.
    parts: NodeParts,
}

impl Writer {
    pub fn new(cfg: &ClusterConfig, node: u32, client: redis::Client, parts: NodeParts) -> Self {
        Self {
            conn: Conn::new(client, cfg),
            prefix: cfg.prefix.clone(),
            node,
            ttl: cfg.presence_ttl,
            parts,
        }
    }

    /// Renews the lease every third of the TTL and writes changed parts
    /// every 200 ms; forever (ends with the runtime).
    pub async fn run(self) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let renew_every = self.ttl / 3;
        let mut renewed: Option<tokio::time::Instant> = None;
        // Names whose write failed: tried again.
        let mut retry: Vec<(Kind, Arc<str>)> = Vec::new();
        let mut id_checked = false;
        self.parts.changes.resync_presence();
        loop {
            tick.tick().await;
            if !id_checked {
                // Two live nodes with one id would take each other's
                // messages: say so (a node restarted within the TTL with a
                // fixed id sees its own old lease, hence "may").
                let mut pipe = redis::pipe();
                pipe.zscore(wire::leases_key(&self.prefix), self.node);
                if let Ok((Some(expiry),)) = self.conn.run::<(Option<u64>,)>(&pipe).await {
                    if expiry > now_ms() {
                        tracing::warn!(
                            node = self.node,
                            "another live node may have this cluster.node_id (or this node restarted within cluster.presence_ttl)"
                        );
                    }
                }
                id_checked = true;
            }
            if !matches!(renewed, Some(at) if at.elapsed() < renew_every) {
                let mut pipe = redis::pipe();
                pipe.zadd(
                    wire::leases_key(&self.prefix),
                    self.node,
                    now_ms() + self.ttl.as_millis() as u64,
                )
                .ignore()
                // Leases that ended long ago (their nodes are gone).
                .zrembyscore(
                    wire::leases_key(&self.prefix),
                    0,
                    now_ms().saturating_sub(3_600_000),
                )
                .ignore();
                match self.conn.run::<()>(&pipe).await {
                    Ok(()) => {
                        if renewed.is_none() {
                            // A lease that had lapsed (or a first one): write
                            // every part again.
                            self.parts.changes.resync_presence();
                        }
                        renewed = Some(tokio::time::Instant::now());
                    }
                    Err(_) => {
                        self.parts
                            .stats
                            .presence_errors
                            .fetch_add(1, Ordering::Relaxed);
                        renewed = None;
                        continue;
                    }
                }
            }
            let pending = self.parts.changes.take_presence();
            let mut names: Vec<(Kind, Arc<str>)> = std::mem::take(&mut retry);
            names.extend(pending.names);
            if pending.overflow {
                names.extend(
                    self.parts
                        .registry
                        .channels
                        .names()
                        .into_iter()
                        .map(|n| (Kind::Channel, n)),
                );
                names.extend(
                    self.parts
                        .registry
                        .users
                        .names()
                        .into_iter()
                        .map(|n| (Kind::User, n)),
                );
            }
            if names.is_empty() {
                continue;
            }
            names.sort_unstable();
            names.dedup();
            // The cores' answers: waited for off the async workers.
            let hub = self.parts.hub.clone();
            let node = self.node;
            let prefix = self.prefix.clone();
            let asked = names.clone();
            let Ok(parts) =
                tokio::task::spawn_blocking(move || parts(&hub, node, &prefix, &asked)).await
            else {
                continue;
            };
            let mut pipe = redis::pipe();
            for (key, value) in &parts {
                match value {
                    Some(v) => pipe.hset(key, self.node, v).ignore(),
                    None => pipe.hdel(key, self.node).ignore(),
                };
            }
            if self.conn.run::<()>(&pipe).await.is_err() {
                self.parts
                    .stats
                    .presence_errors
                    .fetch_add(1, Ordering::Relaxed);
                retry = names;
                renewed = None;
            }
        }
    }
}

/// This node's part of each name's presence now: the hash key and its
/// value, or `None` when the node has no member.
fn parts(
    hub: &HubHandle,
    node: u32,
    prefix: &str,
    names: &[(Kind, Arc<str>)],
) -> Vec<(String, Option<String>)> {
    names
        .iter()
        .filter_map(|(kind, name)| match kind {
            Kind::Channel => {
                let info = hub.channel(name).ok()?;
                let key = wire::presence_key(prefix, &Subject::channel(name));
                let value = (info.subscribers > 0).then(|| {
                    serde_json::to_string(&ChannelPart {
                        n: info.subscribers,
                        u: info.users,
                    })
                    .expect("plain JSON")
                });
                Some((key, value))
            }
            Kind::User => {
                let ids = hub.user_connections(name).ok()?;
                let key = wire::presence_key(prefix, &Subject::user(name));
                let texts: Vec<String> = ids
                    .into_iter()
                    .map(|conn| {
                        NodeConn {
                            node: Some(node),
                            conn,
                        }
                        .to_string()
                    })
                    .collect();
                let value =
                    (!texts.is_empty()).then(|| serde_json::to_string(&texts).expect("strings"));
                Some((key, value))
            }
        })
        .collect()
}
