//! Echo over real sockets with the tungstenite client: text, binary,
//! fragmented, large, ping/pong, the close handshake, protocol errors.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;

#[test]
fn echoes_text_and_binary() {
    let server = start(config(1));
    let mut ws = connect(&server, "/echo");
    ws.send(Message::text("hello wsedge")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello wsedge"));
    ws.send(Message::binary(vec![0u8, 1, 2, 255])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![0u8, 1, 2, 255]));
    ws.send(Message::text("")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(""));
    ws.close(None).unwrap();
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn echoes_large_messages() {
    let server = start(config(1));
    let mut ws = connect(&server, "/echo");
    let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(big));
    let text = "ü".repeat(600_000); // 1.2 MB of 2-byte code points
    ws.send(Message::text(text.clone())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text(text));
}

#[test]
fn reassembles_fragments_with_interleaved_ping() {
    let server = start(config(1));
    let mut s = raw_upgraded(server.local_addr());
    let mut wire = client_frame(false, 0x1, "frag".as_bytes());
    wire.extend(client_frame(true, 0x9, b"p!"));
    wire.extend(client_frame(false, 0x0, "mé".as_bytes()));
    wire.extend(client_frame(true, 0x0, "nted".as_bytes()));
    // Send byte by byte: every split point inside headers and code points.
    for b in &wire {
        s.write_all(std::slice::from_ref(b)).unwrap();
    }
    let mut ws =
        tungstenite::WebSocket::from_raw_socket(s, tungstenite::protocol::Role::Client, None);
    // tungstenite answers our ping... we read the server's pong first.
    assert_eq!(ws.read().unwrap(), Message::Pong(b"p!".to_vec().into()));
    assert_eq!(ws.read().unwrap(), Message::text("fragménted"));
}

#[test]
fn close_handshake_echoes_code_then_closes_tcp() {
    let server = start(config(1));
    let mut ws = connect(&server, "/echo");
    ws.close(Some(tungstenite::protocol::CloseFrame {
        code: CloseCode::Library(4001),
        reason: "bye".into(),
    }))
    .unwrap();
    match ws.read() {
        Ok(Message::Close(Some(f))) => assert_eq!(f.code, CloseCode::Library(4001)),
        other => panic!("expected close echo, got {other:?}"),
    }
    // Then the server closes TCP.
    assert!(matches!(
        ws.read(),
        Err(tungstenite::Error::ConnectionClosed)
    ));
    assert!(wait_until(Duration::from_secs(5), || server.stats().open == 0));
    assert_eq!(server.stats().ended(wsedge::conn::EndReason::PeerClose), 1);
}

fn close_code_for(wire: &[u8]) -> u16 {
    let mut cfg = config(1);
    // This raw client never answers the close; don't wait long for it.
    cfg.conn.close_timeout = Duration::from_millis(200);
    let server = start(cfg);
    let mut s = raw_upgraded(server.local_addr());
    s.write_all(wire).unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(5));
    assert!(got.len() >= 4, "expected a close frame, got {got:?}");
    assert_eq!(got[0], 0x88, "close opcode, FIN, not masked");
    u16::from_be_bytes([got[2], got[3]])
}

#[test]
fn protocol_errors_get_their_close_codes() {
    // Reserved bit.
    assert_eq!(close_code_for(&[0xc1, 0x80, 0, 0, 0, 0]), 1002);
    // Unmasked client frame.
    assert_eq!(close_code_for(&[0x81, 0x02, b'h', b'i']), 1002);
    // Invalid UTF-8.
    assert_eq!(
        close_code_for(&client_frame(true, 0x1, &[0xff, 0xfe])),
        1007
    );
    // Continuation with nothing to continue.
    assert_eq!(close_code_for(&client_frame(true, 0x0, b"x")), 1002);
    // Invalid close code.
    assert_eq!(
        close_code_for(&client_frame(true, 0x8, &[0x03, 0xed])),
        1002
    );
}

