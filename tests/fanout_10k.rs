//! Fan-out to 10 000 subscribers over loopback: every subscriber receives
//! every message, in order. The server runs as its own process (the
//! binary, two cores) so server and clients each stay within the file
//! descriptor limit. The test raises its open-files limit to the hard
//! limit (the server inherits it); where that is still below 10 200 it
//! uses `limit - 200` subscribers and prints how many; client sockets are spread over several 127.0.0.x
//! source addresses so repeated runs do not run out of ephemeral ports.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use wsedge::protocol::{FrameDecoder, OpCode, Role};

const SUBSCRIBERS: usize = 10_000;
/// Descriptors kept free in each process beside the subscriber sockets
/// (listeners, pipes, the admin plane, stdio).
const FD_MARGIN: u64 = 200;

/// How many subscribers this machine's open-files limit allows.
fn subscribers() -> usize {
    let limit = rlimit::increase_nofile_limit(u64::MAX).expect("getrlimit");
    let n = SUBSCRIBERS.min(limit.saturating_sub(FD_MARGIN) as usize);
    assert!(
        n >= 100,
        "open-files limit {limit} leaves room for {n} subscribers"
    );
    if n < SUBSCRIBERS {
        let _ = writeln!(
            std::io::stderr(),
            "fanout_10k: open-files limit {limit}: {n} subscribers instead of {SUBSCRIBERS}"
        );
    }
    n
}
const MESSAGES: usize = 5;

fn connect_from(src_octet: u32, addr: SocketAddr) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let src = SocketAddr::from(([127, 0, 0, src_octet as u8], 0));
    sock.bind(&src.into()).unwrap();
    sock.connect(&addr.into()).unwrap();
    sock.into()
}

#[test]
fn ten_thousand_subscribers_each_receive_every_message() {
    let subscribers = subscribers();
    let mut server = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "2",
        "--admin",
        "127.0.0.1:0",
        "--max-attempts-per-ip",
        "0",
    ]);
    let addr = server.addr("addr");
    let admin = server.addr("admin");
    server.drain_log();

    let base = 20 + std::process::id() % 100;
    let request = UPGRADE.replace("/echo", "/ws");
    let subscribe = client_frame(true, 0x1, br#"{"type":"subscribe","channel":"fan"}"#);
    let started = Instant::now();
    let mut socks: Vec<TcpStream> = (0..subscribers)
        .map(|i| {
            let mut s = connect_from(base + (i / 5000) as u32, addr);
            s.write_all(request.as_bytes()).unwrap();
            s.write_all(&subscribe).unwrap();
            s
        })
        .collect();
    // Wait for every upgrade and subscription to land.
    let subscribed = wait_until(Duration::from_secs(60), || {
        let (_, body) = http(admin, "GET", "/api/channels/fan", None);
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["subscribers"] == subscribers
    });
    assert!(subscribed, "all subscribed after {:?}", started.elapsed());
    for i in 0..MESSAGES {
        let (status, _) = http(
            admin,
            "POST",
            "/api/channels/fan/publish",
            Some(&format!(r#"{{"n":{i}}}"#)),
        );
        assert_eq!(status, 200);
    }
    let mut buf = vec![0u8; 4096];
    for (i, s) in socks.iter_mut().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut pending = BytesMut::new();
        // The 101 head first.
        let head_end = loop {
            if let Some(p) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "subscriber {i} closed early");
            pending.extend_from_slice(&buf[..n]);
        };
        assert!(pending.starts_with(b"HTTP/1.1 101"));
        let _ = pending.split_to(head_end);
        let mut dec = FrameDecoder::new(Role::Client);
        let mut got = 0;
        while got < MESSAGES {
            match dec.decode(&mut pending, 1 << 20).unwrap() {
                Some(f) => {
                    assert_eq!(f.opcode, OpCode::Text);
                    let expected =
                        format!(r#"{{"type":"message","channel":"fan","data":{{"n":{got}}}}}"#);
                    assert_eq!(&f.payload[..], expected.as_bytes(), "subscriber {i}");
                    got += 1;
                }
                None => {
                    let n = s.read(&mut buf).unwrap();
                    assert!(n > 0, "subscriber {i} closed after {got} messages");
                    pending.extend_from_slice(&buf[..n]);
                }
            }
        }
    }
    let (_, body) = http(admin, "GET", "/api/stats", None);
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(stats["total"]["deliveries"], subscribers * MESSAGES);
    drop(socks);
    assert_eq!(server.terminate(), Some(0));
}
