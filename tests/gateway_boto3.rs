//! Gateway mode against the real AWS SDK: boto3's
//! `apigatewaymanagementapi` client, pointed at wsedge's admin listener
//! (`endpoint_url=http://127.0.0.1:ADMIN/{stage}`) and signing with SigV4,
//! posts to, reads and deletes a live gateway connection, gets
//! `client.exceptions.GoneException` for a closed one, and is refused with
//! `ForbiddenException` when it signs with the wrong key.
//!
//! The WebSocket client (tungstenite) and the backend (a recording HTTP
//! server in this process) are on the Rust side; boto3 runs in
//! tests/gateway/mgmt_client.py, one call per line. Needs a Python with
//! boto3 (pinned in tests/gateway/requirements.txt; `scripts/test` installs
//! it into target/test-venv). Without it the test prints one "skipped: …"
//! line, unless `WSEDGE_REQUIRE_INTEROP=1` (set by scripts/test and CI).

mod common;
#[path = "gateway/harness.rs"]
mod harness;

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use common::wait_until;
use harness::*;
use serde_json::{json, Value};

const STAGE: &str = "dev";
const API_ID: &str = "boto3test1";
const USER_AGENT: &str = "wsedge-boto3-test/1.0";

/// boto3 in a child process: one JSON command a line in, one answer out.
struct Mgmt {
    proc: Proc,
    stdin: std::process::ChildStdin,
}

impl Mgmt {
    fn start(python: &str, endpoint: &str) -> Mgmt {
        let mut cmd = Command::new(python);
        cmd.arg(gateway_file("mgmt_client.py")).args([
            "--endpoint",
            endpoint,
            "--key",
            ACCESS_KEY_ID,
            "--secret",
            SECRET_ACCESS_KEY,
            "--region",
            "us-east-1",
        ]);
        // Nothing from the environment may change what boto3 signs with.
        for var in [
            "AWS_PROFILE",
            "AWS_CONFIG_FILE",
            "AWS_SHARED_CREDENTIALS_FILE",
            "AWS_SESSION_TOKEN",
            "AWS_ENDPOINT_URL",
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
        ] {
            cmd.env_remove(var);
        }
        let (proc, stdin) = Proc::spawn_with_stdin(cmd);
        let mgmt = Mgmt { proc, stdin };
        let ready = mgmt.answer(Duration::from_secs(60), "ready");
        assert!(
            ready.is_some(),
            "mgmt_client.py did not start:\n{}",
            mgmt.proc.out.tail(30)
        );
        mgmt
    }

    /// The next JSON line with `key`, within `limit`.
    fn answer(&self, limit: Duration, key: &str) -> Option<Value> {
        self.proc.out.find(limit, |line| {
            serde_json::from_str::<Value>(line)
                .ok()
                .filter(|v| v.get(key).is_some())
        })
    }

    fn call(&mut self, cmd: Value) -> Value {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.answer(Duration::from_secs(30), "ok")
            .unwrap_or_else(|| panic!("no answer to {cmd}:\n{}", self.proc.out.tail(30)))
    }
}

struct Setup {
    backend: Backend,
    wsedge: Wsedge,
    mgmt: Mgmt,
}

impl Setup {
    fn start(test: &str) -> Option<Setup> {
        let python = python_with(test, &["boto3", "botocore"])?;
        let backend = Backend::start();
        let wsedge = Wsedge::start(&[
            "--gateway-backend",
            &backend.base_url(),
            "--gateway-api-id",
            API_ID,
            "--gateway-stage",
            STAGE,
        ]);
        let endpoint = format!("http://{}/{STAGE}", wsedge.admin);
        let mgmt = Mgmt::start(&python, &endpoint);
        Some(Setup {
            backend,
            wsedge,
            mgmt,
        })
    }

