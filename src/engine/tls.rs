//! The core's side of `wss://`: one rustls session per TLS connection,
//! between the socket and the sans-IO [`Conn`](crate::conn::Conn), which
//! never knows.
//!
//! Owns: [`TlsPlane`] (the listener's certificate, its connections'
//! sessions by slab key beside the slab, so a plain connection's slot has
//! no room for one, and the ciphertext block), [`TlsSession`] (a rustls
//! `ServerConnection`), reading a TLS
//! connection (ciphertext from the socket into the core's TLS scratch
//! block, fed to rustls, plaintext out into the core's receive block and
//! handed to `Conn::handle_read` as one chunk per read, as the plain path
//! does), writing it (what `Conn::poll_transmit` offers, encrypted by
//! rustls, then written), counting completed handshakes and bad TLS input
//! (`CoreCounters::tls_handshakes`, `tls_errors`), and the last write
//! before a TLS connection's socket is dropped. Must not touch: what the
//! plaintext means (`Conn`), certificates (`crate::tls`), anything of a
//! connection without TLS: those never reach this file (on a plain
//! listener the core's `tls` is `None`: one branch on read and flush).
//!
//! Bad TLS input (a record that is not TLS, a ClientHello rustls refuses,
//! a handshake cut short by EOF, an oversized handshake message, a failed
//! decryption) is
//! counted, logged at debug level without any of its bytes, answered with
//! rustls's alert where it queued one, and ends the connection as an I/O
//! error; never a panic. The handshake timeout (`connection.handshake_timeout`)
//! runs from accept, so it covers the TLS handshake as well as the HTTP
//! upgrade that follows.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};
use thiserror::Error;

use super::core::Core;
use crate::conn::outbound::MAX_IOVECS;
use crate::tls::Certs;

/// Size of the per-core block ciphertext is read into (allocated on a
/// core's first TLS read, reused for every read after).
pub(super) const SCRATCH: usize = 64 * 1024;
/// Room kept free in the receive block beyond the ciphertext read: the
/// plaintext of a read is at most its ciphertext plus one record whose
/// start arrived in an earlier read.
const PLAIN_SLACK: usize = 16 * 1024 + 512;

