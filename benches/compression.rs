//! permessage-deflate's costs (PERF.md "Compression"): on a realistic
//! 1–2 KiB JSON message, the compression ratio and CPU per message
//! (compress and inflate, per level, with and without context takeover);
//! echo throughput through one connection with compression off and on
//! (the core's path without syscalls, through the one test driver); and
//! the heap an idle compressing connection holds, with and without context
//! takeover (dhat's counting allocator, started only for that part so the
//! timings run on the plain system allocator).
//!
//! Run: `taskset -c 1 cargo bench --bench compression` (prints a table).

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use wsedge::config::{Config, Switch};
use wsedge::conn::testing::{Driver, Echo};
use wsedge::conn::Conn;
use wsedge::protocol::deflate::{MessageDeflater, MessageInflater};
use wsedge::protocol::frame::encode_masked_frame;
use wsedge::protocol::OpCode;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const UPGRADE: &[u8] = b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

// The price-book update (≈ 1.5 KiB of JSON) the load client's
// `--payload json` sends too: one source for both.
#[path = "../src/bin/wsedge-bench/json.rs"]
mod json;
use json::json_message;

fn ratio_and_cpu(msgs: &[Vec<u8>]) {
    let raw: usize = msgs.iter().map(Vec::len).sum();
    println!(
        "payload: {} messages, {:.0} B each on average",
        msgs.len(),
        raw as f64 / msgs.len() as f64
    );
    println!("| level | context takeover | compressed / raw | compress µs/msg | inflate µs/msg |");
    println!("|---|---|---|---|---|");
    for level in [1u32, 6, 9] {
        for nct in [true, false] {
            let mut d = MessageDeflater::new(15, nct, level);
            let mut i = MessageInflater::new(15, nct);
            let mut packed = Vec::with_capacity(msgs.len());
            let t = Instant::now();
            for m in msgs {
                let mut out = Vec::with_capacity(m.len());
                d.compress(m, &mut out);
                packed.push(out);
            }
            let c_us = t.elapsed().as_secs_f64() * 1e6 / msgs.len() as f64;
            let compressed: usize = packed.iter().map(Vec::len).sum();
            let t = Instant::now();
            let mut out = Vec::with_capacity(4096);
            for p in &packed {
                out.clear();
                i.inflate(p, 1 << 20, &mut out).unwrap();
                black_box(&out);
            }
            let i_us = t.elapsed().as_secs_f64() * 1e6 / msgs.len() as f64;
            println!(
                "| {level} | {} | {:.3} ({} → {} B/msg) | {c_us:.2} | {i_us:.2} |",
                if nct { "no" } else { "yes" },
                compressed as f64 / raw as f64,
                raw / msgs.len(),
                compressed / msgs.len(),
            );
        }
    }
}

fn config(on: bool, nct: bool) -> Config {
    config_bits(on, nct, 15)
}

fn config_bits(on: bool, nct: bool, bits: u8) -> Config {
    let mut cfg = Config::default();
    cfg.compression.server_max_window_bits = bits;
    cfg.compression.client_max_window_bits = bits;
    cfg.compression.mode = if on { Switch::On } else { Switch::Off };
    cfg.compression.server_no_context_takeover = nct;
    cfg.compression.client_no_context_takeover = nct;
    cfg
}

/// The client frames of `msgs`, compressed (context kept as `nct` says,
/// with a `bits` window) or not.
fn client_frames(msgs: &[Vec<u8>], compressed: bool, nct: bool, bits: u8) -> Vec<BytesMut> {
    let mut d = MessageDeflater::new(bits, nct, 6);
    msgs.iter()
        .map(|m| {
            let mut wire = BytesMut::new();
            if compressed {
                let mut c = Vec::new();
                d.compress(m, &mut c);
                encode_masked_frame(&mut wire, true, OpCode::Text, [1, 2, 3, 4], &c);
                wire[0] |= 0x40;
            } else {
                encode_masked_frame(&mut wire, true, OpCode::Text, [1, 2, 3, 4], m);
            }
            wire
        })
        .collect()
}

/// Echo through one connection, one message per read, output drained.
fn echo_throughput(msgs: &[Vec<u8>]) {
    println!();
    println!("| echo of the JSON message | µs/msg | messages/s | bytes written/msg |");
    println!("|---|---|---|---|");
    for (name, on, nct) in [
        ("compression off", false, true),
        ("on, no context takeover", true, true),
        ("on, context takeover", true, false),
    ] {
        let mut d = Driver::with_config(config(on, nct));
        let mut app = Echo::new();
        d.feed(UPGRADE, &mut app);
        d.transmit(usize::MAX, |_| {});
        assert_eq!(d.conn.compression().is_some(), on);
        // Context takeover: the client's frames must come in the order
        // they were compressed, so one pass over them only.
        let frames = client_frames(msgs, on, nct, 15);
        let mut written = 0usize;
        let t = Instant::now();
        for f in &frames {
            let mut chunk = f.clone();
            d.read(&mut chunk, &mut app);
            written += d.transmit(usize::MAX, |_| {});
        }
        let s = t.elapsed().as_secs_f64();
        let n = frames.len() as f64;
        assert_eq!(d.tally.messages_out as usize, frames.len(), "{name}");
        println!(
            "| {name} | {:.2} | {:.0} | {:.0} |",
            s * 1e6 / n,
            n / s,
            written as f64 / n
        );
    }
}

/// Heap bytes per open connection after one message each way.
fn idle_memory(msgs: &[Vec<u8>]) {
    const N: usize = 2000;
    println!();
    println!("| idle connection after one message each way | heap B/conn | + Conn itself |");
    println!("|---|---|---|");
    for (name, on, nct, bits) in [
        ("compression off", false, true, 15),
        ("on, no context takeover (default)", true, true, 15),
        ("on, context takeover both ways", true, false, 15),
        (
            "on, context takeover both ways, 10-bit windows",
            true,
            false,
            10,
        ),
    ] {
        let mut d = Driver::with_config(config_bits(on, nct, bits));
        let mut app = Echo::new();
        let frames = client_frames(&msgs[..1], on, nct, bits);
        // Warm up the shared parts (arena, the core's coders).
        d.feed(UPGRADE, &mut app);
        d.read(&mut frames[0].clone(), &mut app);
        d.transmit(usize::MAX, |_| {});
        let mut conns: Vec<Conn> = Vec::with_capacity(N);
        let before = dhat::HeapStats::get().curr_bytes;
        for _ in 0..N {
            let fresh = Conn::new(d.now, d.epoch, &d.cfg);
            conns.push(std::mem::replace(&mut d.conn, fresh));
            d.feed(UPGRADE, &mut app);
            d.read(&mut frames[0].clone(), &mut app);
            d.transmit(usize::MAX, |_| {});
        }
        let after = dhat::HeapStats::get().curr_bytes;
        let per = (after - before) as f64 / N as f64;
        println!(
            "| {name} | {per:.0} | {:.0} |",
            per + std::mem::size_of::<Conn>() as f64
        );
        drop(conns);
    }
}

fn main() {
    let msgs: Vec<Vec<u8>> = (0..20_000).map(json_message).collect();
    ratio_and_cpu(&msgs);
    echo_throughput(&msgs);
    let _profiler = dhat::Profiler::builder().testing().build();
    idle_memory(&msgs);
}
