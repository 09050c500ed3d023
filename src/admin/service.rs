//! One admin request, from hyper's parsed head to the answer: the checks
//! (`guard`), CORS, the public answers (health probes, embedded pages),
//! the key, the status stream, the body read within its limits, then the
//! route on the blocking pool, with a panic anywhere contained to this
//! request (500, counted, logged once).
//!
//! Owns: that order, the key check, reading the body
//! (`admin.max_body_bytes`: refused on Content-Length before reading,
//! and read through `http_body_util::Limited`; never allocated from
//! Content-Length; `admin.body_read_timeout`: 408; `admin.max_body_memory`
//! over all requests at once: 503), counting every answer by status, and
//! the conversion of answers to hyper's. Must not touch: sockets or connection limits
//! (`server`, `conn`), the routes' logic (`routes`).

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, ORIGIN};
use http::{HeaderValue, Method, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;
use tokio::sync::OwnedSemaphorePermit;

use super::conn::ConnState;
use super::guard::{self, Rules};
use super::routes::{self, error, reply, Reply, Req};
use super::{assets, contained, sse, AdminCtx};

/// hyper's answer type here: whole bodies and event streams.
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

fn boxed(r: Reply) -> Response<Body> {
    r.map(|b| Full::new(b).boxed_unsync())
}

/// Answers one request (never fails: every error is an answer).
pub async fn serve(
    req: Request<Incoming>,
    ctx: Arc<AdminCtx>,
    conn: Arc<ConnState>,
) -> Result<Response<Body>, Infallible> {
    let target = format!("{} {}", req.method(), req.uri().path());
    let c = ctx.clone();
    let resp = match (CatchUnwind(Box::pin(answer(req, c, conn)))).await {
        Ok(r) => r,
        Err(payload) => {
            note_panic(&ctx, &target, &*payload);
            boxed(internal_error())
        }
    };
    ctx.responses.add(resp.status().as_u16());
    Ok(resp)
}

fn internal_error() -> Reply {
    error(
        500,
        "internal_error",
        "the server failed while answering this request",
    )
}

async fn answer(
    req: Request<Incoming>,
    ctx: Arc<AdminCtx>,
    conn: Arc<ConnState>,
) -> Response<Body> {
    let cfg = &ctx.view.config.admin;
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().clone();
    let get = matches!(method, Method::GET | Method::HEAD);
    let probe = get && matches!(path.as_str(), "/healthz" | "/readyz");
    let rules = Rules {
        allowed_hosts: &cfg.allowed_hosts,
        cors_origins: &cfg.cors_origins,
        local_ip: conn.local.ip(),
    };
    if let Some(gw) = &ctx.view.gateway {
        if let Some(target) = crate::gateway::api::parse_path(&path, gw.stage()) {
            // The management API: the Host rule only (see `gateway::api`
            // for why the Origin and Content-Type rules do not apply).
            let host = req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok());
            if !host.is_some_and(|h| guard::host_allowed(&rules, h)) {
                let r = guard::Refusal::ForeignHost;
                return boxed(crate::gateway::api::aws_error(
                    403,
                    "ForbiddenException",
                    r.reason(),
                ));
            }
            let key = ctx.key.clone();
            let timeout = cfg.body_read_timeout;
            return boxed(crate::gateway::api::serve(req, target, gw.clone(), key, timeout).await);
        }
    }
    if let Err(refusal) = guard::check(&rules, &method, req.headers(), probe) {
        return boxed(error(refusal.status(), refusal.code(), refusal.reason()));
    }
    let origin = req
        .headers()
        .get(ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_string);
    let cors = guard::cors_headers(&rules, origin.as_deref());
    let mut resp = if method == Method::OPTIONS
        && !cors.is_empty()
        && req.headers().contains_key("access-control-request-method")
    {
        boxed(reply(
            204,
            "text/plain",
            Bytes::new(),
            &guard::PREFLIGHT_HEADERS,
        ))
    } else {
        answer_checked(req, &ctx, &conn, path, query, get).await
    };
    for (k, v) in cors {
        if let Ok(v) = HeaderValue::from_str(&v) {
            resp.headers_mut().insert(k, v);
        }
    }
    resp
}

/// The request after the guard: public answers, the key, the stream,
/// then the body and the route.
async fn answer_checked(
    req: Request<Incoming>,
    ctx: &Arc<AdminCtx>,
    conn: &ConnState,
    path: String,
    query: String,
    get: bool,
) -> Response<Body> {
    if get {
        if let Some(r) = public(&path, ctx) {
            return boxed(r);
        }
    }
    if !authorized(&req, &path, &query, ctx) {
        return boxed(error(401, "unauthorized", "missing or wrong bearer key"));
    }
    if req.method() == Method::GET && path == "/api/status/stream" {
        return match sse::open(ctx, conn.peer.ip()) {
            Ok(r) => r.map(|b| b.boxed_unsync()),
            Err(r) => boxed(r),
        };
    }
    let method = req.method().clone();
    let (body, reserved) = match read_body(req, ctx).await {
        Ok(b) => b,
        Err(r) => {
            let mut r = boxed(r);
            // The rest of the body is not read: no next request on it.
            r.headers_mut()
                .insert("Connection", HeaderValue::from_static("close"));
            return r;
        }
    };
    let req = Req {
        method,
        path,
        query,
        body,
    };
    let c = ctx.clone();
    let target = format!("{} {}", req.method, req.path);
    let routed = tokio::task::spawn_blocking(move || {
        // The body's share of admin.max_body_memory is held until the
        // route is done with it.
        let _reserved = reserved;
        contained(&c, "request", &target, || routes::route(&req, &c))
    })
    .await;
    boxed(match routed {
        Ok(Some(r)) => r,
        _ => internal_error(),
    })
}

