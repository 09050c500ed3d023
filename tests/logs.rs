//! The binary's logs in JSON format at debug level: one parsable object
//! per line, a line per connection opened and ended with its id and
//! reason, a rate-limited refusal warning, and never a token or a
//! message's contents.

mod common;

use std::io::Read;
use std::net::SocketAddr;

use common::*;
use serde_json::Value;
use tungstenite::Message;

#[test]
fn json_debug_logs_have_lifecycle_lines_and_no_secrets() {
    let key = "log-test-key";
    let mut server = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "off",
        "--cores",
        "1",
        "--token-key",
        key,
        "--max-attempts-per-ip",
        "0",
        "--log-format",
        "json",
        "--log-level",
        "wsedge=debug",
        "--drain-window",
        "0s",
    ]);
    let first: Value = serde_json::from_str(&server.line).expect("the listening line is JSON");
    let addr: SocketAddr = first["addr"].as_str().unwrap().parse().unwrap();

    let token = std::process::Command::new(env!("CARGO_BIN_EXE_wsedge"))
        .args(["token", "--user", "luser", "--subscribe", "*", "--key", key])
        .output()
        .unwrap();
    let token = String::from_utf8(token.stdout).unwrap().trim().to_string();
    let (mut ws, _) = tungstenite::connect(format!("ws://{addr}/ws?ws_token={token}")).unwrap();
    let payload = r#"{"type":"subscribe","channel":"payload-marker-xyz","id":1}"#;
    ws.send(Message::text(payload)).unwrap();
    assert!(ws.read().unwrap().is_text());
    ws.close(None).unwrap();
    while ws.read().is_ok() {}
    // Refused: the same token again (replayed), then a forged one.
    assert!(tungstenite::connect(format!("ws://{addr}/ws?ws_token={token}")).is_err());
    assert!(
        tungstenite::connect(format!("ws://{addr}/ws?ws_token=v1.forged-token-marker.x")).is_err()
    );

    let mut stderr = server.stderr.take().unwrap();
    assert_eq!(server.terminate(), Some(0));
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();

    assert!(!log.contains(&token), "a token was logged:\n{log}");
    assert!(
        !log.contains("forged-token-marker"),
        "a token was logged:\n{log}"
    );
    assert!(!log.contains(key), "the key was logged:\n{log}");
    assert!(
        !log.contains("payload-marker-xyz"),
        "message contents were logged:\n{log}"
    );
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let find = |msg: &str| {
        lines
            .iter()
            .filter(|l| l["message"] == msg)
            .collect::<Vec<_>>()
    };
    let opened = find("opened");
    assert!(
        opened
            .iter()
            .any(|l| l["user"] == "luser" && l["conn"].is_string()),
        "{log}"
    );
    assert!(
        find("ended").iter().any(|l| l["reason"] == "peer_close"),
        "{log}"
    );
    let warn: Vec<_> = lines
        .iter()
        .filter(|l| l["level"] == "WARN")
        .filter_map(|l| l["message"].as_str())
        .collect();
    // One warning for the first refusal; the second falls in the same
    // 10 s window and is carried to the next line (and counted at once).
    assert_eq!(warn, ["upgrades refused: token_replayed=1"], "{log}");
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("refused.token_replayed=1")
                && m.contains("refused.token_malformed=1"))),
        "{log}"
    );
}
