//! The admin plane: the HTTP push API the application behind the edge
//! calls, on its own threads and its own (loopback by default) address.
//!
//! Owns: HTTP parsing and answers (via `tiny_http`: this plane is not the
//! hot path), bearer-key checks, encoding a pushed message once, and
//! handing it to the cores that need it through their inboxes.
//! Must not touch: connections or per-core state (only commands).
//!
//! Endpoints (JSON bodies and answers; see README.md for curl examples):
//! `POST /api/channels/{name}/publish`, `POST /api/users/{id}/send`,
//! `POST /api/connections/{id}/send`, `DELETE /api/connections/{id}`,
//! `GET /api/channels/{name}`, `GET /api/users/{id}`, `GET /api/stats`.

use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use percent_encoding::percent_decode_str;
use serde_json::json;
use serde_json::value::RawValue;
use tiny_http::{Header, Method, Request, Response};

use crate::config::AdminConfig;
use crate::conn::EndReason;
use crate::engine::{mask_cores, ChannelInfo, Command, CoreHandle, Stats, Target};
use crate::error::HandshakeError;
use crate::hub::{protocol, ConnId, Registry};

/// Largest request body accepted (413 beyond it).
pub const MAX_BODY: usize = 1 << 20;
const WORKERS: usize = 2;
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A bound admin listener, not yet serving.
pub struct Admin {
    http: Arc<tiny_http::Server>,
    ctx: Arc<AdminCtx>,
}

/// Stops the admin threads.
#[derive(Clone)]
pub struct AdminHandle {
    http: Arc<tiny_http::Server>,
}

impl AdminHandle {
    /// Unblocks and ends the worker threads.
    pub fn stop(&self) {
        for _ in 0..WORKERS {
            self.http.unblock();
        }
    }
}

struct AdminCtx {
    key: Option<String>,
    /// API publishes and sends accepted (any thread may count these).
    api_publishes: AtomicU64,
    api_sends: AtomicU64,
    cores: Arc<[CoreHandle]>,
    registry: Arc<Registry>,
}

