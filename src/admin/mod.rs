//! The admin plane: the HTTP push API the application behind the edge
//! calls, on its own small tokio runtime and its own (loopback by
//! default) address.
//!
//! Owns: what the plane is given of a running server ([`Parts`]), its
//! shared state (`AdminCtx`), binding, starting and stopping it. The
//! work is split by responsibility: `server` (runtime, accept loop,
//! connection cap, hyper's limits), `conn` (idle and write timeouts),
//! `guard` (Host, Origin, Content-Type, CORS), `service` (one request:
//! order of checks, key, body limits, panics), `routes` (the API),
//! `sse` (status streams), `status` (the snapshot), `metrics`
//! (Prometheus text), `assets` (embedded pages).
//! Must not touch: the engine, connections or per-core state (it holds no
//! core handle; a full core inbox comes back as 503). The cores never
//! wait on this plane: a route that waits on the cores' answers
//! (`HubHandle` queries, `StatsView::queued_bytes`) runs on the runtime's
//! blocking pool (at most `admin.blocking_threads` threads), never on its
//! workers.
//!
//! A panic while answering a request is contained to that request: it is
//! answered 500, counted (`wsedge_panics_total`), logged once, and the
//! plane takes the next request; the cores never notice.
//!
//! Endpoints (JSON bodies and answers; see README.md for curl examples):
//! `POST /api/channels/{name}/publish`, `POST /api/users/{id}/send`,
//! `POST /api/connections/{id}/send`, `DELETE /api/connections/{id}`,
//! `GET /api/channels/{name}`, `GET /api/users/{id}`, `GET /api/stats`,
//! `POST /api/tokens`, `POST /api/demo/tokens` (only with the demo key),
//! `GET /api/info`, `GET /api/status[/stream]`,
//! `GET /metrics`; without the key: `GET /healthz`, `GET /readyz`, and the
//! embedded pages `/`, `/demo`, `/client/wsedge.js`.

mod assets;
mod conn;
mod guard;
pub mod metrics;
// In `routes`, `service` and `sse` an early answer (`Reply`, 144 bytes) is
// the error type: one per request on the control plane, not worth a box.
#[allow(clippy::result_large_err)]
mod routes;
pub(crate) mod server;
#[allow(clippy::result_large_err)]
mod service;
#[allow(clippy::result_large_err)]
mod sse;
mod status;

use std::io;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::json;
use tokio::sync::Notify;

use crate::admission::demo::DemoKey;
use crate::config::{AdminConfig, Config};
use crate::conn::EndReason;
use crate::error::Rejection;
use crate::hub::HubHandle;
use crate::stats::{Stats, StatsView};

/// What the admin plane is given of a running server: handles, never the
/// engine.
#[derive(Clone)]
pub struct Parts {
    /// Every hub operation (publish, send, disconnect, presence).
    pub hub: HubHandle,
    /// Counters and histograms of every core.
    pub stats: StatsView,
    /// Set once shutdown began (readiness turns false).
    pub draining: Arc<AtomicBool>,
    /// The address the cores listen on.
    pub ws_addr: SocketAddr,
    pub config: Arc<Config>,
    /// The chat demo's ephemeral key, made at start when
    /// [`Config::wants_demo_key`](crate::Config::wants_demo_key).
    pub demo_key: Option<DemoKey>,
    pub started: Instant,
    /// Gateway mode: the gateway, whose `@connections` API this plane
    /// serves and whose counters `/metrics` reports.
    pub gateway: Option<Arc<crate::gateway::Gateway>>,
    /// The certificate when the plane serves https (`admin.tls`): read per
    /// accepted connection, so a reload reaches the next handshake.
    pub tls: Option<Arc<crate::tls::Certs>>,
    /// Clustered: the broker link's state and the cluster's presence.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// A bound admin listener, not yet serving.
pub struct Admin {
    listener: std::net::TcpListener,
    ctx: Arc<AdminCtx>,
}

/// Stops the admin plane.
#[derive(Clone)]
pub struct AdminHandle {
    ctx: Arc<AdminCtx>,
}

impl AdminHandle {
    /// Stops accepting and ends the runtime: open connections and status
    /// streams are dropped within about a second. Returns at once.
    pub fn stop(&self) {
        self.ctx.stopped.store(true, Ordering::Release);
        self.ctx.shutdown.notify_one();
    }
}

pub(crate) struct AdminCtx {
    key: Option<String>,
    /// API publishes and sends accepted (any thread may count these).
    api_publishes: AtomicU64,
    api_sends: AtomicU64,
    /// Panics caught in the admin plane (each answered 500).
    panics: AtomicU64,
    view: Parts,
    /// Set when the admin plane stops.
    stopped: AtomicBool,
    /// Wakes the accept loop to stop.
    shutdown: Notify,
    /// Status event streams open, in all and per client address.
    streams: AtomicUsize,
    streams_per_ip: sse::PerIp,
    /// `admin.max_body_memory`, one permit a byte: what request bodies
    /// may hold at once.
    body_budget: Arc<tokio::sync::Semaphore>,
    /// Answers by status, and connections turned away at
    /// `admin.max_connections`.
    responses: ResponseCounts,
    connections_refused: AtomicU64,
    /// Connections whose TLS handshake failed or timed out (`admin.tls`).
    tls_errors: AtomicU64,
    status_cache: Mutex<Option<(Instant, Arc<String>)>>,
}

impl Admin {
    /// Binds the listener on `listen`. Refuses a non-loopback address
    /// without a key.
    pub fn bind(listen: SocketAddr, cfg: &AdminConfig, view: Parts) -> io::Result<Admin> {
        if cfg.key.is_none() && !listen.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the admin API needs a key (--admin-key or WSEDGE_ADMIN_KEY) on a non-loopback address",
            ));
        }
        let listener = std::net::TcpListener::bind(listen)?;
        Ok(Admin {
            listener,
            ctx: Arc::new(AdminCtx {
                key: cfg.key.clone(),
                api_publishes: AtomicU64::new(0),
                api_sends: AtomicU64::new(0),
                panics: AtomicU64::new(0),
                view,
                stopped: AtomicBool::new(false),
                shutdown: Notify::new(),
                streams: AtomicUsize::new(0),
                streams_per_ip: Default::default(),
                body_budget: Arc::new(tokio::sync::Semaphore::new(
                    cfg.max_body_memory.min(tokio::sync::Semaphore::MAX_PERMITS),
                )),
                status_cache: Mutex::new(None),
                responses: ResponseCounts::default(),
                connections_refused: AtomicU64::new(0),
                tls_errors: AtomicU64::new(0),
            }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Starts its accept loop on the control plane's runtime `rt`.
    pub fn spawn(self, rt: &tokio::runtime::Handle) -> io::Result<AdminHandle> {
        server::spawn(rt, self.listener, self.ctx.clone())?;
        Ok(AdminHandle { ctx: self.ctx })
    }
}

/// Runs one piece of admin work (`what`, for `target`) and contains a
/// panic in it: counted, logged once (what, where, the panic's message),
/// `None` then.
///
/// `AssertUnwindSafe`: the admin plane's shared state is atomics, a cache
/// behind a mutex that skips a poisoned lock, and the cores' inboxes (a
/// command is sent whole or not at all); a request's own state is dropped.
fn contained<R>(
    ctx: &AdminCtx,
    what: &'static str,
    target: &str,
    f: impl FnOnce() -> R,
) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(payload) => {
            ctx.panics.fetch_add(1, Ordering::Relaxed);
            let note = crate::panics::take_note(&*payload);
            tracing::error!(
                what,
                request = target,
                at = %note.location,
                panic = %note.message,
                backtrace = note.backtrace.as_deref(),
                "panic in the admin plane; dropped that {what}, the server goes on"
            );
            None
        }
    }
}

