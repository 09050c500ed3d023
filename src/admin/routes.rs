//! The admin API's routes: each maps one request to one call on the
//! handles the plane was given ([`Parts`](super::Parts)) and answers JSON.
//!
//! Owns: the route table, request bodies as JSON, the mapping of hub
//! refusals to statuses. Runs on the admin runtime's blocking pool (a
//! route may wait on the cores' answers, up to `admin.query_timeout`),
//! with the request already checked (`guard`), authorized and its body
//! read within its limits (`service`). Must not touch: sockets, limits,
//! the key check or the engine (it holds no core handle).

use bytes::Bytes;
use http::Method;
use percent_encoding::percent_decode_str;
use serde_json::json;
use serde_json::value::RawValue;

use super::{metrics, stats_json, status, AdminCtx};
use crate::cluster::request::Asked;
use crate::cluster::wire::{Op, Outcome};
use crate::cluster::NodeConn;
use crate::hub::{HubError, HubHandle};
use crate::inbox::Posted;
use crate::stats::Stats;
use std::sync::atomic::Ordering;

/// An answer: a status, headers and a whole body.
pub type Reply = http::Response<Bytes>;

/// What a route sees of a request: its head and its whole body (read
/// within `admin.max_body_bytes` and `admin.body_read_timeout`).
pub struct Req {
    pub method: Method,
    /// The path, percent-encoded as sent.
    pub path: String,
    /// The query, without `?` ("" when none).
    pub query: String,
    pub body: Bytes,
}

/// An answer with a body of `content_type` and extra headers.
pub fn reply(
    status: u16,
    content_type: &str,
    body: impl Into<Bytes>,
    extra: &[(&str, &str)],
) -> Reply {
    let mut b = http::Response::builder()
        .status(status)
        .header("Content-Type", content_type);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(body.into()).expect("valid status and headers")
}

pub fn json_response(status: u16, body: serde_json::Value) -> Reply {
    reply(status, "application/json", body.to_string(), &[])
}

/// A JSON error: `{"error": code, "reason": reason}`.
pub fn error(status: u16, code: &str, reason: &str) -> Reply {
    json_response(status, json!({"error": code, "reason": reason}))
}

/// The body as JSON text (400 when it is not).
fn read_body(req: &Req) -> Result<Box<RawValue>, Reply> {
    let text =
        std::str::from_utf8(&req.body).map_err(|_| error(400, "bad_json", "body is not UTF-8"))?;
    RawValue::from_string(text.to_string()).map_err(|_| error(400, "bad_json", "body is not JSON"))
}

/// The body read as [`read_body`] does, then deserialized into `T` (400
/// with serde's reason when it does not fit).
fn read_json<T: serde::de::DeserializeOwned>(req: &Req) -> Result<T, Reply> {
    let body = read_body(req)?;
    serde_json::from_str(body.get()).map_err(|e| error(400, "bad_request", &e.to_string()))
}

