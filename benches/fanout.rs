//! Criterion bench of the hub's fan-out path on one core: encode a
//! publish once, queue the shared frame on N open connections, then write
//! it out (simulated: the queues are drained as a socket would take them).
//!
//! Also the publish path's first step: finding which other cores have
//! subscribers of the channel (`publish_lookup`), alone and while another
//! thread looks up the same channel (what a second publishing core does):
//! `cached_entry` is the hub's way (a core-local hash lookup and one
//! atomic load), `rwlock_registry_before` the read-locked shared map it
//! replaced.
//!
//! `shared_frame_queue_and_drain` is the engine's own path since
//! permessage-deflate: one `SharedFrame` per publish, `push_shared` on each
//! connection (none of them compressing: the plain path).
//!
//! The `…_guarded` variant runs each push under `catch_unwind`, as the
//! core does per delivery (fault isolation, PERF.md): the difference is
//! what the guard costs per delivery.
//!
//! Run: `taskset -c 1 cargo bench --bench fanout`.

use std::hint::black_box;
use std::io::IoSlice;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rustc_hash::FxHashMap;
use serde_json::value::RawValue;
use wsedge::conn::outbound::MAX_IOVECS;
use wsedge::conn::{Codecs, Conn, Ctx, Event, SharedFrame, Tally};
use wsedge::hub::protocol::message_frame;
use wsedge::hub::{LocalHub, Registry};
use wsedge::protocol::encoder::FrameEncoder;
use wsedge::sharded::Sharded;
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
            let mut c = Conn::new(now, now, cfg);
            let mut ctx = Ctx {
                now,
                epoch: now,
                cfg,
                enc: &mut *enc,
                codecs: &mut Codecs::new(),
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
    let mut codecs = Codecs::new();
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
                    epoch: now,
                    cfg: &cfg,
                    enc: &mut enc,
                    codecs: &mut codecs,
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

/// The engine's own path since permessage-deflate (`Core::push_fanout`):
/// the frame wrapped once in a `SharedFrame`, `push_shared` on each
/// connection — with compression off (no connection agreed it), the
/// plain path whose cost must not change.
fn fanout_shared(c: &mut Criterion) {
    let cfg = Config::default();
    let mut enc = FrameEncoder::new();
    let mut codecs = Codecs::new();
    let data = RawValue::from_string(r#"{"text":"hello subscribers","n":12345}"#.into()).unwrap();
    let mut g = c.benchmark_group("fanout");
    for n in [1_000usize, 10_000] {
        let mut conns = open_conns(n, &cfg, &mut enc);
        let mut tally = Tally::default();
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(
            BenchmarkId::new("shared_frame_queue_and_drain", n),
            &n,
            |b, _| {
                b.iter(|| {
                    let mut frame = SharedFrame::new(message_frame(Some("news"), &data));
                    let now = Instant::now();
                    let mut ctx = Ctx {
                        now,
                        epoch: now,
                        cfg: &cfg,
                        enc: &mut enc,
                        codecs: &mut codecs,
                        tally: &mut tally,
                    };
                    for c in conns.iter_mut() {
                        black_box(c.push_shared(&mut frame, &mut ctx));
                    }
                    for c in conns.iter_mut() {
                        drain(c);
                    }
                })
            },
        );
    }
    g.finish();
}

/// The registry as it was before the interned entries: one RwLock per
/// shard, read-locked by every publish (kept here as the baseline).
#[derive(Default)]
struct RwLockRegistry {
    shards: Sharded<Arc<str>, RwLock<FxHashMap<Arc<str>, u64>>>,
}

impl RwLockRegistry {
    fn set(&self, name: &Arc<str>, core: usize) {
        *self.shards.write(&**name).entry(name.clone()).or_default() |= 1 << core;
    }

    fn cores(&self, name: &str) -> u64 {
        self.shards.read(name).get(name).copied().unwrap_or(0)
    }
}

/// What a publish does: the other cores from the core's own view,
/// looked up again (once) when that view went stale.
fn cores_of(hub: &mut LocalHub, channel: &str) -> u64 {
    match hub.other_cores(channel) {
        Ok((mask, _)) => mask,
        Err(_) => {
            hub.refresh(channel);
            hub.other_cores(channel).map_or(0, |(mask, _)| mask)
        }
    }
}

/// Runs `lookup` alone, then while another thread runs `other` (what a
/// second core publishing to the same channel does).
fn alone_and_contended(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    mut lookup: impl FnMut() -> u64,
    mut other: impl FnMut() -> u64 + Send + 'static,
) {
    g.bench_function(format!("{name}/alone"), |b| b.iter(|| black_box(lookup())));
    let stop = Arc::new(AtomicBool::new(false));
    let spinner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                black_box(other());
            }
        })
    };
    g.bench_function(format!("{name}/with_another_publisher"), |b| {
        b.iter(|| black_box(lookup()))
    });
    stop.store(true, Ordering::Relaxed);
    spinner.join().expect("other publisher");
}

/// The first step of a publish: which other cores have subscribers of the
/// channel (here on cores 1 and 2; the publisher has none itself).
fn publish_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("publish_lookup");
    let news: Arc<str> = "news".into();

    let before = Arc::new(RwLockRegistry::default());
    before.set(&news, 1);
    before.set(&news, 2);
    let other = before.clone();
    alone_and_contended(
        &mut g,
        "rwlock_registry_before",
        || before.cores(black_box("news")),
        move || other.cores(black_box("news")),
    );

    let registry = Arc::new(Registry::default());
    let mut subscribers: Vec<LocalHub> = (1..=2)
        .map(|core| LocalHub::new(core, registry.clone()))
        .collect();
    for s in &mut subscribers {
        s.subscribe("news", 1);
    }
    let mut publisher = LocalHub::new(0, registry.clone());
    let mut other = LocalHub::new(3, registry.clone());
    alone_and_contended(
        &mut g,
        "cached_entry",
        move || cores_of(&mut publisher, black_box("news")),
        move || cores_of(&mut other, black_box("news")),
    );
    g.finish();
}

criterion_group!(benches, fanout, fanout_shared, publish_lookup);
criterion_main!(benches);
