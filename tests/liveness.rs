//! No dead connection lingers: silent peers are dropped after ping +
//! pong timeout, half-open handshakes after the handshake timeout, idle
//! ones after the idle timeout — and every one leaves every structure.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;
use wsedge::conn::EndReason;
use wsedge::error::Rejection;

#[test]
fn peer_that_never_answers_pings_is_dropped() {
    let mut cfg = config(1);
    cfg.conn.ping_interval = Duration::from_millis(200);
    cfg.conn.pong_timeout = Duration::from_millis(300);
    let server = start(cfg);
    // Upgrades, then never reads or writes again (a vanished client).
    let mut s = raw_upgraded(server.local_addr());
    assert_eq!(server.stats().open, 1);
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(5), || server.stats().open == 0),
        "dead peer removed"
    );
    // It took at least the ping interval plus the pong timeout.
    assert!(started.elapsed() >= Duration::from_millis(400));
    let stats = server.stats();
    assert_eq!(stats.ended(EndReason::PingTimeout), 1);
    assert!(stats.pings_sent >= 1);
    // What the socket saw: pings (0x89, empty), then a close 1001, then EOF.
    let got = read_to_close(&mut s, Duration::from_secs(2));
    let pings = got.chunks(2).take_while(|f| f == &[0x89, 0x00]).count();
    assert!(pings >= 1, "{got:x?}");
    assert_eq!(
        &got[pings * 2..pings * 2 + 4],
        &[0x88, 0x0e, 0x03, 0xe9],
        "{got:x?}"
    );
    assert_eq!(got.len(), pings * 2 + 16, "nothing after the close frame");
}

#[test]
fn peer_that_answers_pings_stays() {
    let mut cfg = config(1);
    cfg.conn.ping_interval = Duration::from_millis(100);
    cfg.conn.pong_timeout = Duration::from_millis(150);
    let server = start(cfg);
    let mut ws = connect(&server, "/echo");
    // tungstenite answers pings while reading; keep reading for ~1 s.
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    }
    let until = Instant::now() + Duration::from_secs(1);
    let mut pings = 0;
    while Instant::now() < until {
        match ws.read() {
            Ok(tungstenite::Message::Ping(_)) => pings += 1,
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("connection lost: {e}"),
        }
        let _ = ws.flush();
    }
    assert!(pings >= 3, "server kept pinging ({pings})");
    assert_eq!(server.stats().open, 1);
    assert_eq!(server.stats().ended(EndReason::PingTimeout), 0);
}

#[test]
fn half_open_handshake_is_dropped_with_408() {
    let mut cfg = config(1);
    cfg.conn.handshake_timeout = Duration::from_millis(300);
    let server = start(cfg);
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let got = read_to_close(&mut s, Duration::from_secs(5));
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(status_of(&got), 408);
    assert!(wait_until(Duration::from_secs(5), || server.stats().open == 0));
    let stats = server.stats();
    assert_eq!(stats.ended(EndReason::HandshakeTimeout), 1);
    assert_eq!(stats.handshake_failures(Rejection::Timeout), 1);
}

#[test]
fn silent_tcp_connection_is_dropped_after_handshake_timeout() {
    let mut cfg = config(1);
    cfg.conn.handshake_timeout = Duration::from_millis(200);
    let server = start(cfg);
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    assert!(wait_until(Duration::from_secs(2), || server.stats().open == 1));
    assert!(wait_until(Duration::from_secs(5), || server.stats().open == 0));
    let mut buf = [0u8; 256];
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(status_of(&buf[..n]), 408);
}

#[test]
fn idle_connection_is_closed_with_1001() {
    let mut cfg = config(1);
    cfg.conn.idle_timeout = Some(Duration::from_millis(300));
    let server = start(cfg);
    let mut ws = connect(&server, "/echo");
    ws.send(tungstenite::Message::text("one")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("one"));
    match ws.read() {
        Ok(tungstenite::Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected idle close, got {other:?}"),
    }
    // Send tungstenite's close answer.
    let _ = ws.flush();
    assert!(wait_until(Duration::from_secs(5), || server.stats().open == 0));
    assert_eq!(server.stats().ended(EndReason::IdleTimeout), 1);
}

#[test]
fn peer_that_ignores_our_close_is_dropped_after_close_timeout() {
    let mut cfg = config(1);
    cfg.conn.idle_timeout = Some(Duration::from_millis(100));
    cfg.conn.close_timeout = Duration::from_millis(300);
    let server = start(cfg);
    let mut s = raw_upgraded(server.local_addr());
    // Never answer the idle close: the server gives up after close_timeout
    // and the socket reaches EOF.
    let got = read_to_close(&mut s, Duration::from_secs(5));
    assert_eq!(got[0], 0x88);
    assert!(wait_until(Duration::from_secs(5), || server.stats().open == 0));
    assert_eq!(server.stats().ended(EndReason::IdleTimeout), 1);
}

#[test]
fn vanished_client_is_removed_at_once_on_eof() {
    let server = start(config(1));
    {
        let _s = raw_upgraded(server.local_addr());
        assert_eq!(server.stats().open, 1);
    }
    assert!(wait_until(Duration::from_secs(5), || server.stats().open == 0));
    assert_eq!(server.stats().ended(EndReason::PeerGone), 1);
}
