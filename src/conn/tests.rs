//! Sans-IO tests of the connection state machine through the one test
//! driver (`conn::testing`): bytes and virtual time in, events and bytes
//! out, no sockets.

use std::time::Duration;

use bytes::BytesMut;

use super::testing::{Admit, Driver, Echo};
use super::*;
use crate::admission::Refusal;
use crate::protocol::frame::encode_masked_frame;

const KEY: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];
const UPGRADE: &[u8] = b"GET /echo?a=1 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A driver whose connection is open (the 101 taken), and an echo app
/// that records events.
fn open(cfg: ConnConfig) -> (Driver, Echo) {
    let mut d = Driver::new(cfg);
    let mut app = Echo::recording(Admit::Accept);
    d.feed(UPGRADE, &mut app);
    assert_eq!(d.conn.phase(), Phase::Open);
    assert_eq!(app.take_events(), vec![Event::Upgrade, Event::Opened]);
    assert!(d.take_out().starts_with(b"HTTP/1.1 101 "));
    (d, app)
}

fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_masked_frame(&mut out, fin, op, KEY, payload);
    out.to_vec()
}

/// What the server writes for a data frame (unmasked).
fn server_frame(op: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    crate::protocol::frame::encode_frame(&mut out, true, op, payload);
    out.to_vec()
}

fn message(text: bool, payload: &[u8]) -> Event {
    Event::Message {
        text,
        payload: Bytes::copy_from_slice(payload),
    }
}

#[test]
fn upgrade_reports_the_target_and_keeps_early_frames_until_accepted() {
    let mut d = Driver::new(ConnConfig::default());
    let mut app = Echo::recording(Admit::Defer);
    let mut wire = UPGRADE.to_vec();
    wire.extend(frame(true, OpCode::Text, b"early"));
    d.feed(&wire, &mut app);
    assert_eq!(app.take_events(), vec![Event::Upgrade]);
    assert_eq!(d.conn.phase(), Phase::Deciding);
    let req = d.conn.request().expect("the request awaits its answer");
    assert_eq!((req.path(), req.query()), ("/echo", Some("a=1")));
    assert!(!d.conn.wants_read(&d.cfg.conn), "no reading before the 101");
    assert!(d.take_out().is_empty(), "nothing is answered yet");
    d.accept(&mut app);
    assert!(
        d.conn.request().is_none(),
        "an open connection keeps no request"
    );
    assert_eq!(
        app.take_events(),
        vec![Event::Opened, message(true, b"early")]
    );
    let out = d.take_out();
    assert!(out.starts_with(b"HTTP/1.1 101 "));
    assert!(out.ends_with(&server_frame(OpCode::Text, b"early")));
}

#[test]
fn one_read_of_many_messages_is_parsed_by_polling_until_none() {
    let (mut d, mut app) = open(ConnConfig::default());
    let mut wire = Vec::new();
    for i in 0..20u8 {
        wire.extend(frame(true, OpCode::Binary, &[i; 3]));
    }
    d.conn.handle_read(&mut BytesMut::from(&wire[..]));
    // Nothing happens until the driver polls; then all of it.
    assert!(d.take_out().is_empty());
    d.dispatch(&mut app);
    let events = app.take_events();
    assert_eq!(events.len(), 20);
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(*ev, message(false, &[i as u8; 3]));
    }
    assert_eq!(d.tally.messages_in, 20);
    assert_eq!(d.take_out().len(), 20 * 5, "every message echoed");
    assert!(d.conn.rx.is_empty());
}

#[test]
fn a_message_before_a_protocol_error_is_echoed_before_the_close() {
    // Autobahn's ordering: what came before the error is answered first.
    let (mut d, mut app) = open(ConnConfig::default());
    let mut wire = frame(true, OpCode::Text, b"first");
    wire.extend(frame(true, OpCode::Ping, b"p"));
    wire.push(0x83); // reserved opcode 3, then anything
    wire.extend_from_slice(&[0x80, 0, 0, 0, 0]);
    wire.extend(frame(true, OpCode::Text, b"never"));
    d.feed(&wire, &mut app);
    assert_eq!(
        app.take_events(),
        vec![
            message(true, b"first"),
            Event::Ended(EndReason::ProtocolError)
        ]
    );
    let mut want = server_frame(OpCode::Text, b"first");
    want.extend([0x8a, 0x01, b'p']); // the pong, after the echo
    want.extend([0x88, 0x02, 0x03, 0xea]); // 1002
    assert_eq!(d.take_out(), want);
    assert!(d.conn.is_dead(), "the stream cannot be framed any more");
}