/// Reads the whole body within `admin.max_body_bytes` and
/// `admin.body_read_timeout`, reserving its size (its Content-Length, or
/// `max_body_bytes` without one) of `admin.max_body_memory` first: the
/// reservation comes back with the body and is held until the request is
/// answered. None left → 503 before a byte of the body is read.
async fn read_body(
    req: Request<Incoming>,
    ctx: &AdminCtx,
) -> Result<(Bytes, Option<OwnedSemaphorePermit>), Reply> {
    let cfg = &ctx.view.config.admin;
    let max = cfg.max_body_bytes;
    let too_large = || {
        let reason = format!("the body is over {max} bytes (admin.max_body_bytes)");
        error(413, "body_too_large", &reason)
    };
    if !guard::has_body(req.headers()) {
        return Ok((Bytes::new(), None));
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared.filter(|&n| n > max as u64) {
        // A modestly oversized body is read and thrown away (never kept)
        // before the 413, so that a client still writing it reads the
        // answer rather than a reset; a larger one is refused at once and
        // the connection closed.
        if n <= DRAIN_FACTOR * max as u64 {
            let body = req.into_body();
            let _ = tokio::time::timeout(cfg.body_read_timeout, discard(body)).await;
        }
        return Err(too_large());
    }
    let reserve = u32::try_from(declared.unwrap_or(max as u64)).unwrap_or(u32::MAX);
    let Ok(reserved) = ctx.body_budget.clone().try_acquire_many_owned(reserve) else {
        return Err(error(
            503,
            "busy",
            "too many request bodies in flight (admin.max_body_memory); retry shortly",
        ));
    };
    let limited = Limited::new(req.into_body(), max);
    match tokio::time::timeout(cfg.body_read_timeout, limited.collect()).await {
        Err(_) => Err(error(
            408,
            "body_timeout",
            "the body did not arrive within admin.body_read_timeout",
        )),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(error(400, "bad_body", "could not read the body")),
        Ok(Ok(collected)) => Ok((collected.to_bytes(), Some(reserved))),
    }
}

/// A declared body up to this many times `admin.max_body_bytes` is read
/// and discarded before its 413 (see [`read_body`]).
const DRAIN_FACTOR: u64 = 4;

/// Reads a body to its end, keeping nothing.
async fn discard(mut body: Incoming) {
    while let Some(Ok(_)) = body.frame().await {}
}

/// What answers without the key: health probes (load balancers and
/// orchestrators call them) and the embedded static files (no data in
/// them; what they fetch needs the key).
fn public(path: &str, ctx: &AdminCtx) -> Option<Reply> {
    let text = |status: u16, body: &'static str| {
        reply(
            status,
            "text/plain; charset=utf-8",
            body,
            &[("Cache-Control", "no-store")],
        )
    };
    match path {
        "/healthz" => return Some(text(200, "ok\n")),
        "/readyz" => {
            use crate::cluster::Readiness;
            let cluster = ctx.view.cluster.as_ref().map(|c| c.readiness());
            return Some(if ctx.view.draining.load(Ordering::Acquire) {
                text(503, "draining\n")
            } else {
                match cluster {
                    None | Some(Readiness::Ready) => text(200, "ready\n"),
                    // Serving its own connections; the cluster link is down.
                    Some(Readiness::Degraded) => text(200, "degraded: cluster link down\n"),
                    Some(Readiness::Down) => text(503, "degraded: cluster link down\n"),
                }
            });
        }
        _ => {}
    }
    let asset = assets::get(path)?;
    Some(reply(200, asset.content_type, asset.body, &assets::HEADERS))
}

fn authorized(req: &Request<Incoming>, path: &str, query: &str, ctx: &AdminCtx) -> bool {
    let Some(key) = &ctx.key else {
        return true;
    };
    let bearer = req.headers().get_all(AUTHORIZATION).iter().any(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|v| constant_time_eq(v.as_bytes(), key.as_bytes()))
    });
    // `EventSource` cannot set headers: the status stream (and only a GET
    // of the status) may carry the key as `?key=` instead.
    let query_key = req.method() == Method::GET
        && path.starts_with("/api/status")
        && routes::query_param(query, "key").is_some_and(|v| {
            let v = percent_decode_str(v).decode_utf8_lossy();
            constant_time_eq(v.as_bytes(), key.as_bytes())
        });
    bearer || query_key
}

/// Compares without an early exit, so timing does not reveal the key.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn note_panic(ctx: &AdminCtx, target: &str, payload: &(dyn Any + Send)) {
    ctx.panics.fetch_add(1, Ordering::Relaxed);
    let note = crate::panics::take_note(payload);
    tracing::error!(
        what = "request",
        request = target,
        at = %note.location,
        panic = %note.message,
        backtrace = note.backtrace.as_deref(),
        "panic in the admin plane; dropped that request, the server goes on"
    );
}

/// A future whose panic is caught and returned, so that a panic while
/// answering is this request's 500, not the connection's end.
///
/// `AssertUnwindSafe`: as for [`contained`]: the plane's shared state is
/// atomics, a cache behind a mutex that skips a poisoned lock, stream
/// slots given back on drop, and the cores' inboxes.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        match catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}
