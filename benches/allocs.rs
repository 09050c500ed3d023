//! Heap allocations per echoed message in steady state, counted by a
//! global allocator (dhat's, so no `unsafe` here). Drives the same path a
//! core does per read — split a chunk off the receive block, parse and
//! unmask, route the echo, encode into the arena, queue, drain — without
//! the syscalls, through the one test driver of a connection
//! (`wsedge::conn::testing`, compiled for benches by the crate's
//! dev-dependency on itself with the `fuzzing` feature).
//!
//! Run: `cargo bench --bench allocs` (prints one line per message size).

use bytes::BytesMut;
use wsedge::conn::testing::{Driver, Echo};
use wsedge::protocol::frame::encode_masked_frame;
use wsedge::protocol::OpCode;
use wsedge::ConnConfig;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// Echoes `batches` reads of `per_read` messages of `size` bytes; returns
/// the messages echoed.
fn run(
    d: &mut Driver,
    app: &mut Echo,
    rx: &mut BytesMut,
    wire: &[u8],
    per_read: usize,
    batches: usize,
) -> u64 {
    let echoed = d.tally.messages_out;
    for _ in 0..batches {
        if rx.len() < wire.len() * per_read + 4096 {
            *rx = BytesMut::zeroed(64 * 1024);
        }
        let n = wire.len() * per_read;
        for i in 0..per_read {
            rx[i * wire.len()..(i + 1) * wire.len()].copy_from_slice(wire);
        }
        // As the core does: a chunk split off the block, `handle_read`,
        // `poll_event` until `None` (the echo route answers each message),
        // then the queue written in full.
        let mut chunk = rx.split_to(n);
        d.read(&mut chunk, app);
        d.transmit(usize::MAX, |_| {});
    }
    d.tally.messages_out - echoed
}

fn main() {
    let _profiler = dhat::Profiler::builder().testing().build();
    for size in [32usize, 1024, 16 * 1024] {
        let mut d = Driver::new(ConnConfig::default());
        let mut app = Echo::new();
        d.feed(UPGRADE, &mut app);
        d.transmit(usize::MAX, |_| {});
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
        run(&mut d, &mut app, &mut rx, &wire, per_read, 2_000);
        let before = dhat::HeapStats::get();
        let echoed = run(&mut d, &mut app, &mut rx, &wire, per_read, 20_000);
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
