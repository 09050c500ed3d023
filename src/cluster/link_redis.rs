//! The broker link to Redis, on the control plane's runtime: one
//! connection for publishes (pipelined, in order) and one pub/sub
//! connection this task resubscribes itself after a reconnect; what
//! arrives is handed to the cores through [`HubHandle`](crate::hub::HubHandle) (their bounded
//! inboxes and wakers — nothing here ever waits on a core).
//!
//! Owns: connecting (with timeouts: a wedged broker cannot hang it),
//! the subscribe/unsubscribe batches [`Interest`] asks for, publishing
//! the [`Out`] queue, reading messages and dropping this node's own,
//! the probe ([`Probe`]), the link state in [`LinkStats`](super::LinkStats), and reconnecting
//! with exponential backoff and jitter. Must not touch: presence (its own
//! task), any core's state, the broker URL in logs (it may hold a
//! password).
//!
//! Order: one node's messages leave in queue order on one connection and
//! Redis delivers a connection's publishes to each subscriber in order,
//! so a publisher's messages to a channel arrive in order on every node.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};
use tokio::sync::mpsc::Receiver;

use super::deliver::{self, Naming};
use super::probe::Probe;
use super::routing::{self, Interest};
use super::wire::{self, Envelope, Subject};
use super::{NodeParts, Out, Uplink};
use crate::config::ClusterConfig;

/// Subjects per SUBSCRIBE or UNSUBSCRIBE command (a reconnect with
/// 100 000 channels sends 100 commands, not 100 000).
pub const BATCH: usize = 1_000;

/// Messages per PUBLISH pipeline.
const PUBLISH_BATCH: usize = 256;

/// Why a connection to the broker ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("timed out")]
    Timeout,
    #[error("the pub/sub connection closed")]
    Closed,
    #[error("the probe did not come back")]
    ProbeFailed,
    #[error("shutting down")]
    Shutdown,
}

impl From<tokio::time::error::Elapsed> for LinkError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        LinkError::Timeout
    }
}

/// The delay before reconnect attempt `attempt` (1, 2, …): 100 ms doubled
/// each time up to `cap`, then a random 50–100 % of it (jitter, so nodes
/// that lost the broker together do not come back in one instant).
pub fn backoff(attempt: u32, cap: Duration, random: u32) -> Duration {
    let base = Duration::from_millis(100).saturating_mul(1 << attempt.saturating_sub(1).min(16));
    let d = base.min(cap);
    d / 2 + d.mul_f64(f64::from(random % 1000) / 2000.0)
}

/// The link task's state.
pub struct Link {
    node: u32,
    uplink: Uplink,
    prefix: String,
    probe_interval: Duration,
    backoff_max: Duration,
    client: redis::Client,
    /// Counters, hub, registry and its changes.
    parts: NodeParts,
    interest: Interest,
}

struct Conns {
    publish: MultiplexedConnection,
    sink: PubSubSink,
    stream: PubSubStream,
}

impl Link {
    pub fn new(
        cfg: &ClusterConfig,
        uplink: Uplink,
        client: redis::Client,
        parts: NodeParts,
    ) -> Self {
        Self {
            node: uplink.node(),
            uplink,
            prefix: cfg.prefix.clone(),
            probe_interval: cfg.probe_interval,
            backoff_max: cfg.reconnect_backoff_max,
            client,
            parts,
            interest: Interest::new(cfg.unsubscribe_linger),
        }
    }

