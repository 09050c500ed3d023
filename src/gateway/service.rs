//! The gateway service on the control plane's tokio runtime: it takes the
//! cores' events off the queue and, per connection and in order, calls
//! the backend — `$connect` (its answer decides the upgrade), each
//! message on its route, `$disconnect` (retried until it lands) — and
//! keeps the registry `@connections` reads.
//!
//! Owns: the dispatcher (one task: routes each event to its connection's
//! worker), the workers (one task per connection, alive from its
//! `Connect` to its `Disconnect`: that is what orders its callbacks),
//! route selection, the decision and the "done" counts sent back to the
//! cores, the `$disconnect` retries, and [`Gateway::finish`] (waiting for
//! the last `$disconnect`s at shutdown). Must not touch: the cores' state
//! (only their inboxes, never waiting on a full one for long), HTTP
//! serving (`@connections` is `api`, on the admin listener).
//!
//! A worker never holds a lock or anything of its connection across a
//! backend call, so the backend may call `@connections` for the
//! connection whose callback it is answering (the Django package does,
//! from inside its handler).
//!
//! Bounds: each worker's own queue is unbounded in type but bounded in
//! fact — a core sends a connection at most `gateway.max_in_flight`
//! messages beyond the ones a worker finished, plus its connect and its
//! disconnect.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use tokio::sync::mpsc;

use super::backend::{Backend, CallError};
use super::conn_id::GatewayId;
use super::events::{ConnectInfo, Event, LinkCounters};
use super::format::{self, Call, Kind};
use super::registry::{self, Info, Registry};
use super::route::{Selection, DEFAULT};
use super::sigv4::Verifier;
use super::stats::{Snapshot, Stats};
use crate::admission::{Refusal, Ticket, Verdict};
use crate::config::{Config, GatewayConfig, RequestFormat};
use crate::hub::{ConnId, HubHandle};
use crate::inbox::{Command, CoreHandle};

/// The first wait before a `$disconnect` is tried again; doubled each
/// time up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Pause before trying a full core inbox again.
const INBOX_RETRY: Duration = Duration::from_millis(2);

/// One integration: where it is and whether its answer goes back.
#[derive(Debug, Clone)]
struct Integration {
    key: String,
    url: Uri,
    two_way: bool,
}

/// What the gateway's tasks and the `@connections` API share.
pub struct Gateway {
    cfg: GatewayConfig,
    selection: Selection,
    connect: Integration,
    disconnect: Integration,
    default: Option<Integration>,
    routes: Vec<Integration>,
    backend: Backend,
    /// Reachable connections (`@connections`).
    pub registry: Registry,
    stats: Stats,
    link: Arc<LinkCounters>,
    /// The hub, to reach connections.
    pub hub: HubHandle,
    cores: Arc<[CoreHandle]>,
    /// This process's id instance: ids of other instances are gone here.
    pub instance: u32,
    domain: String,
    ws_port: u16,
    /// `https` on a `wss://` listener.
    proto: &'static str,
    /// The `@connections` signature check, when keys are configured.
    pub verifier: Option<Verifier>,
    /// Workers alive (connections between `Connect` and the end of their
    /// `$disconnect`).
    live: AtomicUsize,
}

fn url(u: &str) -> Uri {
    u.parse().expect("checked by GatewayConfig::validate")
}

