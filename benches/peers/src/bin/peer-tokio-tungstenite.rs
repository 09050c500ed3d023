//! A benchmark peer, not part of wsedge: an echo server on
//! tokio-tungstenite with a current-thread runtime (one worker thread), so
//! that `scripts/perf.sh` compares like with like (wsedge runs one core).
//!
//! Usage: peer-tokio-tungstenite [--listen 127.0.0.1:9101]

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
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

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut listen = "127.0.0.1:9101".to_string();
    while let Some(a) = args.next() {
        if a == "--listen" {
            listen = args.next().expect("--listen needs an address");
        }
    }
    let listener = TcpListener::bind(&listen).await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve(stream));
                }
            }
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