    /// Runs until every sender of `rx` is gone (the server stopped).
    pub async fn run(mut self, mut rx: Receiver<Out>) {
        let mut attempt = 0u32;
        let mut connected_before = false;
        loop {
            let ended = match self.connect().await {
                Ok(conns) => {
                    if connected_before {
                        self.parts.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    connected_before = true;
                    attempt = 0;
                    tracing::info!(
                        node = self.node,
                        subjects = self.interest.len(),
                        "cluster link up"
                    );
                    let e = self.serve(conns, &mut rx).await;
                    self.parts.stats.up.store(false, Ordering::Release);
                    // Held subscribe acks go now (local delivery only).
                    self.uplink.confirmed().clear();
                    self.parts.hub.subscriptions_confirmed();
                    e
                }
                Err(e) => e,
            };
            if matches!(ended, LinkError::Shutdown) {
                return;
            }
            attempt = attempt.saturating_add(1);
            let delay = backoff(attempt, self.backoff_max, getrandom::u32().unwrap_or(500));
            tracing::warn!(
                node = self.node,
                error = %ended,
                retry_ms = delay.as_millis() as u64,
                "cluster link down"
            );
            // While down: what the cores queue is not forwarded (counted),
            // and membership changes still update the interest.
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    out = rx.recv() => match out {
                        Some(_) => { self.parts.stats.not_forwarded_down.fetch_add(1, Ordering::Relaxed); }
                        None => return,
                    },
                }
            }
        }
    }

    /// Connects both connections and (re)subscribes to every subject
    /// wanted, in batches; the link is up when this returns.
    async fn connect(&mut self) -> Result<Conns, LinkError> {
        let t = self.probe_interval;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(t))
            .set_response_timeout(Some(t));
        let publish = tokio::time::timeout(
            t,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await??;
        let pubsub = tokio::time::timeout(t, self.client.get_async_pubsub()).await??;
        let (mut sink, stream) = pubsub.split();
        let own = wire::subject(&self.prefix, &Subject::Node(self.node));
        tokio::time::timeout(t, sink.subscribe(&own)).await??;
        self.apply_changes(Instant::now(), true);
        let all = self.interest.resubscribe_all();
        for batch in all.chunks(BATCH) {
            tokio::time::timeout(t, sink.subscribe(batch)).await??;
        }
        let names = deliver::channel_names(Naming::Redis, &self.prefix, &all);
        self.uplink
            .confirmed()
            .insert(names.iter().map(String::as_str));
        self.parts
            .stats
            .subscriptions
            .store(self.interest.len() as u64, Ordering::Relaxed);
        self.parts.stats.up.store(true, Ordering::Release);
        self.parts.hub.subscriptions_confirmed();
        // Presence: this node's part is written again.
        self.parts.changes.resync_presence();
        Ok(Conns {
            publish,
            sink,
            stream,
        })
    }

    /// Reads the membership changes the cores reported into the interest
    /// (`all`: every name the registry has, after a reconnect).
    fn apply_changes(&mut self, now: Instant, all: bool) {
        let naming = Naming::Redis;
        let (changes, registry) = (&self.parts.changes, &self.parts.registry);
        routing::apply(changes, registry, &mut self.interest, now, all, |s| {
            naming.subject(&self.prefix, s)
        });
    }

    /// Serves one connection until it fails.
    async fn serve(&mut self, mut c: Conns, rx: &mut Receiver<Out>) -> LinkError {
        let t = self.probe_interval;
        let mut tick = tokio::time::interval((t / 4).max(Duration::from_millis(25)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe = Probe::new(t, Instant::now());
        let own = wire::subject(&self.prefix, &Subject::Node(self.node));
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        loop {
            tokio::select! {
                msg = c.stream.next() => {
                    let Some(msg) = msg else { return LinkError::Closed };
                    probe.traffic(Instant::now());
                    let subject = wire::parse_subject(&self.prefix, msg.get_channel_name());
                    deliver::inbound(&self.parts.hub, &self.uplink, &self.parts.stats, subject, msg.get_payload_bytes(), &mut probe);
                }
                n = rx.recv_many(&mut batch, PUBLISH_BATCH) => {
                    if n == 0 {
                        return LinkError::Shutdown;
                    }
                    let mut pipe = redis::pipe();
                    for out in batch.drain(..) {
                        let (subject, payload) = deliver::encode(Naming::Redis, &self.prefix, self.node, out);
                        pipe.publish(subject, payload).ignore();
                    }
                    match tokio::time::timeout(t, pipe.exec_async(&mut c.publish)).await {
                        Ok(Ok(())) => { self.parts.stats.forwarded.fetch_add(n as u64, Ordering::Relaxed); }
                        Ok(Err(e)) => {
                            self.parts.stats.not_forwarded_down.fetch_add(n as u64, Ordering::Relaxed);
                            return e.into();
                        }
                        Err(e) => {
                            self.parts.stats.not_forwarded_down.fetch_add(n as u64, Ordering::Relaxed);
                            return e.into();
                        }
                    }
                }
                _ = self.parts.changes.notify.notified() => {
                    self.apply_changes(Instant::now(), false);
                    if let Err(e) = self.subscribe_pending(&mut c.sink).await {
                        return e;
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.apply_changes(now, false);
                    if let Err(e) = self.subscribe_pending(&mut c.sink).await {
                        return e;
                    }
                    let gone = self.interest.take_unsubscribes(now);
                    let names = deliver::channel_names(Naming::Redis, &self.prefix, &gone);
                    self.uplink.confirmed().remove(names.iter().map(String::as_str));
                    for b in gone.chunks(BATCH) {
                        match tokio::time::timeout(t, c.sink.unsubscribe(b)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return e.into(),
                            Err(e) => return e.into(),
                        }
                    }
                    self.parts.stats.subscriptions.store(self.interest.len() as u64, Ordering::Relaxed);
                    match probe.poll(now) {
                        Err(_) => {
                            self.parts.stats.probe_failures.fetch_add(1, Ordering::Relaxed);
                            return LinkError::ProbeFailed;
                        }
                        Ok(Some(seq)) => {
                            let payload = wire::encode(self.node, &Envelope::Probe(seq));
                            let sent = tokio::time::timeout(t, redis::cmd("PUBLISH")
                                .arg(&own)
                                .arg(payload)
                                .exec_async(&mut c.publish)).await;
                            match sent {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => { self.parts.stats.probe_failures.fetch_add(1, Ordering::Relaxed); return e.into(); }
                                Err(e) => { self.parts.stats.probe_failures.fetch_add(1, Ordering::Relaxed); return e.into(); }
                            }
                        }
                        Ok(None) => {}
                    }
                }
            }
        }
    }

    async fn subscribe_pending(&mut self, sink: &mut PubSubSink) -> Result<(), LinkError> {
        let subs = self.interest.take_subscribes();
        for b in subs.chunks(BATCH) {
            // Redis answers a SUBSCRIBE once it holds: from then on a
            // publish from any node reaches this one.
            tokio::time::timeout(self.probe_interval, sink.subscribe(b)).await??;
            let names = deliver::channel_names(Naming::Redis, &self.prefix, b);
            self.uplink
                .confirmed()
                .insert(names.iter().map(String::as_str));
        }
        if !subs.is_empty() {
            self.parts.hub.subscriptions_confirmed();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let cap = Duration::from_secs(5);
        assert_eq!(backoff(1, cap, 999), Duration::from_micros(99_950));
        assert_eq!(backoff(1, cap, 0), Duration::from_millis(50));
        assert_eq!(backoff(2, cap, 0), Duration::from_millis(100));
        for a in [7, 20, u32::MAX] {
            let d = backoff(a, cap, 999);
            assert!(d <= cap && d >= cap / 2, "{a}: {d:?}");
        }
    }
}
