//! One admin connection's deadlines that hyper does not keep: the idle
//! timeout (no byte moved either way for `admin.idle_timeout`) and the
//! write timeout (a write the client has not made room for within
//! `admin.write_timeout`, e.g. a status stream nobody reads).
//!
//! Owns: [`Watched`], the socket wrapper that records when bytes last
//! moved and since when a write is blocked, and [`watchdog`], the future
//! that completes when either deadline passed (the connection task then
//! drops the connection). Must not touch: HTTP (hyper parses and keeps
//! the header read timeout; `service` the body read timeout).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// What the connection's socket wrapper records and its watchdog reads.
pub struct ConnState {
    /// The client's address.
    pub peer: SocketAddr,
    /// The address the client reached (this listener's, as it sees it).
    pub local: SocketAddr,
    start: Instant,
    /// Milliseconds since `start` (+1) when a byte last moved.
    last_activity: AtomicU64,
    /// Milliseconds since `start` (+1) since when a write is blocked; 0
    /// when none is.
    write_blocked_since: AtomicU64,
}

impl ConnState {
    pub fn new(peer: SocketAddr, local: SocketAddr) -> ConnState {
        ConnState {
            peer,
            local,
            start: Instant::now(),
            last_activity: AtomicU64::new(1),
            write_blocked_since: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64 + 1
    }

    fn moved(&self) {
        self.last_activity.store(self.now_ms(), Ordering::Relaxed);
    }

    fn wrote(&self, r: &Poll<io::Result<usize>>) {
        match r {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.moved();
                self.write_blocked_since.store(0, Ordering::Relaxed);
            }
            Poll::Pending => {
                let now = self.now_ms();
                let _ = self.write_blocked_since.compare_exchange(
                    0,
                    now,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            _ => {}
        }
    }
}

/// Completes when the connection has been idle for `idle` or a write has
/// been blocked for `write`.
pub async fn watchdog(state: &ConnState, idle: Duration, write: Duration) -> &'static str {
    let idle_ms = idle.as_millis() as u64;
    let write_ms = write.as_millis() as u64;
    loop {
        let now = state.now_ms();
        let idle_at = state.last_activity.load(Ordering::Relaxed) + idle_ms;
        let blocked = state.write_blocked_since.load(Ordering::Relaxed);
        let stall_at = if blocked == 0 {
            u64::MAX
        } else {
            blocked + write_ms
        };
        if now >= stall_at {
            return "write timeout";
        }
        if now >= idle_at {
            return "idle timeout";
        }
        // A write may block after this look: look again within half the
        // write timeout, so a stall is caught within 1.5× of it.
        let wait = idle_at
            .min(stall_at)
            .saturating_sub(now)
            .min(write_ms / 2 + 1);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// A socket that tells its [`ConnState`] when bytes move and when a
/// write blocks.
pub struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl Watched {
    pub fn new(inner: TcpStream, state: Arc<ConnState>) -> Watched {
        Watched { inner, state }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.moved();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.state.wrote(&r);
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.state.wrote(&r);
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
