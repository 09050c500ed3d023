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
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Key {
        path: key.to_owned(),
        reason: key_pem_error(&e).into(),
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

/// What was wrong with a key file, in words that quote nothing of it (the
/// parser's own messages may carry a line of the file or a character of
/// its base64).
fn key_pem_error(e: &rustls::pki_types::pem::Error) -> &'static str {
    use rustls::pki_types::pem::Error;
    match e {
        Error::NoItemsFound => "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block",
        Error::MissingSectionEnd { .. } => "a PEM block without its END line",
        Error::IllegalSectionStart { .. } => "a malformed BEGIN line",
        Error::Base64Decode(_) => "a PEM block that is not valid base64",
        Error::Io(_) => "read error",
        _ => "malformed PEM",
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn errors_name_the_file_and_quote_nothing_of_a_key() {
        let dir = std::env::temp_dir().join(format!("wsedge-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let cert_file = write(&dir, "cert.pem", &cert.pem());
        let key_file = write(&dir, "key.pem", &key.serialize_pem());
        assert!(server_config(&cert_file, &key_file).is_ok());
        let config = server_config(&cert_file, &key_file).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);

        for (name, text) in [
            (
                "b64.pem",
                "-----BEGIN PRIVATE KEY-----\nSECRET!!SECRET\n-----END PRIVATE KEY-----\n",
            ),
            ("begin.pem", "-----BEGIN PRIVATE KEY SECRETSECRET\nAAAA\n"),
            (
                "noend.pem",
                "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVU\n",
            ),
            ("empty.pem", "SECRETSECRET\n"),
        ] {
            let bad = write(&dir, name, text);
            let e = server_config(&cert_file, &bad).unwrap_err();
            assert!(matches!(e, TlsError::Key { .. }), "{name}: {e:?}");
            let shown = format!("{e} {e:?}");
            assert!(shown.contains(name), "{shown}");
            assert!(
                !shown.contains("SECRET") && !shown.contains("U0VD"),
                "{shown}"
            );
        }
        let missing = dir.join("missing.pem");
        assert!(matches!(
            server_config(&cert_file, &missing),
            Err(TlsError::Read { .. })
        ));
        assert!(matches!(
            server_config(&key_file, &key_file),
            Err(TlsError::Cert { .. })
        ));
        // A key that is not the certificate's.
        let other = write(
            &dir,
            "other.pem",
            &rcgen::KeyPair::generate().unwrap().serialize_pem(),
        );
        assert!(matches!(
            server_config(&cert_file, &other),
            Err(TlsError::Config { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
