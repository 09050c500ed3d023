//! The binary: `wsedge serve` on SIGTERM stops accepting, sends 1001 to
//! every connection, drains and exits 0.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

#[test]
fn sigterm_sends_1001_and_exits_zero() {
    // Pick a free port, then let the binary bind it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsedge"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--cores",
            "2",
            "--admin",
            "127.0.0.1:0",
            "--max-attempts-per-ip",
            "0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("listening") {
        line.clear();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "server exited early"
        );
    }
    let url = format!("ws://127.0.0.1:{port}/echo");
    let (mut ws, _) = tungstenite::connect(&url).unwrap();
    ws.send(tungstenite::Message::text("before")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("before"));

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    match ws.read() {
        Ok(tungstenite::Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected 1001, got {other:?}"),
    }
    // Answer the close; the server then exits on its own.
    let _ = ws.flush();
    let exit = wait_for_exit(&mut child, Duration::from_secs(10));
    assert_eq!(exit, Some(0));
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
    assert!(
        rest.contains("stopped; stats"),
        "final counts logged: {rest}"
    );
    assert!(
        !rest.contains("before"),
        "message contents are never logged"
    );
    // The port no longer accepts.
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

fn wait_for_exit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let mut code = None;
    wait_until(limit, || match child.try_wait() {
        Ok(Some(s)) => {
            code = s.code();
            true
        }
        _ => false,
    });
    if code.is_none() {
        let _ = child.kill();
    }
    code
}