#[test]
fn fragments_with_control_frames_between_them() {
    let (mut d, mut app) = open(ConnConfig::default());
    let mut wire = frame(false, OpCode::Text, b"he");
    wire.extend(frame(true, OpCode::Ping, b"1"));
    wire.extend(frame(false, OpCode::Continuation, b"ll"));
    wire.extend(frame(true, OpCode::Pong, b""));
    wire.extend(frame(true, OpCode::Continuation, b"o"));
    // Every split point.
    for b in &wire {
        d.feed(std::slice::from_ref(b), &mut app);
    }
    assert_eq!(app.take_events(), vec![message(true, b"hello")]);
    let mut want = vec![0x8a, 0x01, b'1']; // the pong
    want.extend(server_frame(OpCode::Text, b"hello"));
    assert_eq!(d.take_out(), want);
}

#[test]
fn invalid_utf8_fails_before_the_frame_is_complete() {
    let (mut d, mut app) = open(ConnConfig::default());
    let mut payload = b"valid start ".to_vec();
    payload.extend_from_slice(&[0xf4, 0x90, 0x80, 0x80]); // > U+10FFFF
    payload.extend_from_slice(&[b'z'; 100]);
    let wire = frame(true, OpCode::Text, &payload);
    // Header + "valid start " + the two bad bytes: the frame is far from
    // complete, yet the connection fails now.
    d.feed(&wire[..6 + 14], &mut app);
    assert_eq!(d.conn.phase(), Phase::Closing);
    assert_eq!(d.take_out(), vec![0x88, 0x02, 0x03, 0xef]);
    assert_eq!(
        app.take_events(),
        vec![Event::Ended(EndReason::InvalidUtf8)]
    );
}

#[test]
fn close_handshake_initiated_by_peer() {
    let (mut d, mut app) = open(ConnConfig::default());
    d.feed(
        &frame(true, OpCode::Close, &[0x03, 0xe8, b'b', b'y', b'e']),
        &mut app,
    );
    assert_eq!(app.take_events(), vec![Event::Ended(EndReason::PeerClose)]);
    assert_eq!(d.conn.phase(), Phase::Closed);
    assert_eq!(d.take_out(), vec![0x88, 0x02, 0x03, 0xe8]);
    assert!(d.conn.is_dead(), "dropped once the echo is flushed");
}

#[test]
fn server_close_waits_for_answer_then_times_out() {
    let cfg = ConnConfig {
        close_timeout: Duration::from_secs(2),
        ..ConnConfig::default()
    };
    let (mut d, mut app) = open(cfg.clone());
    d.with(|c, ctx| c.close(1001, "bye", EndReason::Shutdown, ctx));
    assert_eq!(d.conn.phase(), Phase::Closing);
    // Data arriving now is not delivered.
    d.feed(&frame(true, OpCode::Text, b"late"), &mut app);
    assert_eq!(app.take_events(), vec![Event::Ended(EndReason::Shutdown)]);
    d.take_out();
    d.advance(Duration::from_millis(1999), &mut app);
    assert_eq!(d.conn.phase(), Phase::Closing);
    d.advance(Duration::from_millis(1), &mut app);
    d.take_out();
    assert!(d.conn.is_dead());

    // And the answered case.
    let (mut d, mut app) = open(cfg);
    d.with(|c, ctx| c.close(1001, "bye", EndReason::Shutdown, ctx));
    d.take_out();
    d.feed(&frame(true, OpCode::Close, &[0x03, 0xe9]), &mut app);
    d.take_out();
    assert!(d.conn.is_dead());
}

#[test]
fn liveness_deadlines_in_virtual_time() {
    let cfg = ConnConfig {
        ping_interval: Duration::from_secs(25),
        pong_timeout: Duration::from_secs(10),
        ..ConnConfig::default()
    };
    let (mut d, mut app) = open(cfg);
    let opened = d.now;
    assert_eq!(d.poll_timeout(), Some(opened + Duration::from_secs(25)));
    d.advance(Duration::from_secs(25), &mut app);
    assert_eq!(d.take_out(), vec![0x89, 0x00], "ping");
    assert_eq!(d.poll_timeout(), Some(opened + Duration::from_secs(35)));
    // A pong (or anything) clears the pong deadline.
    d.feed(&frame(true, OpCode::Pong, b""), &mut app);
    assert_eq!(d.poll_timeout(), Some(opened + Duration::from_secs(50)));
    d.advance(Duration::from_secs(25), &mut app);
    d.take_out();
    // Now silence: dead at ping + pong_timeout, not a moment earlier.
    d.advance(Duration::from_millis(9_999), &mut app);
    assert_eq!(d.conn.phase(), Phase::Open);
    d.advance(Duration::from_millis(1), &mut app);
    assert!(d.conn.is_dead());
    assert_eq!(d.conn.end_reason(), Some(EndReason::PingTimeout));
    assert_eq!(
        app.take_events(),
        vec![Event::Ended(EndReason::PingTimeout)]
    );
}

