//! `fanout`'s publisher thread: publishes `total` messages at `--rate`,
//! each carrying its sequence number and its *intended* send time, through
//! the admin API (`--publish-via admin`) or one WebSocket connection on
//! /ws (`--publish-via ws`).
//!
//! Owns: the open-loop schedule ([`wait_for_slot`]), the admin API's
//! HTTP/1.1 exchange and the publisher connection. Must not touch: the
//! subscribers, the delivery tallies or the report (`fanout`).

use std::io::{self, Read, Write};
use std::net::TcpStream as StdTcpStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use wsedge::protocol::OpCode;

use super::FanoutArgs;
use crate::conn;
use crate::deflate::ClientDeflate;
use crate::frame;

/// Sleeps until the `i`th publish is due (`rate` per second from `t0`)
/// and returns its intended time in nanoseconds since `start`: the
/// timestamp the message carries, so latency counts from the schedule,
/// not from when the publisher got round to it (coordinated-omission
/// correction: a stall in the server or the API delays the actual send,
/// not the clock the latency is measured from).
fn wait_for_slot(t0: Instant, i: u64, rate: u64, start: Instant) -> u64 {
    let intended = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
    if let Some(wait) = intended.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    intended.duration_since(start).as_nanos() as u64
}

/// The `data` of publish `i` sent at `t`: its sequence number and send
/// time first (where the subscribers look for them), then with `--payload
/// json` one of a few price-book updates (precomputed by [`Bodies`]).
struct Bodies(Vec<String>);

impl Bodies {
    fn new(a: &FanoutArgs) -> Self {
        Self(match a.payload {
            crate::echo::Payload::Bytes => Vec::new(),
            crate::echo::Payload::Json => (0..64)
                .map(|i| String::from_utf8(crate::json::json_message(i)).expect("ASCII JSON"))
                .collect(),
        })
    }

    fn data(&self, i: u64, t: u64) -> String {
        if self.0.is_empty() {
            return format!(r#"{{"s":{i},"t":{t}}}"#);
        }
        let d = &self.0[i as usize % self.0.len()];
        format!(r#"{{"s":{i},"t":{t},"d":{d}}}"#)
    }
}

/// Publishes through the admin API, one POST /api/channels/{c}/publish
/// per message on one keep-alive connection; any answer but 200 fails the
/// run.
pub fn via_admin(a: &FanoutArgs, start: Instant, total: u64) -> io::Result<u64> {
    let mut conn = StdTcpStream::connect(a.admin)?;
    conn.set_nodelay(true)?;
    let path = format!("/api/channels/{}/publish", a.channel);
    let bodies = Bodies::new(a);
    let t0 = Instant::now();
    for i in 0..total {
        let t = wait_for_slot(t0, i, a.rate, start);
        let body = bodies.data(i, t);
        let status = http_post(&mut conn, &path, a.admin_key.as_deref(), &body)?;
        if status != 200 {
            return Err(io::Error::other(format!("publish answered {status}")));
        }
    }
    Ok(total)
}

/// One POST on a keep-alive connection; returns the status (the body is
/// read and dropped).
fn http_post(
    conn: &mut StdTcpStream,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> io::Result<u16> {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    // The admin plane's own address as Host, and a JSON Content-Type: it
    // refuses anything else (README "Admin API").
    let host = conn.peer_addr()?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes())?;
    // Read the head, then Content-Length bytes of body.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Err(io::Error::other("admin API closed the connection"));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body)?;
    Ok(status)
}

/// Like [`via_admin`], over one WebSocket connection to /ws: each publish
/// is a `publish` message without an id (no ack traffic), except the last,
/// whose ack confirms that the server accepted them (an `error` reply
/// fails the run).
pub fn via_ws(a: &FanoutArgs, start: Instant, total: u64) -> io::Result<u64> {
    let mut conn = StdTcpStream::connect(a.server)?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(20)))?;
    conn.write_all(&conn::upgrade_request_offering(
        "/ws",
        a.server,
        a.compression,
    ))?;
    let mut rx = BytesMut::new();
    let head = loop {
        if let Some(head) = conn::take_upgrade_head(&mut rx)
            .map_err(|_| io::Error::other("publisher: upgrade refused"))?
        {
            break head;
        }
        read_into(&mut conn, &mut rx, "publisher: closed during the upgrade")?;
    };
    if a.compression && !crate::deflate::agreed(&head) {
        return Err(io::Error::other(
            "publisher: the server did not agree to permessage-deflate",
        ));
    }
    let mut deflate = a.compression.then(ClientDeflate::new);
    let bodies = Bodies::new(a);
    let channel = serde_json::to_string(&a.channel).map_err(io::Error::other)?;
    let mut out = BytesMut::new();
    let t0 = Instant::now();
    for i in 0..total {
        let t = wait_for_slot(t0, i, a.rate, start);
        let id = if i + 1 == total { r#","id":1"# } else { "" };
        let data = bodies.data(i, t);
        let text = format!(r#"{{"type":"publish","channel":{channel},"data":{data}{id}}}"#);
        out.clear();
        match deflate.as_mut() {
            Some(d) => d.push_masked(&mut out, OpCode::Text, [5, 6, 7, 8], text.as_bytes()),
            None => frame::push_masked(&mut out, OpCode::Text, [5, 6, 7, 8], text.as_bytes()),
        }
        conn.write_all(&out)?;
    }
    // Wait for the last publish's ack.
    let mut decoder = frame::client_decoder().with_rsv1(a.compression);
    loop {
        while let Some(f) = frame::next_frame(&mut decoder, &mut rx)? {
            if f.opcode != OpCode::Text {
                continue;
            }
            let payload = match deflate.as_mut() {
                Some(d) => d.message(&f)?,
                None => f.payload,
            };
            let text = String::from_utf8_lossy(&payload);
            if text.contains(r#""ack""#) {
                return Ok(total);
            }
            if text.contains(r#""error""#) {
                return Err(io::Error::other(format!("publisher: server said {text}")));
            }
        }
        read_into(&mut conn, &mut rx, "publisher: connection closed")?;
    }
}

/// Waits for what the publisher connection has next and appends it to
/// `rx`; `closed` is the error if the server closed it.
fn read_into(conn: &mut StdTcpStream, rx: &mut BytesMut, closed: &str) -> io::Result<()> {
    let mut buf = [0u8; 4096];
    let k = conn.read(&mut buf)?;
    if k == 0 {
        return Err(io::Error::other(closed));
    }
    rx.extend_from_slice(&buf[..k]);
    Ok(())
}
