//! The broker link to NATS (`async-nats`), on the control plane's
//! runtime: the same routing, payloads and probe as the Redis link, over
//! a client that reconnects and resubscribes by itself (with this
//! node's backoff and jitter); what arrives is handed to the cores
//! through [`HubHandle`](crate::hub::HubHandle) (bounded inboxes, never waited on).
//!
//! Owns: the NATS client, one subscription per wanted subject (each
//! forwarded by a small task into one bounded queue; dropping it
//! unsubscribes), publishing the [`Out`] queue, the probe (a failure
//! forces a reconnect), and the link state from the client's events.
//! Must not touch: presence (with NATS it is node-local: README "Running
//! a cluster"), any core's state, the broker URL in logs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use rustc_hash::FxHashMap;
use tokio::sync::mpsc::{self, Receiver};
use tokio::task::JoinHandle;

use super::deliver::{self, Naming};
use super::link_redis::backoff;
use super::probe::Probe;
use super::routing::{self, Interest};
use super::wire::{self, Envelope, Subject};
use super::{NodeParts, Out, Uplink};
use crate::config::ClusterConfig;

/// Messages received and not yet handed to the cores (the subscription
/// tasks wait when it is full: back-pressure inside the control plane).
const INBOUND_QUEUE: usize = 4_096;

/// Messages per publish turn.
const PUBLISH_BATCH: usize = 256;

/// The NATS link task's state.
pub struct Link {
    node: u32,
    uplink: Uplink,
    url: String,
    prefix: String,
    probe_interval: Duration,
    backoff_max: Duration,
    /// Counters, hub, registry and its changes.
    parts: NodeParts,
    interest: Interest,
}

impl Link {
    pub fn new(cfg: &ClusterConfig, uplink: Uplink, parts: NodeParts) -> Self {
        Self {
            node: uplink.node(),
            uplink,
            url: cfg.broker.clone().unwrap_or_default(),
            prefix: cfg.prefix.clone(),
            probe_interval: cfg.probe_interval,
            backoff_max: cfg.reconnect_backoff_max,
            parts,
            interest: Interest::new(cfg.unsubscribe_linger),
        }
    }

    fn subject(&self, s: &Subject<'_>) -> String {
        Naming::Nats.subject(&self.prefix, s)
    }