pub fn route(req: &Req, ctx: &AdminCtx) -> Reply {
    let (path, query) = (req.path.as_str(), req.query.as_str());
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let method = req.method.clone();
    let hub = &ctx.view.hub;
    match (method, segs.as_slice()) {
        (Method::GET, ["metrics"]) => metrics_response(ctx),
        (Method::GET, ["api", "status"]) => {
            let body = status::snapshot(ctx).as_bytes().to_vec();
            reply(
                200,
                "application/json",
                body,
                &[("Cache-Control", "no-store")],
            )
        }
        (Method::GET, ["api", "info"]) => {
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
        (Method::POST, ["api", "tokens"]) => mint_token(req, ctx),
        #[cfg(feature = "fault-injection")]
        (Method::GET, ["api", "fault", "panic"]) if crate::panics::fault::enabled() => {
            panic!("fault injection: panic in an admin request")
        }
        (Method::POST, ["api", "demo", "tokens"]) => mint_demo_token(req, ctx),
        (Method::POST, ["api", "channels", name, "publish"]) => {
            if !hub.is_valid_channel(name) {
                return hub_error(HubError::InvalidChannel);
            }
            let data = match read_body(req) {
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
        (Method::POST, ["api", "users", user, "send"]) => {
            let data = match read_body(req) {
                Ok(d) => d,
                Err(resp) => return resp,
            };
            ctx.api_sends.fetch_add(1, Ordering::Relaxed);
            let online = hub.send_to_user(user, &data);
            json_response(200, json!({"ok": true, "online": online}))
        }
        (Method::POST, ["api", "connections", id, "send"]) => {
            let Some(id) = parse_conn(id, hub) else {
                return hub_error(HubError::UnknownConnection);
            };
            let data = match read_body(req) {
                Ok(d) => d,
                Err(resp) => return resp,
            };
            ctx.api_sends.fetch_add(1, Ordering::Relaxed);
            // This node's connection, or another node's (asked over the
            // broker): either way the answer says what became of it.
            let outcome = match hub.locate(id) {
                Ok(Some(conn)) => match hub.send_checked(conn, &data) {
                    Ok(Posted::Queued) => Outcome::Done,
                    Ok(Posted::Full) => Outcome::Full,
                    Ok(Posted::Gone) => Outcome::Gone,
                    Err(e) => return hub_error(e),
                },
                Ok(None) => match ask(
                    hub,
                    id,
                    Op::Send {
                        conn: id.conn,
                        data: data.get().into(),
                    },
                ) {
                    Ok(o) => o,
                    Err(resp) => return resp,
                },
                Err(e) => return hub_error(e),
            };
            connection_outcome(outcome)
        }
        (Method::DELETE, ["api", "connections", id]) => {
            let Some(id) = parse_conn(id, hub) else {
                return hub_error(HubError::UnknownConnection);
            };
            let code = query_param(query, "code")
                .and_then(|c| c.parse::<u16>().ok())
                .unwrap_or(1000);
            if !crate::protocol::close::is_valid_close_code(code) {
                return hub_error(HubError::InvalidCloseCode);
            }
            let outcome = match hub.locate(id) {
                Ok(Some(conn)) => match hub.disconnect_checked(conn, code) {
                    Ok(true) => Outcome::Done,
                    Ok(false) => Outcome::Gone,
                    Err(e) => return hub_error(e),
                },
                Ok(None) => match ask(
                    hub,
                    id,
                    Op::Close {
                        conn: id.conn,
                        code,
                    },
                ) {
                    Ok(o) => o,
                    Err(resp) => return resp,
                },
                Err(e) => return hub_error(e),
            };
            connection_outcome(outcome)
        }
        (Method::GET, ["api", "channels", name]) => match hub.channel(name) {
            Ok(mut info) => {
                // Clustered: the other live nodes' parts too; without the
                // broker, this node's alone, said so.
                let partial = ctx
                    .view
                    .cluster
                    .as_ref()
                    .and_then(|c| c.presence.as_ref())
                    .is_some_and(|p| p.channel(name, &mut info).is_err());
                let mut body =
                    json!({"channel": name, "subscribers": info.subscribers, "users": info.users});
                if partial {
                    body["partial"] = true.into();
                }
                json_response(200, body)
            }
            Err(e) => hub_error(e),
        },
        (Method::GET, ["api", "users", user]) => match hub.user_connections(user) {
            Ok(ids) => {
                let mut ids: Vec<String> = ids.into_iter().map(|id| hub.conn_text(id)).collect();
                let partial = ctx
                    .view
                    .cluster
                    .as_ref()
                    .and_then(|c| c.presence.as_ref())
                    .is_some_and(|p| p.user(user, &mut ids).is_err());
                let mut body = json!({"user": user, "connections": ids});
                if partial {
                    body["partial"] = true.into();
                }
                json_response(200, body)
            }
            Err(e) => hub_error(e),
        },
        (Method::GET, ["api", "stats"]) => {
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

/// A connection id of this node or (clustered) of another: today's
/// `core-key-gen`, or `node.core-key-gen`.
fn parse_conn(id: &str, hub: &HubHandle) -> Option<NodeConn> {
    let id: NodeConn = id.parse().ok()?;
    hub.locate(id).ok().map(|_| id)
}

/// Asks the node of `id` (another node's) to perform `op`; an answer
/// that is not the owner's is the HTTP reply to give.
fn ask(hub: &HubHandle, id: NodeConn, op: Op) -> Result<Outcome, Reply> {
    match hub.ask_node(id.node.unwrap_or_default(), op) {
        Asked::Answer(o) => Ok(o),
        Asked::Unavailable => Err(error(
            503,
            "busy",
            "the connection's node cannot be reached now (cluster link down or busy); try again shortly",
        )),
        Asked::TimedOut => Err(error(
            504,
            "timeout",
            "the connection's node did not answer within cluster.request_timeout; whether it was done is unknown",
        )),
    }
}

/// The answer to a send to or disconnect of one connection: 200, or
/// 404 when it is not open (gone), 503 when it or its core is full.
fn connection_outcome(o: Outcome) -> Reply {
    match o {
        Outcome::Done | Outcome::Info(_) => json_response(200, json!({"ok": true})),
        Outcome::Gone | Outcome::InvalidChannel => hub_error(HubError::UnknownConnection),
        Outcome::Full => error(
            503,
            "full",
            "the connection's queue is full (connection.max_pending_bytes); nothing was queued",
        ),
        Outcome::Busy | Outcome::TooManyChannels => hub_error(HubError::Busy),
    }
}

/// The one mapping of a hub refusal to an HTTP answer.
fn hub_error(e: HubError) -> Reply {
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
fn metrics_response(ctx: &AdminCtx) -> Reply {
    let view = &ctx.view.stats;
    let stats = view.per_core();
    let latency = view.latency();
    let outbound = view.queued_bytes(ctx.view.config.admin.query_timeout);
    let gateway = ctx.view.gateway.as_ref().map(|g| g.snapshot());
    let cluster = ctx.view.cluster.as_ref().map(|c| &*c.stats);
    let text = metrics::render(&metrics::Scrape {
        cores: &stats,
        latency: &latency,
        outbound_bytes: &outbound,
        channels: ctx.view.hub.channel_count(),
        users_online: ctx.view.hub.users_online(),
        api_publishes: ctx.api_publishes.load(Ordering::Relaxed),
        api_sends: ctx.api_sends.load(Ordering::Relaxed),
        admin_panics: ctx.panics.load(Ordering::Relaxed),
        admin_responses: &ctx.responses.snapshot(),
        cluster,
        admin_connections_refused: ctx.connections_refused.load(Ordering::Relaxed),
        admin_tls_errors: ctx.tls_errors.load(Ordering::Relaxed),
        uptime_secs: ctx.view.started.elapsed().as_secs_f64(),
        draining: ctx.view.draining.load(Ordering::Acquire),
        gateway: gateway.as_ref(),
    });
    reply(
        200,
        "text/plain; version=0.0.4; charset=utf-8",
        text.into_bytes(),
        &[],
    )
}

/// `POST /api/tokens`: mints a one-time connection token with the current
/// key, for applications (and the demo) that do not mint their own.
fn mint_token(req: &Req, ctx: &AdminCtx) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Ask {
        user: String,
        #[serde(default)]
        subscribe: Vec<String>,
        #[serde(default)]
        publish: Vec<String>,
        /// Default: 60 s, or `token.max_ttl` if that is shorter.
        ttl_secs: Option<u64>,
    }
    let Some(key) = &ctx.view.config.token.key else {
        return error(
            409,
            "no_token_key",
            "the server has no token key configured",
        );
    };
    let ask: Ask = match read_json(req) {
        Ok(a) => a,
        Err(resp) => return resp,
    };
    if ask.user.is_empty() || ask.user.len() > 256 {
        return error(400, "bad_user", "user must be 1 to 256 bytes");
    }
    let cfg = &ctx.view.config.token;
    let ttl_secs = ask
        .ttl_secs
        .unwrap_or_else(|| cfg.max_ttl.as_secs().min(60));
    if let Err(e) = crate::admission::token::check_ttl(cfg, ttl_secs) {
        return error(400, "bad_ttl", &format!("ttl_secs: {e}"));
    }
    let claims =
        crate::admission::token::claims_for(ask.user, ttl_secs, ask.subscribe, ask.publish);
    let token = crate::admission::token::mint(key.as_bytes(), &claims);
    json_response(200, json!({"token": token, "expires": claims.exp}))
}

/// `POST /api/demo/tokens` `{"user":"…"}`: a one-time token signed with
/// the demo's ephemeral key, for the embedded demo when no token key is
/// configured. The server fixes what it grants (subscribe and publish on
/// `demo:*`) and its lifetime (60 s); the route exists only with the key.
fn mint_demo_token(req: &Req, ctx: &AdminCtx) -> Reply {
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
    let ask: Ask = match read_json(req) {
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

pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then_some(v)
    })
}