/// Deadlines are whole milliseconds after the epoch, rounded up: one that
/// falls inside a millisecond fires at its end, never before it.
#[test]
fn deadlines_round_up_to_the_tick_and_never_fire_early() {
    let cfg = ConnConfig {
        ping_interval: Duration::from_secs(25),
        pong_timeout: Duration::from_secs(10),
        ..ConnConfig::default()
    };
    let mut d = Driver::new(cfg);
    let mut app = Echo::recording(Admit::Accept);
    // Open 0.3 ms into tick 0: the first ping is due at 25 000.3 ms,
    // stored as tick 25 001.
    d.advance(Duration::from_micros(300), &mut app);
    d.feed(UPGRADE, &mut app);
    d.take_out();
    let epoch = d.epoch;
    assert_eq!(
        d.poll_timeout(),
        Some(epoch + Duration::from_millis(25_001))
    );
    // At 25 000.9 ms the ping is not due yet (the exact deadline is past,
    // its tick is not: late by less than a tick, never early).
    d.advance_to(epoch + Duration::from_micros(25_000_900), &mut app);
    assert!(d.take_out().is_empty(), "no ping before its tick");
    d.advance_to(epoch + Duration::from_millis(25_001), &mut app);
    assert_eq!(d.take_out(), vec![0x89, 0x00], "ping on its tick");
    // The pong deadline: 25 001 + 10 000 ms exactly (on a tick).
    assert_eq!(
        d.poll_timeout(),
        Some(epoch + Duration::from_millis(35_001))
    );
    d.advance_to(epoch + Duration::from_micros(35_000_999), &mut app);
    assert_eq!(d.conn.phase(), Phase::Open);
    d.advance_to(epoch + Duration::from_millis(35_001), &mut app);
    assert_eq!(d.conn.end_reason(), Some(EndReason::PingTimeout));
}