impl Gateway {
    /// The gateway of `cfg` (gateway mode on), reaching connections
    /// through `hub` and `cores`, whose cores send through a link with
    /// `link` counters and `instance`.
    pub fn new(
        cfg: &Config,
        hub: HubHandle,
        cores: Arc<[CoreHandle]>,
        link: Arc<LinkCounters>,
        instance: u32,
        ws_addr: SocketAddr,
    ) -> Self {
        let g = &cfg.gateway;
        let base = g.backend.clone().unwrap_or_default();
        let custom = |key: &str| g.routes.iter().find(|r| r.key == key);
        let integration = |key: &str, suffix: &str| {
            let (u, two_way) = custom(key).map_or_else(
                || (format!("{base}{suffix}"), false),
                |r| (r.url.clone(), r.two_way),
            );
            Integration {
                key: key.into(),
                url: url(&u),
                two_way,
            }
        };
        let default =
            (g.default_route || custom(DEFAULT).is_some()).then(|| integration(DEFAULT, "default"));
        let verifier = match (&g.access_key_id, &g.secret_access_key) {
            (Some(id), Some(secret)) => Some(Verifier::new(
                id.clone(),
                secret.clone(),
                g.region.clone(),
                "execute-api",
                Duration::from_secs(300),
            )),
            _ => None,
        };
        Self {
            selection: g.route_selection.parse().expect("checked by validate"),
            connect: integration("$connect", "connect"),
            disconnect: integration("$disconnect", "disconnect"),
            default,
            routes: g
                .routes
                .iter()
                .filter(|r| !r.key.starts_with('$'))
                .map(|r| Integration {
                    key: r.key.clone(),
                    url: url(&r.url),
                    two_way: r.two_way,
                })
                .collect(),
            backend: Backend::new(g.integration_timeout),
            registry: Registry::default(),
            stats: Stats::default(),
            link,
            hub,
            cores,
            instance,
            domain: ws_addr.to_string(),
            ws_port: ws_addr.port(),
            proto: if cfg.ws_tls().is_some() {
                "https"
            } else {
                "http"
            },
            verifier,
            live: AtomicUsize::new(0),
            cfg: g.clone(),
        }
    }

    /// `gateway.stage`.
    pub fn stage(&self) -> &str {
        &self.cfg.stage
    }

    /// What `/metrics` reports.
    pub fn snapshot(&self) -> Snapshot {
        self.stats.snapshot(self.registry.len(), &self.link)
    }

    /// Starts the dispatcher on `rt`: it runs until every sender of
    /// `events` is gone.
    pub fn spawn(self: &Arc<Self>, rt: &tokio::runtime::Handle, events: mpsc::Receiver<Event>) {
        rt.spawn(dispatch(self.clone(), events));
    }

