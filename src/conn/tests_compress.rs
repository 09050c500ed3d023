//! Sans-IO tests of permessage-deflate on a connection (RFC 7692): the
//! negotiated answer, RSV1 rules, inflating (bounded, corrupt, UTF-8),
//! compressing what is sent, the per-connection coders and the shared
//! fan-out frame. Through the one test driver (`conn::testing`).

use bytes::BytesMut;

use super::testing::{Admit, Driver, Echo};
use super::*;
use crate::config::{CompressionConfig, Switch};
use crate::protocol::deflate::{MessageDeflater, MessageInflater};
use crate::protocol::frame::encode_masked_frame;

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

fn upgrade(extensions: &str) -> Vec<u8> {
    format!(
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extensions}\r\n"
    )
    .into_bytes()
}

fn config(on: bool, f: impl FnOnce(&mut CompressionConfig)) -> Config {
    let mut cfg = Config::default();
    cfg.compression.mode = if on { Switch::On } else { Switch::Off };
    cfg.compression.min_size = 0;
    f(&mut cfg.compression);
    cfg
}

/// An open echo connection after `extensions` was offered; returns the
/// 101's head too.
fn open(cfg: Config, extensions: &str) -> (Driver, Echo, String) {
    let mut d = Driver::with_config(cfg);
    let mut app = Echo::recording(Admit::Accept);
    d.feed(&upgrade(extensions), &mut app);
    assert_eq!(d.conn.phase(), Phase::Open);
    app.take_events();
    let head = String::from_utf8(d.take_out()).unwrap();
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    (d, app, head)
}

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

/// A masked client frame with RSV1 as given.
fn frame(fin: bool, rsv1: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_masked_frame(&mut out, fin, op, KEY, payload);
    if rsv1 {
        out[0] |= 0x40;
    }
    out.to_vec()
}

fn compress(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    MessageDeflater::new(15, true, 6).compress(msg, &mut out);
    out
}

/// Splits the server's output into (rsv1, opcode, payload) frames.
fn server_frames(mut wire: &[u8]) -> Vec<(bool, u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while !wire.is_empty() {
        let (h, n) = crate::protocol::FrameHeader::parse_ext(wire, Role::Client, u64::MAX, true)
            .unwrap()
            .expect("whole frames");
        let end = n + h.payload_len as usize;
        frames.push((h.rsv1, h.opcode.as_u8(), wire[n..end].to_vec()));
        wire = &wire[end..];
    }
    frames
}

fn close_code(frames: &[(bool, u8, Vec<u8>)]) -> Option<u16> {
    frames
        .iter()
        .find(|f| f.1 == 0x8)
        .map(|f| u16::from_be_bytes([f.2[0], f.2[1]]))
}

#[test]
fn the_101_carries_the_agreed_answer_only_when_compression_is_on() {
    let (d, _, head) = open(config(true, |_| {}), OFFER);
    assert!(
        head.contains(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; \
             client_no_context_takeover\r\n"
        ),
        "{head}"
    );
    assert!(d.conn.compression().is_some());
    let (d, _, head) = open(config(false, |_| {}), OFFER);
    assert!(!head.contains("Extensions"), "{head}");
    assert!(d.conn.compression().is_none());
    // On, but nothing acceptable offered: no extension.
    let (d, _, head) = open(
        config(true, |_| {}),
        "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n",
    );
    assert!(!head.contains("Extensions"), "{head}");
    assert!(d.conn.compression().is_none());
}

#[test]
fn a_compressed_message_is_inflated_and_the_echo_compressed() {
    let (mut d, mut app, _) = open(config(true, |_| {}), OFFER);
    let msg = br#"{"type":"message","channel":"news","data":{"text":"hello hello hello"}}"#;
    d.feed(&frame(true, true, OpCode::Text, &compress(msg)), &mut app);
    assert_eq!(
        app.take_events(),
        vec![Event::Message {
            text: true,
            payload: Bytes::copy_from_slice(msg)
        }]
    );
    let frames = server_frames(&d.take_out());
    assert_eq!(frames.len(), 1);
    let (rsv1, op, payload) = &frames[0];
    assert!(*rsv1 && *op == 0x1);
    let mut back = Vec::new();
    MessageInflater::new(15, true)
        .inflate(payload, 1 << 20, &mut back)
        .unwrap();
    assert_eq!(back, msg);
}

#[test]
fn a_fragmented_compressed_message_is_inflated_once_whole() {
    let (mut d, mut app, _) = open(config(true, |_| {}), OFFER);
    let msg = "fragmented ünïcödé ".repeat(40);
    let c = compress(msg.as_bytes());
    let (a, b) = c.split_at(c.len() / 2);
    let mut wire = frame(false, true, OpCode::Text, a);
    // A ping between fragments is answered, uncompressed.
    wire.extend(frame(true, false, OpCode::Ping, b"p"));
    wire.extend(frame(true, false, OpCode::Continuation, b));
    d.feed(&wire, &mut app);
    assert_eq!(
        app.take_events(),
        vec![Event::Message {
            text: true,
            payload: Bytes::from(msg)
        }]
    );
}

