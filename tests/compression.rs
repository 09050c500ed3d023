//! permessage-deflate through the real server (`--compression on`): a
//! hub publish fanned out to subscribers that negotiated compression
//! arrives as the very same compressed frame on each of them, to one that
//! did not as the plain frame; on two cores it is compressed once for all
//! subscribers of the server's window (counted), once per core for
//! another window; and a zip bomb sent to /echo closes 1009. Raw sockets,
//! loopback only.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::*;
use wsedge::protocol::deflate::{MessageDeflater, MessageInflater};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// A raw socket upgraded to `path`, offering compression if `offer`;
/// returns it and the 101's head.
fn upgrade(addr: SocketAddr, path: &str, offer: bool) -> (TcpStream, String) {
    upgrade_offering(addr, path, offer.then_some(OFFER))
}

/// A raw socket upgraded to `path` with the `Sec-WebSocket-Extensions`
/// line `offer` (CRLF-terminated) if any; returns it and the 101's head.
fn upgrade_offering(addr: SocketAddr, path: &str, offer: Option<&str>) -> (TcpStream, String) {
    raw_upgraded_with(addr, path, offer)
}

/// The next data or close frame: (first byte, payload); pings skipped.
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    loop {
        let mut h = [0u8; 2];
        s.read_exact(&mut h).unwrap();
        assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                s.read_exact(&mut b).unwrap();
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                s.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        s.read_exact(&mut payload).unwrap();
        if h[0] & 0x0f != 0x9 {
            return (h[0], payload);
        }
    }
}

fn text(s: &mut TcpStream, json: &serde_json::Value) {
    s.write_all(&client_frame(true, 0x1, json.to_string().as_bytes()))
        .unwrap();
}

#[test]
fn a_publish_reaches_compressing_subscribers_as_one_shared_compressed_frame() {
    let mut cfg = hub_config(1);
    cfg.admin.listen = None;
    cfg.compression.mode = wsedge::config::Switch::On;
    let server = start(cfg);
    let addr = server.local_addr();
    let mut subs = Vec::new();
    for (i, offer) in [true, true, false].into_iter().enumerate() {
        let (mut s, head) = upgrade(addr, &format!("/ws?user=u{i}"), offer);
        assert_eq!(head.contains("permessage-deflate"), offer, "{head}");
        text(
            &mut s,
            &serde_json::json!({"type":"subscribe","channel":"prices","id":1}),
        );
        let (b0, ack) = read_frame(&mut s);
        // The ack is shorter than min_size (64): plain.
        assert_eq!(b0, 0x81);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&ack).unwrap(),
            serde_json::json!({"type":"ack","id":1})
        );
        subs.push(s);
    }
    let data = serde_json::json!({"sym":"ABC","note":"compress me ".repeat(20)});
    text(
        &mut subs[2],
        &serde_json::json!({"type":"publish","channel":"prices","data":data,"id":2}),
    );
    let frames: Vec<(u8, Vec<u8>)> = subs
        .iter_mut()
        .map(|s| loop {
            let (b0, p) = read_frame(s);
            // The publisher's ack may come first.
            if p.len() > 40 {
                break (b0, p);
            }
        })
        .collect();
    // RSV1 on both compressing subscribers, byte-identical; plain for the third.
    assert_eq!(frames[0].0, 0xc1);
    assert_eq!(frames[0], frames[1]);
    assert_eq!(frames[2].0, 0x81);
    let mut plain = Vec::new();
    MessageInflater::new(15, true)
        .inflate(&frames[0].1, 1 << 20, &mut plain)
        .unwrap();
    assert_eq!(plain, frames[2].1);
    let msg: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(msg["data"], data);
    assert!(frames[0].1.len() * 3 < plain.len(), "it compressed");
}

/// The next message on a subscriber's socket that is not an ack, as JSON:
/// inflated with a `bits` window if it came compressed (RSV1). Returns
/// it and whether it was compressed.
fn next_message(s: &mut TcpStream, bits: u8) -> (serde_json::Value, bool) {
    loop {
        let (b0, p) = read_frame(s);
        let compressed = b0 & 0x40 != 0;
        let plain = if compressed {
            let mut plain = Vec::new();
            MessageInflater::new(bits, true)
                .inflate(&p, 1 << 20, &mut plain)
                .unwrap();
            plain
        } else {
            p
        };
        assert_eq!(b0 & 0x0f, 0x1, "a text frame");
        let msg: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        if msg["type"] != "ack" {
            return (msg, compressed);
        }
    }
}

