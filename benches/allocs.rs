//! Heap allocations per echoed message in steady state, counted by a
//! global allocator (dhat's, so no `unsafe` here). Drives the same path a
//! core does per read — split a chunk off the receive block, parse and
//! unmask, route the echo, encode into the arena, queue, drain — without
//! the syscalls.
//!
//! Run: `cargo bench --bench allocs` (prints one line per message size).

use std::time::Instant;

use bytes::BytesMut;
use wsedge::conn::{Conn, Ctx, Event, Tally};
use wsedge::protocol::encoder::FrameEncoder;
use wsedge::protocol::frame::encode_masked_frame;
use wsedge::protocol::OpCode;
use wsedge::Config;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Echoes `batches` reads of `per_read` messages of `size` bytes; returns
/// the messages echoed.
fn run(
    conn: &mut Conn,
    cfg: &Config,
    enc: &mut FrameEncoder,
    rx: &mut BytesMut,
    wire: &[u8],
    per_read: usize,
    batches: usize,
) -> u64 {
    let now = Instant::now();
    let mut events = Vec::with_capacity(64);
    let mut tally = Tally::default();
    let mut echoed = 0;
    for _ in 0..batches {
        if rx.len() < wire.len() * per_read + 4096 {
            *rx = BytesMut::zeroed(64 * 1024);
        }
        let n = wire.len() * per_read;
        for i in 0..per_read {
            rx[i * wire.len()..(i + 1) * wire.len()].copy_from_slice(wire);
        }
        let mut chunk = rx.split_to(n);
        let mut ctx = Ctx {
            now,
            cfg,
            enc: &mut *enc,
            events: &mut events,
            tally: &mut tally,
        };
        let mut more = conn.handle_read(&mut chunk, &mut ctx);
        loop {
            // As the core does: take the events, keep the vector's memory.
            let mut evs = std::mem::take(ctx.events);
            for ev in evs.drain(..) {
                if let Event::Message { text, payload } = ev {
                    conn.send_message(text, payload, &mut ctx);
                    echoed += 1;
                }
            }
            *ctx.events = evs;
            if !more {
                break;
            }
            more = conn.process(&mut ctx);
        }
        let len = conn.out().len();
        conn.out().advance(len);
    }
    echoed
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let cfg = Config::default();
    let mut enc = FrameEncoder::new();
    for size in [32usize, 1024, 16 * 1024] {
        let mut conn = Conn::new(Instant::now(), &cfg);
        {
            let mut events = Vec::new();
            let mut tally = Tally::default();
            let mut ctx = Ctx {
                now: Instant::now(),
                cfg: &cfg,
                enc: &mut enc,
                events: &mut events,
                tally: &mut tally,
            };
            conn.handle_read(&mut BytesMut::from(UPGRADE), &mut ctx);
            conn.accept_upgrade(&mut ctx);
            let len = conn.out().len();
            conn.out().advance(len);
        }
        let mut wire = BytesMut::new();
        encode_masked_frame(
            &mut wire,
            true,
            OpCode::Binary,
            [1, 2, 3, 4],
            &vec![7u8; size],
        );
        let per_read = (32 * 1024 / wire.len()).clamp(1, 8);
        let mut rx = BytesMut::new();
        // Warm up (arena and queues reach their steady size), then count.
        run(&mut conn, &cfg, &mut enc, &mut rx, &wire, per_read, 2_000);
        let before = dhat::HeapStats::get();
        let echoed = run(&mut conn, &cfg, &mut enc, &mut rx, &wire, per_read, 20_000);
        let after = dhat::HeapStats::get();
        let blocks = after.total_blocks - before.total_blocks;
        let bytes = after.total_bytes - before.total_bytes;
        println!(
            "echo {size:>6} B: {:.3} allocations and {:.0} bytes allocated per message ({echoed} messages, {per_read} per read)",
            blocks as f64 / echoed as f64,
            bytes as f64 / echoed as f64
        );
    }
}
