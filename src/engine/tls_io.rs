//! The core's TLS reads and writes: [`Core::read_tls`] and
//! [`Core::flush_tls`], the mio side of `engine::tls`, which the plain
//! `read`/`flush` hand a connection to when the listener speaks TLS.
//!
//! Owns: the order of one TLS read (the connection's carried bytes, then
//! the socket's, into the core's read block; opened by the session;
//! plaintext handed to `Conn::handle_read` as one chunk) and of one TLS
//! flush (records already made first, then the queue's bytes gathered,
//! sealed in the core's write block and written from there, what the
//! socket leaves kept in the session), and the TLS counters
//! (`tls_handshakes`, `tls_errors`). Must not touch: the session's
//! bookkeeping (`engine::tls`), what the plaintext means (`Conn`).
//! Kept apart from `engine::tls` so that the session does not depend on
//! `Core` (the core holds the sessions; this file drives them).

use std::io::{self, IoSlice, Read};
use std::time::Instant;

use bytes::BytesMut;

use super::core::Core;
use super::tls::{grow, write_some, GATHER, PLAIN_SLACK, READ_MAX, SCRATCH};
use crate::conn::outbound::MAX_IOVECS;

/// Copies the front of `slices` into `gather`, up to `GATHER` bytes;
/// returns how many.
fn gather_into(slices: &[IoSlice<'_>], gather: &mut Vec<u8>) -> usize {
    grow(gather, GATHER);
    let mut g = 0;
    for s in slices {
        let take = s.len().min(GATHER - g);
        gather[g..g + take].copy_from_slice(&s[..take]);
        g += take;
        if g == GATHER {
            break;
        }
    }
    g
}

impl Core {
    /// [`Core::read`] for a TLS connection: ciphertext into the core's
    /// read block (after the connection's carried bytes), plaintext into
    /// its receive block, then the same `handle_read` and event routing as
    /// a plain read.
    // Never inlined into the plain path's `read`/`flush`, which stay as
    // compact as they were without TLS.
    #[inline(never)]
    pub(super) fn read_tls(&mut self, key: usize, now: Instant) {
        loop {
            let Some(plane) = self.tls.as_mut() else {
                return;
            };
            grow(&mut plane.scratch, SCRATCH);
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
            let carried = tls.carry.len();
            plane.scratch[..carried].copy_from_slice(&tls.carry);
            let want = (self.rx.len() - PLAIN_SLACK).min(READ_MAX);
            let n = match slot
                .stream
                .read(&mut plane.scratch[carried..carried + want])
            {
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
            let buf = &mut plane.scratch[..carried + n];
            match tls.feed(buf, &mut self.rx, &mut plane.seal) {
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
                    // rustls's alert, if it made one, goes out with the
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

    /// [`Core::flush`] for a TLS connection: records already made first,
    /// then the queue's bytes sealed in the core's write block and written
    /// from there, until both are empty or the socket is full (what it
    /// leaves of a record is kept in the session's `unsent`).
    // Never inlined into the plain path's `read`/`flush`, which stay as
    // compact as they were without TLS.
    #[inline(never)]
    pub(super) fn flush_tls(&mut self, key: usize) {
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        let Some(plane) = self.tls.as_mut() else {
            return;
        };
        let Some(tls) = plane.sessions.get_mut(key).and_then(Option::as_mut) else {
            return;
        };
        loop {
            // Records first; once all are on the socket, the plaintext
            // they carry is released from the `Conn`'s queue.
            match tls.write_unsent(&mut slot.stream) {
                Ok((w, all)) => {
                    self.counters.bytes_out.add(w as u64);
                    if !all {
                        break;
                    }
                    if tls.owed > 0 {
                        slot.conn.handle_written(std::mem::take(&mut tls.owed));
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
            if n == 0 {
                break;
            }
            // One slice that fits is sealed where it lies; several are
            // gathered first, so that small frames share a record.
            let (took, sealed) = if n == 1 && slices[0].len() <= GATHER {
                let plain: &[u8] = &slices[0];
                (plain.len(), tls.seal(plain, &mut plane.seal))
            } else {
                let took = gather_into(&slices[..n], &mut plane.gather);
                (took, tls.seal(&plane.gather[..took], &mut plane.seal))
            };
            let Some(sealed) = sealed else {
                // Not writable yet (handshaking) or failed.
                break;
            };
            match write_some(&mut slot.stream, &plane.seal[..sealed]) {
                Ok(w) => {
                    self.counters.bytes_out.add(w as u64);
                    if w == sealed {
                        slot.conn.handle_written(took);
                    } else {
                        tls.unsent.extend_from_slice(&plane.seal[w..sealed]);
                        tls.owed = took;
                        break;
                    }
                }
                Err(_) => {
                    slot.conn.handle_io_error();
                    break;
                }
            }
        }
    }
}
