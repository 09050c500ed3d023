//! An upgrade admission leaves pending, over real sockets: it waits on its
//! core (no answer, its socket not read, its handshake deadline running)
//! while the other connections of that core keep echoing, then the
//! decision arrives through the core's inbox — `101` and a working
//! connection, or the refusal's status — or the deadline answers `504`,
//! counted. Pending comes from admission's test seam (feature `testing`):
//! here, every upgrade to `/echo?pending`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use crossbeam_channel::Receiver;
use wsedge::admission::{DeferHook, Refusal, Ticket, Verdict};
use wsedge::conn::EndReason;
use wsedge::error::Rejection;
use wsedge::inbox::Command;
use wsedge::{Config, Server};

/// A server whose admission defers every upgrade whose query is
/// `pending`, handing its ticket over.
fn deferring(cfg: Config) -> (Server, Receiver<Ticket>) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let hook = DeferHook(Arc::new(move |req, _route, ticket| {
        let defer = req.query() == Some("pending");
        if defer {
            tx.send(ticket).unwrap();
        }
        defer
    }));
    let server = Server::start_deferring(cfg, hook).expect("server starts");
    (server, rx)
}

/// Sends the upgrade to `/echo?pending` (and `early`, bytes a client
/// should not send before the 101) and waits for its ticket.
fn pending_upgrade(
    server: &Server,
    tickets: &Receiver<Ticket>,
    early: &[u8],
) -> (TcpStream, Ticket) {
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    let mut req = UPGRADE.replace("/echo", "/echo?pending").into_bytes();
    req.extend_from_slice(early);
    s.write_all(&req).unwrap();
    let ticket = tickets
        .recv_timeout(Duration::from_secs(5))
        .expect("admission deferred the upgrade");
    (s, ticket)
}

fn decide(server: &Server, t: Ticket, verdict: Verdict) {
    server.cores()[t.core]
        .try_send(Command::AdmissionDecision {
            key: t.key,
            gen: t.gen,
            verdict,
        })
        .expect("room in the inbox");
}

/// Nothing arrives on `s` within `d`.
fn silent_for(s: &mut TcpStream, d: Duration) -> bool {
    s.set_read_timeout(Some(d)).unwrap();
    let mut buf = [0u8; 64];
    matches!(s.read(&mut buf), Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut))
}

/// Reads one response head (up to the blank line).
fn read_head(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Reads an unmasked server frame with a short payload.
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    assert!(h[1] < 126, "short frames only");
    let mut payload = vec![0u8; usize::from(h[1])];
    s.read_exact(&mut payload).unwrap();
    (h[0], payload)
}

/// `n` round trips of an echo client (each must come back).
fn echo_round_trips(ws: &mut Client, n: usize) {
    for i in 0..n {
        let m = format!("m{i}");
        ws.send(tungstenite::Message::text(m.clone())).unwrap();
        assert_eq!(ws.read().unwrap(), tungstenite::Message::text(m));
    }
}

#[test]
fn a_pending_upgrade_waits_while_its_core_serves_others_then_opens() {
    let (server, tickets) = deferring(config(1));
    let mut other = connect(&server, "/echo");
    let early = client_frame(true, 0x1, b"early");
    let (mut s, ticket) = pending_upgrade(&server, &tickets, &early);

    // Undecided: no answer, and the one core keeps echoing for the other.
    echo_round_trips(&mut other, 20);
    assert!(
        silent_for(&mut s, Duration::from_millis(300)),
        "no answer yet"
    );
    let stats = server.stats();
    assert_eq!((stats.open, stats.upgraded), (2, 1));

    decide(&server, ticket, Verdict::Accept(None));
    let head = read_head(&mut s);
    assert!(
        head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{head}"
    );
    // The frame sent before the 101 was kept, then echoed.
    assert_eq!(read_frame(&mut s), (0x81, b"early".to_vec()));
    s.write_all(&client_frame(true, 0x2, b"after")).unwrap();
    assert_eq!(read_frame(&mut s), (0x82, b"after".to_vec()));
    echo_round_trips(&mut other, 2);
    assert_eq!(server.stats().upgraded, 2);

    // A second answer for the same ticket finds nothing to answer.
    decide(&server, ticket, Verdict::Refuse(Refusal::ServerFull));
    s.write_all(&client_frame(true, 0x1, b"still")).unwrap();
    assert_eq!(read_frame(&mut s), (0x81, b"still".to_vec()));
    assert_eq!(server.stats().handshake_failures(Refusal::ServerFull), 0);
}

#[test]
fn a_pending_upgrade_answers_504_at_its_deadline_and_gives_its_slot_back() {
    let mut cfg = config(1);
    cfg.conn.handshake_timeout = Duration::from_millis(500);
    // Two slots: the echo client and the pending upgrade hold them.
    cfg.admission.max_connections = 2;
    let (server, tickets) = deferring(cfg);
    let mut other = connect(&server, "/echo");
    let (mut s, ticket) = pending_upgrade(&server, &tickets, b"");
    let (status, _) = {
        let resp = raw_exchange(
            server.local_addr(),
            UPGRADE.as_bytes(),
            Duration::from_secs(5),
        );
        (status_of(&resp), resp)
    };
    assert_eq!(status, 503, "the pending upgrade holds its quota slot");
    echo_round_trips(&mut other, 5);

    let resp = read_to_close(&mut s, Duration::from_secs(5));
    let text = String::from_utf8_lossy(&resp);
    assert_eq!(status_of(&resp), 504, "{text}");
    assert!(
        text.ends_with("\r\n\r\nno decision on the upgrade in time\n"),
        "{text}"
    );
    assert!(wait_until(Duration::from_secs(5), || server.stats().open == 1));
    let stats = server.stats();
    assert_eq!(stats.handshake_failures(Rejection::DecisionTimeout), 1);
    assert_eq!(stats.ended(EndReason::HandshakeTimeout), 1);
    assert_eq!(stats.upgraded, 1);

    // Too late: the answer finds nothing; the slot came back.
    decide(&server, ticket, Verdict::Accept(None));
    echo_round_trips(&mut other, 2);
    connect(&server, "/echo");
}

#[test]
fn a_late_refusal_answers_its_status_and_is_counted() {
    let (server, tickets) = deferring(config(1));
    let (mut s, ticket) = pending_upgrade(&server, &tickets, b"");
    decide(&server, ticket, Verdict::Refuse(Refusal::OriginForbidden));
    let resp = read_to_close(&mut s, Duration::from_secs(5));
    assert_eq!(status_of(&resp), 403);
    assert!(wait_until(Duration::from_secs(5), || server.stats().open == 0));
    let stats = server.stats();
    assert_eq!(stats.handshake_failures(Refusal::OriginForbidden), 1);
    assert_eq!(stats.ended(EndReason::HandshakeFailed), 1);
}