#[test]
fn rsv1_without_agreement_or_on_the_wrong_frame_closes_1002() {
    let cases: [(bool, Vec<u8>); 4] = [
        // Not agreed: RSV1 is a reserved bit, as before.
        (false, frame(true, true, OpCode::Text, &compress(b"hi"))),
        // Agreed, but on a control frame.
        (true, frame(true, true, OpCode::Ping, b"")),
        // Agreed, but on a continuation.
        (true, {
            let mut w = frame(false, true, OpCode::Text, &compress(b"hi")[..1]);
            w.extend(frame(
                true,
                true,
                OpCode::Continuation,
                &compress(b"hi")[1..],
            ));
            w
        }),
        // RSV2 is never allowed.
        (true, {
            let mut w = frame(true, false, OpCode::Text, b"hi");
            w[0] |= 0x20;
            w
        }),
    ];
    for (i, (agreed, wire)) in cases.into_iter().enumerate() {
        let offer = if agreed { OFFER } else { "" };
        let (mut d, mut app, _) = open(config(true, |_| {}), offer);
        d.feed(&wire, &mut app);
        let frames = server_frames(&d.take_out());
        assert_eq!(close_code(&frames), Some(1002), "case {i}: {frames:?}");
        assert_eq!(
            d.conn.end_reason(),
            Some(EndReason::ProtocolError),
            "case {i}"
        );
    }
}

#[test]
fn a_zip_bomb_closes_1009_and_corrupt_or_invalid_text_1007() {
    let bomb = compress(&vec![b'a'; 4 << 20]);
    let mut cfg = config(true, |_| {});
    cfg.conn.max_message_size = 64 * 1024;
    let (mut d, mut app, _) = open(cfg, OFFER);
    d.feed(&frame(true, true, OpCode::Binary, &bomb), &mut app);
    assert!(app
        .take_events()
        .iter()
        .all(|e| !matches!(e, Event::Message { .. })));
    assert_eq!(close_code(&server_frames(&d.take_out())), Some(1009));
    // The scratch buffer never grew past the limit (and one step).
    assert!(d.codecs.scratch_capacity() <= 64 * 1024 + 16 * 1024 + 1);

    for (payload, text) in [
        (vec![0xff, 0xff, 0xff], false),
        (compress(&[0xc3, 0x28, b'x']), true),
    ] {
        let (mut d, mut app, _) = open(config(true, |_| {}), OFFER);
        let op = if text { OpCode::Text } else { OpCode::Binary };
        d.feed(&frame(true, true, op, &payload), &mut app);
        assert_eq!(close_code(&server_frames(&d.take_out())), Some(1007));
    }
}

#[test]
fn messages_below_min_size_are_sent_plain() {
    let (mut d, mut app, _) = open(config(true, |c| c.min_size = 100), OFFER);
    d.feed(&frame(true, false, OpCode::Text, &[b'x'; 99]), &mut app);
    d.feed(&frame(true, false, OpCode::Text, &[b'x'; 100]), &mut app);
    let frames = server_frames(&d.take_out());
    assert_eq!(frames.len(), 2);
    assert_eq!((frames[0].0, frames[0].2.len()), (false, 99));
    assert!(frames[1].0 && frames[1].2.len() < 100);
}

#[test]
fn only_context_takeover_keeps_coders_on_the_connection() {
    let msg = b"the same message, again and again, and again".repeat(3);
    for (nct, keeps) in [(true, false), (false, true)] {
        let cfg = config(true, |c| {
            c.server_no_context_takeover = nct;
            c.client_no_context_takeover = nct;
        });
        let (mut d, mut app, _) = open(cfg, OFFER);
        assert!(!d.conn.holds_codecs(), "nothing before the first message");
        let mut deflater = MessageDeflater::new(15, nct, 6);
        let mut inflater = MessageInflater::new(15, nct);
        let mut sizes = Vec::new();
        for _ in 0..3 {
            let mut c = Vec::new();
            deflater.compress(&msg, &mut c);
            d.feed(&frame(true, true, OpCode::Binary, &c), &mut app);
            let frames = server_frames(&d.take_out());
            let mut back = Vec::new();
            inflater.inflate(&frames[0].2, 1 << 20, &mut back).unwrap();
            assert_eq!(back, msg);
            sizes.push(frames[0].2.len());
        }
        assert_eq!(d.conn.holds_codecs(), keeps, "nct {nct}");
        if keeps {
            assert!(
                sizes[1] < sizes[0] / 2,
                "context makes repeats small: {sizes:?}"
            );
        } else {
            assert_eq!(sizes[0], sizes[1]);
        }
    }
}

