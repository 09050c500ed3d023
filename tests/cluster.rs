//! Nodes joined over a real Redis: a private `redis-server` on a free
//! loopback port and three `wsedge serve` processes. Cross-node publish,
//! send-to-user and send-to-connection each arrive exactly once; a
//! `kill -9`ed node leaves presence within the TTL; a killed broker
//! degrades the nodes (local delivery goes on) and, restarted on the same
//! port, they recover on their own; a `SIGSTOP`ped broker is caught by the
//! probe. The same over NATS (cross-node delivery, loss and recovery,
//! probe). Skipped (one line) without `redis-server` / `nats-server`
//! unless `WSEDGE_REQUIRE_BROKERS=1` (scripts/test sets it and installs
//! them).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::broker::{have_redis, nats_binary, on_nats, on_redis, Nats, Redis};
use common::{http, next_json, send_json, wait_until, Client, ServerProcess};
use serde_json::{json, Value};

const TTL: &str = "3s";
const PROBE: &str = "500ms";

/// A `wsedge serve` node, killed (by its PID) on drop.
struct Node {
    proc: Option<ServerProcess>,
    id: u32,
}

impl Node {
    fn start(redis: &Redis, id: u32, required: bool) -> Node {
        Self::start_on(&redis.url(), id, required)
    }

    fn start_on(broker: &str, id: u32, required: bool) -> Node {
        let mut p = ServerProcess::start_with_env(
            &[
                "--listen",
                "127.0.0.1:0",
                "--admin",
                "127.0.0.1:0",
                "--cores",
                "2",
                "--broker",
                broker,
                "--node-id",
                &id.to_string(),
                "--dev-user-param",
                "user",
                "--dev-client-publish",
            ],
            &[
                ("WSEDGE_CLUSTER_PRESENCE_TTL", TTL),
                ("WSEDGE_CLUSTER_PROBE_INTERVAL", PROBE),
                ("WSEDGE_CLUSTER_RECONNECT_BACKOFF_MAX", "500ms"),
                ("WSEDGE_CLUSTER_UNSUBSCRIBE_LINGER", "1s"),
                ("WSEDGE_CLUSTER_REQUEST_TIMEOUT", "1s"),
                (
                    "WSEDGE_CLUSTER_REQUIRED",
                    if required { "true" } else { "false" },
                ),
            ],
        );
        p.drain_log();
        let node = Node { proc: Some(p), id };
        assert!(
            wait_until(Duration::from_secs(10), || node.ready().0 == 200
                && node.ready().1.contains("ready")),
            "node {id} never joined"
        );
        node
    }

    fn p(&self) -> &ServerProcess {
        self.proc.as_ref().expect("running")
    }

    fn admin(&self) -> SocketAddr {
        self.p().addr("admin")
    }

    fn client(&self, user: &str) -> Client {
        let url = format!("ws://{}/ws?user={user}", self.p().addr("addr"));
        let (ws, _) = tungstenite::connect(url).expect("upgrade");
        if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        }
        ws
    }

    fn ready(&self) -> (u16, String) {
        http(self.admin(), "GET", "/readyz", None)
    }

    fn get(&self, path: &str) -> Value {
        let (status, body) = http(self.admin(), "GET", path, None);
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn post(&self, path: &str, body: &str) -> Value {
        let (status, text) = http(self.admin(), "POST", path, Some(body));
        assert_eq!(status, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// The status snapshot's cluster part, fresh (the snapshot is cached
    /// for 500 ms).
    fn cluster(&self) -> Value {
        std::thread::sleep(Duration::from_millis(600));
        self.get("/api/status")["cluster"].clone()
    }

    /// Sends `sig`; for `-STOP`, returns once every thread has stopped
    /// (a group stop is not instant).
    fn signal(&self, sig: &str) {
        let pid = self.p().child.id();
        let _ = std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status();
        if sig == "-STOP" {
            let all_stopped = || {
                let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                    return false;
                };
                tasks.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat")).is_ok_and(|st| {
                        // The state follows the ")" closing the name.
                        st.rsplit_once(") ")
                            .is_some_and(|(_, rest)| rest.starts_with('T'))
                    })
                })
            };
            assert!(
                wait_until(Duration::from_secs(5), all_stopped),
                "node {} did not stop",
                self.id
            );
        }
    }

    fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn three_nodes(redis: &Redis) -> [Node; 3] {
    [1, 2, 3].map(|id| Node::start(redis, id, false))
}

