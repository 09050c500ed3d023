//! The admin plane: the HTTP push API the application behind the edge
//! calls, on its own threads and its own (loopback by default) address.
//!
//! Owns: HTTP parsing and answers (via `tiny_http`: this plane is not the
//! hot path), bearer-key checks, and mapping each route to one call on the
//! handles it was given ([`Parts`]): the hub's [`HubHandle`] for every
//! channel, user and connection operation, the [`StatsView`] for numbers.
//! Must not touch: the engine, connections or per-core state (it holds no
//! core handle; a full core inbox comes back as 503).
//!
//! A panic while answering a request is contained to that request: it is
//! answered 500, counted (`wsedge_panics_total`), logged once, and the
//! worker takes the next request; the cores never notice.
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
pub mod metrics;
mod status;

use std::io::{self, Read};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use percent_encoding::percent_decode_str;
use serde_json::json;
use serde_json::value::RawValue;
use tiny_http::{Header, Method, Request, Response};

use crate::admission::demo::DemoKey;
use crate::config::{AdminConfig, Config};
use crate::conn::EndReason;
use crate::error::Rejection;
use crate::hub::{ConnId, HubError, HubHandle};
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
}

/// A bound admin listener, not yet serving.
pub struct Admin {
    http: Arc<tiny_http::Server>,
    ctx: Arc<AdminCtx>,
}

/// Stops the admin threads.
#[derive(Clone)]
pub struct AdminHandle {
    http: Arc<tiny_http::Server>,
    ctx: Arc<AdminCtx>,
}

