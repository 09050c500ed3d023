//! Gateway mode in front of a real Django application built for AWS API
//! Gateway: the PyPI package `django-aws-api-gateway-websockets` (pinned)
//! in the minimal project tests/gateway/django_backend (sqlite in a temp
//! dir). A client connects with the package's `ws_token`, session cookie
//! and Origin; the package's `$connect` view accepts and records the
//! session; a `{"action": "sendMessage", …}` message reaches the package's
//! handler, which answers through boto3's `post_to_connection` to wsedge's
//! `@connections` API, and the client receives that answer; the client
//! vanishes (no close frame) and the package sees exactly one
//! `$disconnect`.
//!
//! The only change to the package is the management endpoint it hard-codes
//! (tests/gateway/django_backend/gwtest/endpoint_patch.py; README "Using
//! django-aws-api-gateway-websockets"). Needs a Python with Django, the
//! package and boto3 (pinned in tests/gateway/requirements.txt;
//! `scripts/test` installs them into target/test-venv). Without them the
//! test prints one "skipped: …" line, unless `WSEDGE_REQUIRE_INTEROP=1`
//! (set by scripts/test and CI).

mod common;
#[path = "gateway/harness.rs"]
mod harness;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::wait_until;
use harness::*;
use serde_json::{json, Value};

const API_ID: &str = "djangotest1";
const STAGE: &str = "production";
const MARKER: &str = "django-aws-api-gateway-websockets says hi";

/// tests/gateway/django_backend/run.sh: migrate a fresh sqlite DB, create
/// the package's `ApiGateway` row, then `runserver` (killed on drop).
struct Django {
    proc: Proc,
    addr: SocketAddr,
    _data: TempDir,
}

