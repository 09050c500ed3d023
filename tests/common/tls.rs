//! TLS helpers for the tests: a CA and server certificates made with
//! `rcgen` at test time (nothing committed), written as PEM files under
//! the test's temporary directory, and a rustls client that trusts that
//! CA and nothing else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SerialNumber};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A test CA.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A server certificate signed by a [`Ca`], for `localhost` and
/// 127.0.0.1.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    /// The subject public key info (DER), for Chromium's SPKI pin.
    pub spki_der: Vec<u8>,
}

impl Ca {
    pub fn new() -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "wsedge test CA");
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    /// A leaf with subject CN `cn` and serial `serial`.
    pub fn leaf(&self, cn: &str, serial: u64) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.serial_number = Some(SerialNumber::from(serial));
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
            spki_der: key.public_key_der(),
        }
    }

    /// A client configuration trusting only this CA, offering `versions`
    /// (both when empty) and ALPN http/1.1.
    pub fn client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.der()).unwrap();
        let versions = if versions.is_empty() {
            rustls::DEFAULT_VERSIONS
        } else {
            versions
        };
        let mut cfg =
            ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// A fresh directory for one test's files.
pub fn temp_dir(name: &str) -> PathBuf {
    // Unique per call: tests of one binary run at once in one process.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tls-{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `leaf` as `cert.pem` and `key.pem` in `dir`; returns their
/// paths (replaced whole through a rename, as a deploy would).
pub fn write_leaf(dir: &Path, leaf: &Leaf) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    for (path, text) in [(&cert, &leaf.cert_pem), (&key, &leaf.key_pem)] {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;
pub type WssClient = tungstenite::WebSocket<TlsStream>;

/// A TLS connection to `addr` for `localhost`, handshake done.
pub fn tls_connect(addr: SocketAddr, cfg: Arc<ClientConfig>) -> TlsStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let conn = ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut s = StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("TLS handshake");
    }
    s
}

/// A `wss://` client on `path`: TLS, then the upgrade (tungstenite).
pub fn wss_connect(addr: SocketAddr, cfg: Arc<ClientConfig>, path: &str) -> WssClient {
    let s = tls_connect(addr, cfg);
    let url = format!("wss://localhost:{}{path}", addr.port());
    let (ws, resp) = tungstenite::client::client(url, s).expect("upgrade over TLS");
    assert_eq!(resp.status(), 101);
    ws
}

/// The certificate the server presented.
pub fn peer_cert(ws: &WssClient) -> CertificateDer<'static> {
    ws.get_ref().conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

/// One HTTP/1.1 request over TLS; returns the status and the body.
pub fn https_get(addr: SocketAddr, cfg: Arc<ClientConfig>, path: &str) -> (u16, String) {
    let mut s = tls_connect(addr, cfg);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
        addr.port()
    )
    .unwrap();
    let mut out = Vec::new();
    // The server may end without close_notify after `Connection: close`.
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}