    /// Waits (blocking; call it off the runtime) until every queued event
    /// was handled and every `$disconnect` landed or was given up, or
    /// `limit` passed. True if everything finished.
    pub fn finish(&self, limit: Duration) -> bool {
        let until = Instant::now() + limit;
        loop {
            let queued = self.link.in_queue.load(Ordering::Acquire);
            let live = self.live.load(Ordering::Acquire);
            if queued == 0 && live == 0 {
                return true;
            }
            if Instant::now() >= until {
                tracing::error!(
                    queued,
                    connections = live,
                    "gateway.shutdown_timeout passed with $disconnects outstanding"
                );
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The facts of one call on connection `id`.
    fn call<'a>(&'a self, id: &'a str, conn: &'a Worker, ids: &'a Ids) -> Call<'a> {
        Call {
            id,
            api_id: &self.cfg.api_id,
            stage: &self.cfg.stage,
            domain: &self.domain,
            ws_port: self.ws_port,
            proto: self.proto,
            request_id: &ids.request,
            trace_id: &ids.trace,
            source_ip: &conn.source_ip,
            user_agent: conn.user_agent.as_deref(),
            connected_at: conn.connected_at,
            now: ids.now,
        }
    }

    /// One backend call on `route`, counted and timed; the answer read
    /// in the configured format.
    async fn send(
        &self,
        route: &str,
        req: http::Request<Bytes>,
    ) -> Result<format::Answer, CallError> {
        let started = Instant::now();
        let res = self.backend.call(req).await;
        self.stats
            .call(route, res.as_ref().map(|r| r.status), started.elapsed());
        let r = res?;
        format::answer(self.cfg.request_format, r.status, &r.headers, r.body)
            .map_err(|_| CallError::Unreachable)
    }

    fn format(&self) -> RequestFormat {
        self.cfg.request_format
    }

    /// `$connect` for `id`: the upgrade's verdict.
    async fn on_connect(&self, id: &str, w: &Worker, info: &ConnectInfo) -> Verdict {
        let ids = Ids::new();
        let call = self.call(id, w, &ids);
        let req = format::request(self.format(), &self.connect.url, &call, Kind::Connect(info));
        match self.send("$connect", req).await {
            Ok(a) if (200..300).contains(&a.status) => {
                self.stats.connects_accepted.fetch_add(1, Ordering::Relaxed);
                Verdict::Accept(a.subprotocol.map(Into::into))
            }
            other => {
                self.stats.connects_refused.fetch_add(1, Ordering::Relaxed);
                Verdict::Refuse(match other {
                    Ok(a) => Refusal::Backend { status: a.status },
                    Err(CallError::Timeout) => Refusal::BackendTimeout,
                    Err(CallError::Unreachable) => Refusal::BackendUnreachable,
                })
            }
        }
    }

    /// One message of `id`: its route's call, and its answer back to the
    /// client on a two-way route (or Forbidden without a route).
    async fn on_message(&self, gid: GatewayId, id: &str, w: &Worker, text: bool, payload: Bytes) {
        let ids = Ids::new();
        self.registry.touch(gid, ids.now);
        let key = text.then(|| self.selection.select(&payload)).flatten();
        let route = key
            .and_then(|k| self.routes.iter().find(|r| r.key == k))
            .or(self.default.as_ref());
        let Some(route) = route else {
            self.stats.forbidden.fetch_add(1, Ordering::Relaxed);
            let answer = format::forbidden(id, &ids.request);
            let frame = crate::hub::protocol::data_frame(true, answer.as_bytes());
            let _ = self.hub.send_frame(gid.conn(), frame);
            return;
        };
        let call = self.call(id, w, &ids);
        let kind = Kind::Message {
            route_key: &route.key,
            message_id: &ids.message,
            text,
            payload: &payload,
        };
        let req = format::request(self.format(), &route.url, &call, kind);
        match self.send(&route.key, req).await {
            Ok(a) if route.two_way && (200..300).contains(&a.status) && !a.body.is_empty() => {
                let text = std::str::from_utf8(&a.body).is_ok();
                let frame = crate::hub::protocol::data_frame(text, &a.body);
                if self.hub.send_frame(gid.conn(), frame).is_ok() {
                    self.stats.replies.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(a) if !(200..300).contains(&a.status) => {
                tracing::debug!(conn = id, route = %route.key, status = a.status, "backend refused a message");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(conn = id, route = %route.key, error = %e, "message call failed");
            }
        }
    }

    /// `$disconnect` for `id`, tried again with backoff until the backend
    /// answers it or `gateway.disconnect_retry` passes. A 4xx other than
    /// 408 and 429 is the backend's final word (it heard the call):
    /// not retried.
    async fn on_disconnect(&self, id: &str, w: &Worker, status: u16, reason: &str) {
        let started = Instant::now();
        let mut wait = RETRY_FIRST;
        loop {
            let ids = Ids::new();
            let call = self.call(id, w, &ids);
            let req = format::request(
                self.format(),
                &self.disconnect.url,
                &call,
                Kind::Disconnect { status, reason },
            );
            let outcome = self.send("$disconnect", req).await;
            let retry = match &outcome {
                Ok(a) if (200..300).contains(&a.status) => {
                    self.stats.disconnects_sent.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(a) => a.status >= 500 || a.status == 408 || a.status == 429,
                Err(_) => true,
            };
            if !retry {
                self.stats.disconnects_sent.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(conn = id, status = ?outcome.map(|a| a.status).ok(), "the backend refused a $disconnect; not retried");
                return;
            }
            if started.elapsed() + wait > self.cfg.disconnect_retry {
                self.stats
                    .disconnects_given_up
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(
                    conn = id,
                    "gave up a $disconnect after gateway.disconnect_retry"
                );
                return;
            }
            self.stats
                .disconnect_retries
                .fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(RETRY_MAX);
        }
    }

    /// Sends `cmd` to core `core`, waiting while its inbox is full (the
    /// core takes commands every turn; one that has exited takes
    /// anything).
    async fn tell(&self, core: usize, mut make: impl FnMut() -> Command, limit: Option<Duration>) {
        let Some(handle) = self.cores.get(core) else {
            return;
        };
        let until = limit.map(|l| Instant::now() + l);
        while handle.try_send(make()).is_err() {
            if until.is_some_and(|u| Instant::now() >= u) {
                tracing::warn!(
                    core,
                    "a core's inbox stayed full; a gateway answer to it is lost"
                );
                return;
            }
            tokio::time::sleep(INBOX_RETRY).await;
        }
    }
}

/// A call's ids and time.
struct Ids {
    request: String,
    message: String,
    trace: String,
    now: u64,
}

impl Ids {
    fn new() -> Self {
        let now = registry::now_ms();
        Self {
            request: format::new_request_id(),
            message: format::new_request_id(),
            trace: format::new_trace_id(now),
            now,
        }
    }
}

/// What a worker knows of its connection.
#[derive(Default)]
struct Worker {
    /// `$connect` answered 2xx.
    accepted: bool,
    connected_at: u64,
    source_ip: String,
    user_agent: Option<String>,
    /// Messages finished (a running total, told to the core).
    done: u32,
}

/// Takes the cores' events and hands each to its connection's worker.
async fn dispatch(gw: Arc<Gateway>, mut events: mpsc::Receiver<Event>) {
    let mut workers: rustc_hash::FxHashMap<GatewayId, mpsc::UnboundedSender<Event>> =
        Default::default();
    while let Some(ev) = events.recv().await {
        gw.link.in_queue.fetch_sub(1, Ordering::AcqRel);
        let id = ev.id();
        match ev {
            Event::Connect { .. } => {
                let (tx, rx) = mpsc::unbounded_channel();
                gw.live.fetch_add(1, Ordering::AcqRel);
                tokio::spawn(worker(gw.clone(), id, rx));
                let _ = tx.send(ev);
                workers.insert(id, tx);
            }
            Event::Message { .. } => {
                if let Some(tx) = workers.get(&id) {
                    let _ = tx.send(ev);
                }
            }
            Event::Disconnect { .. } => {
                if let Some(tx) = workers.remove(&id) {
                    let _ = tx.send(ev);
                }
            }
        }
    }
}

/// One connection's callbacks, in order, from its `Connect` to its
/// `Disconnect`.
async fn worker(gw: Arc<Gateway>, gid: GatewayId, mut events: mpsc::UnboundedReceiver<Event>) {
    let id = gid.to_string();
    let conn: ConnId = gid.conn();
    let mut w = Worker::default();
    while let Some(ev) = events.recv().await {
        match ev {
            Event::Connect { ticket, info, .. } => {
                w.connected_at = registry::now_ms();
                w.source_ip = info.source_ip.map(|ip| ip.to_string()).unwrap_or_default();
                w.user_agent = info.user_agent.clone();
                let verdict = gw.on_connect(&id, &w, &info).await;
                if matches!(verdict, Verdict::Accept(_)) {
                    w.accepted = true;
                    gw.registry.insert(
                        gid,
                        Info {
                            connected_at: w.connected_at,
                            last_active_at: w.connected_at,
                            source_ip: w.source_ip.clone(),
                            user_agent: w.user_agent.clone(),
                        },
                    );
                }
                decide(&gw, ticket, verdict).await;
            }
            Event::Message { text, payload, .. } => {
                if w.accepted {
                    gw.on_message(gid, &id, &w, text, payload).await;
                }
                w.done = w.done.wrapping_add(1);
                let done = w.done;
                gw.tell(
                    conn.core as usize,
                    || Command::GatewayDone {
                        key: conn.key,
                        gen: conn.gen,
                        done,
                    },
                    // Until it lands: a held connection reads again only
                    // then (a core that exited takes anything).
                    None,
                )
                .await;
            }
            Event::Disconnect { status, reason, .. } => {
                gw.registry.remove(gid);
                if w.accepted {
                    gw.on_disconnect(&id, &w, status, reason).await;
                }
                break;
            }
        }
    }
    gw.live.fetch_sub(1, Ordering::AcqRel);
}

/// Sends the `$connect`'s verdict to the upgrade's core.
async fn decide(gw: &Gateway, ticket: Ticket, verdict: Verdict) {
    // Past the handshake deadline the upgrade is answered 504 anyway.
    let limit = Some(Duration::from_secs(60));
    gw.tell(
        ticket.core,
        || Command::AdmissionDecision {
            key: ticket.key,
            gen: ticket.gen,
            verdict: verdict.clone(),
        },
        limit,
    )
    .await;
}
