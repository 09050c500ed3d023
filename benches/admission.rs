//! Criterion benches of admission and limits: verifying a connection
//! token (HMAC-SHA256 + base64 + JSON), the replay check, and a token
//! bucket spend on the per-message path.
//!
//! Run: `taskset -c 1 cargo bench --bench admission`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use wsedge::admission::replay::UsedTokens;
use wsedge::admission::token::{mint, verify, Claims};
use wsedge::limits::TokenBucket;

fn tokens(c: &mut Criterion) {
    let claims = Claims {
        sub: "alice".into(),
        exp: 4_102_444_800,
        jti: "0123456789abcdef01234567".into(),
        subscribe: vec!["room:*".into(), "news".into()],
        publish: vec!["room:1".into()],
    };
    let token = mint(b"current-key", &claims);
    c.bench_function("token/verify_current_key", |b| {
        b.iter(|| verify(&[b"current-key"], black_box(&token), 1_700_000_000))
    });
    c.bench_function("token/verify_previous_key", |b| {
        b.iter(|| {
            verify(
                &[b"new-key", b"current-key"],
                black_box(&token),
                1_700_000_000,
            )
        })
    });
    let used = UsedTokens::new(1_000_000);
    let mut i = 0u64;
    c.bench_function("token/replay_check_insert", |b| {
        b.iter(|| {
            i += 1;
            used.use_once(
                black_box(&i.to_string()),
                1_700_000_300 + i % 300,
                1_700_000_000,
            )
        })
    });
}

fn bucket(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut bucket = TokenBucket::new(1e6, 1e6, t0);
    let mut now = t0;
    c.bench_function("token_bucket/spend", |b| {
        b.iter(|| {
            now += Duration::from_nanos(500);
            black_box(bucket.spend(1.0, now))
        })
    });
}

criterion_group!(benches, tokens, bucket);
criterion_main!(benches);
