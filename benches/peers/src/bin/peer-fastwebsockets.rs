//! A benchmark peer, not part of wsedge: fastwebsockets (hyper for the
//! upgrade, as its documentation shows) with a current-thread runtime (one
//! worker thread).
//!
//! Routes: `/ws` speaks hub-lite (subscribe, publish → one shared message
//! to every subscriber; see `wsedge_peers`), every other path echoes.
//!
//! Usage: peer-fastwebsockets [--listen 127.0.0.1:9102]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use fastwebsockets::WebSocketError;
use fastwebsockets::{upgrade, FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

/// What a hub-lite connection's writer sends: a shared text message, or a
/// frame the protocol obliges (pong, close).
enum Out {
    Text(Bytes),
    Frame(Frame<'static>),
}

/// Channel → (connection id, its outgoing queue).
type Hub = Arc<Mutex<HashMap<String, Vec<(u64, UnboundedSender<Out>)>>>>;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn hub_lite(fut: upgrade::UpgradeFut, hub: Hub) -> Result<(), WebSocketError> {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (rx, mut tx) = fut.await?.split(tokio::io::split);
    let mut rx = FragmentCollectorRead::new(rx);
    let (out, mut queue) = unbounded_channel::<Out>();
    let writer = tokio::spawn(async move {
        while let Some(o) = queue.recv().await {
            let res = match o {
                Out::Text(b) => tx.write_frame(Frame::text(Payload::Borrowed(&b))).await,
                Out::Frame(f) => tx.write_frame(f).await,
            };
            if res.is_err() {
                return;
            }
        }
    });
    let mut subscribed: Vec<String> = Vec::new();
    let obligated = out.clone();
    let mut send_fn = move |f: Frame<'_>| {
        let owned = Frame::new(true, f.opcode, None, Payload::Owned(f.payload.to_vec()));
        let _ = obligated.send(Out::Frame(owned));
        async { Ok::<_, WebSocketError>(()) }
    };
    loop {
        let Ok(frame) = rx.read_frame(&mut send_fn).await else {
            break;
        };
        if frame.opcode == OpCode::Close {
            break;
        }
        if frame.opcode != OpCode::Text {
            continue;
        }
        let Some(req) = std::str::from_utf8(&frame.payload)
            .ok()
            .and_then(wsedge_peers::parse)
        else {
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
                let text = Bytes::from(wsedge_peers::message_text(&req.channel, req.data));
                let hub = hub.lock().expect("hub lock");
                for (_, sub) in hub.get(&req.channel).into_iter().flatten() {
                    let _ = sub.send(Out::Text(text.clone()));
                }
            }
            _ => continue,
        }
        if let Some(n) = req.id {
            let _ = out.send(Out::Text(Bytes::from(wsedge_peers::ack_text(n))));
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
    Ok(())
}

async fn upgrade(
    mut req: Request<Incoming>,
    hub: Hub,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    if req.uri().path() == "/ws" {
        tokio::spawn(async move {
            let _ = tokio::task::unconstrained(hub_lite(fut, hub)).await;
        });
    } else {
        tokio::spawn(async move {
            let _ = tokio::task::unconstrained(echo(fut)).await;
        });
    }
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let listen = wsedge_peers::listen_arg("127.0.0.1:9102");
    let listener = TcpListener::bind(&listen).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    let hub = Hub::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    let hub = hub.clone();
                    tokio::spawn(async move {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let service = service_fn(move |req| upgrade(req, hub.clone()));
                        let _ = http1::Builder::new()
                            .serve_connection(io, service)
                            .with_upgrades()
                            .await;
                    });
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
