//! Per-connection rate limits over real sockets: back-pressure really
//! pauses reading and loses nothing; the close policy sends 1008; a flood
//! from one client does not starve another on the same core, and the
//! server's memory stays bounded.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::*;
use tungstenite::Message;
use wsedge::config::{RateLimit, RatePolicy};
use wsedge::conn::EndReason;

fn limited(policy: RatePolicy) -> wsedge::Config {
    let mut cfg = config(1);
    cfg.conn.rate_limit = Some(RateLimit {
        msgs_per_sec: 100.0,
        msgs_burst: 10.0,
        bytes_per_sec: 1e9,
        bytes_burst: 1e9,
        policy,
    });
    cfg
}

#[test]
fn backpressure_pauses_reading_and_loses_nothing() {
    let server = start(limited(RatePolicy::Backpressure));
    let mut ws = connect(&server, "/echo");
    let started = Instant::now();
    for i in 0..100 {
        ws.write(Message::text(format!("m{i}"))).unwrap();
    }
    ws.flush().unwrap();
    // Without the limit all 100 are read within milliseconds; with 10 +
    // 100/s the server has read far fewer by now.
    std::thread::sleep(Duration::from_millis(300));
    let read_by_then = server.stats().messages_in;
    assert!(
        read_by_then < 80,
        "reading paused: {read_by_then} read after 300 ms"
    );
    assert!(server.stats().throttled_msgs > 0);
    for i in 0..100 {
        assert_eq!(ws.read().unwrap(), Message::text(format!("m{i}")));
    }
    // 90 messages beyond the burst at 100/s take at least ~0.9 s.
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert_eq!(server.stats().ended(EndReason::RateLimited), 0);
}

#[test]
fn close_policy_sends_1008() {
    let server = start(limited(RatePolicy::Close));
    let mut ws = connect(&server, "/echo");
    for i in 0..50 {
        if ws.send(Message::text(format!("m{i}"))).is_err() {
            break;
        }
    }
    let code = loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => break u16::from(f.code),
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(code, 1008);
    assert!(wait_until(Duration::from_secs(5), || {
        server.stats().ended(EndReason::RateLimited) == 1
    }));
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Documented in README.md: a flooding client costs the server at most
/// its write budget plus socket buffers; the whole process stays under
/// this many MiB here.
const RSS_BOUND_MIB: u64 = 64;

#[test]
fn flood_from_one_client_does_not_starve_another_on_the_same_core() {
    let mut server = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--admin",
        "off",
        "--max-attempts-per-ip",
        "0",
        "--rate-msgs",
        "2000",
        "--rate-bytes",
        "4000000",
    ]);
    let addr = server.addr("addr");
    server.drain_log();

    // The flooder: 64 KiB binary messages as fast as the socket takes
    // them for 3 s, never reading its echoes.
    let flooder = std::thread::spawn(move || {
        let mut s = raw_upgraded(addr);
        s.set_write_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let frame = client_frame(true, 0x2, &vec![0x5a; 64 * 1024]);
        let until = Instant::now() + Duration::from_secs(3);
        let mut sent = 0u64;
        while Instant::now() < until {
            if s.write_all(&frame).is_ok() {
                sent += 1;
            }
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(200));
    // The well-behaved client keeps getting its echoes meanwhile.
    let (mut ws, _) = tungstenite::connect(format!("ws://{addr}/echo")).unwrap();
    let mut round_trips = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        ws.send(Message::text("ping me")).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text("ping me"));
        round_trips += 1;
    }
    assert!(
        round_trips > 20,
        "only {round_trips} echoes during the flood"
    );
    let rss = rss_kib(server.child.id());
    let sent = flooder.join().unwrap();
    assert!(sent > 0);
    assert!(
        rss < RSS_BOUND_MIB * 1024,
        "server RSS {rss} KiB during the flood exceeds {RSS_BOUND_MIB} MiB"
    );
    server.terminate();
}