/// Subscribes with the ack, then waits until `nodes` connections
/// subscribe to the channel's subject on the broker.
fn subscribe_all(redis: &Redis, clients: &mut [&mut Client], channel: &str, nodes: u64) {
    for ws in clients.iter_mut() {
        common::subscribe(ws, channel);
    }
    let subject = format!("wsedge:c:{channel}");
    assert!(
        wait_until(Duration::from_secs(10), || redis.numsub(&subject)
            == Some(nodes)),
        "{channel}: not subscribed on {nodes} nodes: {:?}",
        redis.numsub(&subject)
    );
}

/// Reads messages until one whose data is `{"end": true}`; returns the
/// data of those before it.
fn until_marker(ws: &mut Client) -> Vec<Value> {
    let mut got = Vec::new();
    for _ in 0..10_000 {
        let m = next_json(ws);
        if m["type"] != "message" {
            continue;
        }
        if m["data"] == json!({"end": true}) {
            return got;
        }
        got.push(m["data"].clone());
    }
    panic!("no marker");
}

/// 20 publishes on `channel` from a client on `node`, acked in order, then
/// an admin marker (`path`: the channel as it goes in a URL): every one of
/// `subs` gets the 20, in order, once each.
fn twenty_in_order_on_every_node(node: &Node, subs: &mut [Client], channel: &str, path: &str) {
    let mut publisher = node.client("pub");
    for i in 0..20 {
        send_json(
            &mut publisher,
            json!({"type":"publish","channel":channel,"data":{"i":i},"id":i}),
        );
    }
    // The acks: the node has handled all 20 before the marker.
    for i in 0..20 {
        assert_eq!(next_json(&mut publisher), json!({"type":"ack","id":i}));
    }
    node.post(&format!("/api/channels/{path}/publish"), r#"{"end":true}"#);
    let want: Vec<Value> = (0..20).map(|i| json!({"i": i})).collect();
    for (n, ws) in subs.iter_mut().enumerate() {
        assert_eq!(until_marker(ws), want, "subscriber on node {}", n + 1);
    }
}

#[test]
fn cross_node_publish_user_and_connection_sends_arrive_exactly_once() {
    if !have_redis("cross_node_publish_user_and_connection_sends_arrive_exactly_once") {
        return;
    }
    let redis = Redis::start();
    let nodes = three_nodes(&redis);
    let mut subs: Vec<Client> = nodes.iter().map(|n| n.client("alice")).collect();
    {
        let mut refs: Vec<&mut Client> = subs.iter_mut().collect();
        subscribe_all(&redis, &mut refs, "news", 3);
    }
    // Cross-node publish: 20 from a client on node 1, in order, once each
    // on every node (node 1's own subscriber directly, the others through
    // the broker); the marker comes after them from the same node.
    twenty_in_order_on_every_node(&nodes[0], &mut subs, "news", "news");
    // An admin publish on node 2 reaches all three once.
    nodes[1].post("/api/channels/news/publish", r#"{"from":2}"#);
    nodes[1].post("/api/channels/news/publish", r#"{"end":true}"#);
    for ws in subs.iter_mut() {
        assert_eq!(until_marker(ws), [json!({"from": 2})]);
    }

    // Presence across nodes: every node counts all three subscribers.
    for n in &nodes {
        assert!(
            wait_until(Duration::from_secs(5), || n.get("/api/channels/news")
                ["subscribers"]
                == 3),
            "node {} presence: {}",
            n.id,
            n.get("/api/channels/news")
        );
    }

    // Send-to-user from node 3: alice's connection on every node, once.
    let mut conns = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        conns = n_conns(&nodes[2], "alice");
        conns.len() == 3
    }));
    nodes[2].post("/api/users/alice/send", r#"{"dm":1}"#);
    nodes[2].post("/api/users/alice/send", r#"{"end":true}"#);
    for ws in subs.iter_mut() {
        assert_eq!(until_marker(ws), [json!({"dm": 1})]);
    }

    // Send-to-connection from node 3 to each connection by its id (which
    // names its node): only that connection gets it.
    for (i, id) in conns.iter().enumerate() {
        let node: u32 = id.split('.').next().unwrap().parse().unwrap();
        assert!((1..=3).contains(&node), "{id}");
        nodes[2].post(
            &format!("/api/connections/{id}/send"),
            &format!(r#"{{"to":{i}}}"#),
        );
        nodes[2].post(&format!("/api/connections/{id}/send"), r#"{"end":true}"#);
        let ws = &mut subs[node as usize - 1];
        assert_eq!(until_marker(ws), [json!({"to": i})], "{id}");
    }
    // Nobody got anything else meanwhile: a last marker to everyone.
    nodes[0].post("/api/channels/news/publish", r#"{"end":true}"#);
    for ws in subs.iter_mut() {
        assert_eq!(until_marker(ws), Vec::<Value>::new());
    }
    for n in &nodes {
        let c = n.cluster();
        assert_eq!(c["link"], "up");
        assert_eq!(c["not_forwarded"]["link_down"], 0, "{c}");
    }
}

fn n_conns(node: &Node, user: &str) -> Vec<String> {
    node.get(&format!("/api/users/{user}"))["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_killed_node_leaves_presence_within_the_ttl() {
    if !have_redis("a_killed_node_leaves_presence_within_the_ttl") {
        return;
    }
    let redis = Redis::start();
    let mut nodes = three_nodes(&redis);
    let _bob1 = nodes[0].client("bob");
    let mut bob2 = nodes[1].client("bob");
    common::subscribe(&mut bob2, "room");
    assert!(
        wait_until(Duration::from_secs(5), || n_conns(&nodes[2], "bob").len()
            == 2
            && nodes[2].get("/api/channels/room")["subscribers"] == 1),
        "presence never showed both: {:?}",
        n_conns(&nodes[2], "bob")
    );
    nodes[1].kill9();
    let killed = std::time::Instant::now();
    // Still there just after (its lease runs), gone within the TTL (3 s:
    // the lease ends at most 3 s after its last renewal) plus 1.5 s for
    // the polling and a loaded machine.
    assert_eq!(n_conns(&nodes[2], "bob").len(), 2, "the lease still runs");
    assert!(
        wait_until(Duration::from_secs(6), || n_conns(&nodes[2], "bob").len()
            == 1
            && nodes[2].get("/api/channels/room")["subscribers"] == 0),
        "node 2's presence outlived it: {:?}",
        n_conns(&nodes[2], "bob")
    );
    let gone_after = killed.elapsed();
    assert!(gone_after <= Duration::from_millis(4_500), "{gone_after:?}");
    let left = n_conns(&nodes[2], "bob");
    assert!(left[0].starts_with("1."), "{left:?}");
}

#[test]
fn broker_loss_degrades_and_the_nodes_recover_on_their_own() {
    if !have_redis("broker_loss_degrades_and_the_nodes_recover_on_their_own") {
        return;
    }
    let mut redis = Redis::start();
    let nodes = three_nodes(&redis);
    let mut a = nodes[0].client("a");
    let mut b = nodes[1].client("b");
    subscribe_all(&redis, &mut [&mut a, &mut b], "live", 2);
    redis.kill();
    for n in &nodes {
        assert!(
            wait_until(Duration::from_secs(5), || {
                let (s, body) = n.ready();
                s == 200 && body.contains("degraded")
            }),
            "node {} not degraded",
            n.id
        );
    }
    // Local delivery goes on; the cross-node copies are counted.
    for i in 0..5 {
        nodes[0].post("/api/channels/live/publish", &format!(r#"{{"i":{i}}}"#));
    }
    nodes[0].post("/api/channels/live/publish", r#"{"end":true}"#);
    let want: Vec<Value> = (0..5).map(|i| json!({"i": i})).collect();
    assert_eq!(until_marker(&mut a), want);
    let c = nodes[0].cluster();
    assert_eq!(c["link"], "down");
    assert_eq!(c["not_forwarded"]["link_down"], 6, "{c}");
    let (_, metrics) = http(nodes[0].admin(), "GET", "/metrics", None);
    assert!(
        metrics.contains("wsedge_cluster_not_forwarded_total{reason=\"link_down\"} 6"),
        "{metrics}"
    );

    // Back on the same port: every node reconnects and resubscribes.
    assert!(redis.spawn(), "redis restarts on its port");
    for n in &nodes {
        assert!(
            wait_until(Duration::from_secs(10), || n.ready()
                == (200, "ready\n".into())),
            "node {} did not recover",
            n.id
        );
        assert!(n.cluster()["reconnects"].as_u64().unwrap() >= 1);
    }
    assert!(wait_until(Duration::from_secs(5), || redis
        .numsub("wsedge:c:live")
        == Some(2)));
    nodes[0].post("/api/channels/live/publish", r#"{"again":1}"#);
    nodes[0].post("/api/channels/live/publish", r#"{"end":true}"#);
    assert_eq!(until_marker(&mut a), [json!({"again": 1})]);
    assert_eq!(
        until_marker(&mut b),
        [json!({"again": 1})],
        "cross-node delivery resumed"
    );
    // No full-bus fan-out: node 3, with no subscriber of "live", is not
    // subscribed to it and received none of its messages.
    assert_eq!(redis.numsub("wsedge:c:live"), Some(2));
    assert_eq!(nodes[2].cluster()["received"], 0);
    assert_eq!(nodes[1].cluster()["received"], 2);
}

/// The broker stopped (`signal("-STOP")`): `node`'s probe notices within
/// two intervals (1 s each) plus the tick and the HTTP round trips, and
/// counts it; `while_stopped` sees the cluster status then; continued, the
/// node recovers by itself.
fn the_probe_catches_a_stopped_broker(
    node: &Node,
    signal: impl Fn(&str),
    while_stopped: impl FnOnce(&Value),
) {
    signal("-STOP");
    let stopped = std::time::Instant::now();
    assert!(
        wait_until(Duration::from_secs(4), || node.ready().0 == 503),
        "the probe never noticed"
    );
    assert!(stopped.elapsed() < Duration::from_secs(4));
    let c = node.cluster();
    assert!(c["probe_failures"].as_u64().unwrap() >= 1, "{c}");
    while_stopped(&c);
    signal("-CONT");
    assert!(
        wait_until(Duration::from_secs(10), || node.ready().0 == 200),
        "no recovery after SIGCONT"
    );
}

#[test]
fn a_stopped_broker_is_caught_by_the_probe() {
    if !have_redis("a_stopped_broker_is_caught_by_the_probe") {
        return;
    }
    let redis = Redis::start();
    let node = Node::start(&redis, 7, true);
    let quiet = node.cluster();
    assert_eq!(quiet["probe_failures"], 0);
    the_probe_catches_a_stopped_broker(
        &node,
        |sig| redis.signal(sig),
        |c| {
            assert!(node.ready().1.contains("degraded"));
            assert_eq!(c["link"], "down");
        },
    );
}

/// NATS as the bus: cross-node publish and send-to-user, each once and in
/// order; the server killed → degraded, local delivery goes on; restarted
/// on its port → the client reconnects and resubscribes by itself.
#[test]
fn nats_cross_node_delivery_exactly_once_and_recovery() {
    let Some(bin) = nats_binary("nats_cross_node_delivery_exactly_once_and_recovery") else {
        return;
    };
    let mut nats = Nats::start(&bin);
    let nodes = [1, 2, 3].map(|id| Node::start_on(&nats.url(), id, false));
    let mut subs: Vec<Client> = nodes.iter().map(|n| n.client("carol")).collect();
    for ws in subs.iter_mut() {
        common::subscribe(ws, "news.eu *");
    }
    // Per node: its own subject, the channel's and carol's.
    assert!(
        wait_until(Duration::from_secs(10), || nats.subscriptions() >= Some(9)),
        "subscriptions: {:?}",
        nats.subscriptions()
    );
    twenty_in_order_on_every_node(&nodes[0], &mut subs, "news.eu *", "news.eu%20*");
    nodes[2].post("/api/users/carol/send", r#"{"dm":1}"#);
    nodes[2].post("/api/users/carol/send", r#"{"end":true}"#);
    for ws in subs.iter_mut() {
        assert_eq!(until_marker(ws), [json!({"dm": 1})]);
    }

    nats.kill();
    for n in &nodes {
        assert!(
            wait_until(Duration::from_secs(5), || n.ready().1.contains("degraded")),
            "node {} not degraded",
            n.id
        );
    }
    nodes[0].post("/api/channels/news.eu%20*/publish", r#"{"local":1}"#);
    nodes[0].post("/api/channels/news.eu%20*/publish", r#"{"end":true}"#);
    assert_eq!(until_marker(&mut subs[0]), [json!({"local": 1})]);
    assert_eq!(nodes[0].cluster()["not_forwarded"]["link_down"], 2);

    assert!(nats.spawn(), "nats-server restarts on its port");
    for n in &nodes {
        assert!(
            wait_until(Duration::from_secs(10), || n.ready()
                == (200, "ready\n".into())),
            "node {} did not recover",
            n.id
        );
    }
    assert!(wait_until(Duration::from_secs(10), || nats.subscriptions() >= Some(9)));
    nodes[1].post("/api/channels/news.eu%20*/publish", r#"{"again":1}"#);
    nodes[1].post("/api/channels/news.eu%20*/publish", r#"{"end":true}"#);
    for ws in subs.iter_mut() {
        assert_eq!(until_marker(ws), [json!({"again": 1})]);
    }
}

#[test]
fn a_stopped_nats_server_is_caught_by_the_probe() {
    let Some(bin) = nats_binary("a_stopped_nats_server_is_caught_by_the_probe") else {
        return;
    };
    let nats = Nats::start(&bin);
    let node = Node::start_on(&nats.url(), 8, true);
    the_probe_catches_a_stopped_broker(&node, |sig| nats.signal(sig), |_| {});
}

/// The broker killed for ~10 s in the middle of a stream of client
/// publishes (3 000 over ~10 s): the local subscriber gets every one, in order, and the publishing node
/// accounts for each cross-node copy exactly once (handed to the broker,
/// or not forwarded because the link was down); after the broker comes
/// back (empty: no persistence) the nodes write their presence again.
#[test]
fn under_load_a_broker_kill_loses_no_local_publish_and_counts_every_cross_node_one() {
    if !have_redis(
        "under_load_a_broker_kill_loses_no_local_publish_and_counts_every_cross_node_one",
    ) {
        return;
    }
    let mut redis = Redis::start();
    let nodes = three_nodes(&redis);
    let mut local = nodes[0].client("l");
    let mut remote = nodes[1].client("r");
    subscribe_all(&redis, &mut [&mut local, &mut remote], "load", 2);
    let mut publisher = nodes[0].client("p");
    const N: u64 = 3_000;
    let publishes = std::thread::spawn(move || {
        for i in 0..N {
            send_json(
                &mut publisher,
                json!({"type":"publish","channel":"load","data":{"i":i},"id":i}),
            );
            // 30 bursts of 100, 340 ms apart: the stream lasts ~10 s,
            // and so does the broker's absence (the issue's acceptance).
            if i % 100 == 99 {
                std::thread::sleep(Duration::from_millis(340));
            }
        }
        for i in 0..N {
            assert_eq!(next_json(&mut publisher), json!({"type":"ack","id":i}));
        }
    });
    std::thread::sleep(Duration::from_millis(150));
    redis.kill();
    publishes.join().unwrap();
    nodes[0].post("/api/channels/load/publish", r#"{"end":true}"#);
    let want: Vec<Value> = (0..N).map(|i| json!({"i": i})).collect();
    assert_eq!(
        until_marker(&mut local),
        want,
        "every local publish, in order"
    );
    let c = nodes[0].cluster();
    let forwarded = c["forwarded"].as_u64().unwrap();
    let lost = c["not_forwarded"]["link_down"].as_u64().unwrap()
        + c["not_forwarded"]["queue_full"].as_u64().unwrap();
    assert_eq!(
        forwarded + lost,
        N + 1,
        "each cross-node copy counted once: {c}"
    );
    assert!(lost > 0, "the broker was down for part of it: {c}");

    assert!(redis.spawn(), "redis restarts on its port");
    for n in &nodes {
        assert!(wait_until(Duration::from_secs(10), || n.ready()
            == (200, "ready\n".into())));
    }
    // Presence written again into the new, empty Redis.
    assert!(
        wait_until(Duration::from_secs(10), || nodes[2]
            .get("/api/channels/load")["subscribers"]
            == 2),
        "{}",
        nodes[2].get("/api/channels/load")
    );
}

/// A node leaves a channel's subject `cluster.unsubscribe_linger` after
/// its last subscriber left, and not before; a subscriber coming back
/// within the linger costs no new subscribe.
#[test]
fn a_node_unsubscribes_after_the_linger() {
    if !have_redis("a_node_unsubscribes_after_the_linger") {
        return;
    }
    let redis = Redis::start();
    let node = Node::start(&redis, 4, false);
    let mut ws = node.client("u");
    subscribe_all(&redis, &mut [&mut ws], "brief", 1);
    send_json(
        &mut ws,
        json!({"type":"unsubscribe","channel":"brief","id":2}),
    );
    assert_eq!(next_json(&mut ws), json!({"type":"ack","id":2}));
    let left = std::time::Instant::now();
    // Linger is 1 s here: still subscribed well inside it.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(redis.numsub("wsedge:c:brief"), Some(1));
    assert!(wait_until(Duration::from_secs(5), || redis
        .numsub("wsedge:c:brief")
        == Some(0)));
    assert!(
        left.elapsed() >= Duration::from_secs(1),
        "unsubscribed before the linger"
    );
}

/// The admin API on node 2 sends to and disconnects a connection of
/// node 1 and answers what node 1 says: 200 while it is open, 404 once it
/// is gone (as for one of node 2's own).
fn admin_ops_on_another_nodes_connection(broker: &str, kill_broker: impl FnOnce()) {
    let nodes = [1, 2].map(|id| Node::start_on(broker, id, false));
    let mut ws = nodes[0].client("dave");
    let mut ids = Vec::new();
    assert!(wait_until(Duration::from_secs(5), || {
        ids = n_conns(&nodes[0], "dave");
        ids.len() == 1
    }));
    let id = &ids[0];
    assert!(id.starts_with("1."), "{id}");
    let admin2 = nodes[1].admin();
    let send = |body: &str| {
        http(
            admin2,
            "POST",
            &format!("/api/connections/{id}/send"),
            Some(body),
        )
    };
    let (status, body) = send(r#"{"x":1}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(next_json(&mut ws), json!({"type":"message","data":{"x":1}}));
    let delete = || {
        http(
            admin2,
            "DELETE",
            &format!("/api/connections/{id}?code=4000"),
            None,
        )
    };
    assert_eq!(delete().0, 200);
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Close(f)) => {
                assert_eq!(f.map(|f| u16::from(f.code)), Some(4000));
                break;
            }
            Ok(_) => continue,
            Err(e) => panic!("no close frame: {e}"),
        }
    }
    // Gone on node 1: node 2 says so, for a send and a disconnect.
    assert!(wait_until(Duration::from_secs(10), || send("2").0 == 404));
    let (status, body) = delete();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("unknown_connection"), "{body}");
    // An id node 1 never gave out: the same.
    let (status, _) = http(
        admin2,
        "POST",
        "/api/connections/1.0-9999-1/send",
        Some("1"),
    );
    assert_eq!(status, 404);
    let c = nodes[1].cluster();
    assert!(c["requests"]["answered"].as_u64() >= Some(5), "{c}");
    assert_eq!(c["requests"]["timed_out"], 0, "{c}");
    assert!(nodes[0].cluster()["requests"]["served"].as_u64() >= Some(5));
    // Node 1 stopped: no answer within cluster.request_timeout is 504
    // (the outcome unknown), counted.
    nodes[0].signal("-STOP");
    let (status, body) = http(
        admin2,
        "POST",
        "/api/connections/1.0-9999-1/send",
        Some("1"),
    );
    nodes[0].signal("-CONT");
    assert_eq!(status, 504, "{body}");
    assert_eq!(nodes[1].cluster()["requests"]["timed_out"], 1);
    // The broker gone: node 1 cannot be reached, 503 at once.
    kill_broker();
    assert!(wait_until(Duration::from_secs(10), || nodes[1]
        .ready()
        .1
        .contains("degraded")));
    let (status, body) = delete();
    assert_eq!(status, 503, "{body}");
    assert!(nodes[1].cluster()["requests"]["unavailable"].as_u64() >= Some(1));
}

#[test]
fn admin_send_and_disconnect_of_another_nodes_connection_answer_truthfully() {
    if !have_redis("admin_send_and_disconnect_of_another_nodes_connection_answer_truthfully") {
        return;
    }
    let mut redis = Redis::start();
    let url = redis.url();
    admin_ops_on_another_nodes_connection(&url, || redis.kill());
}

#[test]
fn admin_send_and_disconnect_of_another_nodes_connection_over_nats() {
    let Some(bin) = nats_binary("admin_send_and_disconnect_of_another_nodes_connection_over_nats")
    else {
        return;
    };
    let mut nats = Nats::start(&bin);
    let url = nats.url();
    admin_ops_on_another_nodes_connection(&url, || nats.kill());
}

/// A client on node 2 subscribes to a channel new to the cluster and, the
/// instant its ack arrives, a client on node 1 publishes on it: the
/// subscriber gets the message (the ack waited for node 2's broker
/// subscription). 200 fresh channels, so a window between the ack and the
/// subscription would show.
fn a_publish_right_after_the_ack_reaches_the_new_subscriber(broker: &str) {
    let nodes = [1, 2].map(|id| Node::start_on(broker, id, false));
    let mut publisher = nodes[0].client("pub");
    let mut sub = nodes[1].client("sub");
    for i in 0..200 {
        let channel = format!("fresh-{i}");
        send_json(
            &mut sub,
            json!({"type":"subscribe","channel":channel,"id":i}),
        );
        assert_eq!(next_json(&mut sub), json!({"type":"ack","id":i}));
        send_json(
            &mut publisher,
            json!({"type":"publish","channel":channel,"data":{"i":i}}),
        );
        // Read with a 10 s timeout: a missed publish fails here.
        assert_eq!(
            next_json(&mut sub),
            json!({"type":"message","channel":channel,"data":{"i":i}}),
            "channel {channel}"
        );
        // Under hub.max_subscriptions.
        send_json(&mut sub, json!({"type":"unsubscribe","channel":channel}));
    }
}

#[test]
fn a_publish_right_after_the_subscribe_ack_reaches_the_subscriber() {
    on_redis(
        "a_publish_right_after_the_subscribe_ack_reaches_the_subscriber",
        a_publish_right_after_the_ack_reaches_the_new_subscriber,
    );
}

#[test]
fn a_publish_right_after_the_subscribe_ack_reaches_the_subscriber_over_nats() {
    on_nats(
        "a_publish_right_after_the_subscribe_ack_reaches_the_subscriber_over_nats",
        a_publish_right_after_the_ack_reaches_the_new_subscriber,
    );
}

/// `wsedge serve --node-id {id}` against `broker`: its exit code and log,
/// waited for (it must refuse to start).
fn refused_start(broker: &str, id: u32) -> (Option<i32>, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsedge"))
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--broker", broker, "--node-id", &id.to_string()])
        .env("WSEDGE_CLUSTER_PROBE_INTERVAL", PROBE)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let code = child.wait().unwrap().code();
    (code, log)
}

/// A claim of node ids against `broker` where node 1 is live: 1 taken,
/// 2 free, a random draw that hits 1 draws again.
fn node_ids_are_claimed_once(broker: &str) {
    let one = Node::start_on(broker, 1, false);
    let (code, log) = refused_start(broker, 1);
    assert_ne!(code, Some(0), "{log}");
    assert!(code.is_some(), "exited, not killed: {log}");
    assert!(log.contains("in use by a live node"), "{log}");
    // Node 1 is untouched, and another id starts.
    assert!(one.ready().1.contains("ready"));
    let two = Node::start_on(broker, 2, false);
    let mut cfg = wsedge::config::ClusterConfig {
        broker: Some(broker.into()),
        probe_interval: Duration::from_millis(500),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut draws = [1, 2, 3].into_iter();
    let drawn = rt.block_on(wsedge::cluster::claim::claim(&cfg, || {
        draws.next().unwrap()
    }));
    assert_eq!(drawn.unwrap(), 3, "1 and 2 are live: drawn again");
    cfg.node_id = 2;
    assert!(rt
        .block_on(wsedge::cluster::claim::claim(&cfg, || 9))
        .is_err());
    drop(two);
    // Gone with its process: the id is free again at once (no lease to
    // wait out).
    assert!(wait_until(Duration::from_secs(10), || rt
        .block_on(wsedge::cluster::claim::claim(&cfg, || 9))
        .is_ok_and(|n| n == 2)));
}

#[test]
fn a_live_node_id_is_refused_and_a_random_one_drawn_again() {
    on_redis(
        "a_live_node_id_is_refused_and_a_random_one_drawn_again",
        node_ids_are_claimed_once,
    );
}

#[test]
fn a_live_node_id_is_refused_over_nats() {
    on_nats(
        "a_live_node_id_is_refused_over_nats",
        node_ids_are_claimed_once,
    );
}
