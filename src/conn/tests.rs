//! Sans-IO tests of the connection state machine: bytes and virtual time
//! in, events and bytes out, no sockets.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::*;
use crate::protocol::frame::encode_masked_frame;

const KEY: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];
const UPGRADE: &[u8] = b"GET /echo?a=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A connection plus everything a core would hand it.
struct Harness {
    conn: Conn,
    cfg: Config,
    enc: FrameEncoder,
    events: Vec<Event>,
    tally: Tally,
    now: Instant,
}

impl Harness {
    fn new(conn: ConnConfig) -> Self {
        let now = Instant::now();
        let cfg = Config {
            conn,
            ..Config::default()
        };
        Self {
            conn: Conn::new(now, &cfg),
            cfg,
            enc: FrameEncoder::new(),
            events: Vec::new(),
            tally: Tally::default(),
            now,
        }
    }

    fn open(cfg: ConnConfig) -> Self {
        let mut h = Self::new(cfg);
        h.feed(UPGRADE);
        assert_eq!(h.conn.phase(), Phase::Open);
        assert_eq!(h.take_events(), vec![Event::Opened { route: Route::Echo }]);
        let out = h.take_out();
        assert!(out.starts_with(b"HTTP/1.1 101 "));
        h
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut Conn, &mut Ctx<'_>) -> R) -> R {
        let mut ctx = Ctx {
            now: self.now,
            cfg: &self.cfg,
            enc: &mut self.enc,
            events: &mut self.events,
            tally: &mut self.tally,
        };
        f(&mut self.conn, &mut ctx)
    }

    fn feed(&mut self, bytes: &[u8]) {
        let mut input = BytesMut::from(bytes);
        let mut more = self.with(|c, ctx| c.handle_read(&mut input, ctx));
        loop {
            // Admit every upgrade, as a core without limits would.
            if self
                .events
                .iter()
                .any(|e| matches!(e, Event::Upgrade { .. }))
            {
                self.events.retain(|e| !matches!(e, Event::Upgrade { .. }));
                self.with(|c, ctx| c.accept_upgrade(ctx));
                more = true;
            }
            if !more {
                break;
            }
            more = self.with(|c, ctx| c.process(ctx));
        }
        assert!(input.is_empty(), "handle_read consumes its input");
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.with(|c, ctx| c.handle_timeout(ctx));
    }

    fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Everything queued for the socket, as if written in full.
    fn take_out(&mut self) -> Vec<u8> {
        let out = self.conn.out();
        let mut bytes = Vec::new();
        while !out.is_empty() {
            let mut slices = [std::io::IoSlice::new(&[]); outbound::MAX_IOVECS];
            let n = out.io_slices(&mut slices);
            let before = bytes.len();
            for s in &slices[..n] {
                bytes.extend_from_slice(s);
            }
            let len = bytes.len() - before;
            out.advance(len);
        }
        self.conn.handle_drained();
        bytes
    }
}

fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_masked_frame(&mut out, fin, op, KEY, payload);
    out.to_vec()
}

fn message(text: bool, payload: &[u8]) -> Event {
    Event::Message {
        text,
        payload: Bytes::copy_from_slice(payload),
    }
}

#[test]
fn upgrade_keeps_target_and_early_frames() {
    let mut h = Harness::new(ConnConfig::default());
    let mut wire = UPGRADE.to_vec();
    wire.extend(frame(true, OpCode::Text, b"early"));
    h.feed(&wire);
    assert_eq!(h.conn.request().unwrap().query(), Some("a=1"));
    assert_eq!(
        h.take_events(),
        vec![
            Event::Opened { route: Route::Echo },
            message(true, b"early")
        ]
    );
}

#[test]
fn fragments_with_control_frames_between_them() {
    let mut h = Harness::open(ConnConfig::default());
    let mut wire = frame(false, OpCode::Text, b"he");
    wire.extend(frame(true, OpCode::Ping, b"1"));
    wire.extend(frame(false, OpCode::Continuation, b"ll"));
    wire.extend(frame(true, OpCode::Pong, b""));
    wire.extend(frame(true, OpCode::Continuation, b"o"));
    // Every split point.
    for b in &wire {
        h.feed(std::slice::from_ref(b));
    }
    assert_eq!(h.take_events(), vec![message(true, b"hello")]);
    assert_eq!(h.take_out(), vec![0x8a, 0x01, b'1'], "pong echoes the ping");
}

