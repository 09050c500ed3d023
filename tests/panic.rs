//! Fault isolation over real sockets, with the test-only fault hooks
//! (feature `fault-injection`, on for the crate's own tests): a panic while
//! handling one connection — a message, a timer, a delivery — closes that
//! connection with 1011, takes it out of every index and counts it, while
//! the other connections, on the same core too, go on; a panicking admin
//! request is answered 500 and nothing else notices; the binary logs one
//! line per panic, without the payload and without std's hook output.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::Message;
use wsedge::conn::EndReason;
use wsedge::panics::fault;
use wsedge::Server;

const WAIT: Duration = Duration::from_secs(10);

/// A server with the fault hooks turned on (they are compiled into test
/// builds, and off until enabled).
fn start(cfg: wsedge::Config) -> Server {
    fault::enable();
    common::start(cfg)
}

/// Reads until the close frame; returns its code.
fn close_code(ws: &mut Client) -> CloseCode {
    loop {
        match ws.read().expect("a close frame before the end") {
            Message::Close(Some(f)) => return f.code,
            Message::Close(None) => panic!("a close frame without a code"),
            _ => {}
        }
    }
}

/// One echo round trip of a distinct message.
fn echo(ws: &mut Client, text: &str) {
    ws.send(Message::text(text)).unwrap();
    loop {
        match ws.read().expect("echo") {
            Message::Text(t) => return assert_eq!(t.as_str(), text),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn metric(admin: SocketAddr, line_start: &str) -> Option<f64> {
    let (status, text) = http(admin, "GET", "/metrics", None);
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

fn api_stats(admin: SocketAddr) -> Value {
    let (status, text) = http(admin, "GET", "/api/stats", None);
    assert_eq!(status, 200);
    serde_json::from_str(&text).unwrap()
}

#[test]
fn a_panic_in_one_connection_closes_it_with_1011_and_its_core_serves_the_rest() {
    let server = start(hub_config(2));
    let admin = server.admin_addr().unwrap();
    let mut per_core = connect_on_every_core(&server, 3, |_| "/echo".into());
    for (core, conns) in per_core.iter_mut().enumerate() {
        for (i, ws) in conns.iter_mut().enumerate() {
            echo(ws, &format!("before {core}.{i}"));
        }
    }
    assert_eq!(server.stats().open, 6);

    // The victim is on core 0, as are two bystanders.
    let mut victim = per_core[0].remove(0);
    victim.send(Message::binary(fault::PANIC.to_vec())).unwrap();
    assert_eq!(close_code(&mut victim), CloseCode::Error, "1011");
    while victim.read().is_ok() {}

    assert!(
        wait_until(WAIT, || server.stats().open == 5),
        "removed: {:?}",
        server.stats()
    );
    let cores = server.core_stats();
    assert_eq!(cores[0].panics, 1);
    assert_eq!(cores[1].panics, 0);
    assert_eq!(cores[0].ended(EndReason::InternalError), 1);
    assert_eq!(server.stats().ended(EndReason::InternalError), 1);

    // Everyone else keeps echoing, the two on the victim's core included.
    assert_eq!(per_core[0].len(), 2);
    for round in 0..20 {
        for (core, conns) in per_core.iter_mut().enumerate() {
            for (i, ws) in conns.iter_mut().enumerate() {
                echo(ws, &format!("after {round} {core}.{i}"));
            }
        }
    }
    // And the core still accepts.
    echo(&mut connect(&server, "/echo"), "new");

    assert_eq!(metric(admin, "wsedge_panics_total"), Some(1.0));
    assert_eq!(
        metric(
            admin,
            "wsedge_connections_closed_total{reason=\"internal_error\"}"
        ),
        Some(1.0)
    );
    let stats = api_stats(admin);
    assert_eq!(stats["total"]["panics"], 1);
    assert_eq!(stats["cores"][0]["panics"], 1);
    assert_eq!(stats["total"]["ended"]["internal_error"], 1);
    assert_eq!(stats["api"]["panics"], 0);
}

#[test]
fn a_panic_at_a_timer_expiry_closes_only_that_connection() {
    let mut cfg = hub_config(1);
    cfg.conn.ping_interval = Duration::from_millis(100);
    let server = start(cfg);
    let mut victim = connect(&server, "/echo");
    let mut bystander = connect(&server, "/echo");
    // Armed: echoed as any message, then its next timer expiry panics.
    victim
        .send(Message::binary(fault::PANIC_ON_TIMER.to_vec()))
        .unwrap();
    assert_eq!(close_code(&mut victim), CloseCode::Error);
    assert!(wait_until(WAIT, || server.stats().open == 1));
    assert_eq!(server.stats().panics, 1);
    assert_eq!(server.stats().ended(EndReason::InternalError), 1);
    // The bystander lives through its own timer expiries (pings).
    for i in 0..5 {
        echo(&mut bystander, &format!("still here {i}"));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(server.stats().pings_sent >= 2);
    assert_eq!(server.stats().panics, 1);
}

/// `n` subscribers of `channel` per core on `/ws` (distinct users).
fn subscribers(server: &Server, n: usize, channel: &str) -> Vec<Vec<Client>> {
    let mut per_core = connect_on_every_core(server, n, |i| format!("/ws?user=u{i}"));
    for ws in per_core.iter_mut().flatten() {
        subscribe(ws, channel);
    }
    per_core
}

#[test]
fn a_panic_in_one_delivery_closes_that_subscriber_and_the_others_get_the_message() {
    let server = start(hub_config(2));
    let admin = server.admin_addr().unwrap();
    let mut per_core = subscribers(&server, 3, "news");
    assert_eq!(server.stats().subscriptions, 6);

    // Armed (answered as a bad request), then the next delivery to it
    // panics: once from the API (an inbox command on each core), the
    // victim on core 0.
    let mut victim = per_core[0].remove(0);
    victim
        .send(Message::text(
            String::from_utf8(fault::PANIC_ON_DELIVERY.to_vec()).unwrap(),
        ))
        .unwrap();
    assert_eq!(next_json(&mut victim)["type"], "error");
    let (status, _) = http(
        admin,
        "POST",
        "/api/channels/news/publish",
        Some(r#"{"n":1}"#),
    );
    assert_eq!(status, 200);
    assert_eq!(close_code(&mut victim), CloseCode::Error);
    for ws in per_core.iter_mut().flatten() {
        assert_eq!(
            next_json(ws),
            json!({"type":"message","channel":"news","data":{"n":1}})
        );
    }
    assert!(wait_until(WAIT, || server.stats().open == 5
        && server.stats().subscriptions == 5));
    assert_eq!(server.core_stats()[0].panics, 1);

    // A client publish on the victim's core reaches the rest, once.
    let mut publisher = per_core[0].remove(0);
    send_json(
        &mut publisher,
        json!({"type":"publish","channel":"news","data":2,"id":9}),
    );
    let mut got_ack = false;
    let mut got_msg = false;
    while !(got_ack && got_msg) {
        let v = next_json(&mut publisher);
        match v["type"].as_str() {
            Some("ack") => got_ack = true,
            Some("message") => got_msg = true,
            _ => panic!("unexpected {v}"),
        }
    }
    for ws in per_core.iter_mut().flatten() {
        assert_eq!(
            next_json(ws),
            json!({"type":"message","channel":"news","data":2})
        );
    }
    let (_, text) = http(admin, "GET", "/api/channels/news", None);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["subscribers"], 5);
    assert_eq!(server.stats().panics, 1);
}

#[test]
fn a_panic_in_a_subscribed_hub_connection_takes_it_out_of_the_index() {
    let server = start(hub_config(1));
    let admin = server.admin_addr().unwrap();
    let mut a = connect(&server, "/ws?user=alice");
    let mut b = connect(&server, "/ws?user=bob");
    subscribe(&mut a, "solo");
    subscribe(&mut a, "both");
    subscribe(&mut b, "both");
    a.send(Message::text(
        String::from_utf8(fault::PANIC.to_vec()).unwrap(),
    ))
    .unwrap();
    assert_eq!(close_code(&mut a), CloseCode::Error);
    assert!(wait_until(WAIT, || server.stats().open == 1));
    let hub = server.hub();
    assert_eq!(server.stats().subscriptions, 1);
    assert_eq!(hub.channel("solo").unwrap().subscribers, 0);
    assert_eq!(hub.channel("both").unwrap().subscribers, 1);
    assert_eq!(hub.channel_count(), 1, "only \"both\" has a subscriber");
    assert!(hub.user_connections("alice").unwrap().is_empty());
    assert_eq!(hub.users_online(), 1, "bob");
    let (_, text) = http(admin, "GET", "/api/users/alice", None);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap()["connections"],
        json!([])
    );
    send_json(
        &mut b,
        json!({"type":"publish","channel":"both","data":"x","id":1}),
    );
    let mut seen = 0;
    while seen < 2 {
        let v = next_json(&mut b);
        assert!(v["type"] == "ack" || v["type"] == "message", "{v}");
        seen += 1;
    }
}

#[test]
fn a_panicking_admin_request_gets_500_and_nothing_else_notices() {
    let server = start(hub_config(2));
    let admin = server.admin_addr().unwrap();
    let mut per_core = connect_on_every_core(&server, 1, |_| "/echo".into());
    // More panics than there are admin worker threads: none of them died.
    for _ in 0..3 {
        let (status, body) = http(admin, "GET", "/api/fault/panic", None);
        assert_eq!(status, 500);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "internal_error");
        for ws in per_core.iter_mut().flatten() {
            echo(ws, "data plane unaffected");
        }
    }
    assert_eq!(http(admin, "GET", "/healthz", None).0, 200);
    assert_eq!(metric(admin, "wsedge_panics_total"), Some(3.0));
    let stats = api_stats(admin);
    assert_eq!(stats["api"]["panics"], 3);
    assert_eq!(stats["total"]["panics"], 0, "no core panicked");
    assert_eq!(server.stats().open, 2);
}

#[test]
fn the_binary_logs_one_json_line_per_panic_without_the_payload() {
    let mut server = ServerProcess::start_with_env(
        &[
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "off",
            "--cores",
            "1",
            "--max-attempts-per-ip",
            "0",
            "--log-format",
            "json",
            "--log-level",
            "info",
            "--drain-window",
            "0s",
        ],
        &[("WSEDGE_FAULT_INJECTION", "1")],
    );
    let first: Value = serde_json::from_str(&server.line).expect("JSON log");
    let addr: SocketAddr = first["addr"].as_str().unwrap().parse().unwrap();
    let (mut victim, _) = tungstenite::connect(format!("ws://{addr}/echo")).unwrap();
    let (mut other, _) = tungstenite::connect(format!("ws://{addr}/echo")).unwrap();
    victim.send(Message::binary(fault::PANIC.to_vec())).unwrap();
    assert_eq!(close_code(&mut victim), CloseCode::Error);
    echo(&mut other, "after");
    let mut stderr = server.stderr.take().unwrap();
    assert_eq!(server.terminate(), Some(0));
    let mut log = String::new();
    stderr.read_to_string(&mut log).unwrap();

    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l:?}")))
        .collect();
    let panics: Vec<&Value> = lines.iter().filter(|v| v["panic"].is_string()).collect();
    assert_eq!(panics.len(), 1, "one line per panic:\n{log}");
    let p = &panics[0];
    assert_eq!(p["level"], "ERROR");
    assert!(p["message"].as_str().unwrap().contains("1011"), "{p}");
    assert!(p["conn"].as_str().unwrap().starts_with("0-"), "{p}");
    assert!(p["at"].as_str().unwrap().contains("panics.rs"), "{p}");
    let payload = String::from_utf8(fault::PANIC.to_vec()).unwrap();
    assert!(!log.contains(&payload), "the payload is not logged");
    assert!(
        !log.contains("panicked at"),
        "no second line from std's hook"
    );
    assert!(log.contains("panics=1"), "the exit stats count it");
}

#[test]
fn a_second_panic_while_closing_drops_the_connection_without_another_call() {
    let server = start(config(1));
    let mut victim = connect(&server, "/echo");
    let mut bystander = connect(&server, "/echo");
    victim
        .send(Message::binary(fault::PANIC_TWICE.to_vec()))
        .unwrap();
    // The flush of its 1011 panics too: the socket goes without it.
    loop {
        match victim.read() {
            Ok(Message::Close(f)) => panic!("no close frame expected, got {f:?}"),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    assert!(wait_until(WAIT, || server.stats().open == 1));
    let stats = server.stats();
    assert_eq!(stats.panics, 2);
    assert_eq!(stats.ended(EndReason::InternalError), 1, "ended once");
    echo(&mut bystander, "still here");
    echo(&mut connect(&server, "/echo"), "and a new one");
}

#[test]
fn a_test_built_binary_has_the_hooks_off_unless_asked() {
    // `cargo test` and `cargo bench` build the binary with the feature: it
    // must still not panic on a client's say-so.
    let mut server = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--max-attempts-per-ip",
        "0",
        "--drain-window",
        "0s",
    ]);
    server.drain_log();
    let addr = server.addr("addr");
    let admin = server.addr("admin");
    let (mut ws, _) = tungstenite::connect(format!("ws://{addr}/echo")).unwrap();
    ws.send(Message::binary(fault::PANIC.to_vec())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(fault::PANIC.to_vec()));
    assert_eq!(http(admin, "GET", "/api/fault/panic", None).0, 404);
    assert_eq!(metric(admin, "wsedge_panics_total"), Some(0.0));
    assert_eq!(server.terminate(), Some(0));
}
