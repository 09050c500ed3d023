//! A core's inbox is bounded (`inbox_capacity`): flooded through a tiny
//! one, deliveries beyond it are dropped and counted
//! (`wsedge_dropped_total{reason="inbox_full"}`), the core keeps serving
//! its connections, and a shutdown in the middle of the flood is not lost.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use serde_json::json;
use wsedge::inbox::Target;

#[test]
fn a_flooded_tiny_inbox_drops_and_counts_keeps_serving_and_still_shuts_down() {
    let mut cfg = hub_config(1);
    cfg.inbox_capacity = 4;
    let server = start(cfg);
    let admin = server.admin_addr().expect("admin plane runs");
    let stats = server.stats_view().clone();
    let mut echo = connect(&server, "/echo");
    let mut sub = connect(&server, "/ws?user=ann");
    subscribe(&mut sub, "news");

    // Deliveries to a channel nobody has, as fast as one thread can send
    // them: the core empties its inbox one wake-up at a time, four at most.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let queued = Arc::new(AtomicU64::new(0));
    let flood = {
        let core = server.cores()[0].clone();
        let (stop, sent, queued) = (stop.clone(), sent.clone(), queued.clone());
        std::thread::spawn(move || {
            let frame = Bytes::from_static(b"\x81\x02{}");
            while !stop.load(Ordering::Relaxed) {
                let target = Target::Channel("nobody".into());
                let ok = core.deliver(target, frame.clone(), Instant::now());
                sent.fetch_add(1, Ordering::Relaxed);
                queued.fetch_add(u64::from(ok), Ordering::Relaxed);
            }
        })
    };
    assert!(
        wait_until(Duration::from_secs(10), || stats.total().dropped_inbox_full
            >= 1000),
        "the flood overflows the inbox"
    );

    // Meanwhile the core serves: echo round trips, and an API publish goes
    // through (one that finds the inbox full is dropped and counted, and
    // answered with "cores": 0; retried here until one is queued).
    for i in 0..20 {
        let msg = format!("m{i}");
        echo.send(tungstenite::Message::text(msg.clone())).unwrap();
        assert_eq!(echo.read().unwrap(), tungstenite::Message::text(msg));
    }
    let mut tries = 0;
    loop {
        let (status, body) = http(admin, "POST", "/api/channels/news/publish", Some("1"));
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["cores"] == 1 {
            break;
        }
        tries += 1;
        assert!(tries < 1000, "no publish got into the inbox");
    }
    assert_eq!(
        next_json(&mut sub),
        json!({"type":"message","channel":"news","data":1})
    );
    // A query gets through or is refused with 503; it never waits.
    let (status, _) = http(admin, "GET", "/api/channels/news", None);
    assert!(status == 200 || status == 503, "{status}");
    let (_, metrics) = http(admin, "GET", "/metrics", None);
    let line = metrics
        .lines()
        .find(|l| l.starts_with("wsedge_dropped_total{reason=\"inbox_full\"}"))
        .expect("an inbox_full drop line");
    let shown: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(shown >= 1000, "{line}");

    // Shutdown while the flood goes on: a flag and a wake-up, not a
    // queued command, so the full inbox cannot lose it.
    server.shutdown();
    let (tx, rx) = crossbeam_channel::bounded(1);
    std::thread::spawn(move || {
        let _ = tx.send(server.join());
    });
    let joined = rx.recv_timeout(Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    flood.join().unwrap();
    joined
        .expect("the server stops within 30 s under the flood")
        .unwrap();
    let (sent, queued) = (sent.load(Ordering::Relaxed), queued.load(Ordering::Relaxed));
    let dropped = stats.total().dropped_inbox_full;
    assert!(
        dropped >= sent - queued && sent > queued,
        "every drop counted: {dropped} of {} dropped",
        sent - queued
    );
}