impl AdminHandle {
    /// Unblocks and ends the worker threads (and, within a second, the
    /// status streams).
    pub fn stop(&self) {
        self.ctx.stopped.store(true, Ordering::Release);
        for _ in 0..self.ctx.view.config.admin.workers {
            self.http.unblock();
        }
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
    /// Status event streams open.
    streams: AtomicUsize,
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
        let http = tiny_http::Server::http(listen).map_err(io::Error::other)?;
        Ok(Admin {
            http: Arc::new(http),
            ctx: Arc::new(AdminCtx {
                key: cfg.key.clone(),
                api_publishes: AtomicU64::new(0),
                api_sends: AtomicU64::new(0),
                panics: AtomicU64::new(0),
                view,
                stopped: AtomicBool::new(false),
                streams: AtomicUsize::new(0),
                status_cache: Mutex::new(None),
            }),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.http
            .server_addr()
            .to_ip()
            .expect("bound to an IP address")
    }

    /// Starts the worker threads (`admin.workers`).
    pub fn spawn(self) -> io::Result<AdminHandle> {
        for i in 0..self.ctx.view.config.admin.workers {
            let http = self.http.clone();
            let ctx = self.ctx.clone();
            std::thread::Builder::new()
                .name(format!("wsedge-admin-{i}"))
                .spawn(move || {
                    crate::panics::own_thread();
                    while let Ok(req) = http.recv() {
                        // `handle` answers a panic in the route with a JSON
                        // 500; this catches the rest (answering, the status
                        // stream's start): tiny_http answers a request
                        // dropped unanswered with an empty 500.
                        let target = request_target(&req);
                        contained(&ctx, "request", &target, || handle(req, &ctx));
                    }
                })?;
        }
        Ok(AdminHandle {
            http: self.http,
            ctx: self.ctx,
        })
    }
}

fn json_response(status: u16, body: serde_json::Value) -> Response<io::Cursor<Vec<u8>>> {
    let header = Header::from_bytes("Content-Type", "application/json").expect("valid header");
    Response::from_data(body.to_string().into_bytes())
        .with_status_code(status)
        .with_header(header)
}

fn error(status: u16, code: &str, reason: &str) -> Response<io::Cursor<Vec<u8>>> {
    json_response(status, json!({"error": code, "reason": reason}))
}

/// Reads a JSON body of at most `admin.max_body_bytes` (413 beyond).
fn read_body(
    req: &mut Request,
    ctx: &AdminCtx,
) -> Result<Box<RawValue>, Response<io::Cursor<Vec<u8>>>> {
    let max = ctx.view.config.admin.max_body_bytes;
    let mut body = Vec::new();
    let n = req
        .as_reader()
        .take(max as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| error(400, "bad_body", "could not read the body"))?;
    if n > max {
        let reason = format!("the body is over {max} bytes (admin.max_body_bytes)");
        return Err(error(413, "body_too_large", &reason));
    }
    let text = String::from_utf8(body).map_err(|_| error(400, "bad_json", "body is not UTF-8"))?;
    RawValue::from_string(text).map_err(|_| error(400, "bad_json", "body is not JSON"))
}

/// The body read as [`read_body`] does, then deserialized into `T` (400
/// with serde's reason when it does not fit).
fn read_json<T: serde::de::DeserializeOwned>(
    req: &mut Request,
    ctx: &AdminCtx,
) -> Result<T, Response<io::Cursor<Vec<u8>>>> {
    let body = read_body(req, ctx)?;
    serde_json::from_str(body.get()).map_err(|e| error(400, "bad_request", &e.to_string()))
}

/// "METHOD /path" of a request, without the query (it may carry the key).
fn request_target(req: &Request) -> String {
    let path = req.url().split('?').next().unwrap_or("");
    format!("{} {path}", req.method())
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

fn handle(mut req: Request, ctx: &Arc<AdminCtx>) {
    let path = req.url().split('?').next().unwrap_or("").to_string();
    let get = matches!(req.method(), Method::Get | Method::Head);
    if get && path == "/api/status/stream" && authorized(&req, ctx) {
        return open_stream(req, ctx);
    }
    let resp = contained(ctx, "request", &request_target(&req), || {
        let resp = if get { public(&path, ctx) } else { None };
        resp.unwrap_or_else(|| route(&mut req, ctx))
    })
    .unwrap_or_else(|| {
        error(
            500,
            "internal_error",
            "the server failed while answering this request",
        )
    });
    let _ = req.respond(resp);
}

/// What answers without the key: health probes (load balancers and
/// orchestrators call them) and the embedded static files (no data in
/// them; what they fetch needs the key).
fn public(path: &str, ctx: &AdminCtx) -> Option<Response<io::Cursor<Vec<u8>>>> {
    let text = |status: u16, body: &str| {
        Response::from_string(body)
            .with_status_code(status)
            .with_header(header("Content-Type", "text/plain; charset=utf-8"))
            .with_header(header("Cache-Control", "no-store"))
    };
    match path {
        "/healthz" => return Some(text(200, "ok\n")),
        "/readyz" => {
            return Some(if ctx.view.draining.load(Ordering::Acquire) {
                text(503, "draining\n")
            } else {
                text(200, "ready\n")
            })
        }
        _ => {}
    }
    let asset = assets::get(path)?;
    let mut resp = Response::from_data(asset.body.as_bytes().to_vec())
        .with_header(header("Content-Type", asset.content_type));
    for (k, v) in assets::HEADERS {
        resp.add_header(header(k, v));
    }
    Some(resp)
}

fn header(k: &str, v: &str) -> Header {
    Header::from_bytes(k, v).expect("valid header")
}

/// Hands the connection to a status-stream thread (bounded in number).
fn open_stream(req: Request, ctx: &Arc<AdminCtx>) {
    if ctx.streams.fetch_add(1, Ordering::AcqRel) >= status::MAX_STREAMS {
        ctx.streams.fetch_sub(1, Ordering::AcqRel);
        let _ = req.respond(error(
            503,
            "too_many_streams",
            "too many status streams open",
        ));
        return;
    }
    let out = req.into_writer();
    let ctx2 = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name("wsedge-admin-sse".into())
        .spawn(move || {
            crate::panics::own_thread();
            let ctx3 = ctx2.clone();
            if contained(&ctx3, "status stream", "", move || {
                status::stream(ctx2, out)
            })
            .is_none()
            {
                // It panicked before giving its slot back.
                ctx3.streams.fetch_sub(1, Ordering::AcqRel);
            }
        });
    if spawned.is_err() {
        ctx.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

fn authorized(req: &Request, ctx: &AdminCtx) -> bool {
    let Some(key) = &ctx.key else {
        return true;
    };
    let bearer = req.headers().iter().any(|h| {
        h.field.equiv("Authorization")
            && h.value
                .as_str()
                .strip_prefix("Bearer ")
                .is_some_and(|v| constant_time_eq(v.as_bytes(), key.as_bytes()))
    });
    // `EventSource` cannot set headers: the status stream (and only a GET
    // of the status) may carry the key as `?key=` instead.
    let url = req.url();
    let query_key = *req.method() == Method::Get
        && url.starts_with("/api/status")
        && url.split_once('?').is_some_and(|(_, q)| {
            query_param(q, "key").is_some_and(|v| {
                let v = percent_decode_str(v).decode_utf8_lossy();
                constant_time_eq(v.as_bytes(), key.as_bytes())
            })
        });
    bearer || query_key
}

/// Compares without an early exit, so timing does not reveal the key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn route(req: &mut Request, ctx: &AdminCtx) -> Response<io::Cursor<Vec<u8>>> {
    if !authorized(req, ctx) {
        return error(401, "unauthorized", "missing or wrong bearer key");
    }
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method().clone();
    let hub = &ctx.view.hub;
    match (method, segs.as_slice()) {
        (Method::Get, ["metrics"]) => metrics_response(ctx),
        (Method::Get, ["api", "status"]) => {
            let body = status::snapshot(ctx).as_bytes().to_vec();
            Response::from_data(body)
                .with_header(header("Content-Type", "application/json"))
                .with_header(header("Cache-Control", "no-store"))
        }
        (Method::Get, ["api", "info"]) => {
            let cfg = &ctx.view.config;
            json_response(
                200,
                json!({
                    "version": env!("CARGO_PKG_VERSION"),
                    "ws_url": format!("ws://{}/ws", ctx.view.ws_addr),
                    "tokens": cfg.token.key.is_some(),
                    // The demo's own flow: POST /api/demo/tokens.
                    "demo_tokens": cfg.token.key.is_none() && ctx.view.demo_key.is_some(),
                    "cores": hub.cores(),
                }),
            )
        }
        (Method::Post, ["api", "tokens"]) => mint_token(req, ctx),
        #[cfg(feature = "fault-injection")]
        (Method::Get, ["api", "fault", "panic"]) if crate::panics::fault::enabled() => {
            panic!("fault injection: panic in an admin request")
        }
        (Method::Post, ["api", "demo", "tokens"]) => mint_demo_token(req, ctx),
        (Method::Post, ["api", "channels", name, "publish"]) => {
            if !hub.is_valid_channel(name) {
                return hub_error(HubError::InvalidChannel);
            }
            let data = match read_body(req, ctx) {
                Ok(d) => d,
                Err(resp) => return resp,
            };
            match hub.publish(name, &data) {
                Ok(cores) => {
                    ctx.api_publishes.fetch_add(1, Ordering::Relaxed);
                    json_response(200, json!({"ok": true, "cores": cores}))
                }
                Err(e) => hub_error(e),
            }
        }
        (Method::Post, ["api", "users", user, "send"]) => {
            let data = match read_body(req, ctx) {
                Ok(d) => d,
                Err(resp) => return resp,
            };
            ctx.api_sends.fetch_add(1, Ordering::Relaxed);
            let online = hub.send_to_user(user, &data);
            json_response(200, json!({"ok": true, "online": online}))
        }
        (Method::Post, ["api", "connections", id, "send"]) => {
            let Some(id) = parse_conn(id, hub) else {
                return hub_error(HubError::UnknownConnection);
            };
            let data = match read_body(req, ctx) {
                Ok(d) => d,
                Err(resp) => return resp,
            };
            ctx.api_sends.fetch_add(1, Ordering::Relaxed);
            match hub.send_to_connection(id, &data) {
                Ok(()) => json_response(200, json!({"ok": true})),
                Err(e) => hub_error(e),
            }
        }
        (Method::Delete, ["api", "connections", id]) => {
            let Some(id) = parse_conn(id, hub) else {
                return hub_error(HubError::UnknownConnection);
            };
            let code = query_param(query, "code")
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(1000);
            match hub.disconnect(id, code) {
                Ok(()) => json_response(200, json!({"ok": true})),
                Err(e) => hub_error(e),
            }
        }
        (Method::Get, ["api", "channels", name]) => match hub.channel(name) {
            Ok(info) => json_response(
                200,
                json!({"channel": name, "subscribers": info.subscribers, "users": info.users}),
            ),
            Err(e) => hub_error(e),
        },
        (Method::Get, ["api", "users", user]) => match hub.user_connections(user) {
            Ok(ids) => {
                let ids: Vec<String> = ids.iter().map(ConnId::to_string).collect();
                json_response(200, json!({"user": user, "connections": ids}))
            }
            Err(e) => hub_error(e),
        },
        (Method::Get, ["api", "stats"]) => {
            let per_core = ctx.view.stats.per_core();
            let mut total = Stats::default();
            for s in &per_core {
                total.merge(s);
            }
            json_response(
                200,
                json!({
                    "total": stats_json(&total),
                    "cores": per_core.iter().map(stats_json).collect::<Vec<_>>(),
                    "channels": hub.channel_count(),
                    "users_online": hub.users_online(),
                    "api": {
                        "publishes": ctx.api_publishes.load(Ordering::Relaxed),
                        "sends": ctx.api_sends.load(Ordering::Relaxed),
                        "panics": ctx.panics.load(Ordering::Relaxed),
                    },
                }),
            )
        }
        _ => error(404, "not_found", "no such endpoint"),
    }
}

fn parse_conn(id: &str, hub: &HubHandle) -> Option<ConnId> {
    let id: ConnId = id.parse().ok()?;
    hub.is_known_core(id).then_some(id)
}

/// The one mapping of a hub refusal to an HTTP answer.
fn hub_error(e: HubError) -> Response<io::Cursor<Vec<u8>>> {
    match e {
        HubError::InvalidChannel => error(400, "invalid_channel", "bad channel name"),
        HubError::UnknownConnection => error(404, "unknown_connection", "no such connection id"),
        HubError::InvalidCloseCode => {
            error(400, "invalid_code", "not a close code a server may send")
        }
        HubError::Busy => error(503, "busy", "a core's inbox is full; try again shortly"),
    }
}

/// `GET /metrics`: counters read now, histograms as last merged, queued
/// bytes asked of every core.
fn metrics_response(ctx: &AdminCtx) -> Response<io::Cursor<Vec<u8>>> {
    let view = &ctx.view.stats;
    let stats = view.per_core();
    let latency = view.latency();
    let outbound = view.queued_bytes(ctx.view.config.admin.query_timeout);
    let text = metrics::render(&metrics::Scrape {
        cores: &stats,
        latency: &latency,
        outbound_bytes: &outbound,
        channels: ctx.view.hub.channel_count(),
        users_online: ctx.view.hub.users_online(),
        api_publishes: ctx.api_publishes.load(Ordering::Relaxed),
        api_sends: ctx.api_sends.load(Ordering::Relaxed),
        admin_panics: ctx.panics.load(Ordering::Relaxed),
        uptime_secs: ctx.view.started.elapsed().as_secs_f64(),
        draining: ctx.view.draining.load(Ordering::Acquire),
    });
    Response::from_data(text.into_bytes()).with_header(header(
        "Content-Type",
        "text/plain; version=0.0.4; charset=utf-8",
    ))
}

/// `POST /api/tokens`: mints a one-time connection token with the current
/// key, for applications (and the demo) that do not mint their own.
fn mint_token(req: &mut Request, ctx: &AdminCtx) -> Response<io::Cursor<Vec<u8>>> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        user: String,
        #[serde(default)]
        subscribe: Vec<String>,
        #[serde(default)]
        publish: Vec<String>,
        #[serde(default = "default_ttl")]
        ttl_secs: u64,
    }
    fn default_ttl() -> u64 {
        60
    }
    let Some(key) = &ctx.view.config.token.key else {
        return error(
            409,
            "no_token_key",
            "the server has no token key configured",
        );
    };
    let ask: Ask = match read_json(req, ctx) {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    if ask.user.is_empty() || ask.user.len() > 256 {
        return error(400, "bad_user", "user must be 1 to 256 bytes");
    }
    if !(1..=86_400).contains(&ask.ttl_secs) {
        return error(400, "bad_ttl", "ttl_secs must be 1 to 86400");
    }
    let claims =
        crate::admission::token::claims_for(ask.user, ask.ttl_secs, ask.subscribe, ask.publish);
    let token = crate::admission::token::mint(key.as_bytes(), &claims);
    json_response(200, json!({"token": token, "expires": claims.exp}))
}

/// `POST /api/demo/tokens` `{"user":"…"}`: a one-time token signed with
/// the demo's ephemeral key, for the embedded demo when no token key is
/// configured. The server fixes what it grants (subscribe and publish on
/// `demo:*`) and its lifetime (60 s); the route exists only with the key.
fn mint_demo_token(req: &mut Request, ctx: &AdminCtx) -> Response<io::Cursor<Vec<u8>>> {
    use crate::admission::demo;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        user: String,
    }
    if ctx.view.config.token.key.is_some() {
        return error(
            409,
            "token_key_configured",
            "a token key is configured: mint tokens with POST /api/tokens",
        );
    }
    let Some(key) = &ctx.view.demo_key else {
        return error(404, "not_found", "no such endpoint (admin.demo is off)");
    };
    let ask: Ask = match read_json(req, ctx) {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    if !demo::valid_user(&ask.user) {
        return error(
            400,
            "bad_user",
            "user must be 1 to 32 characters of A-Z a-z 0-9 _ -",
        );
    }
    let (token, expires) = key.mint(&ask.user);
    json_response(
        200,
        json!({
            "token": token,
            "expires": expires,
            "user": ask.user,
            "channels": demo::CHANNELS,
        }),
    )
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
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
    })
}
