//! What operators see, over real sockets: `/metrics` after scripted
//! traffic (exact values), the status snapshot and its event stream,
//! health and readiness through a drain whose closes are spread over the
//! window, token minting, and the embedded pages' headers.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};
use wsedge::Server;

const KEY: &str = "observability-test-key";

fn token_server(cores: usize) -> Server {
    let mut cfg = hub_config(cores);
    cfg.hub.dev_user_param = None;
    cfg.hub.dev_client_publish = false;
    cfg.token.key = Some(KEY.into());
    start(cfg)
}

/// Mints a token through the admin API.
fn mint(admin: SocketAddr, user: &str) -> String {
    let body = json!({"user": user, "subscribe": ["room*"], "publish": ["room*"], "ttl_secs": 60});
    let (status, text) = http(admin, "POST", "/api/tokens", Some(&body.to_string()));
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// Every sample of `/metrics`, as "name{labels}" → value.
fn scrape(admin: SocketAddr) -> HashMap<String, f64> {
    let (status, text) = http(admin, "GET", "/metrics", None);
    assert_eq!(status, 200);
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// The sum of a per-core family over all cores.
fn sum(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{core=")))
        .map(|(_, v)| v)
        .sum()
}

fn get(m: &HashMap<String, f64>, key: &str) -> f64 {
    *m.get(key).unwrap_or_else(|| panic!("no sample {key}"))
}

/// Polls until `f` holds (metrics of other threads settle within a loop
/// iteration; histograms within a second).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn metrics_after_scripted_traffic_have_the_exact_values() {
    let server = token_server(2);
    let admin = server.admin_addr().unwrap();
    let url = |t: &str| format!("ws://{}/ws?ws_token={t}", server.local_addr());

    // Three users connect; a and b subscribe to "room".
    let mut clients: Vec<Client> = ["a", "b", "c"]
        .iter()
        .map(|u| tungstenite::connect(url(&mint(admin, u))).unwrap().0)
        .collect();
    for ws in &mut clients[..2] {
        subscribe(ws, "room");
    }
    // c pings (app level) and gets a pong.
    send_json(&mut clients[2], json!({"type": "ping", "id": 9}));
    assert_eq!(next_json(&mut clients[2]), json!({"type": "pong", "id": 9}));

    // Refusals: no token, a bad one, and a replayed one.
    let refused = |u: &str| tungstenite::connect(u).unwrap_err();
    refused(&format!("ws://{}/ws", server.local_addr()));
    refused(&url("v1.bogus.token"));
    let once = mint(admin, "d");
    let d = tungstenite::connect(url(&once)).unwrap().0;
    refused(&url(&once));

    // Two API publishes to "room" reach a and b; one client publish too.
    for i in 0..2 {
        let (s, _) = http(
            admin,
            "POST",
            "/api/channels/room/publish",
            Some(&i.to_string()),
        );
        assert_eq!(s, 200);
    }
    send_json(
        &mut clients[0],
        json!({"type": "publish", "channel": "room", "data": "hi"}),
    );
    for ws in &mut clients[..2] {
        for _ in 0..3 {
            assert_eq!(next_json(ws)["type"], "message");
        }
    }
    // The cores holding a subscriber (for the histogram count below).
    let core_of = |user: &str| -> u64 {
        let (_, text) = http(admin, "GET", &format!("/api/users/{user}"), None);
        let v: Value = serde_json::from_str(&text).unwrap();
        let id = v["connections"][0].as_str().unwrap().to_string();
        id.split('-').next().unwrap().parse().unwrap()
    };
    let sub_cores: std::collections::BTreeSet<u64> = [core_of("a"), core_of("b")].into();

    // c and d leave with a close handshake.
    let mut c = clients.pop().unwrap();
    c.close(None).unwrap();
    let mut d = d;
    d.close(None).unwrap();
    for ws in [&mut c, &mut d] {
        while ws.read().is_ok() {}
    }

    eventually("the closes to be counted", || {
        get(
            &scrape(admin),
            "wsedge_connections_closed_total{reason=\"peer_close\"}",
        ) == 2.0
    });
    // Histograms are merged by each core once a second.
    let recorded = 3.0 * sub_cores.len() as f64;
    eventually("the publish histogram", || {
        get(&scrape(admin), "wsedge_publish_to_write_seconds_count") == recorded
    });
    let m = scrape(admin);
    assert_eq!(sum(&m, "wsedge_connections_open"), 2.0);
    assert_eq!(sum(&m, "wsedge_connections_upgraded_total"), 4.0);
    // 4 upgrades + 3 refused upgrades.
    assert_eq!(sum(&m, "wsedge_connections_accepted_total"), 7.0);
    assert_eq!(
        get(&m, "wsedge_token_failures_total{kind=\"missing\"}"),
        1.0
    );
    assert_eq!(
        get(&m, "wsedge_token_failures_total{kind=\"malformed\"}"),
        1.0
    );
    assert_eq!(
        get(&m, "wsedge_token_failures_total{kind=\"replayed\"}"),
        1.0
    );
    assert_eq!(
        get(
            &m,
            "wsedge_handshake_refusals_total{reason=\"token_replayed\"}"
        ),
        1.0
    );
    assert_eq!(
        get(&m, "wsedge_limit_refusals_total{kind=\"attempts_per_ip\"}"),
        0.0
    );
    // Data messages in: 2 subscribes + 1 ping + 1 publish.
    assert_eq!(sum(&m, "wsedge_messages_in_total"), 4.0);
    // Out: 2 acks + 1 pong + 3 messages × 2 subscribers.
    assert_eq!(sum(&m, "wsedge_messages_out_total"), 9.0);
    assert_eq!(sum(&m, "wsedge_deliveries_total"), 6.0);
    assert_eq!(get(&m, "wsedge_publishes_total{source=\"api\"}"), 2.0);
    assert_eq!(get(&m, "wsedge_publishes_total{source=\"client\"}"), 1.0);
    assert_eq!(
        get(&m, "wsedge_dropped_total{reason=\"slow_consumer\"}"),
        0.0
    );
    assert_eq!(get(&m, "wsedge_channels"), 1.0);
    assert_eq!(get(&m, "wsedge_users_online"), 2.0);
    assert_eq!(get(&m, "wsedge_subscriptions"), 2.0);
    assert_eq!(get(&m, "wsedge_ping_timeouts_total"), 0.0);
    assert_eq!(sum(&m, "wsedge_outbound_queue_bytes"), 0.0);
    // One record per publish per core that wrote it.
    assert_eq!(get(&m, "wsedge_publish_to_write_seconds_count"), recorded);
    assert_eq!(
        get(&m, "wsedge_publish_to_write_seconds_bucket{le=\"+Inf\"}"),
        recorded
    );
    assert!(get(&m, "wsedge_loop_iteration_seconds_count{core=\"0\"}") > 0.0);
    assert_eq!(get(&m, "wsedge_draining"), 0.0);
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn status_snapshot_and_event_stream() {
    let server = start(hub_config(2));
    let admin = server.admin_addr().unwrap();
    let mut subs: Vec<Client> = (0..3)
        .map(|i| connect(&server, &format!("/ws?user=u{i}")))
        .collect();
    for (i, ws) in subs.iter_mut().enumerate() {
        subscribe(ws, "big");
        if i == 0 {
            subscribe(ws, "small");
        }
    }
    let (status, text) = http(admin, "GET", "/api/status", None);
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["top_channels"],
        json!([{"channel": "big", "subscribers": 3}, {"channel": "small", "subscribers": 1}])
    );
    assert_eq!(v["cores"].as_array().unwrap().len(), 2);
    assert_eq!(v["total"]["open"], 3);
    assert_eq!(v["users_online"], 3);
    assert_eq!(v["draining"], false);

    // The stream sends a snapshot at once, then one a second.
    let mut s = TcpStream::connect(admin).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /api/status/stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut r = BufReader::new(s);
    let mut head = String::new();
    r.read_line(&mut head).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut content_type = String::new();
    let mut events = Vec::new();
    let mut line = String::new();
    while events.len() < 2 {
        line.clear();
        assert!(r.read_line(&mut line).unwrap() > 0, "stream ended early");
        if line.to_ascii_lowercase().starts_with("content-type:") {
            content_type = line.clone();
        }
        if let Some(data) = line.strip_prefix("data: ") {
            events.push(serde_json::from_str::<Value>(data).unwrap());
            if events.len() == 1 {
                // Change something between the two events.
                subs.pop().unwrap().close(None).unwrap();
            }
        }
    }
    assert!(content_type.contains("text/event-stream"), "{content_type}");
    assert_eq!(events[0]["total"]["open"], 3);
    assert!(events[1]["t_ms"].as_u64() > events[0]["t_ms"].as_u64());
    eventually("the stream to show the close", || {
        line.clear();
        r.read_line(&mut line).unwrap();
        line.strip_prefix("data: ")
            .is_some_and(|d| serde_json::from_str::<Value>(d).unwrap()["total"]["open"] == 2)
    });
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn readiness_fails_during_a_drain_whose_closes_are_spread() {
    let mut cfg = hub_config(1);
    cfg.shutdown.drain_window = Duration::from_secs(2);
    let server = start(cfg);
    let admin = server.admin_addr().unwrap();
    assert_eq!(http(admin, "GET", "/healthz", None), (200, "ok\n".into()));
    assert_eq!(http(admin, "GET", "/readyz", None), (200, "ready\n".into()));

    let clients: Vec<Client> = (0..4).map(|_| connect(&server, "/echo")).collect();
    let begun = Instant::now();
    server.shutdown();
    assert_eq!(
        http(admin, "GET", "/readyz", None),
        (503, "draining\n".into())
    );
    assert_eq!(http(admin, "GET", "/healthz", None).0, 200);
    // Each client notes when its 1001 arrives.
    let handles: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            std::thread::spawn(move || loop {
                match ws.read() {
                    Ok(tungstenite::Message::Close(Some(f))) => {
                        return (u16::from(f.code), begun.elapsed())
                    }
                    Ok(_) => continue,
                    Err(e) => panic!("no close frame: {e}"),
                }
            })
        })
        .collect();
    let mut got: Vec<(u16, Duration)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    got.sort_by_key(|g| g.1);
    assert!(got.iter().all(|g| g.0 == 1001), "{got:?}");
    // Four closes over a 2 s window: due at 0, 0.5, 1 and 1.5 s.
    let spread = got[3].1 - got[0].1;
    assert!(spread >= Duration::from_millis(1400), "not spread: {got:?}");
    server.join().unwrap();
}

#[test]
fn tokens_info_and_pages() {
    let server = token_server(1);
    let admin = server.admin_addr().unwrap();
    let (status, text) = http(admin, "GET", "/api/info", None);
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info["ws_url"], format!("ws://{}/ws", server.local_addr()));
    assert_eq!(info["tokens"], true);

    // A minted token connects once, with its grants.
    let t = mint(admin, "zoe");
    let mut ws = tungstenite::connect(format!("{}?ws_token={t}", info["ws_url"].as_str().unwrap()))
        .unwrap()
        .0;
    subscribe(&mut ws, "room:1");
    send_json(
        &mut ws,
        json!({"type": "subscribe", "channel": "other", "id": 2}),
    );
    assert_eq!(next_json(&mut ws)["code"], "subscribe_forbidden");
    for (body, status) in [
        (json!({"user": ""}), 400),
        (json!({"user": "x", "ttl_secs": 0}), 400),
        (json!({"user": "x", "bogus": 1}), 400),
        // token.max_ttl (default 1 h) bounds what the API mints.
        (json!({"user": "x", "ttl_secs": 3600}), 200),
        (json!({"user": "x", "ttl_secs": 3601}), 400),
        (json!({"user": "x", "ttl_secs": u64::MAX}), 400),
    ] {
        let (s, text) = http(admin, "POST", "/api/tokens", Some(&body.to_string()));
        assert_eq!(s, status, "{body}: {text}");
        if body["ttl_secs"].as_u64().is_some_and(|t| t > 3600) {
            assert!(text.contains("token.max_ttl"), "{text}");
        }
    }
    // Without a key, minting is refused with a reason.
    let plain = start(hub_config(1));
    let (s, text) = http(
        plain.admin_addr().unwrap(),
        "POST",
        "/api/tokens",
        Some(r#"{"user":"x"}"#),
    );
    assert_eq!((s, text.contains("no_token_key")), (409, true), "{text}");

    for (path, ctype) in [
        ("/", "text/html"),
        ("/demo", "text/html"),
        ("/client/wsedge.js", "application/javascript"),
    ] {
        let mut s = TcpStream::connect(admin).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let resp = read_to_close(&mut s, Duration::from_secs(5));
        let text = String::from_utf8_lossy(&resp).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200"), "{path}: {text:.200}");
        assert!(text.contains(&format!("content-type: {ctype}")), "{path}");
        assert!(text.contains("x-content-type-options: nosniff"), "{path}");
        assert!(
            text.contains("content-security-policy: default-src 'none'"),
            "{path}"
        );
    }
    plain.shutdown();
    plain.join().unwrap();
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn with_a_key_the_api_needs_it_but_probes_and_pages_do_not() {
    let mut cfg = hub_config(1);
    cfg.admin.key = Some("k3y".into());
    let server = start(cfg);
    let admin = server.admin_addr().unwrap();
    assert_eq!(http(admin, "GET", "/metrics", None).0, 401);
    assert_eq!(http(admin, "GET", "/api/status", None).0, 401);
    assert_eq!(
        http_with(
            admin,
            "GET",
            "/metrics",
            None,
            &["Authorization: Bearer k3y"]
        )
        .0,
        200
    );
    // EventSource cannot send headers: the status (only) takes ?key=.
    assert_eq!(http(admin, "GET", "/api/status?key=k3y", None).0, 200);
    assert_eq!(http(admin, "GET", "/api/status?key=nope", None).0, 401);
    assert_eq!(http(admin, "GET", "/api/stats?key=k3y", None).0, 401);
    assert_eq!(http(admin, "GET", "/healthz", None).0, 200);
    assert_eq!(http(admin, "GET", "/readyz", None).0, 200);
    assert_eq!(http(admin, "GET", "/", None).0, 200);
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn probes_and_pages_answer_head() {
    let server = start(hub_config(1));
    let admin = server.admin_addr().unwrap();
    for path in ["/healthz", "/readyz", "/", "/client/wsedge.js"] {
        let (status, body) = http(admin, "HEAD", path, None);
        assert_eq!((status, body.as_str()), (200, ""), "{path}");
    }
    server.shutdown();
    server.join().unwrap();
}
