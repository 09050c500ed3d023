//! TLS configuration: certificate and key files made into a rustls
//! [`ServerConfig`] (TLS 1.2 and 1.3, ALPN `http/1.1`, the `ring`
//! provider), held in a [`Certs`] that SIGHUP reloads without touching open
//! connections.
//!
//! Owns: reading and checking the PEM files, the server configuration, the
//! swap on reload and [`TlsError`]. Must not touch: sockets or sessions
//! (the cores drive a connection's rustls session, `engine::tls`; the admin
//! plane wraps its streams with `tokio-rustls`).
//!
//! The key's contents never leave this module other than inside the
//! rustls configuration: errors name the file, never a byte of it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use thiserror::Error;

/// Why a certificate or key could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate, or one that does
    /// not parse.
    #[error("{path}: no usable PEM certificate ({reason})")]
    Cert { path: PathBuf, reason: String },
    /// The key file holds no PEM private key, or one that does not parse.
    /// The reason never quotes the file.
    #[error("{path}: no usable PEM private key ({reason})")]
    Key { path: PathBuf, reason: String },
    /// rustls refused the pair (e.g. the key does not match the
    /// certificate, or its algorithm is not supported).
    #[error("certificate {cert} with key {key}: {reason}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The ALPN protocol both listeners announce.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The crypto provider used everywhere (`ring`: it builds with the C
/// compiler alone; aws-lc-rs needs cmake and builds minutes longer).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads `cert` (a PEM chain, leaf first) and `key` (PKCS#8, PKCS#1 or
/// SEC1 PEM) and makes a server configuration: TLS 1.2 and 1.3, no client
/// authentication, ALPN `http/1.1`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Cert {
            path: cert.to_owned(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Cert {
            path: cert.to_owned(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let key_pem = read(key)?;
    // The parser's error names a section kind or an I/O failure, never
    // the key's bytes.
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: e.to_string(),
    })?;
    let config_err = |e: rustls::Error| TlsError::Config {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: e.to_string(),
    };
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(config_err)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(config_err)?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// A listener's current certificate: read once per accepted connection
/// (one atomic load and an `Arc` clone), replaced whole by
/// [`Certs::reload`].
#[derive(Debug)]
pub struct Certs {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<ServerConfig>,
}

impl Certs {
    /// Loads `cert` and `key`; an error here stops the server from
    /// starting.
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Certs, TlsError> {
        let (cert, key) = (cert.into(), key.into());
        let config = server_config(&cert, &key)?;
        Ok(Certs {
            cert,
            key,
            current: ArcSwap::new(config),
        })
    }

    /// The configuration for a new handshake.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Reads the files again; on success new handshakes use them, on an
    /// error the previous certificate stays (the caller logs the error).
    /// Open connections are never touched.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.cert, &self.key)?;
        self.current.store(config);
        Ok(())
    }

    /// The certificate file's path (for logs).
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }
}