#[test]
fn a_shared_frame_is_compressed_once_for_connections_without_context() {
    let payload = br#"{"type":"message","channel":"prices","data":{"bid":1}}"#.repeat(4);
    let mut plain = BytesMut::new();
    crate::protocol::frame::encode_frame(&mut plain, true, OpCode::Text, &payload);
    let mut shared = SharedFrame::new(plain.freeze());
    let mut out = Vec::new();
    for offer in [OFFER, OFFER, ""] {
        let (mut d, _, _) = open(config(true, |_| {}), offer);
        assert_eq!(
            d.with(|c, ctx| c.push_shared(&mut shared, ctx)),
            Push::Queued
        );
        out.push(server_frames(&d.take_out()).remove(0));
    }
    assert!(out[0].0 && out[1].0 && !out[2].0);
    assert_eq!(out[0], out[1]);
    assert_eq!(out[2].2, payload);
    // The cached frame is the very same bytes for the next connection.
    let a = shared.compressed(15, 6, &mut Codecs::new(), &mut FrameEncoder::new());
    let b = shared.compressed(15, 6, &mut Codecs::new(), &mut FrameEncoder::new());
    assert_eq!(a.unwrap().as_ptr(), b.unwrap().as_ptr());
}

#[test]
fn one_shared_cell_compresses_a_publish_once_for_every_core_and_only_its_window() {
    let payload = br#"{"type":"message","channel":"prices","data":{"bid":1}}"#.repeat(4);
    let mut plain = BytesMut::new();
    crate::protocol::frame::encode_frame(&mut plain, true, OpCode::Text, &payload);
    let plain = plain.freeze();
    let cell = SharedDeflate::new(15, "prices".into());
    // Two cores: each its own SharedFrame, Codecs and encoder.
    let mut cores: Vec<(SharedFrame, Codecs, FrameEncoder)> = (0..2)
        .map(|_| {
            let f = SharedFrame::with_shared(plain.clone(), Some(cell.clone()));
            (f, Codecs::new(), FrameEncoder::new())
        })
        .collect();
    assert!(
        cell.get().is_none(),
        "nothing compressed before a core asks"
    );
    let frames: Vec<Bytes> = cores
        .iter_mut()
        .map(|(f, c, e)| f.compressed(15, 1, c, e).unwrap())
        .collect();
    assert_eq!(frames[0].as_ptr(), frames[1].as_ptr(), "one frame for both");
    let counts: Vec<u64> = cores
        .iter_mut()
        .map(|(_, c, _)| c.take_compressed())
        .collect();
    assert_eq!(
        counts,
        vec![1, 0],
        "the first core compressed, the second took it"
    );
    // Another window is compressed on each core that needs it.
    for (f, c, e) in &mut cores {
        let small = f.compressed(10, 1, c, e).unwrap();
        let mut out = Vec::new();
        MessageInflater::new(10, true)
            .inflate(&small[2..], 1 << 20, &mut out)
            .unwrap();
        assert_eq!(out, payload);
        assert_eq!(c.take_compressed(), 1);
    }
}

#[test]
fn a_fanout_dropped_for_a_slow_consumer_never_enters_its_compression_context() {
    let mut cfg = config(true, |c| {
        c.server_no_context_takeover = false;
        c.client_no_context_takeover = false;
    });
    cfg.conn.max_pending_bytes = 2100;
    cfg.conn.slow_consumer = SlowConsumerPolicy::Drop;
    let (mut d, _, _) = open(cfg, OFFER);
    let shared = |n: u8| {
        let payload = format!(r#"{{"seq":{n},"text":"{}"}}"#, "abc ".repeat(500));
        let mut plain = BytesMut::new();
        crate::protocol::frame::encode_frame(&mut plain, true, OpCode::Text, payload.as_bytes());
        (SharedFrame::new(plain.freeze()), payload)
    };
    let (mut one, p1) = shared(1);
    let (mut two, _) = shared(2);
    let (mut three, p3) = shared(3);
    // Room for the plain frame: compressed (with context).
    assert_eq!(d.with(|c, ctx| c.push_shared(&mut one, ctx)), Push::Queued);
    let filler = Bytes::from(
        vec![0x82, 100]
            .into_iter()
            .chain([0; 100])
            .collect::<Vec<u8>>(),
    );
    assert_eq!(d.with(|c, ctx| c.push_frame(filler, ctx)), Push::Queued);
    // No sure room for the second: not compressed, and over the limit
    // even plain, so dropped — its bytes never enter the context.
    assert_eq!(d.with(|c, ctx| c.push_shared(&mut two, ctx)), Push::Dropped);
    let mut frames = server_frames(&d.take_out());
    assert_eq!(
        d.with(|c, ctx| c.push_shared(&mut three, ctx)),
        Push::Queued
    );
    frames.extend(server_frames(&d.take_out()));
    // The peer's context-keeping inflater reads the compressed ones as sent.
    let mut inflater = MessageInflater::new(15, false);
    let got: Vec<Vec<u8>> = frames
        .iter()
        .filter(|f| f.0)
        .map(|(_, _, p)| {
            let mut out = Vec::new();
            inflater.inflate(p, 1 << 20, &mut out).unwrap();
            out
        })
        .collect();
    assert_eq!(got, vec![p1.into_bytes(), p3.into_bytes()]);
}
