//! Connection setup for every mode: nonblocking sockets bound to a
//! 127.0.0.x source address and registered on a mio poll, the upgrade
//! request and its 101 response, and [`WsConn`], one upgraded (or
//! upgrading) client connection, over TLS when `--tls-ca` is given (a
//! rustls client session between the socket and the WebSocket bytes).
//!
//! Owns: sockets, source addresses and the HTTP upgrade. Must not touch:
//! frame encoding or decoding beyond handing bytes to `frame`, what a mode
//! sends or measures, or output.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use mio::net::TcpStream;
use mio::{Interest, Poll, Token};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};
use wsedge::protocol::{Frame, FrameDecoder};

use crate::frame;

/// The 127.0.0.x source address of the `i`th connection: `per_source`
/// connections each, from `first` on (past the ephemeral port range, or a
/// server's per-IP quota, the next address takes over).
pub fn source_addr(first: u8, i: usize, per_source: usize) -> io::Result<u8> {
    let src = first as usize + i / per_source.max(1);
    u8::try_from(src).map_err(|_| io::Error::other("too many source addresses"))
}

/// Starts a nonblocking connect from 127.0.0.`src` (port chosen by the
/// kernel) to `addr`.
pub fn connect_from(src: u8, addr: SocketAddr) -> io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::from(([127, 0, 0, src], 0)).into())?;
    sock.set_nonblocking(true)?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(115) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    sock.set_tcp_nodelay(true)?;
    Ok(TcpStream::from_std(sock.into()))
}

/// Registers `stream` on `poll` for reading and writing under `token`.
pub fn register(poll: &Poll, stream: &mut TcpStream, token: usize) -> io::Result<()> {
    poll.registry().register(
        stream,
        Token(token),
        Interest::READABLE | Interest::WRITABLE,
    )
}

/// Opens `n` connections to `server` (`per_source` per source address
/// from `first_source`), each registered on `poll` with its index as its
/// token.
pub fn open_all(
    poll: &Poll,
    server: SocketAddr,
    n: usize,
    first_source: u8,
    per_source: usize,
) -> io::Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = connect_from(source_addr(first_source, i, per_source)?, server)?;
        register(poll, &mut stream, i)?;
        streams.push(stream);
    }
    Ok(streams)
}

/// The upgrade request for `path` (a fixed key: the client does not check
/// the accept value).
pub fn upgrade_request(path: &str, server: SocketAddr) -> Vec<u8> {
    upgrade_request_offering(path, server, false)
}

/// The upgrade request for `path`, offering permessage-deflate if
/// `compression` ([`crate::deflate::OFFER`]).
pub fn upgrade_request_offering(path: &str, server: SocketAddr, compression: bool) -> Vec<u8> {
    let offer = if compression {
        crate::deflate::OFFER
    } else {
        ""
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{offer}\r\n"
    )
    .into_bytes()
}

/// Where the HTTP head that starts `buf` ends (after its blank line), once
/// it is complete.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Consumes the upgrade response from the front of `rx` once its head is
/// complete and returns the head: `Ok(None)` while it is not, an error
/// unless it is a 101.
pub fn take_upgrade_head(rx: &mut BytesMut) -> io::Result<Option<BytesMut>> {
    let Some(end) = head_end(rx) else {
        return Ok(None);
    };
    if !rx.starts_with(b"HTTP/1.1 101") {
        let status = String::from_utf8_lossy(&rx[..rx.len().min(12)]).into_owned();
        return Err(io::Error::other(format!("refused: {}", status.trim())));
    }
    Ok(Some(rx.split_to(end)))
}

/// A TLS client configuration trusting only the PEM certificate(s) in
/// `ca`, TLS 1.2 and 1.3, ALPN http/1.1, and no session resumption: every
/// connection makes a full handshake (the server's tickets are received
/// and dropped). With `verify_once`, see [`VerifyOnce`].
pub fn client_tls(ca: &Path, verify_once: bool) -> io::Result<Arc<ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(io::Error::other)? {
        roots
            .add(cert.map_err(io::Error::other)?)
            .map_err(io::Error::other)?;
    }
    let webpki =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), wsedge::tls::provider())
            .build()
            .map_err(io::Error::other)?;
    let verifier: Arc<dyn ServerCertVerifier> = if verify_once {
        Arc::new(VerifyOnce {
            inner: webpki,
            trusted: Mutex::new(None),
        })
    } else {
        webpki
    };
    let mut cfg = ClientConfig::builder_with_provider(wsedge::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![wsedge::tls::ALPN_HTTP1.to_vec()];
    cfg.resumption = Resumption::disabled();
    Ok(Arc::new(cfg))
}

/// `--tls-verify-once`, a load client's shortcut and nothing else: the
/// first handshake with a certificate is verified in full (its chain to
/// the CA, the name, and the server's handshake signature); later
/// handshakes presenting the very same certificate bytes skip both the
/// chain check and the signature check. The server still does all of its
/// work (key exchange, signing), so its cost per handshake is unchanged,
/// while the client's shrinks to its key exchange — with two cores, one
/// per side, a client verifying every signature (an ECDSA verify costs
/// more than the server's sign) would be the bottleneck of a handshake
/// rate run. Unsound against an active attacker who replays the
/// certificate; loopback benchmarks only.
#[derive(Debug)]
struct VerifyOnce {
    inner: Arc<WebPkiServerVerifier>,
    /// The end-entity certificate verified in full, once its handshake
    /// signature has also been checked (then `true`).
    trusted: Mutex<Option<(Vec<u8>, bool)>>,
}

