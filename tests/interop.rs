//! Interop with a client that is not Rust: Python `websockets` exchanges
//! text, binary, fragmented and multi-MiB messages, pings, and closes,
//! over `ws://` and over `wss://` (a certificate made by the test, its CA
//! the only one Python trusts); and the same with permessage-deflate
//! negotiated (it offers it by default), with and without context
//! takeover.
//!
//! Needs a Python with `websockets` (the version pinned in
//! `tests/interop/requirements.txt`): `WSEDGE_PYTHON` names it, else
//! `python3` is tried. The README's test command (`scripts/test`) installs
//! it into a virtualenv and sets `WSEDGE_PYTHON`; the test itself installs
//! nothing. Without it the test prints one "skipped: …" line, unless
//! `WSEDGE_REQUIRE_INTEROP=1` (set by `scripts/test` and CI) makes that a
//! failure.

mod common;

use std::process::Command;

use common::*;

fn has_websockets(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success())
}

/// The Python to run, or `None` after printing why not (a failure under
/// `WSEDGE_REQUIRE_INTEROP=1`).
fn python() -> Option<String> {
    let python = std::env::var("WSEDGE_PYTHON").unwrap_or_else(|_| "python3".into());
    if has_websockets(&python) {
        return Some(python);
    }
    skip_unless_required(
        "WSEDGE_REQUIRE_INTEROP",
        "interop test",
        &format!("`{python}` cannot import websockets"),
    );
    None
}

/// Runs `script` with `args`: (success, stdout, stderr).
fn run(python: &str, script: &str, args: &[std::ffi::OsString]) -> (bool, String, String) {
    let out = Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn python_websockets_client_round_trips() {
    let Some(python) = python() else {
        return;
    };
    let server = start(config(2));
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_client.py"
    );
    let (ok, stdout, stderr) = run(
        &python,
        script,
        &[std::ffi::OsString::from(ws_url(&server, "/echo"))],
    );
    assert!(
        ok && stdout.contains("interop ok"),
        "python client failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    // Counters are published once per loop turn: wait for the last one.
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        let stats = server.stats();
        stats.upgraded == 1 && stats.messages_in == 5 && stats.messages_out == 5
    }));
}

#[test]
fn python_websockets_negotiates_permessage_deflate_with_and_without_context_takeover() {
    let Some(python) = python() else {
        return;
    };
    for no_context in [true, false] {
        let mut cfg = config(1);
        cfg.compression.mode = wsedge::config::Switch::On;
        cfg.compression.server_no_context_takeover = no_context;
        cfg.compression.client_no_context_takeover = no_context;
        let server = start(cfg);
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/interop/python_deflate.py"
        );
        let (ok, stdout, stderr) = run(
            &python,
            script,
            &[std::ffi::OsString::from(ws_url(&server, "/echo"))],
        );
        assert!(
            ok && stdout.contains("deflate ok"),
            "python deflate client failed (no_context {no_context})\nstdout: {stdout}\nstderr: {stderr}"
        );
        // The answer says what was agreed: the server's choice of context
        // takeover, and the window the client offered to limit.
        let answer = stdout.lines().find(|l| l.starts_with("answer:")).unwrap();
        assert_eq!(
            answer.contains("server_no_context_takeover"),
            no_context,
            "{answer}"
        );
        assert_eq!(
            answer.contains("client_no_context_takeover"),
            no_context,
            "{answer}"
        );
    }
}

/// `cfg` serves `wss://` with a leaf of a fresh test CA (files under a
/// temporary directory named after `name`); returns the CA's PEM file.
fn serve_tls(cfg: &mut wsedge::Config, name: &str) -> std::path::PathBuf {
    let ca = common::tls::Ca::new();
    let dir = common::tls::temp_dir(name);
    let (cert, key) = common::tls::write_leaf(&dir, &ca.leaf("wsedge", 1));
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    cfg.tls.cert = Some(cert);
    cfg.tls.key = Some(key);
    ca_file
}

/// Runs `script` against `server`'s `wss://…/echo`, trusting `ca_file`.
fn run_over_wss(
    python: &str,
    script: &str,
    server: &wsedge::Server,
    ca_file: &std::path::Path,
) -> (bool, String, String) {
    let url = format!("wss://localhost:{}/echo", server.local_addr().port());
    run(python, script, &[url.into(), ca_file.into()])
}

#[test]
fn python_websockets_client_round_trips_over_wss() {
    let Some(python) = python() else {
        return;
    };
    let mut cfg = config(2);
    let ca_file = serve_tls(&mut cfg, "interop");
    let server = start(cfg);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_client.py"
    );
    let (ok, stdout, stderr) = run_over_wss(&python, script, &server, &ca_file);
    assert!(
        ok && stdout.contains("interop ok"),
        "python client over wss failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        let stats = server.stats();
        stats.tls_handshakes == 1
            && stats.upgraded == 1
            && stats.messages_in == 5
            && stats.messages_out == 5
            && stats.tls_errors == 0
    }));
}

/// `wss://` and permessage-deflate together: the TLS session sits under
/// the connection, compression inside it, and Python `websockets` (which
/// offers permessage-deflate) round-trips everything with both.
#[test]
fn python_websockets_negotiates_permessage_deflate_over_wss() {
    let Some(python) = python() else {
        return;
    };
    let mut cfg = config(1);
    let ca_file = serve_tls(&mut cfg, "interop-deflate");
    cfg.compression.mode = wsedge::config::Switch::On;
    let server = start(cfg);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_deflate.py"
    );
    let (ok, stdout, stderr) = run_over_wss(&python, script, &server, &ca_file);
    assert!(
        ok && stdout.contains("deflate ok") && stdout.contains("tls: TLSv1.3"),
        "python deflate client over wss failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        let stats = server.stats();
        stats.tls_handshakes == 1 && stats.upgraded == 1 && stats.tls_errors == 0
    }));
}
