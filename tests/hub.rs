//! The hub over real sockets with two cores: channels, users, presence,
//! the admin API, cross-core fan-out, ordering, slow consumers.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use wsedge::conn::EndReason;

fn admin(server: &wsedge::Server) -> std::net::SocketAddr {
    server.admin_addr().expect("admin plane runs")
}

/// Core index of each connection of `user`, from the admin API.
fn user_cores(server: &wsedge::Server, user: &str) -> Vec<u16> {
    let (status, body) = http(admin(server), "GET", &format!("/api/users/{user}"), None);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| {
            id.as_str()
                .unwrap()
                .split('-')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect()
}

/// One connection of `user` on each of the two cores.
fn one_per_core(server: &wsedge::Server, user: &str) -> (Client, Client) {
    let mut per_core = connect_on_every_core(server, 1, |_| format!("/ws?user={user}"));
    let b = per_core.pop().unwrap().pop().unwrap();
    let a = per_core.pop().unwrap().pop().unwrap();
    (a, b)
}

#[test]
fn publish_via_api_and_client_reaches_subscribers_on_both_cores() {
    let server = start(hub_config(2));
    let mut subs: Vec<Client> = connect_on_every_core(&server, 8, |i| format!("/ws?user=u{i}"))
        .into_iter()
        .flatten()
        .collect();
    for ws in &mut subs {
        subscribe(ws, "news");
    }
    let per_core = server.core_stats();
    assert!(
        per_core.iter().all(|s| s.subscriptions == 8),
        "8 subscribers on each core"
    );

    let (status, body) = http(
        admin(&server),
        "POST",
        "/api/channels/news/publish",
        Some(r#"{"text":"hi"}"#),
    );
    assert_eq!(status, 200, "{body}");
    for ws in &mut subs {
        assert_eq!(
            next_json(ws),
            json!({"type":"message","channel":"news","data":{"text":"hi"}})
        );
    }

    let mut publisher = connect(&server, "/ws");
    send_json(
        &mut publisher,
        json!({"type":"publish","channel":"news","data":[1,"two",{"3":null}],"id":7}),
    );
    assert_eq!(next_json(&mut publisher), json!({"type":"ack","id":7}));
    for ws in &mut subs {
        assert_eq!(
            next_json(ws),
            json!({"type":"message","channel":"news","data":[1,"two",{"3":null}]})
        );
    }
    // Presence: who is subscribed.
    let (_, body) = http(admin(&server), "GET", "/api/channels/news", None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["subscribers"], 16);
    assert_eq!(v["users"].as_array().unwrap().len(), 16);
}

#[test]
fn send_to_user_reaches_both_of_its_connections_on_different_cores() {
    let server = start(hub_config(2));
    let (mut laptop, mut phone) = one_per_core(&server, "alice");
    let mut cores = user_cores(&server, "alice");
    cores.sort_unstable();
    assert_eq!(cores, vec![0, 1], "one connection on each core");
    let (status, _) = http(
        admin(&server),
        "POST",
        "/api/users/alice/send",
        Some(r#""ping""#),
    );
    assert_eq!(status, 200);
    for ws in [&mut laptop, &mut phone] {
        assert_eq!(next_json(ws), json!({"type":"message","data":"ping"}));
    }
    // And to one connection by id.
    let (_, body) = http(admin(&server), "GET", "/api/users/alice", None);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["connections"][0].as_str().unwrap().to_string();
    let (status, _) = http(
        admin(&server),
        "POST",
        &format!("/api/connections/{id}/send"),
        Some(r#"{"only":"one"}"#),
    );
    assert_eq!(status, 200);
    // Exactly one of the two receives it; find which by reading with a
    // short timeout.
    let mut got = 0;
    for ws in [&mut laptop, &mut phone] {
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
        }
        if let Ok(tungstenite::Message::Text(t)) = ws.read() {
            assert_eq!(t.as_str(), r#"{"type":"message","data":{"only":"one"}}"#);
            got += 1;
        }
    }
    assert_eq!(got, 1);
    // Disconnect it through the API with a code.
    let (status, _) = http(
        admin(&server),
        "DELETE",
        &format!("/api/connections/{id}?code=4001"),
        None,
    );
    assert_eq!(status, 200);
    assert!(wait_until(Duration::from_secs(5), || user_cores(
        &server, "alice"
    )
    .len()
        == 1));
    assert_eq!(server.stats().ended(EndReason::Kicked), 1);
}

#[test]
fn presence_is_exact_after_disconnects() {
    let server = start(hub_config(2));
    let mut a = connect(&server, "/ws?user=ann");
    let mut b = connect(&server, "/ws?user=bob");
    let mut c = connect(&server, "/ws?user=bob");
    for ws in [&mut a, &mut b, &mut c] {
        subscribe(ws, "room:1");
    }
    let presence = || {
        let (_, body) = http(admin(&server), "GET", "/api/channels/room:1", None);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        (v["subscribers"].as_u64().unwrap(), v["users"].clone())
    };
    assert_eq!(presence(), (3, json!(["ann", "bob"])));
    drop(b); // vanishes without a close frame
    assert!(wait_until(Duration::from_secs(5), || presence()
        == (2, json!(["ann", "bob"]))));
    c.close(None).unwrap();
    let _ = c.flush();
    assert!(wait_until(Duration::from_secs(5), || presence() == (1, json!(["ann"]))));
    send_json(
        &mut a,
        json!({"type":"unsubscribe","channel":"room:1","id":5}),
    );
    assert_eq!(next_json(&mut a), json!({"type":"ack","id":5}));
    assert_eq!(presence(), (0, json!([])));
    assert!(wait_until(Duration::from_secs(5), || {
        server.hub().channel_count() == 0 && server.hub().users_online() == 1
    }));
    assert_eq!(server.stats().subscriptions, 0);
}

#[test]
fn bad_requests_get_error_frames_not_disconnects() {
    let mut cfg = hub_config(1);
    cfg.hub.dev_client_publish = false;
    cfg.hub.max_subscriptions = 2;
    let server = start(cfg);
    let mut ws = connect(&server, "/ws");
    let cases = [
        ("not json".to_string(), None, "bad_request"),
        (
            r#"{"type":"dance","id":4}"#.to_string(),
            Some(4),
            "bad_request",
        ),
        (
            r#"{"type":"subscribe","channel":"","id":5}"#.to_string(),
            Some(5),
            "invalid_channel",
        ),
        (
            r#"{"type":"publish","channel":"x","data":1,"id":6}"#.to_string(),
            Some(6),
            "publish_forbidden",
        ),
    ];
    for (text, id, code) in cases {
        ws.send(tungstenite::Message::text(text)).unwrap();
        let v = next_json(&mut ws);
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], code);
        assert_eq!(v.get("id").and_then(|i| i.as_u64()), id);
    }
    ws.send(tungstenite::Message::binary(vec![1, 2])).unwrap();
    assert_eq!(next_json(&mut ws)["code"], "binary_not_supported");
    subscribe(&mut ws, "a");
    subscribe(&mut ws, "b");
    send_json(&mut ws, json!({"type":"subscribe","channel":"c","id":9}));
    assert_eq!(next_json(&mut ws)["code"], "too_many_subscriptions");
    // Still connected and working.
    subscribe(&mut ws, "a");
    assert_eq!(server.stats().open, 1);
    assert_eq!(server.stats().request_errors, 6);
}

#[test]
fn publisher_order_holds_over_ten_thousand_messages_on_both_cores() {
    let server = start(hub_config(2));
    let mut subs: Vec<Client> = connect_on_every_core(&server, 4, |_| "/ws".into())
        .into_iter()
        .flatten()
        .collect();
    for ws in &mut subs {
        subscribe(ws, "seq");
    }
    assert!(server.core_stats().iter().all(|s| s.subscriptions == 4));
    let mut publisher = connect(&server, "/ws");
    const N: u64 = 10_000;
    std::thread::scope(|scope| {
        for ws in &mut subs {
            scope.spawn(move || {
                for i in 0..N {
                    let v = next_json(ws);
                    assert_eq!(v["data"], json!(i), "in publish order");
                }
            });
        }
        for i in 0..N {
            publisher
                .write(tungstenite::Message::text(
                    json!({"type":"publish","channel":"seq","data":i}).to_string(),
                ))
                .unwrap();
        }
        publisher.flush().unwrap();
    });
}

#[test]
fn slow_consumer_is_closed_while_others_keep_receiving() {
    let mut cfg = hub_config(2);
    // Room for a healthy reader that lags on a busy machine (256 messages),
    // far below the 32 MiB the non-reader is sent.
    cfg.conn.max_pending_bytes = 4 << 20;
    let server = start(cfg);
    // A subscriber that never reads.
    let mut slow = raw_upgraded_to(server.local_addr(), "/ws");
    std::io::Write::write_all(
        &mut slow,
        &client_frame(true, 0x1, br#"{"type":"subscribe","channel":"firehose"}"#),
    )
    .unwrap();
    let mut fast = connect(&server, "/ws");
    subscribe(&mut fast, "firehose");
    assert!(wait_until(Duration::from_secs(5), || server
        .stats()
        .subscriptions
        == 2));
    let payload = format!("\"{}\"", "x".repeat(16 * 1024));
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut got = 0;
            while got < 2000 {
                match fast.read().expect("the healthy reader stays connected") {
                    tungstenite::Message::Text(t) => {
                        assert!(t.as_str().starts_with(r#"{"type":"message""#));
                        got += 1;
                    }
                    tungstenite::Message::Ping(_) => {}
                    other => panic!("unexpected {other:?}"),
                }
            }
        });
        for _ in 0..2000 {
            let (status, _) = http(
                admin(&server),
                "POST",
                "/api/channels/firehose/publish",
                Some(&payload),
            );
            assert_eq!(status, 200);
        }
        reader.join().unwrap();
    });
    // 2000 × 16 KiB = 32 MiB went out; the slow one was cut off at its
    // budget (plus socket buffers), with a counted reason.
    assert!(wait_until(Duration::from_secs(10), || {
        server.stats().ended(EndReason::SlowConsumer) == 1
    }));
    let stats = server.stats();
    assert!(stats.dropped_slow_consumer >= 1);
    assert_eq!(stats.subscriptions, 1, "the slow one left every index");
}

#[test]
fn drop_policy_skips_messages_for_a_slow_consumer_and_keeps_it() {
    let mut cfg = hub_config(1);
    cfg.conn.max_pending_bytes = 64 * 1024;
    cfg.conn.slow_consumer = wsedge::conn::SlowConsumerPolicy::Drop;
    let server = start(cfg);
    let mut slow = raw_upgraded_to(server.local_addr(), "/ws");
    std::io::Write::write_all(
        &mut slow,
        &client_frame(true, 0x1, br#"{"type":"subscribe","channel":"f"}"#),
    )
    .unwrap();
    assert!(wait_until(Duration::from_secs(5), || server
        .stats()
        .subscriptions
        == 1));
    let payload = format!("\"{}\"", "y".repeat(16 * 1024));
    for _ in 0..2000 {
        let (status, _) = http(
            admin(&server),
            "POST",
            "/api/channels/f/publish",
            Some(&payload),
        );
        assert_eq!(status, 200);
    }
    assert!(wait_until(Duration::from_secs(10), || {
        server.stats().dropped_slow_consumer > 0
    }));
    assert!(wait_until(Duration::from_secs(10), || {
        let stats = server.stats();
        stats.deliveries + stats.dropped_slow_consumer == 2000
    }));
    let stats = server.stats();
    assert_eq!(stats.ended(EndReason::SlowConsumer), 0, "kept open");
    assert_eq!(stats.subscriptions, 1);
    assert_eq!(stats.open, 1);
}

#[test]
fn admin_api_checks_its_key_and_its_input() {
    let mut cfg = hub_config(1);
    cfg.admin.key = Some("s3cret".into());
    let server = start(cfg);
    let a = admin(&server);
    assert_eq!(http(a, "GET", "/api/stats", None).0, 401);
    let wrong = ["Authorization: Bearer nope"];
    assert_eq!(http_with(a, "GET", "/api/stats", None, &wrong).0, 401);
    let auth = ["Authorization: Bearer s3cret"];
    let (status, body) = http_with(a, "GET", "/api/stats", None, &auth);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["cores"].as_array().unwrap().len(), 1);
    let post = |path: &str, body: &str| http_with(a, "POST", path, Some(body), &auth).0;
    assert_eq!(post("/api/channels/x/publish", "{not json"), 400);
    assert_eq!(post("/api/channels/x/publish", &"1".repeat(2 << 20)), 413);
    assert_eq!(post("/api/connections/9-9-9/send", "1"), 404);
    assert_eq!(post("/api/connections/nonsense/send", "1"), 404);
    assert_eq!(post("/api/nothing", "1"), 404);
    assert_eq!(post("/api/channels/x/publish", "{\"ok\":true}"), 200);
    let (status, _) = http_with(a, "DELETE", "/api/connections/0-0-1?code=1005", None, &auth);
    assert_eq!(status, 400, "1005 may not be sent");
}

#[test]
fn admin_api_limits_are_the_configured_settings() {
    let mut cfg = hub_config(1);
    cfg.hub.max_channel_len = 8;
    cfg.admin.max_body_bytes = 64;
    cfg.admin.threads = 1;
    let server = start(cfg);
    let a = admin(&server);
    let post = |path: &str, body: &str| http(a, "POST", path, Some(body));
    // hub.max_channel_len, not a constant: 8 bytes pass, 9 do not.
    assert_eq!(post("/api/channels/abcdefgh/publish", "1").0, 200);
    let (status, body) = post("/api/channels/abcdefghi/publish", "1");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_channel"), "{body}");
    // admin.max_body_bytes.
    assert_eq!(post("/api/channels/x/publish", &"1".repeat(64)).0, 200);
    let (status, body) = post("/api/channels/x/publish", &"1".repeat(65));
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("admin.max_body_bytes"), "{body}");
    // One worker still answers request after request.
    for _ in 0..3 {
        assert_eq!(http(a, "GET", "/api/stats", None).0, 200);
    }
}