impl VerifyOnce {
    /// The lock, whatever a panicking thread left: the state is two plain
    /// values, each written whole.
    fn trusted(&self) -> std::sync::MutexGuard<'_, Option<(Vec<u8>, bool)>> {
        self.trusted.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn signature(
        &self,
        cert: &CertificateDer<'_>,
        verify: impl FnOnce() -> Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if let Some((der, true)) = &*self.trusted() {
            if der[..] == cert[..] {
                return Ok(HandshakeSignatureValid::assertion());
            }
        }
        let valid = verify()?;
        if let Some((der, checked)) = &mut *self.trusted() {
            if der[..] == cert[..] {
                *checked = true;
            }
        }
        Ok(valid)
    }
}

impl ServerCertVerifier for VerifyOnce {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some((der, _)) = &*self.trusted() {
            if der[..] == end_entity[..] {
                return Ok(ServerCertVerified::assertion());
            }
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        *self.trusted() = Some((end_entity.to_vec(), false));
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(cert, || {
            self.inner.verify_tls12_signature(message, cert, dss)
        })
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(cert, || {
            self.inner.verify_tls13_signature(message, cert, dss)
        })
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One client connection driven by a mio poll: what has arrived on it,
/// whether the 101 has, and the frames after it. What to write is the
/// mode's; [`WsConn::write_from`] writes it (through TLS if any).
pub struct WsConn {
    /// The socket; write to it directly only without TLS.
    pub stream: TcpStream,
    tls: Option<Box<ClientConnection>>,
    rx: BytesMut,
    pub upgraded: bool,
    decoder: FrameDecoder,
    /// It offered permessage-deflate: the 101 must agree to it.
    compression: bool,
    /// Bytes read from and written to the socket (TLS records included).
    pub wire_in: u64,
    pub wire_out: u64,
}

impl WsConn {
    /// A connection over `stream`, with a TLS session for `localhost` when
    /// `tls` is given.
    pub fn new(stream: TcpStream, tls: Option<&Arc<ClientConfig>>) -> io::Result<WsConn> {
        let tls = match tls {
            None => None,
            Some(cfg) => {
                let name = ServerName::try_from("localhost").expect("a valid name");
                Some(Box::new(
                    ClientConnection::new(cfg.clone(), name).map_err(io::Error::other)?,
                ))
            }
        };
        Ok(WsConn {
            stream,
            tls,
            rx: BytesMut::new(),
            upgraded: false,
            decoder: frame::client_decoder(),
            compression: false,
            wire_in: 0,
            wire_out: 0,
        })
    }

    /// This connection, having offered permessage-deflate if
    /// `compression`: the upgrade fails unless the server agrees, and
    /// compressed (RSV1) frames are accepted after it.
    pub fn with_compression(mut self, compression: bool) -> Self {
        self.compression = compression;
        self.decoder = frame::client_decoder().with_rsv1(compression);
        self
    }

    /// Writes what it can of `tx` (plaintext), removing what was taken;
    /// the rest waits for the next writable event.
    pub fn write_from(&mut self, tx: &mut Vec<u8>) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            while !tx.is_empty() {
                match self.stream.write(tx) {
                    Ok(n) => {
                        self.wire_out += n as u64;
                        tx.drain(..n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                    Err(e) => return Err(e),
                }
            }
            return Ok(());
        };
        loop {
            if !tx.is_empty() {
                let n = tls.writer().write(tx)?;
                tx.drain(..n);
            }
            if !tls.wants_write() {
                return Ok(());
            }
            match tls.write_tls(&mut self.stream) {
                Ok(n) => self.wire_out += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads everything the socket has (through `scratch`) into the
    /// receive buffer (decrypted, with TLS); `Ok(false)` if the server
    /// closed the connection.
    pub fn read_available(&mut self, scratch: &mut [u8]) -> io::Result<bool> {
        loop {
            let k = match self.stream.read(scratch) {
                Ok(0) => return Ok(false),
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            };
            self.wire_in += k as u64;
            let Some(tls) = self.tls.as_mut() else {
                self.rx.extend_from_slice(&scratch[..k]);
                continue;
            };
            let mut input = &scratch[..k];
            while !input.is_empty() {
                tls.read_tls(&mut input)?;
                let state = tls.process_new_packets().map_err(io::Error::other)?;
                let n = state.plaintext_bytes_to_read();
                if n > 0 {
                    let at = self.rx.len();
                    self.rx.resize(at + n, 0);
                    tls.reader().read_exact(&mut self.rx[at..])?;
                }
            }
        }
        if self.tls.is_some() {
            // Handshake messages to answer, or data written before the
            // handshake finished.
            self.write_from(&mut Vec::new())?;
        }
        Ok(true)
    }

    /// Before the upgrade: consumes the 101 once it has fully arrived.
    /// `Ok(true)` when this call completed the upgrade, `Ok(false)` while
    /// the response is incomplete; an error if it is not a 101.
    pub fn finish_upgrade(&mut self) -> io::Result<bool> {
        let Some(head) = take_upgrade_head(&mut self.rx)? else {
            return Ok(false);
        };
        if self.compression && !crate::deflate::agreed(&head) {
            return Err(io::Error::other(
                "the server did not agree to permessage-deflate",
            ));
        }
        self.upgraded = true;
        Ok(true)
    }

    /// What TLS negotiated, once the handshake is done: version, cipher
    /// suite and key exchange group (`None` without TLS).
    pub fn tls_summary(&self) -> Option<String> {
        let tls = self.tls.as_ref()?;
        let group = tls
            .negotiated_key_exchange_group()
            .map_or("-".to_string(), |g| format!("{:?}", g.name()));
        Some(format!(
            "{:?} {:?} {group}",
            tls.protocol_version()?,
            tls.negotiated_cipher_suite()?.suite()
        ))
    }

    /// The next complete frame received, if any.
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        frame::next_frame(&mut self.decoder, &mut self.rx)
    }
}
