//! The core's side of `wss://`: one rustls session per TLS connection,
//! between the socket and the sans-IO [`Conn`](crate::conn::Conn), which
//! never knows.
//!
//! Owns: [`TlsPlane`] (the listener's certificate, its connections'
//! sessions by slab key beside the slab, so a plain connection's slot has
//! no room for one, and the core's three TLS blocks), [`TlsSession`] (a
//! rustls `UnbufferedServerConnection` and the bytes only it is waiting
//! on): opening records into plaintext (`feed`), sealing plaintext into
//! records (`seal`), writing what is unsent, and the last write before a
//! TLS connection's socket is dropped. Must not touch: the socket reads
//! and the order of a read or a flush (`engine::tls_io`, which drives
//! this file from `Core`), what the plaintext means (`Conn`),
//! certificates (`crate::tls`), anything of a connection without TLS:
//! those never reach this file (on a plain listener the core's `tls` is
//! `None`: one branch on read and flush).
//!
//! Why rustls's *unbuffered* API: the buffered `ServerConnection` keeps a
//! read buffer of at least 4 KiB in every session for its whole life
//! (about half of what an idle TLS connection cost). Here the core owns
//! the buffers: ciphertext is read into one block per core and opened
//! there; a connection keeps bytes of its own only while rustls waits on
//! them — the start of a record that has not all arrived (`carry`), or
//! records the socket has not taken yet (`unsent`) — and gives the
//! allocation back as soon as they are gone. An idle connection holds the
//! session's keys and state and nothing else.
//!
//! Bad TLS input (a record that is not TLS, a ClientHello rustls refuses,
//! a handshake cut short by EOF, an oversized handshake message, a failed
//! decryption) is counted, logged at debug level without any of its
//! bytes, answered with rustls's alert where it made one, and ends the
//! connection as an I/O error; never a panic. The handshake timeout
//! (`connection.handshake_timeout`) runs from accept, so it covers the TLS
//! handshake as well as the HTTP upgrade that follows.

use std::io::{self, Write};
use std::sync::Arc;

use bytes::BytesMut;
use mio::net::TcpStream;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError};
use rustls::ServerConfig;
use thiserror::Error;

use crate::tls::Certs;

/// Most ciphertext one read takes from the socket.
pub(super) const READ_MAX: usize = 64 * 1024;
/// Most ciphertext a connection may leave waiting for the rest of it: a
/// handshake message rustls joins from several records (it refuses ones
/// over 64 KiB) plus the record after it. A peer past this is refused.
pub(super) const CARRY_MAX: usize = 64 * 1024 + 18 * 1024;
/// The per-core read block: a connection's carried bytes, then one read.
pub(super) const SCRATCH: usize = CARRY_MAX + READ_MAX;
/// Plaintext sealed per write: gathered from the `Conn`'s queue (several
/// small frames become one record, as the buffered API did).
pub(super) const GATHER: usize = 64 * 1024;
/// The per-core write block: `GATHER` sealed (TLS 1.2 AES-GCM adds 29
/// bytes per 16 KiB record, TLS 1.3 22) and room for a key update.
const SEAL: usize = GATHER + 1024;
/// Room kept free in the receive block beyond the ciphertext read: the
/// plaintext of a read is at most its ciphertext plus one record whose
/// start arrived in an earlier read.
pub(super) const PLAIN_SLACK: usize = 16 * 1024 + 512;

