//! A benchmark peer, not part of wsedge: tokio-tungstenite with a
//! current-thread runtime (one worker thread), so that `scripts/perf.sh`
//! compares like with like (wsedge runs one core).
//!
//! Routes: `/ws` speaks hub-lite (subscribe, publish → one shared message
//! to every subscriber; see `wsedge_peers`), every other path echoes.
//!
//! Usage: peer-tokio-tungstenite [--listen 127.0.0.1:9101]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Channel → (connection id, its outgoing queue).
type Hub = Arc<Mutex<HashMap<String, Vec<(u64, UnboundedSender<Message>)>>>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

// The handshake callback's error type is tungstenite's, not ours.
#[allow(clippy::result_large_err)]
async fn serve(stream: TcpStream, hub: Hub) {
    let _ = stream.set_nodelay(true);
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

async fn echo(ws: WebSocketStream<TcpStream>) {
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

async fn hub_lite(ws: WebSocketStream<TcpStream>, hub: Hub) {
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listen = wsedge_peers::listen_arg("127.0.0.1:9101");
    let listener = TcpListener::bind(&listen).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    let hub = Hub::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve(stream, hub.clone()));
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