#[test]
fn oversized_message_gets_1009() {
    let mut cfg = config(1);
    cfg.conn.max_message_size = 1000;
    cfg.conn.close_timeout = Duration::from_millis(200);
    let server = start(cfg);
    let mut s = raw_upgraded(server.local_addr());
    let mut wire = client_frame(false, 0x2, &[0u8; 600]);
    wire.extend(client_frame(true, 0x0, &[0u8; 600]));
    s.write_all(&wire).unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(5));
    assert_eq!(&got[..4], &[0x88, 0x02, 0x03, 0xf1]);
    assert!(wait_until(Duration::from_secs(5), || {
        server.stats().ended(wsedge::conn::EndReason::TooLarge) == 1
    }));
}

#[test]
fn many_messages_pipelined_arrive_in_order() {
    let server = start(config(1));
    let mut ws = connect(&server, "/echo");
    for i in 0..2000 {
        ws.write(Message::text(format!("m{i}"))).unwrap();
    }
    ws.flush().unwrap();
    for i in 0..2000 {
        assert_eq!(ws.read().unwrap(), Message::text(format!("m{i}")));
    }
    // Counters are published once per loop turn: wait for the last one.
    assert!(wait_until(Duration::from_secs(5), || {
        let stats = server.stats();
        stats.messages_in == 2000 && stats.messages_out == 2000
    }));
}

#[test]
fn message_before_a_protocol_error_is_echoed_before_the_close() {
    // Autobahn 3.2 / 4.1.3: one write carries a good message, then a frame
    // with RSV bits; the echo must go out before the 1002 close.
    let mut cfg = config(1);
    cfg.conn.close_timeout = Duration::from_millis(200);
    let server = start(cfg);
    let mut s = raw_upgraded(server.local_addr());
    let mut wire = client_frame(true, 0x1, b"first");
    wire.extend([0xc1, 0x80, 0, 0, 0, 0]);
    s.write_all(&wire).unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(5));
    assert_eq!(&got[..7], b"\x81\x05first");
    assert_eq!(&got[7..11], &[0x88, 0x02, 0x03, 0xea]);
}

#[test]
fn invalid_close_from_peer_is_answered_and_tcp_closed_at_once() {
    // Autobahn 7.9.*: the peer already sent its close, so the server must
    // not wait for another one.
    let server = start(config(1));
    let mut s = raw_upgraded(server.local_addr());
    s.write_all(&client_frame(true, 0x8, &[0x03, 0xed]))
        .unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(5));
    assert_eq!(got, vec![0x88, 0x02, 0x03, 0xea]);
    assert!(wait_until(Duration::from_secs(1), || server.stats().open == 0));
}

/// What the writer thread of the back-pressure test reports.
#[derive(Debug, PartialEq)]
enum Writer {
    /// A write made no progress for [`WRITE_STALL`]: the socket's send
    /// buffer is full and stays full, so the server is not reading.
    Blocked,
    /// Every frame was written.
    Finished,
}

/// How long one write may make no progress before the writer reports
/// [`Writer::Blocked`]. This only says *when* to look at the server's
/// counts; the outcome is decided by the counts (see the test).
const WRITE_STALL: Duration = Duration::from_millis(500);

