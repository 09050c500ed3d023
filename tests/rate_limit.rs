//! Per-connection rate limits over real sockets: back-pressure really
//! pauses reading and loses nothing; the close policy sends 1008; a flood
//! from one client does not starve another on the same core, and the
//! server's memory stays bounded.

mod common;

use std::io::Write;
use std::time::Duration;

use common::*;
use tungstenite::Message;
use wsedge::config::{RateLimitConfig, RatePolicy};
use wsedge::conn::EndReason;

fn limited(policy: RatePolicy, msgs_per_sec: f64) -> wsedge::Config {
    let mut cfg = config(1);
    cfg.rate_limit = RateLimitConfig {
        messages_per_sec: msgs_per_sec,
        messages_burst: 10.0,
        bytes_per_sec: 1e9,
        bytes_burst: 1e9,
        policy,
    };
    cfg
}

#[test]
fn backpressure_pauses_reading_and_loses_nothing() {
    // A burst of 10, then 50 a second: the 90 messages beyond the burst
    // take the server 1.8 s to read, by construction of the token bucket.
    const MESSAGES: u64 = 100;
    let server = start(limited(RatePolicy::Backpressure, 50.0));
    let mut ws = connect(&server, "/echo");
    // All of them in one write: without the pause the server reads and
    // handles every one in the loop turn that also counts the first
    // throttle.
    for i in 0..MESSAGES {
        ws.write(Message::text(format!("m{i}"))).unwrap();
    }
    ws.flush().unwrap();
    // The event: the server throttled this connection. Counters are
    // published together once per loop turn, so at that moment (give or
    // take the few messages the bucket lets through while we poll, one per
    // 20 ms) the server has handled the burst and little more. Had reading
    // not paused, every message would be counted already.
    let mut at_throttle = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let stats = server.stats();
            let throttled = stats.throttled_msgs > 0;
            if throttled {
                at_throttle = Some(stats.messages_in);
            }
            throttled
        }),
        "the rate limit never throttled {MESSAGES} messages in one burst"
    );
    let read_by_then = at_throttle.unwrap();
    assert!(
        read_by_then < MESSAGES,
        "reading did not pause: all {read_by_then} messages read when the limit first throttled"
    );
    // Nothing is lost or closed: every echo arrives, in order.
    for i in 0..MESSAGES {
        assert_eq!(ws.read().unwrap(), Message::text(format!("m{i}")));
    }
    // Counters are published once per loop turn: wait for the last one.
    assert!(wait_until(Duration::from_secs(5), || {
        let stats = server.stats();
        stats.messages_in == MESSAGES && stats.messages_out == MESSAGES
    }));
    let stats = server.stats();
    assert_eq!(stats.ended(EndReason::RateLimited), 0);
    assert!(stats.throttled_msgs > 0);
}

#[test]
fn close_policy_sends_1008() {
    let server = start(limited(RatePolicy::Close, 100.0));
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

/// The server's counts from its admin API (`GET /api/stats`, `total`).
fn admin_stats(admin: std::net::SocketAddr) -> serde_json::Value {
    let (status, body) = http(admin, "GET", "/api/stats", None);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["total"].clone()
}

fn count(v: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(v, |v, k| &v[*k])
        .as_u64()
        .unwrap_or_else(|| panic!("no {path:?} in {v}"))
}

/// Kills the server process if the test fails before terminating it.
struct Running(Option<ServerProcess>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut s) = self.0.take() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }
}