#[test]
fn invalid_utf8_fails_before_the_frame_is_complete() {
    let mut h = Harness::open(ConnConfig::default());
    let mut payload = b"valid start ".to_vec();
    payload.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]); // > U+10FFFF
    payload.extend_from_slice(&[b'z'; 100]);
    let wire = frame(true, OpCode::Text, &payload);
    // Header + "valid start " + the two bad bytes: the frame is far from
    // complete, yet the connection fails now.
    h.feed(&wire[..6 + 14]);
    assert_eq!(h.conn.phase(), Phase::Closing);
    assert_eq!(h.take_out(), vec![0x88, 0x02, 0x03, 0xef]);
    assert_eq!(h.take_events(), vec![Event::Ended(EndReason::InvalidUtf8)]);
}

#[test]
fn close_handshake_initiated_by_peer() {
    let mut h = Harness::open(ConnConfig::default());
    h.feed(&frame(true, OpCode::Close, &[0x03, 0xe8, b'b', b'y', b'e']));
    assert_eq!(h.take_events(), vec![Event::Ended(EndReason::PeerClose)]);
    assert_eq!(h.take_out(), vec![0x88, 0x02, 0x03, 0xe8]);
    assert!(h.conn.is_dead(), "dropped once the echo is flushed");
}

#[test]
fn server_close_waits_for_answer_then_times_out() {
    let cfg = ConnConfig {
        close_timeout: Duration::from_secs(2),
        ..ConnConfig::default()
    };
    let mut h = Harness::open(cfg.clone());
    h.with(|c, ctx| c.close(1001, "bye", EndReason::Shutdown, ctx));
    assert_eq!(h.conn.phase(), Phase::Closing);
    // Data arriving now is not delivered.
    h.feed(&frame(true, OpCode::Text, b"late"));
    assert_eq!(h.take_events(), vec![Event::Ended(EndReason::Shutdown)]);
    h.take_out();
    h.advance(Duration::from_millis(1999));
    assert_eq!(h.conn.phase(), Phase::Closing);
    h.advance(Duration::from_millis(1));
    h.take_out();
    assert!(h.conn.is_dead());

    // And the answered case.
    let mut h = Harness::open(cfg);
    h.with(|c, ctx| c.close(1001, "bye", EndReason::Shutdown, ctx));
    h.take_out();
    h.feed(&frame(true, OpCode::Close, &[0x03, 0xe9]));
    h.take_out();
    assert!(h.conn.is_dead());
}

#[test]
fn liveness_deadlines_in_virtual_time() {
    let cfg = ConnConfig {
        ping_interval: Duration::from_secs(25),
        pong_timeout: Duration::from_secs(10),
        ..ConnConfig::default()
    };
    let mut h = Harness::open(cfg);
    let opened = h.now;
    assert_eq!(
        h.conn.poll_timeout(&h.cfg.conn),
        Some(opened + Duration::from_secs(25))
    );
    h.advance(Duration::from_secs(25));
    assert_eq!(h.take_out(), vec![0x89, 0x00], "ping");
    assert_eq!(
        h.conn.poll_timeout(&h.cfg.conn),
        Some(opened + Duration::from_secs(35))
    );
    // A pong (or anything) clears the pong deadline.
    h.feed(&frame(true, OpCode::Pong, b""));
    assert_eq!(
        h.conn.poll_timeout(&h.cfg.conn),
        Some(opened + Duration::from_secs(50))
    );
    h.advance(Duration::from_secs(25));
    h.take_out();
    // Now silence: dead at ping + pong_timeout, not a moment earlier.
    h.advance(Duration::from_millis(9_999));
    assert_eq!(h.conn.phase(), Phase::Open);
    h.advance(Duration::from_millis(1));
    assert!(h.conn.is_dead());
    assert_eq!(h.conn.end_reason(), Some(EndReason::PingTimeout));
}