/// Why a TLS connection's input was refused.
#[derive(Debug, Error)]
pub(super) enum BadTls {
    /// rustls refused a record or a handshake message.
    #[error("{0}")]
    Protocol(#[from] rustls::Error),
    /// rustls would not buffer more (e.g. a handshake message over 64 KiB).
    #[error("record buffer: {0}")]
    Buffer(io::Error),
}

/// A TLS listener's side of one core.
pub(crate) struct TlsPlane {
    /// The listener's certificate, read per accept (a reload reaches the
    /// next handshake).
    certs: Arc<Certs>,
    /// Each connection's session, by slab key (the slab's keys are dense;
    /// 8 bytes per key ever used).
    sessions: Vec<Option<Box<TlsSession>>>,
    /// Where ciphertext is read (empty until the first read).
    scratch: Vec<u8>,
}

impl TlsPlane {
    pub(super) fn new(certs: Arc<Certs>) -> Self {
        Self {
            certs,
            sessions: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// A session for the connection accepted at `key`, with the
    /// certificate current now.
    pub(super) fn open(&mut self, key: usize) -> Result<(), rustls::Error> {
        if self.sessions.len() <= key {
            self.sessions.resize_with(key + 1, || None);
        }
        self.sessions[key] = Some(Box::new(TlsSession::new(self.certs.current())?));
        Ok(())
    }

    /// The connection at `key` is being dropped: close_notify after
    /// whatever rustls still holds, written if the socket takes it now
    /// (never waited for); the session is freed. Returns the bytes written.
    pub(super) fn close(&mut self, key: usize, stream: &mut TcpStream) -> usize {
        let Some(mut tls) = self.sessions.get_mut(key).and_then(Option::take) else {
            return 0;
        };
        tls.conn.send_close_notify();
        tls.write_records(stream).map_or(0, |(w, _)| w)
    }
}

/// One connection's TLS state.
pub(super) struct TlsSession {
    conn: ServerConnection,
    /// Plaintext bytes rustls took from the `Conn`'s queue whose records
    /// are not all on the socket yet: the `Conn` is told they were written
    /// (`handle_written`) only once they are, so that it neither ends
    /// (dropping the socket) with its last bytes still inside rustls nor
    /// counts them out of its write budget early.
    owed: usize,
    /// Some ciphertext arrived (an EOF after it, mid-handshake, is a
    /// truncated handshake: bad input).
    got_input: bool,
}

/// What one batch of ciphertext produced.
pub(super) struct Fed {
    /// Plaintext bytes now at the front of the receive block.
    pub(super) plain: usize,
    /// The handshake completed with this batch.
    pub(super) handshaken: bool,
    /// The peer sent close_notify: no more input.
    pub(super) closed: bool,
}

impl TlsSession {
    /// A session for a new connection, with the listener's current
    /// certificate.
    pub(super) fn new(config: Arc<ServerConfig>) -> Result<Self, rustls::Error> {
        Ok(Self {
            conn: ServerConnection::new(config)?,
            owed: 0,
            got_input: false,
        })
    }

    /// Feeds `input` (ciphertext) to rustls and moves every plaintext byte
    /// it yields to the front of `rx` (grown in the rare case the slack
    /// did not suffice).
    pub(super) fn feed(&mut self, mut input: &[u8], rx: &mut BytesMut) -> Result<Fed, BadTls> {
        let was_handshaking = self.conn.is_handshaking();
        self.got_input |= !input.is_empty();
        let mut fed = Fed {
            plain: 0,
            handshaken: false,
            closed: false,
        };
        while !input.is_empty() {
            // rustls takes up to a record's worth per call.
            match self.conn.read_tls(&mut input) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => return Err(BadTls::Buffer(e)),
            }
            let state = self.conn.process_new_packets()?;
            let avail = state.plaintext_bytes_to_read();
            if avail > 0 {
                let need = fed.plain + avail;
                if rx.len() < need {
                    rx.resize(need, 0);
                }
                let mut reader = self.conn.reader();
                while fed.plain < need {
                    match reader.read(&mut rx[fed.plain..need]) {
                        Ok(0) => break,
                        Ok(m) => fed.plain += m,
                        // WouldBlock: nothing more buffered.
                        Err(_) => break,
                    }
                }
            }
            if state.peer_has_closed() {
                fed.closed = true;
                break;
            }
        }
        fed.handshaken = was_handshaking && !self.conn.is_handshaking();
        Ok(fed)
    }

    /// Encrypts what it can of `slices` (rustls buffers up to its limit,
    /// 64 KiB); returns the plaintext bytes taken.
    fn take_plain(&mut self, slices: &[IoSlice<'_>]) -> usize {
        self.conn.writer().write_vectored(slices).unwrap_or(0)
    }

    /// Writes encrypted records to `stream` until none is left or the
    /// socket is full; `Err` on a socket error. Returns the bytes written.
    fn write_records(&mut self, stream: &mut TcpStream) -> io::Result<(usize, bool)> {
        let mut total = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(w) => total += w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok((total, false)),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((total, true))
    }
}

impl Core {
    /// [`Core::read`] for a TLS connection: ciphertext into the core's
    /// scratch block, plaintext into its receive block, then the same
    /// `handle_read` and event routing as a plain read.
    // Never inlined into the plain path's `read`/`flush`, which stay as
    // compact as they were without TLS.
    #[inline(never)]
    pub(super) fn read_tls(&mut self, key: usize, now: Instant) {
        loop {
            let Some(plane) = self.tls.as_mut() else {
                return;
            };
            if plane.scratch.is_empty() {
                plane.scratch = vec![0; SCRATCH];
            }
            let slot = &mut self.conns[key];
            if !slot.conn.wants_read(&self.cfg.conn) {
                slot.read_paused = !slot.conn.is_dead();
                return;
            }
            let Some(tls) = plane.sessions.get_mut(key).and_then(Option::as_mut) else {
                return;
            };
            if self.rx.len() < super::core::RX_MIN_READ + PLAIN_SLACK {
                self.rx = BytesMut::zeroed(super::core::RX_BLOCK);
            }
            let want = (self.rx.len() - PLAIN_SLACK).min(SCRATCH);
            let n = match slot.stream.read(&mut plane.scratch[..want]) {
                Ok(0) => {
                    if tls.got_input && tls.conn.is_handshaking() {
                        // A handshake cut short (e.g. half a ClientHello).
                        self.counters.tls_errors.add(1);
                    }
                    slot.conn.handle_eof();
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    slot.conn.handle_io_error();
                    return;
                }
            };
            self.counters.bytes_in.add(n as u64);
            match tls.feed(&plane.scratch[..n], &mut self.rx) {
                Ok(fed) => {
                    if fed.handshaken {
                        self.counters.tls_handshakes.add(1);
                    }
                    if fed.plain > 0 {
                        let mut chunk = self.rx.split_to(fed.plain);
                        slot.conn.handle_read(&mut chunk);
                    }
                    self.route_events(key, now);
                    if fed.closed {
                        if let Some(slot) = self.conns.get_mut(key) {
                            slot.conn.handle_eof();
                        }
                        return;
                    }
                }
                Err(e) => {
                    self.counters.tls_errors.add(1);
                    tracing::debug!(conn = %self.conn_id(key), error = %e, "bad TLS input; closed");
                    // rustls's alert, if it queued one, goes out with the
                    // flush that follows.
                    self.conns[key].conn.handle_io_error();
                    return;
                }
            }
            // Unlike the plain path, a short read does not end the loop:
            // read on to WouldBlock, so that a FIN that came with the last
            // bytes (one edge for both) is seen now, not at a deadline. One
            // more syscall per batch, small beside the decryption.
        }
    }

    /// [`Core::flush`] for a TLS connection: the queue's bytes into
    /// rustls, its records onto the socket, until both are empty or the
    /// socket is full.
    // Never inlined into the plain path's `read`/`flush`, which stay as
    // compact as they were without TLS.
    #[inline(never)]
    pub(super) fn flush_tls(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let Some(tls) = self
            .tls
            .as_mut()
            .and_then(|p| p.sessions.get_mut(key))
            .and_then(Option::as_mut)
        else {
            return;
        };
        loop {
            let mut progressed = false;
            // Records first; once all are on the socket, the plaintext
            // they carry is released from the `Conn`'s queue.
            match tls.write_records(&mut slot.stream) {
                Ok((w, done)) => {
                    self.counters.bytes_out.add(w as u64);
                    progressed |= w > 0;
                    if !done {
                        break;
                    }
                    if tls.owed > 0 {
                        slot.conn.handle_written(std::mem::take(&mut tls.owed));
                        progressed = true;
                    }
                }
                Err(_) => {
                    slot.conn.handle_io_error();
                    break;
                }
            }
            // Nothing owed now: the queue's front is new plaintext.
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = slot.conn.poll_transmit(&mut slices);
            if n > 0 {
                let took = tls.take_plain(&slices[..n]);
                if took > 0 {
                    tls.owed = took;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
    }
}
