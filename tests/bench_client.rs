//! The bundled load client (`wsedge-bench`) runs against a real server
//! and reports what it measured.

mod common;

use std::process::Command;

use common::*;

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
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
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