#[test]
fn handshake_timeout_answers_408() {
    let cfg = ConnConfig {
        handshake_timeout: Duration::from_secs(3),
        ..ConnConfig::default()
    };
    let mut d = Driver::new(cfg);
    let mut app = Echo::recording(Admit::Accept);
    d.feed(b"GET /echo HTTP/1.1\r\n", &mut app);
    d.advance(Duration::from_secs(3), &mut app);
    let out = d.take_out();
    assert!(
        out.starts_with(b"HTTP/1.1 408 "),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert!(d.conn.is_dead());
    assert_eq!(
        app.take_events(),
        vec![
            Event::Refused(Rejection::Timeout),
            Event::Ended(EndReason::HandshakeTimeout)
        ]
    );
}

#[test]
fn a_pending_upgrade_keeps_its_deadline_and_answers_504() {
    let cfg = ConnConfig {
        handshake_timeout: Duration::from_secs(3),
        ..ConnConfig::default()
    };
    let mut d = Driver::new(cfg);
    let mut app = Echo::recording(Admit::Defer);
    d.advance(Duration::from_secs(1), &mut app);
    d.feed(UPGRADE, &mut app);
    assert_eq!(app.take_events(), vec![Event::Upgrade]);
    // The deadline runs from the accept, not from the request.
    assert_eq!(d.poll_timeout(), Some(d.now + Duration::from_secs(2)));
    d.advance(Duration::from_millis(1999), &mut app);
    assert_eq!(d.conn.phase(), Phase::Deciding);
    d.advance(Duration::from_millis(1), &mut app);
    let out = d.take_out();
    assert!(out.starts_with(b"HTTP/1.1 504 Gateway Timeout\r\n"));
    assert_eq!(
        app.take_events(),
        vec![
            Event::Refused(Rejection::DecisionTimeout),
            Event::Ended(EndReason::HandshakeTimeout)
        ]
    );
    assert!(d.conn.is_dead());
    // A decision arriving after that changes nothing.
    d.accept(&mut app);
    assert!(d.take_out().is_empty() && app.take_events().is_empty());
}

#[test]
fn refusals_answer_their_status_with_retry_after() {
    let mut d = Driver::new(ConnConfig::default());
    let refusal = Rejection::Refused(Refusal::TooManyAttempts { retry_after: 30 });
    let mut app = Echo::recording(Admit::Refuse(refusal));
    d.feed(UPGRADE, &mut app);
    assert_eq!(
        app.take_events(),
        vec![
            Event::Upgrade,
            Event::Refused(refusal),
            Event::Ended(EndReason::HandshakeFailed)
        ]
    );
    let out = String::from_utf8(d.take_out()).unwrap();
    assert!(
        out.starts_with("HTTP/1.1 429 Too Many Requests\r\n"),
        "{out}"
    );
    assert!(out.contains("Retry-After: 30\r\n"));
    assert!(out.ends_with("\r\n\r\ntoo many connection attempts\n"));
    assert!(d.conn.is_dead());

    // The request's own defects are refused by the connection itself.
    let mut d = Driver::new(ConnConfig::default());
    let mut app = Echo::recording(Admit::Accept);
    d.feed(b"POST /echo HTTP/1.1\r\nHost: x\r\n\r\n", &mut app);
    let err = Rejection::Request(crate::error::HandshakeError::MethodNotAllowed);
    assert_eq!(app.take_events()[0], Event::Refused(err));
    assert!(d.take_out().starts_with(b"HTTP/1.1 405 "));
}

#[test]
fn back_pressure_stops_reading_over_the_write_budget() {
    let cfg = ConnConfig {
        write_budget: 1000,
        ..ConnConfig::default()
    };
    let (mut d, _) = open(cfg);
    assert!(d.conn.wants_read(&d.cfg.conn));
    let payload = Bytes::from(vec![0u8; 1500]);
    d.with(|c, ctx| c.send_message(false, payload, ctx));
    assert!(!d.conn.wants_read(&d.cfg.conn));
    d.take_out();
    assert!(d.conn.wants_read(&d.cfg.conn));
}

#[test]
fn parsing_pauses_over_the_write_budget_and_resumes_after_a_write() {
    let cfg = ConnConfig {
        write_budget: 1000,
        ..ConnConfig::default()
    };
    let (mut d, mut app) = open(cfg);
    // Four 600-byte messages in one read: two echoes fill the budget.
    let mut wire = Vec::new();
    for i in 0..4u8 {
        wire.extend(frame(true, OpCode::Binary, &[i; 600]));
    }
    d.feed(&wire, &mut app);
    assert_eq!(app.take_events().len(), 2, "parsing paused over the budget");
    assert!(!d.conn.wants_read(&d.cfg.conn));
    assert!(d.conn.queued_bytes() > 1000);
    assert_eq!(d.conn.rx.len(), 2 * (600 + 8), "the rest is kept");
    // Part of the queue goes out: still over; then under, and it resumes.
    d.transmit(100, |_| {});
    d.dispatch(&mut app);
    assert!(app.take_events().is_empty());
    d.transmit(usize::MAX, |_| {});
    d.dispatch(&mut app);
    assert_eq!(
        app.take_events(),
        vec![message(false, &[2; 600]), message(false, &[3; 600])]
    );
    assert!(d.conn.rx.is_empty());
}

#[test]
fn idle_connection_holds_no_buffers() {
    let (mut d, mut app) = open(ConnConfig::default());
    assert!(d.conn.cold.is_none(), "the request went with the upgrade");
    // Half a frame arrives: kept in the connection's own small buffer.
    let wire = frame(true, OpCode::Binary, &[7u8; 300]);
    let mut input = BytesMut::from(&wire[..]);
    let rest = input.split_off(100);
    d.read(&mut input, &mut app);
    assert!(!d.conn.rx_borrowed, "a kept tail is the connection's own");
    assert!(d.conn.rx.capacity() >= 100);
    assert!(d.conn.cold.is_some(), "the split frame's header is kept");
    d.read(&mut BytesMut::from(&rest[..]), &mut app);
    assert_eq!(app.take_events(), vec![message(false, &[7u8; 300])]);
    assert!(d.conn.rx.is_empty());
    assert!(d.conn.cold.is_none(), "freed with the frame");
    // A fragmented message holds the cold part until its last fragment.
    d.feed(&frame(false, OpCode::Text, b"ab"), &mut app);
    assert!(d.conn.cold.as_ref().is_some_and(|c| c.assembly.is_some()));
    d.feed(&frame(true, OpCode::Continuation, b"cd"), &mut app);
    assert_eq!(app.take_events(), vec![message(true, b"abcd")]);
    assert!(d.conn.cold.is_none());
    d.take_out();
    assert!(d.conn.out.is_empty());
    // The echo's ring (header and payload waited at once) is kept while
    // busy and given back at the ping tick.
    d.advance(d.cfg.conn.ping_interval, &mut app);
    assert_eq!(d.take_out(), vec![0x89, 0x00], "ping");
    assert_eq!(d.conn.out.capacity(), 0, "no queue memory once quiet");
    assert_eq!(d.conn.rx.capacity(), 0, "the read buffer was given back");
    assert!(d.conn.cold.is_none(), "nothing rarely used is held");
}

#[test]
fn abort_after_a_panic_closes_1011_after_what_is_queued_and_drops() {
    let (mut d, mut app) = open(ConnConfig::default());
    // The echo app queues "hi" back, then the server fails.
    d.feed(&frame(true, OpCode::Text, b"hi"), &mut app);
    assert_eq!(app.take_events(), vec![message(true, b"hi")]);
    d.with(|c, ctx| c.abort(ctx));
    d.dispatch(&mut app);
    assert_eq!(
        app.take_events(),
        vec![Event::Ended(EndReason::InternalError)]
    );
    assert_eq!(
        d.conn.phase(),
        Phase::Closed,
        "no wait for the peer's answer"
    );
    let mut want = vec![0x81, 2, b'h', b'i', 0x88, 16, 0x03, 0xf3];
    want.extend_from_slice(b"internal error");
    assert_eq!(d.take_out(), want);
    assert!(d.conn.is_dead());

    // Already ended (closing): the first reason stays, nothing more is sent.
    let (mut d, mut app) = open(ConnConfig::default());
    d.with(|c, ctx| c.close(1001, "bye", EndReason::Shutdown, ctx));
    d.take_out();
    d.with(|c, ctx| c.abort(ctx));
    d.dispatch(&mut app);
    assert_eq!(app.take_events(), vec![Event::Ended(EndReason::Shutdown)]);
    assert_eq!(d.take_out(), Vec::<u8>::new());
    assert!(d.conn.is_dead());

    // Before the upgrade: dropped at once.
    let mut d = Driver::new(ConnConfig::default());
    let mut app = Echo::recording(Admit::Accept);
    d.with(|c, ctx| c.abort(ctx));
    d.dispatch(&mut app);
    assert_eq!(
        app.take_events(),
        vec![Event::Ended(EndReason::InternalError)]
    );
    assert!(d.conn.is_dead());

    // Input buffered while parsing was paused is dropped unparsed.
    let (mut d, mut app) = open(ConnConfig {
        write_budget: 10,
        ..ConnConfig::default()
    });
    let mut wire = frame(true, OpCode::Binary, &[1; 20]);
    wire.extend(frame(true, OpCode::Binary, &[2; 20]));
    d.feed(&wire, &mut app);
    assert_eq!(app.take_events(), vec![message(false, &[1; 20])]);
    d.with(|c, ctx| c.abort(ctx));
    d.take_out();
    d.dispatch(&mut app);
    assert_eq!(
        app.take_events(),
        vec![Event::Ended(EndReason::InternalError)]
    );
    assert!(d.conn.is_dead());
}

#[test]
fn a_quiet_connection_gives_its_queue_ring_back_at_the_ping_tick() {
    let cfg = ConnConfig {
        ping_interval: Duration::from_secs(25),
        ..ConnConfig::default()
    };
    let (mut d, mut app) = open(cfg);
    // Two frames waiting at once: the second goes to the ring.
    for _ in 0..2 {
        let frame = Bytes::from_static(&[0x82, 0x01, 0x07]);
        assert_eq!(d.with(|c, ctx| c.push_frame(frame, ctx)), Push::Queued);
    }
    assert_eq!(d.take_out(), [0x82, 0x01, 0x07, 0x82, 0x01, 0x07]);
    assert!(
        d.conn.out.capacity() > 0,
        "a busy connection keeps its ring"
    );
    d.advance(Duration::from_secs(25), &mut app);
    assert_eq!(d.take_out(), vec![0x89, 0x00], "ping");
    assert_eq!(d.conn.out.capacity(), 0, "given back at the tick");
}
