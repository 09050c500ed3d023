//! Interop with a client that is not Rust: Python `websockets` exchanges
//! text, binary, fragmented and multi-MiB messages, pings, and closes.
//!
//! Needs `python3`. If it cannot `import websockets`, the test makes a
//! virtualenv under `target/interop-venv` and installs the pinned version
//! from PyPI, so `cargo test` works on a fresh machine. `WSEDGE_PYTHON`
//! names another interpreter.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

const WEBSOCKETS: &str = "websockets==15.0.1";

fn has_websockets(python: &str) -> bool {
    Command::new(python)
        .args(["-c", "import websockets"])
        .status()
        .is_ok_and(|s| s.success())
}

/// An interpreter that has `websockets`, installing it if needed.
fn python() -> String {
    if let Ok(p) = std::env::var("WSEDGE_PYTHON") {
        return p;
    }
    if has_websockets("python3") {
        return "python3".into();
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("interop-venv");
    let py = venv.join("bin/python").to_string_lossy().into_owned();
    if !has_websockets(&py) {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "python3 -m venv failed (install python3-venv)");
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "--quiet", WEBSOCKETS])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "pip install {WEBSOCKETS} failed");
    }
    py
}

#[test]
fn python_websockets_client_round_trips() {
    let server = start(config(2));
    let python = python();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_client.py"
    );
    let out = Command::new(&python)
        .arg(script)
        .arg(ws_url(&server, "/echo"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("interop ok"),
        "python client failed\nstdout: {stdout}\nstderr: {stderr}"
    );
    // Counters are published once per loop turn: wait for the last one.
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        let stats = server.stats();
        stats.upgraded == 1 && stats.messages_in == 5 && stats.messages_out == 5
    }));
}