#[test]
fn client_that_does_not_read_is_paused_by_back_pressure_and_loses_nothing() {
    use std::io::{ErrorKind, Read};
    use std::sync::mpsc;
    const WRITE_BUDGET: usize = 64 * 1024;
    const FRAMES: usize = 4096; // 64 MiB, far more than the socket buffers hold
    const PAYLOAD: usize = 16 * 1024;
    let mut cfg = config(1);
    cfg.conn.write_budget = WRITE_BUDGET;
    let server = start(cfg);
    let s = raw_upgraded(server.local_addr());
    let frame = client_frame(true, 0x2, &[7u8; PAYLOAD]);
    let total = (FRAMES * frame.len()) as u64;
    let before = server.stats();

    // The writer writes every frame, byte-exact across partial writes, and
    // says so the first time a write makes no progress for WRITE_STALL.
    // Bounded: it gives up after 60 stalls in a row (30 s with no
    // progress at all), and stops on any other error.
    let mut writer = s.try_clone().unwrap();
    writer.set_write_timeout(Some(WRITE_STALL)).unwrap();
    let (tx, events) = mpsc::channel();
    let wrote = std::thread::spawn(move || {
        let mut told = false;
        for _ in 0..FRAMES {
            let mut off = 0;
            let mut stalls = 0;
            while off < frame.len() {
                match writer.write(&frame[off..]) {
                    Ok(0) => return Err("write returned 0".to_string()),
                    Ok(n) => {
                        off += n;
                        stalls = 0;
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                        if !told {
                            told = true;
                            let _ = tx.send(Writer::Blocked);
                        }
                        stalls += 1;
                        if stalls >= 60 {
                            return Err("no write progress for 30 s".to_string());
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("write failed: {e}")),
                }
            }
        }
        let _ = tx.send(Writer::Finished);
        Ok(())
    });

    // The client reads nothing. Wait for the writer to block (the server
    // stopped reading) or finish (the server read everything).
    let event = events
        .recv_timeout(Duration::from_secs(30))
        .expect("the writer neither blocked nor finished");
    let stats = server.stats();
    let read = stats.bytes_in - before.bytes_in;
    // What the server read but could not send yet: it may hold at most its
    // write budget plus what one read (64 KiB) adds, plus a partial frame.
    // Without back-pressure it would take in everything and queue it all.
    let held = stats.bytes_in.saturating_sub(stats.bytes_out);
    assert_eq!(
        event,
        Writer::Blocked,
        "the server read all {total} bytes from a client that reads nothing ({read} read)"
    );
    assert!(read < total / 2, "paused at {read} of {total} bytes");
    assert!(
        held <= (WRITE_BUDGET + 256 * 1024) as u64,
        "the server holds {held} bytes read but not sent: reading did not pause at the write budget"
    );

    // Now read: everything is echoed, in full and intact.
    let mut r = s;
    r.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let echo_len = PAYLOAD + 4; // 0x82, 126, 16-bit length, payload
    let expect = FRAMES * echo_len;
    let mut got = 0usize;
    let mut buf = vec![0u8; 256 * 1024];
    while got < expect {
        let n = r.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed after {got} bytes");
        for (i, &b) in buf[..n].iter().enumerate() {
            let want = match (got + i) % echo_len {
                0 => 0x82,
                1 => 126,
                2 => (PAYLOAD >> 8) as u8,
                3 => PAYLOAD as u8,
                _ => 7,
            };
            assert_eq!(b, want, "byte {} of the echoes", got + i);
        }
        got += n;
    }
    assert_eq!(got, expect);
    wrote.join().unwrap().unwrap();
    // Counters are published once per loop turn: wait for the last one.
    assert!(wait_until(Duration::from_secs(5), || {
        let stats = server.stats();
        stats.messages_in == FRAMES as u64 && stats.messages_out == FRAMES as u64
    }));
}

#[test]
fn oversized_frame_gets_1009_from_its_header_alone() {
    let mut cfg = config(1);
    cfg.conn.max_frame_size = 1000;
    cfg.conn.close_timeout = Duration::from_millis(200);
    let server = start(cfg);
    let mut s = raw_upgraded(server.local_addr());
    // Only the header of a 2000-byte frame: refused before any payload.
    s.write_all(&client_frame(true, 0x2, &[0u8; 2000])[..8])
        .unwrap();
    let got = read_to_close(&mut s, Duration::from_secs(5));
    assert_eq!(&got[..4], &[0x88, 0x02, 0x03, 0xf1]);
}