pub(crate) fn stats_json(s: &Stats) -> serde_json::Value {
    let ended: serde_json::Map<String, serde_json::Value> = EndReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), s.ended(*r).into()))
        .collect();
    let refused: serde_json::Map<String, serde_json::Value> = Rejection::ALL
        .iter()
        .map(|e| (e.name().to_string(), s.handshake_failures(*e).into()))
        .collect();
    json!({
        "open": s.open,
        "accepted": s.accepted,
        "upgraded": s.upgraded,
        "ended": ended,
        "refused": refused,
        "accept_errors": s.accept_errors,
        "frames_in": s.frames_in,
        "frames_out": s.frames_out,
        "messages_in": s.messages_in,
        "messages_out": s.messages_out,
        "bytes_in": s.bytes_in,
        "bytes_out": s.bytes_out,
        "pings_sent": s.pings_sent,
        "publishes": s.publishes,
        "deliveries": s.deliveries,
        "dropped": {
            "slow_consumer": s.dropped_slow_consumer,
            "not_open": s.dropped_not_open,
            "inbox_full": s.dropped_inbox_full,
        },
        "subscriptions": s.subscriptions,
        "request_errors": s.request_errors,
        "throttled": {"msgs": s.throttled_msgs, "bytes": s.throttled_bytes},
        "panics": s.panics,
        "forwarded_malformed": s.forwarded_malformed,
        "tls": {"handshakes": s.tls_handshakes, "errors": s.tls_errors},
        "compressed": s.compressed,
    })
}

/// Admin answers counted by HTTP status (`wsedge_admin_responses_total`):
/// every refusal the plane makes (401, 403, 408, 413, 415, 429, 503…) is
/// one of them. Statuses outside [`ResponseCounts::STATUSES`] count as
/// `other`. A head hyper refuses before the plane sees the request (431
/// over the header limits, 400 when it does not parse) is counted where
/// the connection ends (`server::serve_one`).
#[derive(Default)]
pub(crate) struct ResponseCounts([AtomicU64; ResponseCounts::STATUSES.len() + 1]);

impl ResponseCounts {
    pub const STATUSES: [u16; 16] = [
        200, 204, 400, 401, 403, 404, 405, 408, 409, 410, 413, 415, 429, 431, 500, 503,
    ];

    pub fn add(&self, status: u16) {
        let i = Self::STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(Self::STATUSES.len());
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    /// (status label, count) for every status seen at least once.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let labels = Self::STATUSES
            .iter()
            .map(u16::to_string)
            .chain(std::iter::once("other".to_string()));
        labels
            .zip(&self.0)
            .map(|(l, n)| (l, n.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}