impl Django {
    fn start(python: &str, port: u16, wsedge_admin: SocketAddr) -> Django {
        let data = TempDir::new("gw-django");
        let mut cmd = Command::new("bash");
        cmd.arg(gateway_file("django_backend/run.sh"))
            .env("PYTHON", python)
            .env("PORT", port.to_string())
            .env(
                "WSEDGE_MGMT_ENDPOINT",
                format!("http://{wsedge_admin}/{{stage}}"),
            )
            .env("WSEDGE_API_ID", API_ID)
            .env("WSEDGE_STAGE", STAGE)
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_REGION", "us-east-1")
            .env("GW_DATA_DIR", &data.0);
        for var in [
            "AWS_PROFILE",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
            "GW_GATEWAY_SECRET",
            "DJANGO_SETTINGS_MODULE",
        ] {
            cmd.env_remove(var);
        }
        let mut django = Django {
            proc: Proc::spawn(cmd),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            _data: data,
        };
        let ready = django.proc.out.find(Duration::from_secs(120), |l| {
            l.strip_prefix("GW_READY ")
                .and_then(|j| serde_json::from_str::<Value>(j).ok())
        });
        let Some(ready) = ready else {
            panic!(
                "the Django backend printed no GW_READY line:\n{}",
                django.proc.out.tail(40)
            );
        };
        assert_eq!(ready["api_id"], API_ID, "{ready}");
        assert_eq!(ready["stage"], STAGE, "{ready}");
        let start = Instant::now();
        while TcpStream::connect(django.addr).is_err() {
            assert!(
                django.proc.alive() && start.elapsed() < Duration::from_secs(60),
                "Django never listened on {}:\n{}",
                django.addr,
                django.proc.out.tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let (status, body) = common::http(django.addr, "GET", "/test/setup", None);
        assert_eq!(status, 200, "{body}");
        django
    }

    /// GET a test helper view (tests/gateway/django_backend/gwtest/views.py).
    fn get(&self, path: &str) -> Value {
        let (status, body) = common::http(self.addr, "GET", path, None);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    fn sessions(&self) -> Vec<Value> {
        self.get("/test/sessions")["sessions"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn session(&self, id: &str) -> Value {
        let rows = self.get(&format!("/test/sessions?connection_id={}", enc(id)))["sessions"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(rows.len(), 1, "session {id}: {rows:?}");
        rows[0].clone()
    }

    fn events(&self, id: &str, route: &str) -> Vec<Value> {
        self.get(&format!(
            "/test/events?connection_id={}&route={route}",
            enc(id)
        ))["events"]
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Percent-encodes a connection id for a query string.
fn enc(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn django_package_sees_connect_message_reply_and_one_disconnect() {
    let Some(python) = python_with(
        "gateway Django test",
        &["django", "django_aws_api_gateway_websockets", "boto3"],
    ) else {
        return;
    };

    // wsedge first (the backend is only called when a client comes), with
    // the package's layout: {base}connect|disconnect|default, and the
    // custom route the package's ApiGatewayAdditionalRoute names.
    let django_port = free_port();
    let base = format!("http://127.0.0.1:{django_port}/ws/");
    let conf_dir = TempDir::new("gw-conf");
    let conf = conf_dir.0.join("wsedge.toml");
    std::fs::write(
        &conf,
        format!(
            "[gateway]\nbackend = \"{base}\"\napi_id = \"{API_ID}\"\nstage = \"{STAGE}\"\n\n\
             [[gateway.routes]]\nkey = \"sendMessage\"\nurl = \"{base}sendMessage\"\n\
             two_way = false\n"
        ),
    )
    .unwrap();
    let wsedge = Wsedge::start(&["--config", conf.to_str().unwrap()]);
    let django = Django::start(&python, django_port, wsedge.admin);
    let explain = |what: &str| {
        format!(
            "{what}\nwsedge log:\n{}\nDjango log:\n{}",
            wsedge.log.tail(30),
            django.proc.out.tail(40)
        )
    };

    // The package's ws_token, bound to a logged-in Django session: the
    // upgrade carries the token and channel in its query, the session
    // cookie, and an Origin on the Django host (the package compares it
    // with the Host of the integration request).
    let token = django.get("/test/token?username=alice");
    let ws_token = token["ws_token"].as_str().unwrap().to_string();
    let cookie = token["cookie"].as_str().unwrap().to_string();
    let origin = token["origin"].as_str().unwrap().to_string();
    let url = format!(
        "ws://{}/{STAGE}?ws_token={ws_token}&channel=lobby",
        wsedge.addr
    );
    let headers = [
        ("Origin", origin.as_str()),
        ("Cookie", cookie.as_str()),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("User-Agent", "wsedge-django-test/1.0"),
    ];
    let mut ws = ws_connect(&url, &headers).unwrap_or_else(|(status, body)| {
        panic!(
            "{}",
            explain(&format!(
                "the upgrade was refused: {status} {body}\nDjango saw: {:#}",
                django.get("/test/events")
            ))
        )
    });

    // The package's $connect view accepted and recorded the session.
    let sessions = django.sessions();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let id = sessions[0]["connection_id"].as_str().unwrap().to_string();
    assert!(is_connection_id(&id), "connectionId {id:?}");
    assert_eq!(sessions[0]["connected"], true);
    assert_eq!(sessions[0]["user"], "alice");
    assert_eq!(sessions[0]["channel_name"], "lobby");
    assert_eq!(sessions[0]["api_id"], API_ID);
    let connect = django.events(&id, "connect");
    assert_eq!(connect.len(), 1, "{connect:?}");
    assert_eq!(connect[0]["status_code"], 200, "{:#}", connect[0]);
    assert_eq!(connect[0]["method"], "POST");
    assert_eq!(
        connect[0]["query_string"],
        format!("ws_token={ws_token}&channel=lobby")
    );
    let h = &connect[0]["headers"];
    assert_eq!(h["Host"], format!("127.0.0.1:{django_port}"), "{h:#}");
    assert_eq!(h["Origin"], origin, "{h:#}");
    assert_eq!(h["Cookie"], cookie, "{h:#}");
    assert_eq!(h["User-Agent"], "wsedge-django-test/1.0", "{h:#}");

    // A message for the custom route reaches the package's sendMessage
    // handler, which replies through boto3 → wsedge's @connections → the
    // client. The integration's own answer ({"ok": true, …}) is not
    // forwarded: the route is one-way.
    ws.send(tungstenite::Message::text(
        json!({"action": "sendMessage", "message": "hello wsedge"}).to_string(),
    ))
    .unwrap();
    let reply = match next_message(&mut ws, Duration::from_secs(30)) {
        Got::Text(t) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!("{}", explain(&format!("instead of the reply: {other:?}"))),
    };
    assert_eq!(reply["marker"], MARKER, "{reply}");
    assert_eq!(reply["handler"], "sendMessage", "{reply}");
    assert_eq!(reply["echo"], "hello wsedge", "{reply}");
    assert_eq!(reply["connectionId"], id.as_str(), "{reply}");
    assert_eq!(reply["user"], "alice", "{reply}");
    // The reply reached the client while the handler ran; its request is
    // logged once the handler returned.
    assert!(wait_until(Duration::from_secs(10), || django
        .events(&id, "sendMessage")
        .len()
        == 1));
    let sent = django.events(&id, "sendMessage");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["status_code"], 200, "{:#}", sent[0]);
    assert_eq!(
        sent[0]["body"],
        json!({"action": "sendMessage", "message": "hello wsedge"}).to_string()
    );

    // Any other action goes to $default, handled by the package's default().
    ws.send(tungstenite::Message::text(
        json!({"action": "shout", "message": "again"}).to_string(),
    ))
    .unwrap();
    let reply = match next_message(&mut ws, Duration::from_secs(30)) {
        Got::Text(t) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!("{}", explain(&format!("instead of the reply: {other:?}"))),
    };
    assert_eq!(reply["handler"], "default", "{reply}");
    assert_eq!(reply["action"], "shout", "{reply}");
    assert_eq!(reply["echo"], "again", "{reply}");
    assert!(wait_until(Duration::from_secs(10), || django
        .events(&id, "default")
        .len()
        == 1));
    assert_eq!(
        next_message(&mut ws, Duration::from_secs(1)),
        Got::Nothing,
        "a frame beyond the handlers' replies (an integration response forwarded?)"
    );
    // The package counts the $connect (its default 1) and each message.
    assert_eq!(django.session(&id)["request_count"], 3);

    // The client vanishes: the TCP connection ends without a close frame.
    // The package marks the session disconnected, after exactly one
    // $disconnect (it answers 200 to a repeated one too, so count calls).
    vanish(ws);
    assert!(
        wait_until(Duration::from_secs(30), || django.session(&id)["connected"]
            == false),
        "{}",
        explain("the session never became disconnected")
    );
    std::thread::sleep(Duration::from_secs(2));
    let row = django.session(&id);
    assert_eq!(row["disconnect_calls"], 1, "{row}");
    assert_eq!(row["connect_calls"], 1, "{row}");
    assert_eq!(row["message_calls"], 2, "{row}");
    let disconnect = django.events(&id, "disconnect");
    assert_eq!(disconnect.len(), 1);
    assert_eq!(disconnect[0]["status_code"], 200, "{:#}", disconnect[0]);
    assert_eq!(disconnect[0]["body"], "");

    // The token was single-use: the same upgrade again is refused with the
    // package's status, no session is made, and a refused $connect gets no
    // $disconnect.
    match ws_connect(&url, &headers) {
        Err((status, _)) => assert_eq!(status, 400),
        Ok(_) => panic!("a used ws_token was accepted"),
    }
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(django.sessions().len(), 1);
    let all = django.get("/test/events")["events"]
        .as_array()
        .unwrap()
        .clone();
    let routes: Vec<_> = all.iter().map(|e| e["route"].as_str().unwrap()).collect();
    assert_eq!(
        routes,
        ["connect", "sendMessage", "default", "disconnect", "connect"],
        "{all:#?}"
    );
}