    /// A client on `/{stage}?room=blue`, and its connection id as the
    /// backend's `$connect` saw it.
    fn connect(&self) -> (Client, String) {
        let before = self.backend.requests().len();
        let url = format!("ws://{}/{STAGE}?room=blue", self.wsedge.addr);
        let ws = ws_connect(&url, &[("User-Agent", USER_AGENT)]).unwrap_or_else(|(s, b)| {
            panic!(
                "the upgrade was refused: {s} {b}\nwsedge log:\n{}",
                self.wsedge.log.tail(20)
            )
        });
        // $connect runs before the 101.
        let connects: Vec<_> = self.backend.requests()[before..]
            .iter()
            .filter(|r| r.path() == "/ws/connect")
            .cloned()
            .collect();
        assert_eq!(connects.len(), 1, "one $connect per upgrade: {connects:?}");
        let c = &connects[0];
        assert_eq!(c.method, "POST");
        assert_eq!(c.target, "/ws/connect?room=blue", "the query is forwarded");
        assert_eq!(c.header("x-amzn-apigateway-api-id"), Some(API_ID));
        let id = c.connection_id().to_string();
        assert!(is_connection_id(&id), "connectionId {id:?}");
        (ws, id)
    }

    fn explain(&self) -> String {
        format!(
            "backend saw: {:#?}\nwsedge log:\n{}\nboto3 driver:\n{}",
            self.backend
                .requests()
                .iter()
                .map(|r| format!("{} {} id={}", r.method, r.target, r.connection_id()))
                .collect::<Vec<_>>(),
            self.wsedge.log.tail(30),
            self.mgmt.proc.out.tail(20)
        )
    }
}

fn assert_gone(answer: &Value, what: &str) {
    assert_eq!(answer["ok"], false, "{what}: {answer}");
    assert_eq!(answer["status"], 410, "{what}: {answer}");
    assert_eq!(answer["code"], "GoneException", "{what}: {answer}");
    assert_eq!(
        answer["error_type_header"], "GoneException",
        "{what}: {answer}"
    );
    assert!(
        answer["is"]
            .as_array()
            .unwrap()
            .contains(&json!("GoneException")),
        "{what}: not a client.exceptions.GoneException: {answer}"
    );
}

fn assert_forbidden(answer: &Value, what: &str) {
    assert_eq!(answer["ok"], false, "{what}: {answer}");
    assert_eq!(answer["status"], 403, "{what}: {answer}");
    assert_eq!(answer["code"], "ForbiddenException", "{what}: {answer}");
    assert!(
        answer["is"]
            .as_array()
            .unwrap()
            .contains(&json!("ForbiddenException")),
        "{what}: not a client.exceptions.ForbiddenException: {answer}"
    );
}

