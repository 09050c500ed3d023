//! The bundled load client (`wsedge-bench`) runs against a real server
//! and reports what it measured.

mod common;

use std::process::Command;

use common::*;

/// The JSON report of a finished `wsedge-bench` run (failing the test,
/// with the run's stderr, if it did not succeed).
fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "wsedge-bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

#[test]
fn fanout_mode_delivers_everything_and_reports_json() {
    let server = start(hub_config(2));
    let out = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
        .args([
            "fanout",
            "--server",
            &server.local_addr().to_string(),
            "--admin",
            &server.admin_addr().unwrap().to_string(),
            "--subscribers",
            "50",
            "--rate",
            "40",
            "--duration",
            "1s",
            "--first-source",
            &(100 + std::process::id() % 100).to_string(),
            "--json",
        ])
        .output()
        .unwrap();
    let v = json_of(&out);
    assert_eq!(v["published"], 40);
    assert_eq!(v["delivered"], 50 * 40);
    assert_eq!(v["expected"], 50 * 40);
    assert!(v["last_delivery_us"]["p50"].as_f64().unwrap() > 0.0);
    assert!(
        v["last_delivery_us"]["max"].as_f64().unwrap() >= v["delivery_us"]["p50"].as_f64().unwrap()
    );
    // The server agrees.
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        server.stats().deliveries == 50 * 40 // acks are replies, not deliveries
    }));
}

#[test]
fn echo_modes_echo_everything_and_report_json() {
    let server = start(config(1));
    for (mode, extra) in [
        ("echo-latency", ["--rate", "500"]),
        ("echo-throughput", ["--in-flight", "4"]),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
            .args([mode, "--server", &server.local_addr().to_string()])
            .args(["--connections", "5", "--duration", "1s", "--json"])
            .args([
                "--first-source",
                &(30 + std::process::id() % 90).to_string(),
            ])
            .args(extra)
            .output()
            .unwrap();
        let v = json_of(&out);
        assert_eq!(v["mode"], mode);
        assert!(v["received"].as_u64().unwrap() > 0);
        assert_eq!(v["received"], v["sent"]);
        assert!(v["latency_us"]["p50"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn connect_rate_and_idle_modes_run_and_report() {
    let server = start(config(2));
    let addr = server.local_addr().to_string();
    let src = (60 + std::process::id() % 60).to_string();
    let run = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
            .args(args)
            .args(["--server", &addr, "--first-source", &src, "--json"])
            .output()
            .unwrap();
        json_of(&out)
    };
    let v = run(&["connect-rate", "--count", "300", "--concurrency", "16"]);
    assert_eq!(v["ok"], 300);
    assert!(v["handshakes_per_sec"].as_f64().unwrap() > 0.0);
    let pid = std::process::id().to_string();
    let v = run(&[
        "idle",
        "--connections",
        "50",
        "--pid",
        &pid,
        "--hold",
        "100ms",
    ]);
    assert_eq!(v["connections"], 50);
    assert!(v["rss_after_kib"].as_u64().unwrap() > 0);
    // The server saw them all.
    assert!(server.stats().upgraded >= 350);
}

#[test]
fn fanout_publishes_over_a_websocket() {
    let server = start(hub_config(1));
    let out = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
        .args(["fanout", "--server", &server.local_addr().to_string()])
        .args(["--publish-via", "ws", "--subscribers", "20", "--rate", "50"])
        .args(["--duration", "1s", "--channel", "via-ws", "--json"])
        .args([
            "--first-source",
            &(140 + std::process::id() % 60).to_string(),
        ])
        .output()
        .unwrap();
    let v = json_of(&out);
    assert_eq!(v["publish_via"], "ws");
    assert_eq!(v["published"], 50);
    assert_eq!(v["delivered"], 20 * 50);
    // Without --server-pid the CPU figures are absent, not zero.
    assert!(v["server_cpu_secs"].is_null());
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        server.stats().deliveries == 20 * 50
    }));
}

#[test]
fn server_pid_reports_the_servers_cpu_time() {
    let mut server = ServerProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--cores",
        "1",
        "--admin",
        "off",
        "--max-attempts-per-ip",
        "0",
        "--drain-window",
        "0s",
    ]);
    server.drain_log();
    let addr = server.addr("addr").to_string();
    let pid = server.child.id().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
        .args(["echo-throughput", "--server", &addr, "--server-pid", &pid])
        .args(["--connections", "4", "--in-flight", "4", "--duration", "1s"])
        .args(["--json", "--first-source"])
        .arg((200 + std::process::id() % 50).to_string())
        .output()
        .unwrap();
    let v = json_of(&out);
    let cpu = v["server_cpu_secs"].as_f64().unwrap();
    assert!(cpu > 0.0, "{v}");
    assert!(v["server_cpu_util"].as_f64().unwrap() > 0.0);
    assert!(v["msgs_per_server_cpu_sec"].as_f64().unwrap() > 0.0);
    let received = v["received"].as_f64().unwrap();
    let per = v["msgs_per_server_cpu_sec"].as_f64().unwrap();
    assert!((per * cpu - received).abs() < 1.0);
    // The human summary carries the same figure.
    let out = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
        .args(["connect-rate", "--server", &addr, "--server-pid", &pid])
        .args(["--count", "200", "--first-source"])
        .arg((200 + std::process::id() % 50).to_string())
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("server CPU"), "{text}");
    server.terminate();
}

