//! `GET /api/status/stream`: the status snapshot once per
//! `admin.status_interval` as Server-Sent Events.
//!
//! Owns: the stream slots (at most `admin.max_streams` in all and
//! `admin.max_streams_per_ip` from one client address; 503 and 429
//! beyond), the stream's body and the task that feeds it. Never queues:
//! a snapshot the connection has not taken when the next is due is
//! skipped, so a stream holds at most one snapshot besides the
//! connection's own write buffer; a client that stops reading is dropped
//! by its connection's write timeout (`admin.write_timeout`, see
//! `conn`). Must not touch: the snapshot's shape (`status`) or sockets.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use super::routes::{error, Reply};
use super::{status, AdminCtx};

/// A stream ends after this long; `EventSource` reconnects by itself, so
/// this only bounds how long a forgotten tab holds a slot.
const STREAM_LIFETIME: Duration = Duration::from_secs(600);

/// The body of one event stream: what its task sends, as it comes.
pub struct SseBody {
    rx: mpsc::Receiver<Bytes>,
}

impl Body for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Open streams per client address.
pub type PerIp = std::sync::Mutex<HashMap<IpAddr, usize>>;

/// One stream's slot, given back on drop (whatever ends the stream).
struct Slot {
    ctx: Arc<AdminCtx>,
    ip: IpAddr,
}

impl Slot {
    /// Takes a slot for `ip`, or the refusal to answer.
    fn take(ctx: &Arc<AdminCtx>, ip: IpAddr) -> Result<Slot, Reply> {
        let cfg = &ctx.view.config.admin;
        let mut per_ip = ctx.streams_per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let mine = per_ip.entry(ip).or_insert(0);
        if *mine >= cfg.max_streams_per_ip {
            return Err(error(
                429,
                "too_many_streams",
                "too many status streams from this address (admin.max_streams_per_ip)",
            ));
        }
        if ctx.streams.fetch_add(1, Ordering::AcqRel) >= cfg.max_streams {
            ctx.streams.fetch_sub(1, Ordering::AcqRel);
            return Err(error(
                503,
                "too_many_streams",
                "too many status streams open (admin.max_streams)",
            ));
        }
        *mine += 1;
        Ok(Slot {
            ctx: ctx.clone(),
            ip,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.ctx.streams.fetch_sub(1, Ordering::AcqRel);
        let mut per_ip = self
            .ctx
            .streams_per_ip
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Opens a stream for a client at `ip`: the response whose body the
/// stream's task feeds, or a refusal (429/503) when no slot is free.
pub fn open(ctx: &Arc<AdminCtx>, ip: IpAddr) -> Result<http::Response<SseBody>, Reply> {
    let slot = Slot::take(ctx, ip)?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(feed(slot, tx));
    Ok(http::Response::builder()
        .status(200)
        .header("Content-Type", "text/event-stream")
        .header("Cache-Control", "no-cache")
        .header("X-Content-Type-Options", "nosniff")
        .header("Connection", "close")
        .body(SseBody { rx })
        .expect("valid headers"))
}

/// Sends a snapshot at once, then one per interval, until the client
/// goes (the body is dropped), the lifetime ends or the plane stops.
async fn feed(slot: Slot, tx: mpsc::Sender<Bytes>) {
    let ctx = slot.ctx.clone();
    let every = ctx.view.config.admin.status_interval;
    let ends = Instant::now() + STREAM_LIFETIME;
    if tx
        .send(Bytes::from_static(b"retry: 2000\n\n"))
        .await
        .is_err()
    {
        return;
    }
    while Instant::now() < ends && !ctx.stopped.load(Ordering::Acquire) {
        // The snapshot may ask the cores (top channels): off the runtime.
        let c = ctx.clone();
        let Ok(snap) = tokio::task::spawn_blocking(move || status::snapshot(&c)).await else {
            break;
        };
        let mut event = Vec::with_capacity(snap.len() + 8);
        event.extend_from_slice(b"data: ");
        event.extend_from_slice(snap.as_bytes());
        event.extend_from_slice(b"\n\n");
        match tx.try_send(Bytes::from(event)) {
            Ok(()) => {}
            // The connection has not taken the last one: skip this one.
            Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = tx.closed() => break,
        }
    }
    drop(slot);
}
