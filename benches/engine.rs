//! Criterion benches of the engine's bookkeeping: the timing wheel at
//! 100 000 entries (insert, cancel, advance) and the HTTP upgrade (parse +
//! accept key + 101 response).
//!
//! Run: `taskset -c 1 cargo bench --bench engine`.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion};
use wsedge::protocol::handshake::{parse_request, write_accept};
use wsedge::timer::TimingWheel;

const N: u64 = 100_000;

fn wheel(c: &mut Criterion) {
    // A wheel holding 100k deadlines spread over 60 s of milliseconds, as
    // a core with 100k connections would.
    let filled = || {
        let mut w = TimingWheel::new();
        let keys: Vec<_> = (0..N)
            .map(|i| w.insert(1 + (i * 7919) % 60_000, i))
            .collect();
        (w, keys)
    };
    c.bench_function("wheel/insert_cancel_at_100k", |b| {
        let (mut w, _) = filled();
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            let k = w.insert(1 + (i * 104_729) % 60_000, i);
            black_box(w.cancel(k))
        })
    });
    c.bench_function("wheel/advance_1ms_at_100k", |b| {
        let (mut w, _) = filled();
        let mut now = 0u64;
        b.iter(|| {
            now += 1;
            let mut fired = 0;
            while let Some((when, v)) = w.poll(now) {
                fired += 1;
                // Re-arm, as a connection's next ping would be.
                w.insert(when + 60_000, v);
            }
            black_box(fired)
        })
    });
}

fn handshake(c: &mut Criterion) {
    let req = b"GET /ws?ws_token=abc HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nOrigin: https://app.example.com\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nUser-Agent: bench\r\n\r\n";
    let config = wsedge::Config::default();
    let cfg = config.handshake();
    c.bench_function("handshake/parse_accept_respond", |b| {
        let mut out = BytesMut::with_capacity(256);
        b.iter(|| {
            let parsed = parse_request(black_box(req), &cfg).unwrap().unwrap();
            out.clear();
            write_accept(&mut out, &parsed, &cfg, None);
            black_box(out.len())
        })
    });
}

criterion_group!(benches, wheel, handshake);
criterion_main!(benches);
