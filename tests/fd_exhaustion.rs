//! Out of file descriptors: the server keeps running, counts the failed
//! accepts, and serves the waiting connections as soon as descriptors free
//! up (the listener is edge-triggered, so this needs an explicit retry).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Sends the upgrade and returns the socket with a short read timeout.
fn start_upgrade(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(UPGRADE.as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    s
}

/// True once the 101 head has arrived on `s` (polls until `limit`).
fn upgraded_within(s: &mut TcpStream, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < until {
        match s.read(&mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                head.extend_from_slice(&buf[..n]);
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    return head.starts_with(b"HTTP/1.1 101");
                }
            }
            Err(_) => {}
        }
    }
    false
}

#[test]
fn waiting_connections_are_served_once_descriptors_free_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = env!("CARGO_BIN_EXE_wsedge");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 48 && exec {bin} serve --listen 127.0.0.1:{port} --cores 1 --admin off --max-attempts-per-ip 0 --stats-interval 1s"
        ))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited early"
        );
    }
    // More connections than the server has descriptors for.
    let mut socks: Vec<TcpStream> = (0..60).map(|_| start_upgrade(port)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let served: Vec<bool> = socks
        .iter_mut()
        .map(|s| upgraded_within(s, Duration::from_millis(20)))
        .collect();
    let first = served.iter().filter(|&&b| b).count();
    assert!(
        first > 0 && first < 60,
        "some but not all served at first: {first}"
    );
    // Free descriptors by closing the served ones; the rest must now be
    // accepted and upgraded without any new connection arriving.
    let mut waiting: Vec<TcpStream> = socks
        .drain(..)
        .zip(served)
        .filter_map(|(s, ok)| (!ok).then_some(s))
        .collect();
    let later = waiting
        .iter_mut()
        .filter_map(|s| upgraded_within(s, Duration::from_secs(3)).then_some(()))
        .count();
    assert_eq!(later, waiting.len(), "every waiting connection served");
    // The failures were counted in the stats log line.
    let mut saw_errors = false;
    let until = Instant::now() + Duration::from_secs(5);
    while !saw_errors && Instant::now() < until {
        line.clear();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        saw_errors = line.contains("accept_errors=") && !line.contains("accept_errors=0");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    assert!(saw_errors, "accept errors counted");
}
