//! Criterion benches of the sans-IO protocol hot path: unmasking (against
//! the byte loop and against `memcpy` of the same length, the physical
//! bound), frame decode and encode, UTF-8 validation.
//!
//! Run: `cargo bench --bench protocol` (pin with `taskset -c 1`).

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use wsedge::protocol::encoder::FrameEncoder;
use wsedge::protocol::frame::encode_masked_frame;
use wsedge::protocol::mask::{apply_mask, apply_mask_scalar};
use wsedge::protocol::utf8::{validate, Utf8Validator};
use wsedge::protocol::{FrameDecoder, OpCode, Role};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for size in [32usize, 1024, 16 * 1024, 1 << 20] {
        let mut buf = vec![0x5au8; size];
        let src = vec![0xa5u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::new("word", size), &size, |b, _| {
            b.iter(|| apply_mask(black_box(&mut buf), KEY, 1))
        });
        g.bench_with_input(BenchmarkId::new("byte_loop", size), &size, |b, _| {
            b.iter(|| apply_mask_scalar(black_box(&mut buf), KEY, 1))
        });
        g.bench_with_input(BenchmarkId::new("memcpy", size), &size, |b, _| {
            b.iter(|| buf.copy_from_slice(black_box(&src)))
        });
    }
    g.finish();
}

fn frames(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame");
    for size in [32usize, 16 * 1024] {
        let payload = vec![b'x'; size];
        let mut wire = BytesMut::new();
        for _ in 0..64 {
            encode_masked_frame(&mut wire, true, OpCode::Binary, KEY, &payload);
        }
        let wire = wire.freeze();
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_with_input(BenchmarkId::new("decode_64", size), &size, |b, _| {
            b.iter(|| {
                let mut dec = FrameDecoder::new(Role::Server);
                let mut buf = BytesMut::from(&wire[..]);
                let mut n = 0;
                while let Ok(Some(f)) = dec.decode(&mut buf, 1 << 24) {
                    n += f.payload.len();
                }
                black_box(n)
            })
        });
        let payload = Bytes::from(payload);
        let mut enc = FrameEncoder::new();
        g.throughput(Throughput::Bytes(64 * size as u64));
        g.bench_with_input(BenchmarkId::new("encode_64", size), &size, |b, _| {
            b.iter(|| {
                for _ in 0..64 {
                    black_box(enc.frame(OpCode::Binary, payload.clone()));
                }
            })
        });
    }
    g.finish();
}

fn utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    let ascii = "a".repeat(16 * 1024);
    let mixed = "héllo wörld € 😀 ".repeat(16 * 1024 / 24);
    for (name, s) in [("ascii_16k", &ascii), ("mixed_16k", &mixed)] {
        g.throughput(Throughput::Bytes(s.len() as u64));
        g.bench_function(BenchmarkId::new("whole", name), |b| {
            b.iter(|| validate(black_box(s.as_bytes())))
        });
        g.bench_function(BenchmarkId::new("streamed_1300", name), |b| {
            b.iter(|| {
                let mut v = Utf8Validator::new();
                for piece in s.as_bytes().chunks(1300) {
                    v.feed(piece).unwrap();
                }
                v.finish()
            })
        });
        g.bench_function(BenchmarkId::new("std", name), |b| {
            b.iter(|| std::str::from_utf8(black_box(s.as_bytes())).is_ok())
        });
    }
    g.finish();
}

criterion_group!(benches, unmask, frames, utf8);
criterion_main!(benches);
