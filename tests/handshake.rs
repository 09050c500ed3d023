//! Every bad upgrade gets its HTTP status and a short text body, is
//! counted, and the socket is closed; a good one gets 101 and the right
//! Sec-WebSocket-Accept and subprotocol.

mod common;

use std::time::Duration;

use common::*;
use wsedge::error::{HandshakeError, Rejection};

fn good() -> String {
    UPGRADE.to_string()
}

#[test]
fn bad_upgrades_get_their_status() {
    let mut cfg = config(1);
    cfg.conn.max_request_bytes = 2048;
    cfg.conn.max_headers = 16;
    let server = start(cfg);
    let addr = server.local_addr();
    let many: String = (0..20).map(|i| format!("X-{i}: y\r\n")).collect();
    let cases: Vec<(String, u16, Rejection)> = vec![
        (
            good().replace("GET", "POST"),
            405,
            HandshakeError::MethodNotAllowed.into(),
        ),
        (good().replace("/echo", "/nope"), 404, Rejection::NotFound),
        (
            good().replace("HTTP/1.1", "HTTP/1.0"),
            400,
            HandshakeError::HttpVersion.into(),
        ),
        (
            good().replace("Upgrade: websocket\r\n", ""),
            426,
            HandshakeError::NotWebSocket.into(),
        ),
        (
            good().replace("Connection: Upgrade", "Connection: keep-alive"),
            400,
            HandshakeError::MissingConnectionUpgrade.into(),
        ),
        (
            good().replace("Version: 13", "Version: 12"),
            426,
            HandshakeError::UnsupportedVersion.into(),
        ),
        (
            good().replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
            400,
            HandshakeError::MissingKey.into(),
        ),
        (
            good().replace("dGhlIHNhbXBsZSBub25jZQ==", "bm9wZQ=="),
            400,
            HandshakeError::InvalidKey.into(),
        ),
        (
            good().replace("Host: localhost\r\n", ""),
            400,
            HandshakeError::MissingHost.into(),
        ),
        (
            "GET /echo HTTP/1.1\r\nBad Header\r\n\r\n".into(),
            400,
            HandshakeError::Malformed.into(),
        ),
        (
            good().replace("Host: localhost\r\n", &format!("Host: x\r\n{many}")),
            431,
            HandshakeError::TooManyHeaders.into(),
        ),
        (
            format!("GET /{} HTTP/1.1\r\n", "a".repeat(3000)),
            431,
            HandshakeError::RequestTooLarge.into(),
        ),
    ];
    for (req, status, err) in &cases {
        let resp = raw_exchange(addr, req.as_bytes(), Duration::from_secs(5));
        assert_eq!(status_of(&resp), *status, "request {req:?}");
        let text = String::from_utf8_lossy(&resp);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
        assert_eq!(body.trim(), err.to_string(), "short text body");
        assert!(text.contains("Connection: close\r\n"));
    }
    assert!(wait_until(Duration::from_secs(5), || server.stats().open == 0));
    let stats = server.stats();
    for (_, _, err) in &cases {
        assert_eq!(stats.handshake_failures(*err), 1, "{err:?} counted once");
    }
    assert_eq!(stats.upgraded, 0);
}

#[test]
fn accepts_with_rfc_accept_key_and_preferred_subprotocol() {
    let mut cfg = config(1);
    cfg.conn.subprotocols = vec!["v2.wsedge".into(), "v1.wsedge".into()];
    let server = start(cfg);
    let req = good().replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Protocol: v1.wsedge, v2.wsedge\r\n\r\n",
    );
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1024];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap();
    let text = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{text}"
    );
    assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert!(text.contains("Sec-WebSocket-Protocol: v2.wsedge\r\n"));
}

#[test]
fn request_split_across_many_writes_is_accepted() {
    let server = start(config(1));
    let mut s = std::net::TcpStream::connect(server.local_addr()).unwrap();
    for chunk in UPGRADE.as_bytes().chunks(7) {
        std::io::Write::write_all(&mut s, chunk).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 512];
    let n = std::io::Read::read(&mut s, &mut buf).unwrap();
    assert_eq!(status_of(&buf[..n]), 101);
}