#[test]
fn boto3_posts_gets_and_deletes_a_connection_then_gets_gone() {
    let Some(mut t) = Setup::start("gateway boto3 test") else {
        return;
    };
    let (mut ws, id) = t.connect();

    // post_to_connection: text arrives as text, other bytes as binary.
    let a = t
        .mgmt
        .call(json!({"op": "post", "id": id, "data": "hello from boto3"}));
    assert_eq!(a["ok"], true, "post_to_connection: {a}\n{}", t.explain());
    assert_eq!(a["status"], 200, "{a}");
    assert_eq!(
        next_message(&mut ws, Duration::from_secs(10)),
        Got::Text("hello from boto3".into())
    );
    let a = t
        .mgmt
        .call(json!({"op": "post", "id": id, "hex": "ff00fe"}));
    assert_eq!(a["ok"], true, "post_to_connection (binary): {a}");
    assert_eq!(
        next_message(&mut ws, Duration::from_secs(10)),
        Got::Binary(vec![0xff, 0x00, 0xfe])
    );

    // get_connection: the fields botocore models, times as API Gateway
    // writes them.
    let a = t.mgmt.call(json!({"op": "get", "id": id}));
    assert_eq!(a["ok"], true, "get_connection: {a}\n{}", t.explain());
    assert_eq!(a["status"], 200, "{a}");
    let raw = &a["raw"];
    for field in ["connectedAt", "lastActiveAt"] {
        let v = raw[field].as_str().unwrap_or_default();
        assert!(
            is_iso8601_millis_z(v),
            "{field} {v:?} is not ISO 8601 UTC with milliseconds: {raw}"
        );
    }
    assert!(raw["connectedAt"].as_str() <= raw["lastActiveAt"].as_str());
    assert_eq!(raw["identity"]["sourceIp"], "127.0.0.1", "{raw}");
    assert_eq!(raw["identity"]["userAgent"], USER_AGENT, "{raw}");
    let parsed = &a["result"];
    for field in ["ConnectedAt", "LastActiveAt"] {
        assert!(parsed[field].is_string(), "boto3 parsed no {field}: {a}");
    }
    assert_eq!(parsed["Identity"]["SourceIp"], "127.0.0.1", "{a}");

    // delete_connection: 204, the client is closed, the backend gets its
    // one $disconnect.
    assert!(t.backend.calls("/ws/disconnect", &id).is_empty());
    let a = t.mgmt.call(json!({"op": "delete", "id": id}));
    assert_eq!(a["ok"], true, "delete_connection: {a}\n{}", t.explain());
    assert_eq!(a["status"], 204, "{a}");
    match next_message(&mut ws, Duration::from_secs(10)) {
        Got::Closed(_) => {}
        other => panic!("after delete_connection the client got {other:?}"),
    }
    assert!(
        wait_until(Duration::from_secs(10), || !t
            .backend
            .calls("/ws/disconnect", &id)
            .is_empty()),
        "no $disconnect after delete_connection\n{}",
        t.explain()
    );
    std::thread::sleep(Duration::from_secs(1));
    let disconnects = t.backend.calls("/ws/disconnect", &id);
    assert_eq!(disconnects.len(), 1, "{disconnects:?}");
    let d = &disconnects[0];
    assert_eq!(d.method, "POST");
    assert!(d.body.is_empty(), "$disconnect has an empty body: {d:?}");
    assert_eq!(d.header("content-length"), Some("0"), "{d:?}");
    assert_eq!(
        d.header("user-agent"),
        Some(format!("AmazonAPIGateway_{API_ID}").as_str()),
        "{d:?}"
    );

    // The closed connection is gone for every operation, as
    // client.exceptions.GoneException; so is one that never was.
    for op in ["post", "get", "delete"] {
        let a = t.mgmt.call(json!({"op": op, "id": id, "data": "too late"}));
        assert_gone(&a, &format!("{op} after delete_connection"));
    }
    let a = t
        .mgmt
        .call(json!({"op": "post", "id": "AAAAAAAAAAAAAAA=", "data": "nobody"}));
    assert_gone(&a, "post to an id that never was");

    // Nothing reached the backend beyond the one $connect and $disconnect.
    let mine: Vec<_> = t
        .backend
        .requests()
        .into_iter()
        .filter(|r| r.connection_id() == id)
        .map(|r| r.path().to_string())
        .collect();
    assert_eq!(mine, ["/ws/connect", "/ws/disconnect"]);
}

#[test]
fn boto3_with_the_wrong_key_is_refused() {
    let Some(mut t) = Setup::start("gateway boto3 test") else {
        return;
    };
    let (mut ws, id) = t.connect();

    let refused = [
        (
            json!({"secret": "not-the-secret-access-key"}),
            "wrong secret",
        ),
        (json!({"key": "AKIDSOMEONEELSE"}), "unknown access key id"),
        (json!({"region": "eu-west-1"}), "another region's scope"),
    ];
    for (signer, what) in &refused {
        for op in ["post", "get", "delete"] {
            let mut cmd = json!({"op": op, "id": id, "data": "forged"});
            for (k, v) in signer.as_object().unwrap() {
                cmd[k] = v.clone();
            }
            let a = t.mgmt.call(cmd);
            assert_forbidden(&a, &format!("{op} signed with the {what}"));
        }
    }
    assert_eq!(
        next_message(&mut ws, Duration::from_millis(500)),
        Got::Nothing,
        "a refused post_to_connection delivered something"
    );
    assert!(
        t.backend.calls("/ws/disconnect", &id).is_empty(),
        "a refused delete_connection closed the connection"
    );

    // The same connection with the right key: it was auth that refused.
    let a = t
        .mgmt
        .call(json!({"op": "post", "id": id, "data": "signed"}));
    assert_eq!(a["ok"], true, "{a}\n{}", t.explain());
    assert_eq!(
        next_message(&mut ws, Duration::from_secs(10)),
        Got::Text("signed".into())
    );
}
