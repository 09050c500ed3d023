//! Two cores serve connections concurrently: SO_REUSEPORT spreads the
//! accepts (the test arranges 32 on each), and connections held open on both cores echo in parallel.

mod common;

use std::time::Duration;

use common::*;
use tungstenite::Message;

#[test]
fn two_cores_serve_connections_concurrently() {
    let server = start(config(2));
    assert_eq!(server.cores().len(), 2);
    // Hold 64 connections open at once, 32 on each core (arranged, not
    // left to the kernel's hash).
    let mut clients: Vec<_> = connect_on_every_core(&server, 32, |_| "/echo".into())
        .into_iter()
        .flatten()
        .collect();
    let per_core = server.core_stats();
    assert!(
        per_core.iter().all(|s| s.open == 32),
        "both cores hold connections: {:?}",
        per_core.iter().map(|s| s.open).collect::<Vec<_>>()
    );
    // Every connection works while all are open, from many threads at once.
    std::thread::scope(|scope| {
        for (i, ws) in clients.iter_mut().enumerate() {
            scope.spawn(move || {
                for j in 0..50 {
                    let msg = format!("c{i} m{j}");
                    ws.send(Message::text(msg.clone())).unwrap();
                    assert_eq!(ws.read().unwrap(), Message::text(msg));
                }
            });
        }
    });
    // Counters are published once per loop turn: wait for the last one.
    assert!(wait_until(Duration::from_secs(5), || {
        let stats = server.stats();
        stats.open == 64 && stats.messages_out == 64 * 50
    }));
    drop(clients);
    assert!(wait_until(Duration::from_secs(5), || server.stats().open == 0));
}
