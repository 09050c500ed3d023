//! The pages the admin listener serves, in a real browser: starts `wsedge
//! serve` and runs `tests/browser/e2e.mjs` (Node + playwright-core driving
//! headless Chromium) against it. The script chats through `/demo`
//! (web/wsedge.js) in two pages — a line typed in one appears in the
//! other — kicks the demo's connection through the admin API and watches
//! it reconnect with a fresh token, and reads the status page (`/`). It
//! runs three times: with the embedded defaults (no token key: the demo's tokens
//! come from its ephemeral key, `POST /api/demo/tokens`), which is what
//! `cargo run --release -- serve` gives a newcomer, with a token key
//! (`POST /api/tokens`), and with `--compression on` (the page's WebSocket
//! must have negotiated permessage-deflate; the first two check it did not). Screenshots land in `target/browser/` and
//! `target/browser/token-key/`. A third test (`cross_origin.mjs`) is the
//! attacker's side of issue 13: a page from another loopback origin, and
//! one reached through a rebound DNS name, try to mint a token and to
//! publish through the default admin plane, and must be refused.
//!
//! Needs `node`, `tests/browser/node_modules` (`npm ci --prefix
//! tests/browser`) and Chromium (`apt-get install chromium`; another binary
//! through `CHROMIUM`). The README's test command (`scripts/test`) installs
//! all three; the test itself downloads nothing. Where one is missing the
//! test prints one "skipped: …" line and passes, unless
//! `WSEDGE_REQUIRE_BROWSER=1` (set by `scripts/test` and CI), which makes
//! it fail instead.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{skip_unless_required, ServerProcess};

const E2E_LIMIT: Duration = Duration::from_secs(120);
const TEST: &str = "browser test";
const REQUIRE: &str = "WSEDGE_REQUIRE_BROWSER";

/// The newcomer's case: no token key, no demo setting — only free ports,
/// no attempt limit (the test reconnects from one IP) and two cores.
#[test]
fn demo_with_the_embedded_defaults_in_chromium() {
    run_e2e(&[], "demo", "", "off");
}

/// With compression on, Chromium's permessage-deflate offer is agreed to
/// (the page's `ws.extensions`), and the demo works over it: chat lines
/// fanned out compressed, published ones too.
#[test]
fn demo_with_compression_on_in_chromium() {
    run_e2e(&["--compression", "on"], "demo", "compression", "on");
}

/// With a token key the demo takes its tokens from `POST /api/tokens`.
#[test]
fn demo_with_a_token_key_in_chromium() {
    let mut key = [0u8; 16];
    getrandom::fill(&mut key).unwrap();
    let key: String = key.iter().map(|b| format!("{b:02x}")).collect();
    run_e2e(&["--token-key", &key], "tokens", "token-key", "off");
}

/// Chromium, node and playwright-core, or `None` after printing why not
/// (a failure under `WSEDGE_REQUIRE_BROWSER=1`): the Chromium binary and
/// the tests/browser directory.
fn browser_ready() -> Option<(String, PathBuf)> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        skip_unless_required(REQUIRE, TEST, &format!("no Chromium at {chromium}"));
        return None;
    }
    let node_ok = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_ok {
        skip_unless_required(REQUIRE, TEST, "no `node` on PATH");
        return None;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    if !dir.join("node_modules/playwright-core").exists() {
        skip_unless_required(
            REQUIRE,
            TEST,
            "no tests/browser/node_modules (npm ci --prefix tests/browser)",
        );
        return None;
    }
    Some((chromium, dir))
}