/// Why a TLS connection's input was refused.
#[derive(Debug, Error)]
pub(super) enum BadTls {
    /// rustls refused a record or a handshake message.
    #[error("{0}")]
    Protocol(#[from] rustls::Error),
    /// The peer left more than `CARRY_MAX` bytes waiting for the rest of
    /// a record (rustls refuses handshake messages over 64 KiB first).
    #[error("record buffer: {0} bytes waiting")]
    Buffer(usize),
    /// A state this server never enables (early data).
    #[error("unexpected TLS state {0}")]
    Unexpected(&'static str),
}

/// A TLS listener's side of one core.
pub(crate) struct TlsPlane {
    /// The listener's certificate, read per accept (a reload reaches the
    /// next handshake).
    certs: Arc<Certs>,
    /// Each connection's session, by slab key (the slab's keys are dense;
    /// 8 bytes per key ever used).
    pub(super) sessions: Vec<Option<Box<TlsSession>>>,
    /// Where ciphertext is read and opened (empty until the first read).
    pub(super) scratch: Vec<u8>,
    /// Where small frames are gathered into one record's plaintext
    /// (empty until the first write of more than one slice).
    pub(super) gather: Vec<u8>,
    /// Where records are sealed before the socket takes them (empty until
    /// the first handshake).
    pub(super) seal: Vec<u8>,
}

impl TlsPlane {
    pub(super) fn new(certs: Arc<Certs>) -> Self {
        Self {
            certs,
            sessions: Vec::new(),
            scratch: Vec::new(),
            gather: Vec::new(),
            seal: Vec::new(),
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
    /// whatever records are still unsent, written if the socket takes them
    /// now (never waited for); the session is freed. Returns the bytes
    /// written.
    pub(super) fn close(&mut self, key: usize, stream: &mut TcpStream) -> usize {
        let Some(mut tls) = self.sessions.get_mut(key).and_then(Option::take) else {
            return 0;
        };
        grow(&mut self.seal, SEAL);
        tls.queue_close_notify(&mut self.seal);
        tls.write_unsent(stream).map_or(0, |(w, _)| w)
    }
}

/// Grows `block` to `len` bytes (zeroed once, so no read or seal needs
/// `unsafe`); a no-op once it has.
pub(super) fn grow(block: &mut Vec<u8>, len: usize) {
    if block.len() < len {
        block.resize(len, 0);
    }
}

/// One connection's TLS state.
pub(super) struct TlsSession {
    pub(super) conn: UnbufferedServerConnection,
    /// Ciphertext rustls has seen but could not use yet (the start of a
    /// record, or of a handshake message spread over records): put in
    /// front of the next read. Empty, with no allocation, whenever the
    /// input ended on a record boundary — as it does on an idle
    /// connection.
    pub(super) carry: Vec<u8>,
    /// Records made whose bytes the socket has not taken yet (it was
    /// full, or they were made while reading: handshake messages, a key
    /// update, an alert). Freed once written.
    pub(super) unsent: Vec<u8>,
    /// Plaintext bytes taken from the `Conn`'s queue whose records are
    /// still in `unsent`: the `Conn` is told they were written
    /// (`handle_written`) only once they are, so that it neither ends
    /// (dropping the socket) with its last bytes unsent nor counts them
    /// out of its write budget early.
    pub(super) owed: usize,
    /// Some ciphertext arrived (an EOF after it, mid-handshake, is a
    /// truncated handshake: bad input).
    pub(super) got_input: bool,
    /// rustls refused the input: no close_notify after its alert.
    failed: bool,
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
            conn: UnbufferedServerConnection::new(config)?,
            carry: Vec::new(),
            unsent: Vec::new(),
            owed: 0,
            got_input: false,
            failed: false,
        })
    }

    /// Opens the records in `buf` (what was carried, then what was just
    /// read), moving every plaintext byte to the front of `rx` (grown in
    /// the rare case the slack did not suffice) and every record rustls
    /// makes in answer (handshake, key update, alert) to `unsent`; keeps
    /// what is left of an incomplete record in `carry`.
    pub(super) fn feed(
        &mut self,
        buf: &mut [u8],
        rx: &mut BytesMut,
        seal: &mut Vec<u8>,
    ) -> Result<Fed, BadTls> {
        let was_handshaking = self.conn.is_handshaking();
        self.got_input |= !buf.is_empty();
        let mut fed = Fed {
            plain: 0,
            handshaken: false,
            closed: false,
        };
        let mut start = 0;
        let outcome = loop {
            let status = self.conn.process_tls_records(&mut buf[start..]);
            let mut discard = status.discard;
            let state = match status.state {
                Ok(state) => state,
                Err(e) => {
                    start += discard;
                    break Err(BadTls::Protocol(e));
                }
            };
            let more = match state {
                ConnectionState::ReadTraffic(mut read) => {
                    let mut bad = None;
                    while let Some(record) = read.next_record() {
                        match record {
                            Ok(record) => {
                                discard += record.discard;
                                let need = fed.plain + record.payload.len();
                                if rx.len() < need {
                                    rx.resize(need, 0);
                                }
                                rx[fed.plain..need].copy_from_slice(record.payload);
                                fed.plain = need;
                            }
                            Err(e) => {
                                bad = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = bad {
                        start += discard;
                        break Err(BadTls::Protocol(e));
                    }
                    true
                }
                ConnectionState::EncodeTlsData(mut encode) => {
                    grow(seal, SEAL);
                    loop {
                        match encode.encode(seal) {
                            Ok(n) => {
                                self.unsent.extend_from_slice(&seal[..n]);
                                break;
                            }
                            Err(EncodeError::InsufficientSize(e)) => grow(seal, e.required_size),
                            Err(EncodeError::AlreadyEncoded) => break,
                        }
                    }
                    true
                }
                // Sent by the flush that follows every read.
                ConnectionState::TransmitTlsData(transmit) => {
                    transmit.done();
                    true
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => {
                    fed.closed = true;
                    false
                }
                // Nothing more to open in `buf` (what is left, if
                // anything, is an incomplete record).
                ConnectionState::BlockedHandshake | ConnectionState::WriteTraffic(_) => false,
                ConnectionState::ReadEarlyData(_) => break Err(BadTls::Unexpected("early data")),
                _ => break Err(BadTls::Unexpected("unknown")),
            };
            start += discard;
            if !more {
                break Ok(());
            }
        };
        if let Err(e) = outcome {
            self.failed = true;
            // rustls's alert, if it made one, is its next state.
            let status = self.conn.process_tls_records(&mut buf[start..]);
            if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state {
                grow(seal, SEAL);
                if let Ok(n) = encode.encode(seal) {
                    self.unsent.extend_from_slice(&seal[..n]);
                }
            }
            return Err(e);
        }
        let rest = &buf[start..];
        if rest.len() > CARRY_MAX {
            self.failed = true;
            return Err(BadTls::Buffer(rest.len()));
        }
        if rest.is_empty() {
            self.carry = Vec::new();
        } else {
            self.carry.clear();
            self.carry.extend_from_slice(rest);
        }
        fed.handshaken = was_handshaking && !self.conn.is_handshaking();
        Ok(fed)
    }

    /// Brings rustls to the state where application data may be sealed
    /// (taking out any handshake record it still had to give) and runs
    /// `f` there; `None` while the handshake is not done, or after a
    /// failure.
    fn when_writable<R>(
        &mut self,
        seal: &mut Vec<u8>,
        f: impl FnOnce(
            &mut rustls::unbuffered::WriteTraffic<'_, rustls::server::ServerConnectionData>,
            &mut Vec<u8>,
        ) -> R,
    ) -> Option<R> {
        if self.failed {
            return None;
        }
        let mut f = Some(f);
        // At most a few turns: each gives out one pending record.
        for _ in 0..16 {
            // `carry` is what rustls saw last and has not discarded: the
            // unbuffered API wants it passed again.
            let status = self.conn.process_tls_records(&mut self.carry);
            let discard = status.discard;
            let done = match status.state {
                Ok(ConnectionState::WriteTraffic(mut write)) => {
                    Some(f.take().map(|f| f(&mut write, seal)))
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    grow(seal, SEAL);
                    if let Ok(n) = encode.encode(seal) {
                        self.unsent.extend_from_slice(&seal[..n]);
                    }
                    None
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    None
                }
                // Handshaking, closed, or plaintext not taken yet (never:
                // `feed` takes it all): nothing may be sealed now.
                _ => Some(None),
            };
            self.carry.drain(..discard.min(self.carry.len()));
            if let Some(done) = done {
                return done;
            }
        }
        None
    }

    /// Seals `plain` into records at the front of `seal`; returns their
    /// length, or `None` if nothing may be sent now.
    pub(super) fn seal(&mut self, plain: &[u8], seal: &mut Vec<u8>) -> Option<usize> {
        grow(seal, SEAL);
        self.when_writable(seal, |write, seal| loop {
            match write.encrypt(plain, seal) {
                Ok(n) => return Some(n),
                Err(EncryptError::InsufficientSize(e)) => grow(seal, e.required_size),
                Err(_) => return None,
            }
        })
        .flatten()
    }

    /// Appends close_notify to `unsent` (after what is already there), if
    /// the handshake is done and the session did not fail.
    fn queue_close_notify(&mut self, seal: &mut Vec<u8>) {
        let made = self
            .when_writable(seal, |write, seal| write.queue_close_notify(seal).ok())
            .flatten();
        if let Some(n) = made {
            self.unsent.extend_from_slice(&seal[..n]);
        }
    }

    /// Writes `unsent` to `stream` until it is empty (its allocation
    /// freed) or the socket is full; `Err` on a socket error. Returns the
    /// bytes written and whether all went.
    pub(super) fn write_unsent(&mut self, stream: &mut impl Write) -> io::Result<(usize, bool)> {
        let w = write_some(stream, &self.unsent)?;
        if w == self.unsent.len() {
            self.unsent = Vec::new();
            Ok((w, true))
        } else {
            self.unsent.drain(..w);
            Ok((w, false))
        }
    }
}

/// Writes `bytes` to `stream` until done or the socket is full; returns
/// how many went, `Err` on a socket error.
pub(super) fn write_some(stream: &mut impl Write, bytes: &[u8]) -> io::Result<usize> {
    let mut w = 0;
    while w < bytes.len() {
        match stream.write(&bytes[w..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => w += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    //! The session without a socket: a rustls client in memory on the
    //! other side, bytes handed over in pieces of any size.
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use std::io::Read;

    struct Pair {
        server: TlsSession,
        client: ClientConnection,
        rx: BytesMut,
        seal: Vec<u8>,
    }

    fn pair(version: &'static rustls::SupportedProtocolVersion) -> Pair {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der: CertificateDer<'static> = cert.der().clone();
        let server = ServerConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(der).unwrap();
        let client = ClientConfig::builder_with_provider(crate::tls::provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Pair {
            server: TlsSession::new(Arc::new(server)).unwrap(),
            client: ClientConnection::new(
                Arc::new(client),
                ServerName::try_from("localhost").unwrap(),
            )
            .unwrap(),
            rx: BytesMut::zeroed(64 * 1024),
            seal: Vec::new(),
        }
    }

    impl Pair {
        /// What the client has to send, to the server in `piece`-byte
        /// reads (each one after the carried bytes, as the core does);
        /// returns the plaintext the server opened.
        fn client_to_server(&mut self, piece: usize) -> Result<Vec<u8>, BadTls> {
            let mut wire = Vec::new();
            while self.client.wants_write() {
                self.client.write_tls(&mut wire).unwrap();
            }
            let mut plain = Vec::new();
            for chunk in wire.chunks(piece) {
                let mut buf = self.server.carry.clone();
                buf.extend_from_slice(chunk);
                let fed = self.server.feed(&mut buf, &mut self.rx, &mut self.seal)?;
                plain.extend_from_slice(&self.rx[..fed.plain]);
            }
            Ok(plain)
        }

        /// What the server has made, to the client; returns its plaintext.
        fn server_to_client(&mut self) -> Vec<u8> {
            let mut wire = Vec::new();
            let (_, all) = self.server.write_unsent(&mut wire).unwrap();
            assert!(all);
            let mut input = &wire[..];
            let mut plain = Vec::new();
            while !input.is_empty() {
                self.client.read_tls(&mut input).unwrap();
                self.client.process_new_packets().unwrap();
                // WouldBlock (or the close) once all is read.
                let _ = self.client.reader().read_to_end(&mut plain);
            }
            plain
        }

        fn handshake(&mut self, piece: usize) {
            for _ in 0..4 {
                assert!(self.client_to_server(piece).unwrap().is_empty());
                self.server_to_client();
                if !self.client.is_handshaking() && !self.server.conn.is_handshaking() {
                    return;
                }
            }
            panic!("no handshake");
        }

        /// Holds no buffer of its own beyond the session: what an idle
        /// connection costs.
        fn holds_nothing(&self) -> bool {
            self.server.carry.capacity() == 0 && self.server.unsent.capacity() == 0
        }
    }

    #[test]
    fn records_in_pieces_of_any_size_open_and_an_idle_session_holds_no_buffer() {
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            for piece in [1, 7, 333, 100_000] {
                let mut p = pair(version);
                p.handshake(piece);
                assert!(
                    p.holds_nothing(),
                    "{version:?} {piece}: after the handshake"
                );

                let msg: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
                p.client.writer().write_all(&msg).unwrap();
                assert_eq!(
                    p.client_to_server(piece).unwrap(),
                    msg,
                    "{version:?} {piece}"
                );
                assert!(p.holds_nothing(), "{version:?} {piece}: after the records");

                // Half a record: carried, then released with the rest.
                p.client.writer().write_all(b"hello").unwrap();
                let mut wire = Vec::new();
                p.client.write_tls(&mut wire).unwrap();
                let (a, b) = wire.split_at(wire.len() / 2);
                let mut buf = a.to_vec();
                let fed = p.server.feed(&mut buf, &mut p.rx, &mut p.seal).unwrap();
                assert_eq!(fed.plain, 0);
                assert_eq!(p.server.carry, a);
                let mut buf = [a, b].concat();
                let fed = p.server.feed(&mut buf, &mut p.rx, &mut p.seal).unwrap();
                assert_eq!(&p.rx[..fed.plain], b"hello");
                assert!(p.holds_nothing());

                // The server's records reach the client.
                let n = p.server.seal(&msg, &mut p.seal).unwrap();
                p.server.unsent.extend_from_slice(&p.seal[..n]);
                assert_eq!(p.server_to_client(), msg);
                assert!(p.holds_nothing());

                // close_notify, and the client sees it.
                p.server.queue_close_notify(&mut p.seal);
                p.server_to_client();
                assert!(p.client.process_new_packets().unwrap().peer_has_closed());
            }
        }
    }

    #[test]
    fn bad_input_is_refused_with_an_alert_and_no_close_notify_after_it() {
        let mut p = pair(&rustls::version::TLS13);
        let mut junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        assert!(p.server.feed(&mut junk, &mut p.rx, &mut p.seal).is_err());
        // An alert record (content type 21) is what the server has to send.
        assert_eq!(p.server.unsent.first(), Some(&21));
        let before = p.server.unsent.len();
        p.server.queue_close_notify(&mut p.seal);
        assert_eq!(p.server.unsent.len(), before);

        // A record cut short never grows past the bound: refused.
        let mut p = pair(&rustls::version::TLS13);
        p.handshake(1000);
        let mut huge = vec![23u8, 3, 3, 0xff, 0xff];
        huge.resize(CARRY_MAX + 10, 0);
        assert!(p.server.feed(&mut huge, &mut p.rx, &mut p.seal).is_err());
    }

    #[test]
    fn nothing_is_sealed_before_the_handshake_is_done() {
        let mut p = pair(&rustls::version::TLS13);
        assert!(p.server.seal(b"early", &mut p.seal).is_none());
        p.handshake(50);
        assert!(p.server.seal(b"late", &mut p.seal).is_some());
    }
}
