//! Issue 14's acceptance at scale, against the binary with a recording
//! backend in this process (no Python): 10 000 connections on the gateway
//! route (fewer where the open-files limit is lower, said on stderr), each
//! sending its messages together with its upgrade: every message reaches
//! the backend once, in order per connection, from the connection that
//! sent it; every client killed: exactly one `$disconnect` each. (A backend
//! down for 10 s is tests/gateway.rs.)

mod common;
#[path = "gateway/harness.rs"]
mod harness;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use harness::*;

const STAGE: &str = "production";

/// Connections this machine's open-files limit allows (each process holds
/// one socket per connection, the test also the backend's side of the
/// pool).
fn connections() -> usize {
    const WANTED: usize = 10_000;
    let limit = rlimit::increase_nofile_limit(u64::MAX).expect("getrlimit");
    let n = WANTED.min(limit.saturating_sub(1_000) as usize);
    assert!(n >= 100, "open-files limit {limit} leaves room for {n}");
    if n < WANTED {
        let _ = writeln!(
            std::io::stderr(),
            "gateway_10k: open-files limit {limit}: {n} connections instead of {WANTED}"
        );
    }
    n
}

fn connect_from(src_octet: u8, addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let src = SocketAddr::from(([127, 0, 0, src_octet], 0));
    sock.bind(&src.into()).unwrap();
    sock.connect(&addr.into()).unwrap();
    sock.into()
}

const MESSAGES: usize = 3;

#[test]
fn ten_thousand_connections_each_message_once_in_order_then_one_disconnect_each() {
    let n = connections();
    let backend = Backend::start();
    let wsedge = Wsedge::start(&[
        "--gateway-backend",
        &backend.base_url(),
        "--gateway-api-id",
        "tenthousand",
        "--cores",
        "2",
    ]);
    let base = 20 + (std::process::id() % 100) as u8;
    let request = UPGRADE.replace("/echo", &format!("/{STAGE}"));

    // Every client sends its upgrade and its messages at once: what
    // arrives before the 101 must wait for $connect, not be lost.
    let started = Instant::now();
    let socks: Vec<TcpStream> = (0..n)
        .map(|i| {
            let mut s = connect_from(base + (i / 5000) as u8, wsedge.addr);
            let mut out = request.clone().into_bytes();
            for k in 0..MESSAGES {
                let body = format!(r#"{{"action":"go","i":{i},"k":{k}}}"#);
                out.extend(client_frame(true, 0x1, body.as_bytes()));
            }
            s.write_all(&out).unwrap();
            s
        })
        .collect();
    let count = |path: &str| {
        backend
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path() == path)
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(180), || count("/ws/default")
            == n * MESSAGES),
        "{} of {} messages reached the backend after {:?} ({} $connect)\n{}",
        count("/ws/default"),
        n * MESSAGES,
        started.elapsed(),
        count("/ws/connect"),
        wsedge.log.tail(20)
    );
    let delivered = started.elapsed();

    // Once each, in order per connection, each from the connection that
    // sent it.
    let mut by_id: std::collections::HashMap<String, Vec<(u64, u64)>> = Default::default();
    let mut connected = std::collections::HashSet::new();
    for r in backend.requests() {
        match r.path() {
            "/ws/connect" => assert!(connected.insert(r.connection_id().to_string())),
            "/ws/default" => {
                let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
                by_id
                    .entry(r.connection_id().to_string())
                    .or_default()
                    .push((v["i"].as_u64().unwrap(), v["k"].as_u64().unwrap()));
            }
            other => panic!("unexpected {other} before any client left"),
        }
    }
    assert_eq!(connected.len(), n);
    assert_eq!(by_id.len(), n);
    let mut senders = std::collections::HashSet::new();
    for (id, msgs) in &by_id {
        assert!(connected.contains(id));
        let i = msgs[0].0;
        let want: Vec<_> = (0..MESSAGES as u64).map(|k| (i, k)).collect();
        assert_eq!(msgs, &want, "connection {id}");
        assert!(senders.insert(i), "client {i} seen on two connections");
    }

    // Kill every client: one $disconnect each.
    drop(socks);
    assert!(
        wait_until(Duration::from_secs(180), || count("/ws/disconnect") >= n),
        "{} of {n} $disconnect arrived\n{}",
        count("/ws/disconnect"),
        wsedge.log.tail(20)
    );
    std::thread::sleep(Duration::from_secs(2));
    let mut gone = std::collections::HashSet::new();
    for r in backend.requests() {
        if r.path() == "/ws/disconnect" {
            assert!(
                gone.insert(r.connection_id().to_string()),
                "a second $disconnect for {}",
                r.connection_id()
            );
        }
    }
    assert_eq!(gone, connected);
    let _ = writeln!(
        std::io::stderr(),
        "gateway_10k: {n} connections, {} messages delivered in {delivered:?}, \
         {n} $disconnect after {:?}",
        n * MESSAGES,
        started.elapsed()
    );
}