#[test]
fn admin_refuses_to_listen_off_loopback_without_a_key() {
    let mut cfg = hub_config(1);
    cfg.admin.listen = Some("0.0.0.0:0".parse().unwrap());
    let err = wsedge::Server::start(cfg).err().expect("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

/// Issue 13 finding 6: channel names with Unicode format characters
/// (category Cf: bidi overrides, zero-width joiners, BOM, tags) spoofed
/// the status page. Refused from clients and from the admin API alike,
/// as control characters are.
#[test]
fn regression_channel_names_with_format_characters_are_refused() {
    let server = start(hub_config(1));
    let mut ws = connect(&server, "/ws");
    for (id, name) in [
        "news\u{202E}txt.exe",
        "a\u{200B}b",
        "\u{FEFF}news",
        "x\u{2066}y",
        "tag\u{E0041}",
        "soft\u{AD}hyphen",
        "nul\u{0}",
    ]
    .into_iter()
    .enumerate()
    {
        let id = id as u64 + 10;
        send_json(&mut ws, json!({"type":"subscribe","channel":name,"id":id}));
        let v = next_json(&mut ws);
        assert_eq!(v["code"], "invalid_channel", "{name:?}: {v}");
        assert_eq!(v["id"], id);
    }
    // Letters of any script stay valid.
    subscribe(&mut ws, "канал:ünïcødé:频道");
    let (status, body) = http(
        admin(&server),
        "POST",
        "/api/channels/news%E2%80%AEtxt/publish",
        Some("1"),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_channel"), "{body}");
}