#[test]
fn handshake_timeout_answers_408() {
    let cfg = ConnConfig {
        handshake_timeout: Duration::from_secs(3),
        ..ConnConfig::default()
    };
    let mut h = Harness::new(cfg);
    h.feed(b"GET /echo HTTP/1.1\r\n");
    h.advance(Duration::from_secs(3));
    let out = h.take_out();
    assert!(
        out.starts_with(b"HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(h.conn.is_dead());
    assert_eq!(
        h.take_events(),
        vec![
            Event::Refused(HandshakeError::Timeout),
            Event::Ended(EndReason::HandshakeTimeout)
        ]
    );
}

#[test]
fn back_pressure_stops_reading_over_the_write_budget() {
    let cfg = ConnConfig {
        write_budget: 1000,
        ..ConnConfig::default()
    };
    let mut h = Harness::open(cfg);
    assert!(h.conn.wants_read(&h.cfg.conn));
    let payload = Bytes::from(vec![0u8; 1500]);
    h.with(|c, ctx| c.send_message(false, payload, ctx));
    assert!(!h.conn.wants_read(&h.cfg.conn));
    h.take_out();
    assert!(h.conn.wants_read(&h.cfg.conn));
}

#[test]
fn idle_connection_holds_no_buffers() {
    let mut h = Harness::open(ConnConfig::default());
    // Half a frame arrives: kept in the connection's own small buffer.
    let wire = frame(true, OpCode::Binary, &[7u8; 300]);
    h.feed(&wire[..100]);
    assert!(h.conn.rx.capacity() >= 100);
    h.feed(&wire[100..]);
    assert_eq!(h.take_events(), vec![message(false, &[7u8; 300])]);
    assert!(h.conn.rx.is_empty());
    h.take_out();
    assert!(h.conn.out.is_empty());
    assert_eq!(
        h.conn.out.capacity(),
        0,
        "the written 101 left no queue memory"
    );
    assert_eq!(h.conn.rx.capacity(), 0, "the read buffer was given back");
    assert!(h.conn.assembly.is_none());
}

#[test]
fn abort_after_a_panic_closes_1011_after_what_is_queued_and_drops() {
    let mut h = Harness::open(ConnConfig::default());
    h.feed(&frame(true, OpCode::Text, b"hi"));
    let Some(Event::Message { text, payload }) = h.take_events().pop() else {
        panic!("a message");
    };
    h.with(|c, ctx| c.send_message(text, payload, ctx));
    h.with(|c, ctx| c.abort(ctx));
    assert_eq!(
        h.take_events(),
        vec![Event::Ended(EndReason::InternalError)]
    );
    assert_eq!(
        h.conn.phase(),
        Phase::Closed,
        "no wait for the peer's answer"
    );
    let mut want = vec![0x81, 2, b'h', b'i', 0x88, 16, 0x03, 0xf3];
    want.extend_from_slice(b"internal error");
    assert_eq!(h.take_out(), want);
    assert!(h.conn.is_dead());

    // Already ended (closing): the first reason stays, nothing more is sent.
    let mut h = Harness::open(ConnConfig::default());
    h.with(|c, ctx| c.close(1001, "bye", EndReason::Shutdown, ctx));
    h.take_out();
    h.with(|c, ctx| c.abort(ctx));
    assert_eq!(h.take_events(), vec![Event::Ended(EndReason::Shutdown)]);
    assert_eq!(h.take_out(), Vec::<u8>::new());
    assert!(h.conn.is_dead());

    // Before the upgrade: dropped at once.
    let mut h = Harness::new(ConnConfig::default());
    h.with(|c, ctx| c.abort(ctx));
    assert_eq!(
        h.take_events(),
        vec![Event::Ended(EndReason::InternalError)]
    );
    assert!(h.conn.is_dead());
}

#[test]
fn a_quiet_connection_gives_its_queue_ring_back_at_the_ping_tick() {
    let cfg = ConnConfig {
        ping_interval: Duration::from_secs(25),
        ..ConnConfig::default()
    };
    let mut h = Harness::open(cfg);
    // Two frames waiting at once: the second goes to the ring.
    for _ in 0..2 {
        let frame = Bytes::from_static(&[0x82, 0x01, 0x07]);
        assert_eq!(h.with(|c, ctx| c.push_frame(frame, ctx)), Push::Queued);
    }
    assert_eq!(h.take_out(), [0x82, 0x01, 0x07, 0x82, 0x01, 0x07]);
    assert!(
        h.conn.out.capacity() > 0,
        "a busy connection keeps its ring"
    );
    h.advance(Duration::from_secs(25));
    assert_eq!(h.take_out(), vec![0x89, 0x00], "ping");
    assert_eq!(h.conn.out.capacity(), 0, "given back at the tick");
}