    /// Runs until every sender of `rx` is gone (the server stopped).
    pub async fn run(mut self, mut rx: Receiver<Out>) {
        let stats = self.parts.stats.clone();
        let connected_before = Arc::new(AtomicBool::new(false));
        let cap = self.backoff_max;
        let node = self.node;
        let options = async_nats::ConnectOptions::new()
            .connection_timeout(self.probe_interval)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .reconnect_delay_callback(move |attempt| {
                backoff(attempt as u32, cap, getrandom::u32().unwrap_or(500))
            })
            .event_callback(move |event| {
                let (stats, before) = (stats.clone(), connected_before.clone());
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            if before.swap(true, Ordering::Relaxed) {
                                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                            }
                            stats.up.store(true, Ordering::Release);
                            tracing::info!(node, "cluster link up (nats)");
                        }
                        async_nats::Event::Disconnected | async_nats::Event::Closed => {
                            stats.up.store(false, Ordering::Release);
                            tracing::warn!(node, "cluster link down (nats)");
                        }
                        _ => {}
                    }
                }
            });
        let client = match options.connect(self.url.as_str()).await {
            Ok(c) => c,
            Err(e) => {
                // Only a URL it cannot use ends here (it retries otherwise).
                tracing::error!(node, error = %e.kind(), "cluster link cannot start (nats)");
                return;
            }
        };
        let (in_tx, mut in_rx) = mpsc::channel::<async_nats::Message>(INBOUND_QUEUE);
        let mut subs: FxHashMap<String, JoinHandle<()>> = FxHashMap::default();
        let own = self.subject(&Subject::Node(self.node));
        self.subscribe(&client, &in_tx, &mut subs, vec![own.clone()])
            .await;
        let mut tick =
            tokio::time::interval((self.probe_interval / 4).max(Duration::from_millis(25)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probe = Probe::new(self.probe_interval, Instant::now());
        let mut was_up = false;
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        loop {
            tokio::select! {
                msg = in_rx.recv() => {
                    let Some(msg) = msg else { return };
                    probe.traffic(Instant::now());
                    let subject = wire::parse_nats_subject(&self.prefix, msg.subject.as_str());
                    deliver::inbound(&self.parts.hub, &self.uplink, &self.parts.stats, subject, &msg.payload, &mut probe);
                }
                n = rx.recv_many(&mut batch, PUBLISH_BATCH) => {
                    if n == 0 {
                        return;
                    }
                    if !self.parts.stats.is_up() {
                        batch.clear();
                        self.parts.stats.not_forwarded_down.fetch_add(n as u64, Ordering::Relaxed);
                        continue;
                    }
                    let mut sent = 0u64;
                    for out in batch.drain(..) {
                        let (subject, payload) = deliver::encode(Naming::Nats, &self.prefix, self.node, out);
                        match tokio::time::timeout(self.probe_interval, client.publish(subject, payload.into())).await {
                            Ok(Ok(())) => sent += 1,
                            _ => { self.parts.stats.not_forwarded_down.fetch_add(1, Ordering::Relaxed); }
                        }
                    }
                    self.parts.stats.forwarded.fetch_add(sent, Ordering::Relaxed);
                }
                _ = self.parts.changes.notify.notified() => {
                    let wanted = self.take_subscribes(Instant::now());
                    self.subscribe(&client, &in_tx, &mut subs, wanted.clone()).await;
                    if was_up {
                        self.confirm(&client, &wanted).await;
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let wanted = self.take_subscribes(now);
                    self.subscribe(&client, &in_tx, &mut subs, wanted.clone()).await;
                    if was_up {
                        self.confirm(&client, &wanted).await;
                    }
                    let gone = self.interest.take_unsubscribes(now);
                    let names = deliver::channel_names(Naming::Nats, &self.prefix, &gone);
                    self.uplink.confirmed().remove(names.iter().map(String::as_str));
                    for gone in gone {
                        if let Some(task) = subs.remove(&gone) {
                            // Dropping the subscriber unsubscribes.
                            task.abort();
                        }
                    }
                    self.parts.stats.subscriptions.store(self.interest.len() as u64, Ordering::Relaxed);
                    let up = self.parts.stats.is_up();
                    if up && !was_up {
                        probe = Probe::new(self.probe_interval, now);
                        // The client subscribed everything again.
                        let all: Vec<String> = subs.keys().cloned().collect();
                        self.confirm(&client, &all).await;
                    } else if !up && was_up {
                        // Held subscribe acks go now (local delivery only).
                        self.uplink.confirmed().clear();
                        self.parts.hub.subscriptions_confirmed();
                    }
                    was_up = up;
                    if !up {
                        continue;
                    }
                    match probe.poll(now) {
                        Err(_) => {
                            self.parts.stats.probe_failures.fetch_add(1, Ordering::Relaxed);
                            self.parts.stats.up.store(false, Ordering::Release);
                            was_up = false;
                            tracing::warn!(node = self.node, "the broker probe did not come back: reconnecting (nats)");
                            let c = client.clone();
                            tokio::spawn(async move { let _ = c.force_reconnect().await; });
                        }
                        Ok(Some(seq)) => {
                            let payload = wire::encode(self.node, &Envelope::Probe(seq));
                            let _ = tokio::time::timeout(self.probe_interval, client.publish(own.clone(), payload.into())).await;
                        }
                        Ok(None) => {}
                    }
                }
            }
        }
    }

    /// Marks the channels among `subjects` (subscribed just before)
    /// confirmed once the server has processed the subscriptions: a
    /// request to a subject nobody subscribes to comes back (no
    /// responders) only after everything this client sent before it, and
    /// tells the cores.
    async fn confirm(&self, client: &async_nats::Client, subjects: &[String]) {
        let names = deliver::channel_names(Naming::Nats, &self.prefix, subjects);
        if names.is_empty() {
            return;
        }
        let sync = format!("{}sync.{}", self.prefix, self.node);
        // Any answer, an error or the timeout: held acks go anyway.
        let _ = tokio::time::timeout(
            self.probe_interval,
            client.request(sync, bytes::Bytes::new()),
        )
        .await;
        self.uplink
            .confirmed()
            .insert(names.iter().map(String::as_str));
        self.parts.hub.subscriptions_confirmed();
    }

    /// The membership changes read into the interest; the subjects to
    /// subscribe to now.
    fn take_subscribes(&mut self, now: Instant) -> Vec<String> {
        let prefix = self.prefix.clone();
        routing::apply(
            &self.parts.changes,
            &self.parts.registry,
            &mut self.interest,
            now,
            false,
            |s| Naming::Nats.subject(&prefix, s),
        );
        self.interest.take_subscribes()
    }

    /// Subscribes to `subjects`, each forwarded into `tx` by a task of its
    /// own (the client resubscribes them after a reconnect).
    async fn subscribe(
        &self,
        client: &async_nats::Client,
        tx: &mpsc::Sender<async_nats::Message>,
        subs: &mut FxHashMap<String, JoinHandle<()>>,
        subjects: Vec<String>,
    ) {
        for subject in subjects {
            if subs.contains_key(&subject) {
                continue;
            }
            match client.subscribe(subject.clone()).await {
                Ok(mut sub) => {
                    let tx = tx.clone();
                    let task = tokio::spawn(async move {
                        while let Some(m) = sub.next().await {
                            if tx.send(m).await.is_err() {
                                break;
                            }
                        }
                    });
                    subs.insert(subject, task);
                }
                Err(e) => {
                    // The client queues subscriptions while disconnected;
                    // an error here is a closed client.
                    tracing::warn!(node = self.node, error = %e, "subscribe failed (nats)");
                }
            }
        }
    }
}
