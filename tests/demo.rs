//! The chat demo's ephemeral key over real sockets, on servers configured
//! the way the binary configures them (the settings layer, not a
//! hand-built `Config`): with the embedded defaults a demo token from
//! `POST /api/demo/tokens` lets a `/ws` client publish on `demo:*` and
//! nowhere else; clients without a token still cannot publish; forged,
//! foreign and replayed tokens are refused; and the route is absent with
//! `admin.demo = false` and answers 409 when a real token key is set.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};
use toml::Value as Toml;
use wsedge::admission::token::{claims_for, mint};
use wsedge::admission::Refusal;
use wsedge::Server;

/// A server from the embedded defaults plus `overrides` (key, value),
/// on free loopback ports, without the attempt limit (the tests connect in
/// bursts from one IP).
fn server(overrides: &[(&str, Toml)]) -> Server {
    // Later entries win, as later layers do.
    let flags: Vec<(String, Toml, String)> = [
        ("listen", Toml::String("127.0.0.1:0".into())),
        ("admin.listen", Toml::String("127.0.0.1:0".into())),
        ("admission.max_attempts_per_ip", Toml::Integer(0)),
        ("cores", Toml::Integer(2)),
    ]
    .into_iter()
    .chain(overrides.iter().cloned())
    .map(|(k, v)| (k.to_string(), v, format!("test {k}")))
    .collect();
    let mut cfg = wsedge::settings::load(None, &[], &flags)
        .expect("settings load")
        .config;
    cfg.shutdown.drain_window = Duration::ZERO;
    cfg.shutdown.drain_timeout = Duration::from_secs(2);
    start(cfg)
}

fn admin(server: &Server) -> std::net::SocketAddr {
    server.admin_addr().expect("admin plane runs")
}