#[test]
fn flood_from_one_client_does_not_starve_another_on_the_same_core() {
    /// The flooder's frames: 64 MiB, 16 s of input at the byte rate below
    /// even if back-pressure never paused it, so the flood is still going
    /// when the round trips end (the test checks that it is).
    const FLOOD_FRAMES: usize = 1024;
    const FLOOD_PAYLOAD: usize = 64 * 1024;
    /// The byte bucket's burst, and how much of the flood the server has
    /// read when the test calls the flood under way: past the burst (so
    /// the flooder is being throttled) and below the write budget (1 MiB),
    /// which back-pressure cannot pause reading before, however little
    /// the socket buffers take.
    const BYTES_BURST: &str = "250000";
    const UNDER_WAY: u64 = 512 * 1024;
    /// The well-behaved client's echo round trips during the flood.
    const ROUND_TRIPS: usize = 50;
    let mut server = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--admin",
        "127.0.0.1:0",
        "--max-attempts-per-ip",
        "0",
        "--rate-msgs",
        "2000",
        "--rate-bytes",
        "4000000",
        "--rate-bytes-burst",
        BYTES_BURST,
    ]);
    let addr = server.addr("addr");
    let admin = server.addr("admin");
    let pid = server.child.id();
    server.drain_log();
    let server = Running(Some(server));

    // The flooder: a fixed number of 64 KiB binary messages, as fast as
    // the socket takes them, never reading its echoes. Blocking writes
    // with a generous timeout (the server pauses it, so writes wait for
    // room); it stops at the first error, e.g. when the test shuts its
    // socket down at the end. Returns the frames fully written.
    let flood_socket = raw_upgraded(addr);
    let mut s = flood_socket.try_clone().unwrap();
    let flooder = std::thread::spawn(move || {
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let frame = client_frame(true, 0x2, &vec![0x5a; FLOOD_PAYLOAD]);
        let mut sent = 0usize;
        while sent < FLOOD_FRAMES && s.write_all(&frame).is_ok() {
            sent += 1;
        }
        sent
    });
    let flood_bytes = (FLOOD_FRAMES * (FLOOD_PAYLOAD + 14)) as u64;

    // The flood is under way: the server has read more of it than the
    // burst. (Counted as it is read, unlike the throttle counters, which
    // the core publishes at the end of each loop turn: a core stuck on the
    // flooder would never show them.)
    assert!(
        wait_until(Duration::from_secs(10), || {
            count(&admin_stats(admin), &["bytes_in"]) >= UNDER_WAY
        }),
        "the server never read {UNDER_WAY} bytes of the flood"
    );

    // Meanwhile the well-behaved client on the same core gets every echo
    // (the upgrade and each echo bounded by a generous read timeout).
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let (mut ws, _) =
        tungstenite::client(format!("ws://{addr}/echo"), stream).expect("upgrade during the flood");
    for i in 0..ROUND_TRIPS {
        let msg = Message::text(format!("ping me {i}"));
        ws.send(msg.clone()).unwrap();
        assert_eq!(
            ws.read().expect("echo during the flood"),
            msg,
            "echo {i} during the flood"
        );
    }

    // The rate limit did throttle the flooder (it read past the burst).
    assert!(
        wait_until(Duration::from_secs(10), || {
            count(&admin_stats(admin), &["throttled", "bytes"]) > 0
        }),
        "the rate limit never throttled the flooder"
    );
    // ...and all of that happened during the flood: the server has not
    // read all of the flooder's input, and the flooder is still writing.
    let stats = admin_stats(admin);
    let flood_read = count(&stats, &["bytes_in"]);
    assert!(
        flood_read < flood_bytes && !flooder.is_finished(),
        "the flood ended before the round trips did ({flood_read} of {flood_bytes} bytes read)"
    );
    // A memory bound, not a speed one.
    let rss = rss_kib(pid);
    assert!(
        rss < RSS_BOUND_MIB * 1024,
        "server RSS {rss} KiB during the flood exceeds {RSS_BOUND_MIB} MiB"
    );
    assert_eq!(count(&stats, &["ended", "rate_limited"]), 0);

    // End the flood (the flooder's blocked write fails) and the client,
    // so the shutdown has nothing to drain. Closing a socket with unread
    // echoes in it resets the connection.
    flood_socket.shutdown(std::net::Shutdown::Both).unwrap();
    let sent = flooder.join().unwrap();
    assert!(sent < FLOOD_FRAMES, "the flooder wrote everything: {sent}");
    drop(flood_socket);
    drop(ws);
    let mut server = server;
    server.0.take().unwrap().terminate();
}