/// Issue 13: a page from another loopback origin (and one reached through
/// a rebound DNS name) tries to mint a token and to publish through the
/// default admin plane (no admin key, loopback). `cross_origin.mjs` checks
/// that every such request was refused; here, that nothing it tried was
/// published to a live subscriber, which a legitimate publish then reaches.
#[test]
fn a_cross_origin_page_can_neither_mint_nor_publish() {
    let Some((chromium, dir)) = browser_ready() else {
        return;
    };
    let key = "cross-origin-test-token-key-0123456789";
    let mut server = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--max-attempts-per-ip",
        "0",
        "--cores",
        "1",
        "--token-key",
        key,
    ]);
    server.drain_log();
    let admin = server.addr("admin");
    let ws_addr = server.addr("addr");

    // A subscriber of the channel the page aims at.
    let (status, minted) = common::http(
        admin,
        "POST",
        "/api/tokens",
        Some(r#"{"user":"watcher","subscribe":["victim"]}"#),
    );
    assert_eq!(status, 200, "{minted}");
    let minted: serde_json::Value = serde_json::from_str(&minted).unwrap();
    let url = format!(
        "ws://{ws_addr}/ws?ws_token={}",
        minted["token"].as_str().unwrap()
    );
    let (mut watcher, _) = tungstenite::connect(url).expect("upgrade");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = watcher.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    common::subscribe(&mut watcher, "victim");

    let mut node = Command::new("node");
    node.arg(dir.join("cross_origin.mjs"))
        .env("WSEDGE_ADMIN", format!("http://{admin}"))
        .env("WSEDGE_CHANNEL", "victim")
        .env("CHROMIUM", &chromium);
    let (status, output) = run_bounded(node, E2E_LIMIT);
    match status {
        Some(s) if s.success() => print!("{output}"),
        Some(s) => panic!("cross-origin page test failed ({s}):\n{output}"),
        None => panic!("cross-origin page test killed after {E2E_LIMIT:?}:\n{output}"),
    }

    // Whatever the page sent is done by now; a legitimate publish is the
    // next thing the watcher must see.
    let (status, body) = common::http(
        admin,
        "POST",
        "/api/channels/victim/publish",
        Some(r#"{"text":"legitimate"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let got = common::next_json(&mut watcher);
    assert_eq!(
        got["data"],
        serde_json::json!({"text": "legitimate"}),
        "the first message the subscriber saw: {got}"
    );
    drop(watcher);
    assert_eq!(server.terminate(), Some(0), "server exit code");
}

/// wss:// in Chromium: the status page over https (the admin listener
/// reusing the [tls] certificate made here), and from it an echo over
/// `wss://`; `wss.mjs` checks the replies and the clean close, here the
/// server's TLS counters. Chromium trusts the certificate through
/// `--ignore-certificate-errors-spki-list`, in this test only. The other
/// browser tests run over plain http and ws, unchanged.
#[test]
fn echo_over_wss_in_chromium() {
    wss_e2e(false);
}

/// The same with `--compression on`: Chromium's permessage-deflate offer
/// is agreed to over TLS, and the echo round-trips compressed.
#[test]
fn echo_over_wss_with_compression_in_chromium() {
    wss_e2e(true);
}

fn wss_e2e(compression: bool) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let Some((chromium, dir)) = browser_ready() else {
        return;
    };
    let ca = common::tls::Ca::new();
    let leaf = ca.leaf("wsedge browser", 1);
    let spki =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&leaf.spki_der));
    let files = common::tls::temp_dir("browser");
    let (cert, key) = common::tls::write_leaf(&files, &leaf);
    let mut server = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--admin-tls",
        "--compression",
        if compression { "on" } else { "off" },
    ]);
    server.drain_log();
    let admin = server.addr("admin");
    let ws_addr = server.addr("addr");

    let mut node = Command::new("node");
    node.arg(dir.join("wss.mjs"))
        .env("WSEDGE_ADMIN", format!("https://{admin}"))
        .env("WSEDGE_WS", format!("wss://{ws_addr}"))
        .env("WSEDGE_SPKI", &spki)
        .env(
            "WSEDGE_EXPECT_COMPRESSION",
            if compression { "on" } else { "off" },
        )
        .env("CHROMIUM", &chromium);
    let (status, output) = run_bounded(node, E2E_LIMIT);
    let metrics = common::tls::https_get(admin, ca.client(&[]), "/metrics").1;
    let server_exit = server.terminate();
    match status {
        Some(s) if s.success() => print!("{output}"),
        Some(s) => panic!("wss browser test failed ({s}):\n{output}"),
        None => panic!("wss browser test killed after {E2E_LIMIT:?}:\n{output}"),
    }
    assert!(
        metrics.contains("wsedge_tls_handshakes_total 1\n"),
        "{metrics}"
    );
    assert!(metrics.contains("wsedge_tls_errors_total 0\n"), "{metrics}");
    assert_eq!(server_exit, Some(0), "server exit code");
}

/// Starts `wsedge serve` with `extra` flags, runs e2e.mjs against it
/// expecting the token `flow` and permessage-deflate `compression` ("on"
/// or "off"), with screenshots in `target/browser/<shots>`.
fn run_e2e(extra: &[&str], flow: &str, shots: &str, compression: &str) {
    let Some((chromium, dir)) = browser_ready() else {
        return;
    };
    // Beside target/tmp: target/browser.
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("browser")
        .join(shots);

    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--max-attempts-per-ip",
        "0",
        "--cores",
        "2",
    ];
    args.extend_from_slice(extra);
    let mut server = ServerProcess::start(&args);
    server.drain_log();
    let admin = server.addr("admin");

    let mut node = Command::new("node");
    node.arg(dir.join("e2e.mjs"))
        .env("WSEDGE_ADMIN", format!("http://{admin}"))
        .env("WSEDGE_EXPECT_FLOW", flow)
        .env("WSEDGE_EXPECT_COMPRESSION", compression)
        .env("WSEDGE_SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &chromium);
    let (status, output) = run_bounded(node, E2E_LIMIT);
    let server_exit = server.terminate();

    match status {
        Some(s) if s.success() => print!("{output}"),
        Some(s) => panic!("browser e2e ({flow} flow) failed ({s}):\n{output}"),
        None => panic!("browser e2e ({flow} flow) killed after {E2E_LIMIT:?}:\n{output}"),
    }
    assert_eq!(server_exit, Some(0), "server exit code");
}

/// Runs `cmd` and returns its status and its stdout followed by its
/// stderr. After `limit` it kills the whole process group (node and the
/// browser it started) and returns `None` as the status.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Option<ExitStatus>, String) {
    use std::os::unix::process::CommandExt;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let (tx, rx) = mpsc::channel();
    let readers: [Box<dyn Read + Send>; 2] = [
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for (i, mut r) in readers.into_iter().enumerate() {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut out = String::new();
            let _ = r.read_to_string(&mut out);
            let _ = tx.send((i, out));
        });
    }
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Bounded too: a stray grandchild could hold a pipe open.
    let mut outputs = [String::new(), String::new()];
    while let Ok((i, out)) = rx.recv_timeout(Duration::from_secs(5)) {
        outputs[i] = out;
    }
    (status, outputs.concat())
}
