//! Criterion bench of the hub's fan-out path on one core: encode a
//! publish once, queue the shared frame on N open connections, then write
//! it out (simulated: the queues are drained as a socket would take them).
//!
//! The `…_guarded` variant runs each push under `catch_unwind`, as the
//! core does per delivery (fault isolation, PERF.md): the difference is
//! what the guard costs per delivery.
//!
//! Run: `taskset -c 1 cargo bench --bench fanout`.

use std::hint::black_box;
use std::io::IoSlice;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use serde_json::value::RawValue;
use wsedge::conn::outbound::MAX_IOVECS;
use wsedge::conn::{Conn, Ctx, Event, Tally};
use wsedge::hub::protocol::message_frame;
use wsedge::protocol::encoder::FrameEncoder;
use wsedge::Config;

const UPGRADE: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Writes a connection's whole queue, as a socket that takes everything.
fn drain(c: &mut Conn) {
    loop {
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let n = c.poll_transmit(&mut slices);
        if n == 0 {
            return;
        }
        let len = slices[..n].iter().map(|s| s.len()).sum();
        c.handle_written(len);
    }
}

fn open_conns(n: usize, cfg: &Config, enc: &mut FrameEncoder) -> Vec<Conn> {
    let now = Instant::now();
    let mut tally = Tally::default();
    (0..n)
        .map(|_| {
            let mut c = Conn::new(now, cfg);
            let mut ctx = Ctx {
                now,
                cfg,
                enc: &mut *enc,
                tally: &mut tally,
            };
            c.handle_read(&mut BytesMut::from(UPGRADE));
            while let Some(ev) = c.poll_event(&mut ctx) {
                if ev == Event::Upgrade {
                    c.accept(None, &mut ctx);
                }
            }
            drain(&mut c);
            c
        })
        .collect()
}

fn fanout(c: &mut Criterion) {
    let cfg = Config::default();
    let mut enc = FrameEncoder::new();
    let data = RawValue::from_string(r#"{"text":"hello subscribers","n":12345}"#.into()).unwrap();
    let mut g = c.benchmark_group("fanout");
    for (n, guarded) in [
        (1_000usize, false),
        (1_000, true),
        (10_000, false),
        (10_000, true),
    ] {
        let mut conns = open_conns(n, &cfg, &mut enc);
        let mut tally = Tally::default();
        g.throughput(Throughput::Elements(n as u64));
        let name = if guarded {
            "encode_once_queue_and_drain_guarded"
        } else {
            "encode_once_queue_and_drain"
        };
        g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
            b.iter(|| {
                let frame = message_frame(Some("news"), &data);
                let now = Instant::now();
                let mut ctx = Ctx {
                    now,
                    cfg: &cfg,
                    enc: &mut enc,
                    tally: &mut tally,
                };
                for c in conns.iter_mut() {
                    if guarded {
                        let pushed = catch_unwind(AssertUnwindSafe(|| {
                            c.push_frame(frame.clone(), &mut ctx)
                        }));
                        black_box(pushed.ok());
                    } else {
                        black_box(c.push_frame(frame.clone(), &mut ctx));
                    }
                }
                for c in conns.iter_mut() {
                    drain(c);
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, fanout);
criterion_main!(benches);