impl Admin {
    /// Binds the listener. Refuses a non-loopback address without a key.
    pub fn bind(
        cfg: &AdminConfig,
        cores: Arc<[CoreHandle]>,
        registry: Arc<Registry>,
    ) -> io::Result<Admin> {
        if cfg.key.is_none() && !cfg.listen.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the admin API needs a key (--admin-key or WSEDGE_ADMIN_KEY) on a non-loopback address",
            ));
        }
        let http = tiny_http::Server::http(cfg.listen).map_err(io::Error::other)?;
        Ok(Admin {
            http: Arc::new(http),
            ctx: Arc::new(AdminCtx {
                key: cfg.key.clone(),
                api_publishes: AtomicU64::new(0),
                api_sends: AtomicU64::new(0),
                cores,
                registry,
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

    /// Starts the worker threads.
    pub fn spawn(self) -> io::Result<AdminHandle> {
        for i in 0..WORKERS {
            let http = self.http.clone();
            let ctx = self.ctx.clone();
            std::thread::Builder::new()
                .name(format!("wsedge-admin-{i}"))
                .spawn(move || {
                    while let Ok(req) = http.recv() {
                        handle(req, &ctx);
                    }
                })?;
        }
        Ok(AdminHandle { http: self.http })
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

fn read_body(req: &mut Request) -> Result<Box<RawValue>, Response<io::Cursor<Vec<u8>>>> {
    let mut body = Vec::new();
    let n = req
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|_| error(400, "bad_body", "could not read the body"))?;
    if n > MAX_BODY {
        return Err(error(413, "body_too_large", "the body is over 1 MiB"));
    }
    let text = String::from_utf8(body).map_err(|_| error(400, "bad_json", "body is not UTF-8"))?;
    RawValue::from_string(text).map_err(|_| error(400, "bad_json", "body is not JSON"))
}

fn handle(mut req: Request, ctx: &AdminCtx) {
    let resp = route(&mut req, ctx);
    let _ = req.respond(resp);
}

fn authorized(req: &Request, ctx: &AdminCtx) -> bool {
    let Some(key) = &ctx.key else {
        return true;
    };
    req.headers().iter().any(|h| {
        h.field.equiv("Authorization")
            && h.value
                .as_str()
                .strip_prefix("Bearer ")
                .is_some_and(|v| constant_time_eq(v.as_bytes(), key.as_bytes()))
    })
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
    match (method, segs.as_slice()) {
        (Method::Post, ["api", "channels", name, "publish"]) => {
            if protocol::validate_channel(name, protocol::MAX_CHANNEL_LEN).is_err() {
                return error(400, "invalid_channel", "bad channel name");
            }
            let data = match read_body(req) {
                Ok(d) => d,
                Err(resp) => return resp,
            };
            ctx.api_publishes.fetch_add(1, Ordering::Relaxed);
            let frame = protocol::message_frame(Some(name), &data);
            let channel: Arc<str> = Arc::from(*name);
            let mask = ctx.registry.channel_cores(name);
            for core in mask_cores(mask) {
                ctx.cores[core].send(Command::Deliver {
                    target: Target::Channel(channel.clone()),
                    frame: frame.clone(),
                });
            }
            json_response(200, json!({"ok": true, "cores": mask.count_ones()}))
        }
        (Method::Post, ["api", "users", user, "send"]) => {
            let data = match read_body(req) {
                Ok(d) => d,
                Err(resp) => return resp,
            };
            ctx.api_sends.fetch_add(1, Ordering::Relaxed);
            let frame = protocol::message_frame(None, &data);
            let target: Arc<str> = Arc::from(*user);
            let mask = ctx.registry.user_cores(user);
            for core in mask_cores(mask) {
                ctx.cores[core].send(Command::Deliver {
                    target: Target::User(target.clone()),
                    frame: frame.clone(),
                });
            }
            json_response(200, json!({"ok": true, "online": mask != 0}))
        }
        (Method::Post, ["api", "connections", id, "send"]) => {
            let Some(id) = parse_conn(id, ctx) else {
                return error(404, "unknown_connection", "no such connection id");
            };
            let data = match read_body(req) {
                Ok(d) => d,
                Err(resp) => return resp,
            };
            ctx.api_sends.fetch_add(1, Ordering::Relaxed);
            ctx.cores[id.core as usize].send(Command::Deliver {
                target: Target::Conn {
                    key: id.key,
                    gen: id.gen,
                },
                frame: protocol::message_frame(None, &data),
            });
            json_response(200, json!({"ok": true}))
        }
        (Method::Delete, ["api", "connections", id]) => {
            let Some(id) = parse_conn(id, ctx) else {
                return error(404, "unknown_connection", "no such connection id");
            };
            let code = query_param(query, "code")
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(1000);
            if !crate::protocol::close::is_valid_close_code(code) {
                return error(400, "invalid_code", "not a close code a server may send");
            }
            ctx.cores[id.core as usize].send(Command::Disconnect {
                key: id.key,
                gen: id.gen,
                code,
            });
            json_response(200, json!({"ok": true}))
        }
        (Method::Get, ["api", "channels", name]) => {
            let mask = ctx.registry.channel_cores(name);
            let mut total = ChannelInfo::default();
            for info in query_cores(ctx, mask, |reply| Command::QueryChannel {
                channel: name.to_string(),
                reply,
            }) {
                total.subscribers += info.subscribers;
                total.users.extend(info.users);
            }
            total.users.sort_unstable();
            total.users.dedup();
            json_response(
                200,
                json!({"channel": name, "subscribers": total.subscribers, "users": total.users}),
            )
        }
        (Method::Get, ["api", "users", user]) => {
            let mask = ctx.registry.user_cores(user);
            let mut ids: Vec<String> = query_cores(ctx, mask, |reply| Command::QueryUser {
                user: user.to_string(),
                reply,
            })
            .into_iter()
            .flatten()
            .map(|id| id.to_string())
            .collect();
            ids.sort_unstable();
            json_response(200, json!({"user": user, "connections": ids}))
        }
        (Method::Get, ["api", "stats"]) => {
            let per_core: Vec<Stats> = ctx.cores.iter().map(|c| c.counters().snapshot()).collect();
            let mut total = Stats::default();
            for s in &per_core {
                total.merge(s);
            }
            json_response(
                200,
                json!({
                    "total": stats_json(&total),
                    "cores": per_core.iter().map(stats_json).collect::<Vec<_>>(),
                    "channels": ctx.registry.channel_count(),
                    "users_online": ctx.registry.users_online(),
                    "api": {
                        "publishes": ctx.api_publishes.load(Ordering::Relaxed),
                        "sends": ctx.api_sends.load(Ordering::Relaxed),
                    },
                }),
            )
        }
        _ => error(404, "not_found", "no such endpoint"),
    }
}

fn parse_conn(id: &str, ctx: &AdminCtx) -> Option<ConnId> {
    let id: ConnId = id.parse().ok()?;
    ((id.core as usize) < ctx.cores.len()).then_some(id)
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Sends a query to every core in `mask` and gathers the answers.
fn query_cores<T>(
    ctx: &AdminCtx,
    mask: u64,
    make: impl Fn(crossbeam_channel::Sender<T>) -> Command,
) -> Vec<T> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut asked = 0;
    for core in mask_cores(mask) {
        ctx.cores[core].send(make(tx.clone()));
        asked += 1;
    }
    (0..asked)
        .filter_map(|_| rx.recv_timeout(QUERY_TIMEOUT).ok())
        .collect()
}

fn stats_json(s: &Stats) -> serde_json::Value {
    let ended: serde_json::Map<String, serde_json::Value> = EndReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), s.ended(*r).into()))
        .collect();
    let refused: serde_json::Map<String, serde_json::Value> = HandshakeError::ALL
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
        "dropped": {"slow_consumer": s.dropped_slow_consumer, "not_open": s.dropped_not_open},
        "subscriptions": s.subscriptions,
        "request_errors": s.request_errors,
        "throttled": {"msgs": s.throttled_msgs, "bytes": s.throttled_bytes},
    })
}