/// Waits until the server's `compressed` counter (published by the cores
/// once per loop turn) reaches `want`, then says what it is.
fn compressed_after(server: &wsedge::Server, want: u64) -> u64 {
    wait_until(Duration::from_secs(10), || {
        server.stats().compressed >= want
    });
    server.stats().compressed
}

#[test]
fn a_publish_to_compressing_subscribers_on_two_cores_is_compressed_once() {
    let mut cfg = hub_config(2);
    cfg.admin.listen = None;
    cfg.compression.mode = wsedge::config::Switch::On;
    let server = start(cfg);
    let addr = server.local_addr();
    let sub = |s: &mut TcpStream| {
        text(
            s,
            &serde_json::json!({"type":"subscribe","channel":"prices","id":1}),
        );
        assert_eq!(
            next_message_or_ack(s),
            serde_json::json!({"type":"ack","id":1})
        );
    };
    // Two subscribers on each core, with the server's window (15).
    let mut subs: Vec<TcpStream> = place_on_every_core(&server, 2, |i| {
        let (s, head) = upgrade(addr, &format!("/ws?user=w15-{i}"), true);
        assert!(head.contains("permessage-deflate"), "{head}");
        s
    })
    .into_iter()
    .flatten()
    .collect();
    subs.iter_mut().for_each(sub);
    assert_eq!(server.stats().compressed, 0);

    // One publish from the API (the control plane: no core publishes it)
    // and one from a client on a core: each compressed exactly once.
    let data = serde_json::json!({"sym":"ABC","note":"compress me ".repeat(20)});
    let raw = serde_json::value::to_raw_value(&data).unwrap();
    assert_eq!(server.hub().publish("prices", &raw), Ok(2), "to both cores");
    for s in &mut subs {
        let (msg, compressed) = next_message(s, 15);
        assert!(compressed);
        assert_eq!(msg["data"], data);
    }
    assert_eq!(
        compressed_after(&server, 1),
        1,
        "one publish, one compression"
    );
    let data2 = serde_json::json!({"sym":"DEF","note":"and me ".repeat(30)});
    text(
        &mut subs[0],
        &serde_json::json!({"type":"publish","channel":"prices","data":data2}),
    );
    for s in &mut subs {
        let (msg, compressed) = next_message(s, 15);
        assert!(compressed);
        assert_eq!(msg["data"], data2);
    }
    assert_eq!(compressed_after(&server, 2), 2, "a client's publish too");

    // A subscriber with a 10-bit window on each core: compressed for it
    // once per core, beside the one shared compression.
    let mut small: Vec<TcpStream> = place_on_every_core(&server, 1, |i| {
        let offer = "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n";
        let (s, head) = upgrade_offering(addr, &format!("/ws?user=w10-{i}"), Some(offer));
        assert!(head.contains("server_max_window_bits=10"), "{head}");
        s
    })
    .into_iter()
    .flatten()
    .collect();
    small.iter_mut().for_each(sub);
    let data3 = serde_json::json!({"sym":"GHI","note":"small window ".repeat(25)});
    let raw = serde_json::value::to_raw_value(&data3).unwrap();
    assert_eq!(server.hub().publish("prices", &raw), Ok(2));
    for (s, bits) in subs
        .iter_mut()
        .map(|s| (s, 15))
        .chain(small.iter_mut().map(|s| (s, 10)))
    {
        let (msg, compressed) = next_message(s, bits);
        assert!(compressed);
        assert_eq!(msg["data"], data3);
    }
    assert_eq!(
        compressed_after(&server, 5),
        5,
        "once for the 15-bit window, once per core for the 10-bit one"
    );
}

/// The next message, acks included, as JSON (plain frames only).
fn next_message_or_ack(s: &mut TcpStream) -> serde_json::Value {
    let (b0, p) = read_frame(s);
    assert_eq!(b0, 0x81, "a plain text frame");
    serde_json::from_slice(&p).unwrap()
}

#[test]
fn a_zip_bomb_closes_1009() {
    let mut cfg = config(1);
    cfg.compression.mode = wsedge::config::Switch::On;
    cfg.conn.max_message_size = 1 << 20;
    let server = start(cfg);
    let (mut s, _) = upgrade(server.local_addr(), "/echo", true);
    // 16 MiB of zeros in ≈ 16 KiB.
    let mut bomb = Vec::new();
    MessageDeflater::new(15, true, 9).compress(&vec![0u8; 16 << 20], &mut bomb);
    assert!(bomb.len() < 40_000, "{}", bomb.len());
    let mut frame = client_frame(true, 0x2, &bomb);
    frame[0] |= 0x40;
    s.write_all(&frame).unwrap();
    let (b0, payload) = read_frame(&mut s);
    assert_eq!(b0, 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1009);
}
