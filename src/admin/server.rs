//! The control plane's runtime and the admin plane's accept loop: one
//! small tokio runtime (`admin.threads` workers, at most
//! `admin.blocking_threads` threads for routes that wait on the cores),
//! shared with the gateway, serving HTTP/1.1 with hyper.
//!
//! Owns: building the runtime, the cap on concurrent connections
//! (`admin.max_connections`; beyond it a connection is answered 503 from
//! the accept loop and closed, with no task spawned for it), hyper's
//! per-connection limits (`admin.max_header_bytes`, `admin.max_headers`,
//! `admin.header_read_timeout`) and each connection's task with its
//! watchdog (`conn`). Must not touch: routes, the request checks or the
//! cores (the cores never wait on anything here).

use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::{watchdog, ConnState, Watched};
use super::{service, AdminCtx};

/// What a connection over the cap is told before it is closed.
const BUSY: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 27\r\nConnection: close\r\nRetry-After: 1\r\n\r\ntoo many admin connections\n";

/// The kernel's send buffer of an admin connection (Linux doubles it).
const SEND_BUFFER: usize = 64 * 1024;

/// hyper's smallest buffer (it panics below it).
const MIN_BUF: usize = 8192;

/// Builds the control plane's runtime (`admin.threads` workers, at most
/// `admin.blocking_threads` threads for work that waits on the cores): the
/// admin plane and the gateway share it. The server drives it on a thread
/// of its own.
pub fn runtime(cfg: &crate::config::AdminConfig) -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .max_blocking_threads(cfg.blocking_threads)
        .thread_name("wsedge-control")
        .on_thread_start(crate::panics::own_thread)
        .enable_io()
        .enable_time()
        .build()
}

/// Starts the accept loop on `rt`; it runs until [`AdminCtx::shutdown`]
/// is notified (open connections and streams end with the runtime).
pub fn spawn(
    rt: &tokio::runtime::Handle,
    listener: std::net::TcpListener,
    ctx: Arc<AdminCtx>,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let _entered = rt.enter();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    rt.spawn(accept_loop(listener, ctx));
    Ok(())
}

async fn accept_loop(listener: tokio::net::TcpListener, ctx: Arc<AdminCtx>) {
    let slots = Arc::new(Semaphore::new(ctx.view.config.admin.max_connections));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = ctx.shutdown.notified() => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors, most likely: let some close.
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            ctx.connections_refused.fetch_add(1, Ordering::Relaxed);
            // A fresh socket's send buffer is empty: this write does not
            // block, and nothing is spawned for the connection.
            let _ = stream.try_write(BUSY);
            continue;
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let state = Arc::new(ConnState::new(peer, local));
        tokio::spawn(connection(stream, state, ctx.clone(), permit));
    }
}

/// Serves one connection until it ends or its watchdog fires (or the
/// runtime ends, when the plane stops); `_permit` is its slot under `admin.max_connections`.
/// With `admin.tls`, the TLS handshake comes first, bounded by
/// `admin.header_read_timeout` (a client that never finishes it holds its
/// slot no longer than one that never sends its request head).
async fn connection(
    stream: TcpStream,
    state: Arc<ConnState>,
    ctx: Arc<AdminCtx>,
    _permit: OwnedSemaphorePermit,
) {
    let cfg = &ctx.view.config.admin;
    let _ = stream.set_nodelay(true);
    // A fixed send buffer (no autotuning up to megabytes): what a client
    // does not read backs up into this plane within SEND_BUFFER bytes,
    // where the write timeout sees it, and costs no more kernel memory.
    let _ = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER);
    let watched = Watched::new(stream, state.clone());
    match &ctx.view.tls {
        None => serve(TokioIo::new(watched), state, ctx.clone()).await,
        Some(certs) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(certs.current());
            let handshake = tokio::time::timeout(cfg.header_read_timeout, acceptor.accept(watched));
            match handshake.await {
                Ok(Ok(tls)) => serve(TokioIo::new(tls), state, ctx.clone()).await,
                Ok(Err(e)) => {
                    ctx.tls_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %state.peer, error = %e, "admin TLS handshake failed");
                }
                Err(_) => {
                    ctx.tls_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %state.peer, "admin TLS handshake timed out");
                }
            }
        }
    }
}

/// HTTP/1.1 over `io` (the socket, or TLS over it) with the plane's
/// limits, until the connection ends or its watchdog fires.
async fn serve<I>(io: I, state: Arc<ConnState>, ctx: Arc<AdminCtx>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let cfg = &ctx.view.config.admin;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_read_timeout)
        .max_buf_size(cfg.max_header_bytes.max(MIN_BUF))
        .max_header_size(cfg.max_header_bytes)
        .max_headers(cfg.max_headers)
        .keep_alive(true);
    let svc_ctx = ctx.clone();
    let svc_state = state.clone();
    let svc = service_fn(move |req| service::serve(req, svc_ctx.clone(), svc_state.clone()));
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                // hyper answered these itself, before the plane saw a request.
                if e.is_parse_too_large() {
                    ctx.responses.add(431);
                } else if e.is_parse() {
                    ctx.responses.add(400);
                }
                tracing::debug!(peer = %state.peer, error = %e, "admin connection ended");
            }
        }
        why = watchdog(&state, cfg.idle_timeout, cfg.write_timeout) => {
            tracing::debug!(peer = %state.peer, why, "admin connection dropped");
        }
    }
}