#[test]
fn echo_and_idle_modes_speak_tls_with_a_test_ca() {
    let ca = tls::Ca::new();
    let dir = tls::temp_dir("bench");
    let (cert, key) = tls::write_leaf(&dir, &ca.leaf("wsedge", 1));
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let mut cfg = config(1);
    cfg.tls.cert = Some(cert);
    cfg.tls.key = Some(key);
    let server = start(cfg);
    let addr = server.local_addr().to_string();
    let src = (150 + std::process::id() % 60).to_string();
    let ca_arg = ca_file.to_string_lossy().into_owned();
    let run = |args: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
            .args(args)
            .args(["--server", &addr, "--first-source", &src, "--json"])
            .args(["--tls-ca", &ca_arg])
            .output()
            .unwrap();
        json_of(&out)
    };
    for size in ["32", "16384"] {
        let v = run(&[
            "echo-throughput",
            "--connections",
            "4",
            "--in-flight",
            "4",
            "--size",
            size,
            "--duration",
            "1s",
        ]);
        assert!(v["received"].as_u64().unwrap() > 0);
        assert_eq!(v["received"], v["sent"]);
    }
    let pid = std::process::id().to_string();
    let v = run(&[
        "idle",
        "--connections",
        "20",
        "--pid",
        &pid,
        "--hold",
        "100ms",
    ]);
    assert_eq!(v["connections"], 20);
    // 4 + 4 echo connections and 20 idle ones, each a TLS handshake.
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        let s = server.stats();
        s.tls_handshakes == 28 && s.upgraded == 28 && s.tls_errors == 0
    }));
}

#[test]
fn compression_flag_negotiates_deflate_in_echo_and_fanout_and_wires_fewer_bytes() {
    let mut cfg = hub_config(2);
    cfg.compression.mode = wsedge::config::Switch::On;
    let server = start(cfg);
    let addr = server.local_addr().to_string();
    let src = (40 + std::process::id() % 80).to_string();
    let echo = |compression: bool| {
        let out = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
            .args(["echo-throughput", "--server", &addr, "--payload", "json"])
            .args(["--connections", "4", "--in-flight", "2", "--duration", "1s"])
            .args(["--first-source", &src, "--json"])
            .args(compression.then_some("--compression"))
            .output()
            .unwrap();
        json_of(&out)
    };
    let (plain, deflated) = (echo(false), echo(true));
    assert_eq!(deflated["compression"], true);
    assert!(deflated["received"].as_u64().unwrap() > 0);
    assert_eq!(deflated["received"], deflated["sent"]);
    assert!(
        deflated["wire_bytes_per_msg"].as_f64().unwrap() * 2.0
            < plain["wire_bytes_per_msg"].as_f64().unwrap(),
        "{deflated} vs {plain}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
        .args(["fanout", "--server", &addr, "--publish-via", "ws"])
        .args(["--subscribers", "20", "--rate", "50", "--duration", "1s"])
        .args(["--payload", "json", "--compression", "--channel", "pmd"])
        .args(["--first-source", &src, "--json"])
        .output()
        .unwrap();
    let v = json_of(&out);
    assert_eq!(v["delivered"], 20 * 50);
    assert!(
        v["wire_bytes_per_delivery"].as_f64().unwrap() < 800.0,
        "{v}"
    );
    assert!(server.stats().compressed > 0);
}

/// `wsedge-bench connect-rate --tls-ca`: every connection a TLS handshake
/// and an upgrade, with and without `--tls-verify-once`, and what was
/// negotiated reported; a certificate from another CA is refused even
/// with `--tls-verify-once` (it skips checks only for a certificate it
/// has verified in full).
#[test]
fn connect_rate_over_tls_upgrades_every_connection_and_verifies_the_first() {
    let ca = tls::Ca::new();
    let other = tls::Ca::new();
    let dir = tls::temp_dir("bench-connect");
    let (cert, key) = tls::write_leaf(&dir, &ca.leaf("wsedge", 1));
    let ca_pem = dir.join("ca.pem");
    let other_pem = dir.join("other-ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&other_pem, other.pem()).unwrap();
    let mut cfg = config(1);
    cfg.tls.cert = Some(cert);
    cfg.tls.key = Some(key);
    let server = start(cfg);
    let addr = server.local_addr().to_string();
    let src = (210 + std::process::id() % 40).to_string();
    let run = |ca: &std::path::Path, extra: &[&str]| -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_wsedge-bench"))
            .args(["connect-rate", "--server", &addr, "--first-source", &src])
            .args(["--count", "40", "--concurrency", "8", "--json", "--tls-ca"])
            .arg(ca)
            .args(extra)
            .output()
            .unwrap();
        json_of(&out)
    };
    for extra in [&[][..], &["--tls-verify-once"][..]] {
        let v = run(&ca_pem, extra);
        assert_eq!(v["ok"], 40, "{v}");
        let tls = v["tls"].as_str().unwrap();
        assert!(tls.starts_with("TLSv1_3 TLS13_"), "{tls}");
    }
    let v = run(&other_pem, &["--tls-verify-once"]);
    assert_eq!(v["ok"], 0, "{v}");
    let failures = v["failures"].as_object().unwrap();
    assert_eq!(
        failures.values().map(|n| n.as_u64().unwrap()).sum::<u64>(),
        40
    );
    assert!(
        failures.keys().all(|k| k.contains("certificate")),
        "{failures:?}"
    );
    // The server agrees: 80 handshakes and upgrades, the refused ones
    // never finished their handshake.
    assert!(wait_until(std::time::Duration::from_secs(5), || {
        let s = server.stats();
        s.tls_handshakes == 80 && s.upgraded == 80
    }));
}