fn body(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `POST /api/demo/tokens` for `user`: (status, body).
fn demo_token(server: &Server, user: &str) -> (u16, Value) {
    let (status, text) = http(
        admin(server),
        "POST",
        "/api/demo/tokens",
        Some(&json!({ "user": user }).to_string()),
    );
    (status, body(&text))
}

/// The status of an upgrade to `/ws` with `token` (raw, so refusals show).
fn upgrade_status(server: &Server, token: &str) -> u16 {
    let req = UPGRADE.replace("/echo", &format!("/ws?ws_token={token}"));
    status_of(&raw_exchange(
        server.local_addr(),
        req.as_bytes(),
        Duration::from_millis(500),
    ))
}

fn publish(ws: &mut Client, channel: &str, id: u64) -> Value {
    send_json(
        ws,
        json!({"type":"publish","channel":channel,"data":{"text":"hi"},"id":id}),
    );
    next_json(ws)
}

#[test]
fn a_demo_token_publishes_on_demo_channels_and_nowhere_else() {
    let server = server(&[]);
    let (status, info) = http(admin(&server), "GET", "/api/info", None);
    assert_eq!(status, 200);
    let info = body(&info);
    assert_eq!(
        (&info["tokens"], &info["demo_tokens"]),
        (&json!(false), &json!(true))
    );

    let (status, minted) = demo_token(&server, "alice");
    assert_eq!(status, 200, "{minted}");
    assert_eq!(minted["user"], "alice");
    assert_eq!(minted["channels"], "demo:*");
    let token = minted["token"].as_str().unwrap().to_string();
    let mut alice = connect(&server, &format!("/ws?ws_token={token}"));
    let (_, t) = demo_token(&server, "bob");
    let mut bob = connect(
        &server,
        &format!("/ws?ws_token={}", t["token"].as_str().unwrap()),
    );
    subscribe(&mut bob, "demo:lobby");

    assert_eq!(
        publish(&mut alice, "demo:lobby", 5),
        json!({"type":"ack","id":5})
    );
    assert_eq!(
        next_json(&mut bob),
        json!({"type":"message","channel":"demo:lobby","data":{"text":"hi"}})
    );
    for channel in ["chat:lobby", "news", "demo"] {
        assert_eq!(
            publish(&mut alice, channel, 6)["code"],
            "publish_forbidden",
            "{channel}"
        );
    }
    send_json(
        &mut alice,
        json!({"type":"subscribe","channel":"news","id":7}),
    );
    assert_eq!(next_json(&mut alice)["code"], "subscribe_forbidden");

    // The user comes from the token.
    let (_, users) = http(admin(&server), "GET", "/api/users/alice", None);
    assert_eq!(body(&users)["connections"].as_array().unwrap().len(), 1);
    // Once only, like any token.
    assert_eq!(upgrade_status(&server, &token), 401);
    assert_eq!(server.stats().handshake_failures(Refusal::TokenReplayed), 1);
}

#[test]
fn without_a_token_clients_still_cannot_publish() {
    let server = server(&[]);
    let mut anon = connect(&server, "/ws");
    subscribe(&mut anon, "demo:lobby");
    for channel in ["demo:lobby", "chat:lobby"] {
        assert_eq!(
            publish(&mut anon, channel, 2)["code"],
            "publish_forbidden",
            "{channel}"
        );
    }
}

#[test]
fn forged_foreign_and_malformed_tokens_are_refused_401() {
    let server = server(&[]);
    let grants = || vec!["demo:*".to_string()];
    // The right claims, signed with a key that is not this server's.
    let forged = mint(
        b"guessed",
        &claims_for("mallory".into(), 60, grants(), grants()),
    );
    // A real demo token, from another server: each start has its own key.
    let other = self::server(&[]);
    let (_, foreign) = demo_token(&other, "mallory");
    let foreign = foreign["token"].as_str().unwrap().to_string();
    for (token, err) in [
        (forged.as_str(), Refusal::TokenBadSignature),
        (foreign.as_str(), Refusal::TokenBadSignature),
        ("v1.garbage", Refusal::TokenMalformed),
    ] {
        assert_eq!(upgrade_status(&server, token), 401, "{token}");
        assert!(server.stats().handshake_failures(err) > 0, "{err:?}");
    }
    // The token was good where it came from.
    connect(&other, &format!("/ws?ws_token={foreign}"));
    // /echo does not look at tokens.
    connect(&server, &format!("/echo?ws_token={forged}"));
}

#[test]
fn the_route_checks_its_request_and_the_admin_key() {
    let server = server(&[("admin.key", Toml::String("admin-secret".into()))]);
    let ask = json!({"user":"alice"}).to_string();
    let (status, _) = http(admin(&server), "POST", "/api/demo/tokens", Some(&ask));
    assert_eq!(status, 401);
    let auth = ["Authorization: Bearer admin-secret"];
    let post = |body: &str| {
        let (status, text) = http_with(
            admin(&server),
            "POST",
            "/api/demo/tokens",
            Some(body),
            &auth,
        );
        (status, body_or_null(&text))
    };
    assert_eq!(post(&ask).0, 200);
    for bad in [
        json!({"user":""}),
        json!({"user":"a b"}),
        json!({"user":"x".repeat(33)}),
        json!({"user":"alice","publish":["*"]}),
        json!({"user":"alice","ttl_secs":86400}),
        json!({}),
    ] {
        let (status, answer) = post(&bad.to_string());
        assert_eq!(status, 400, "{bad} → {answer}");
    }
}

fn body_or_null(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

#[test]
fn no_demo_key_with_admin_demo_off_or_a_token_key() {
    // admin.demo = false: no route, and a token on /ws is ignored as before.
    let off = server(&[("admin.demo", Toml::Boolean(false))]);
    let (status, answer) = demo_token(&off, "alice");
    assert_eq!((status, &answer["error"]), (404, &json!("not_found")));
    let (_, info) = http(admin(&off), "GET", "/api/info", None);
    assert_eq!(body(&info)["demo_tokens"], false);
    let mut anon = connect(&off, "/ws?ws_token=v1.anything");
    assert_eq!(
        publish(&mut anon, "demo:lobby", 1)["code"],
        "publish_forbidden"
    );

    // A real token key: the demo uses POST /api/tokens; no demo key exists.
    let keyed = server(&[("token.key", Toml::String("real-key".into()))]);
    let (status, answer) = demo_token(&keyed, "alice");
    assert_eq!(
        (status, &answer["error"]),
        (409, &json!("token_key_configured"))
    );
    let (_, info) = http(admin(&keyed), "GET", "/api/info", None);
    let info = body(&info);
    assert_eq!(
        (&info["tokens"], &info["demo_tokens"]),
        (&json!(true), &json!(false))
    );
    // A demo token from another server means nothing here.
    let (_, demo) = demo_token(&server(&[]), "alice");
    assert_eq!(upgrade_status(&keyed, demo["token"].as_str().unwrap()), 401);
}

/// `--no-demo` and `WSEDGE_ADMIN_DEMO` reach `admin.demo`, shown by
/// `--dry-run` with their source like every other key.
#[test]
fn admin_demo_from_flag_and_environment() {
    let dry_run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsedge"));
        cmd.args(["serve", "--dry-run"]).args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("WSEDGE_")) {
            cmd.env_remove(k);
        }
        let out = cmd.envs(env.iter().copied()).output().expect("wsedge runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = dry_run(&[], &[]);
    assert!(text.contains("demo = true\n"), "{text}");
    let text = dry_run(&["--no-demo"], &[]);
    assert!(text.contains("demo = false  # flag --no-demo"), "{text}");
    let text = dry_run(&[], &[("WSEDGE_ADMIN_DEMO", "false")]);
    assert!(
        text.contains("demo = false  # env WSEDGE_ADMIN_DEMO"),
        "{text}"
    );
}
