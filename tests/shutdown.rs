//! The binary: `wsedge serve` on SIGTERM stops accepting, sends 1001 to
//! every connection, drains and exits 0.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn sigterm_sends_1001_and_exits_zero() {
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
    let port = server.addr("addr").port();
    let url = format!("ws://127.0.0.1:{port}/echo");
    let (mut ws, _) = tungstenite::connect(&url).unwrap();
    ws.send(tungstenite::Message::text("before")).unwrap();
    assert_eq!(ws.read().unwrap(), tungstenite::Message::text("before"));

    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    match ws.read() {
        Ok(tungstenite::Message::Close(Some(f))) => assert_eq!(u16::from(f.code), 1001),
        other => panic!("expected 1001, got {other:?}"),
    }
    // Answer the close; the server then exits on its own.
    let _ = ws.flush();
    let exit = wait_for_exit(&mut server.child, Duration::from_secs(10));
    assert_eq!(exit, Some(0));
    let mut rest = String::new();
    let mut stderr = server.stderr.take().expect("log not drained");
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
