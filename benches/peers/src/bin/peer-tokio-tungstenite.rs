//! A benchmark peer, not part of wsedge: tokio-tungstenite with a
//! current-thread runtime (one worker thread), so that `scripts/perf.sh`
//! compares like with like (wsedge runs one core).
//!
//! Routes: `/ws` speaks hub-lite (subscribe, publish → one shared message
//! to every subscriber; see `wsedge_peers`), every other path echoes.
//!
//! TLS (wss://) with `--tls-cert` and `--tls-key` (or the `TLS_CERT` and
//! `TLS_KEY` environment variables): tokio-rustls in front of the same
//! routes, configured as wsedge configures rustls (the `ring` provider,
//! TLS 1.3 and 1.2, ALPN http/1.1, rustls's defaults otherwise: its
//! in-memory session cache and two TLS 1.3 tickets per handshake).
//!
//! Usage: peer-tokio-tungstenite [--listen 127.0.0.1:9101] (or PORT=9101)
//!        [--tls-cert cert.pem --tls-key key.pem]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Channel → (connection id, its outgoing queue).
type Hub = Arc<Mutex<HashMap<String, Vec<(u64, UnboundedSender<Message>)>>>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn serve<S>(stream: S, hub: Hub)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut path = String::new();
    let callback = |req: &Request, resp: Response| {
        path = req.uri().path().to_string();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    if path == "/ws" {
        hub_lite(ws, hub).await;
    } else {
        echo(ws).await;
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(ws: WebSocketStream<S>) {
    let (mut tx, mut rx) = ws.split();
    while let Some(Ok(msg)) = rx.next().await {
        if msg.is_text() || msg.is_binary() {
            if tx.send(msg).await.is_err() {
                return;
            }
        } else if msg.is_close() {
            let _ = tx.close().await;
            return;
        }
    }
}

async fn hub_lite<S>(ws: WebSocketStream<S>, hub: Hub)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut rx) = ws.split();
    let (out, mut queue) = unbounded_channel::<Message>();
    let writer = tokio::spawn(async move {
        while let Some(msg) = queue.recv().await {
            if sink.send(msg).await.is_err() {
                return;
            }
        }
    });
    let mut subscribed: Vec<String> = Vec::new();
    while let Some(Ok(msg)) = rx.next().await {
        let Message::Text(text) = msg else {
            if msg.is_close() {
                break;
            }
            continue;
        };
        let Some(req) = wsedge_peers::parse(&text) else {
            continue;
        };
        match req.kind.as_str() {
            "subscribe" => {
                let mut hub = hub.lock().expect("hub lock");
                hub.entry(req.channel.clone())
                    .or_default()
                    .push((id, out.clone()));
                subscribed.push(req.channel);
            }
            "publish" => {
                let msg = Message::text(wsedge_peers::message_text(&req.channel, req.data));
                let hub = hub.lock().expect("hub lock");
                for (_, sub) in hub.get(&req.channel).into_iter().flatten() {
                    let _ = sub.send(msg.clone());
                }
            }
            _ => continue,
        }
        if let Some(n) = req.id {
            let _ = out.send(Message::text(wsedge_peers::ack_text(n)));
        }
    }
    let mut hub = hub.lock().expect("hub lock");
    for ch in subscribed {
        if let Some(subs) = hub.get_mut(&ch) {
            subs.retain(|(sub, _)| *sub != id);
            if subs.is_empty() {
                hub.remove(&ch);
            }
        }
    }
    drop(hub);
    writer.abort();
}

/// A plain connection, or a TLS one once its handshake is done.
async fn accept(stream: TcpStream, tls: Option<TlsAcceptor>, hub: Hub) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve(stream, hub).await,
        Some(tls) => {
            if let Ok(stream) = tls.accept(stream).await {
                serve(stream, hub).await;
            }
        }
    }
}

/// The TLS acceptor, with `--tls-cert` / `--tls-key` (or `TLS_CERT` /
/// `TLS_KEY`); a PEM chain (leaf first) and a PEM private key.
fn tls_acceptor() -> Option<TlsAcceptor> {
    let path = |name: &str, var: &str| wsedge_peers::arg(name).or_else(|| std::env::var(var).ok());
    let (cert, key) = match (path("tls-cert", "TLS_CERT"), path("tls-key", "TLS_KEY")) {
        (Some(cert), Some(key)) => (cert, key),
        (None, None) => return None,
        _ => panic!("--tls-cert and --tls-key go together"),
    };
    let chain = CertificateDer::pem_file_iter(&cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("{cert}: {e}"));
    let key = PrivateKeyDer::from_pem_file(&key).unwrap_or_else(|e| panic!("{key}: {e}"));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the ring provider supports TLS 1.3 and 1.2")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap_or_else(|e| panic!("certificate and key: {e}"));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Some(TlsAcceptor::from(Arc::new(config)))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listen = wsedge_peers::listen_arg("127.0.0.1:9101");
    let tls = tls_acceptor();
    let listener = TcpListener::bind(&listen).await?;
    let scheme = if tls.is_some() { "wss" } else { "ws" };
    eprintln!("listening on {scheme}://{}", listener.local_addr()?);
    let hub = Hub::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(accept(stream, tls.clone(), hub.clone()));
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
