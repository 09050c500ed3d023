//! The realistic JSON message of `--payload json`: a price-book update of
//! ≈ 1.5 KiB, the one `benches/compression.rs` measures the codec on (that
//! bench includes this file, so both use the same bytes).
//!
//! Owns: the message's text. Must not touch: anything else.

/// A price-book update as a trading or chat front end would receive it:
/// ≈ 1.5 KiB of JSON, numbers varying with `seq`.
pub fn json_message(seq: u32) -> Vec<u8> {
    let mut s = format!(
        r#"{{"type":"message","channel":"prices.ABC-USD","seq":{seq},"ts":"2026-11-30T20:{:02}:{:02}.{:03}Z","data":{{"symbol":"ABC-USD","bids":["#,
        seq / 60 % 60,
        seq % 60,
        seq % 1000
    );
    for i in 0..12u32 {
        level(
            &mut s,
            10_125 - i * 5 + seq % 7,
            1 + (seq * 31 + i * 17) % 900,
            1 + (seq + i) % 9,
        );
    }
    s.pop();
    s += r#"],"asks":["#;
    for i in 0..12u32 {
        level(
            &mut s,
            10_130 + i * 5 + seq % 5,
            1 + (seq * 17 + i * 29) % 900,
            1 + (seq * 3 + i) % 9,
        );
    }
    s.pop();
    s += r#"],"last":{"price":"101.27","size":"0.500","side":"buy"},"venue":"wsedge-demo"}}"#;
    s.into_bytes()
}

/// One price level (`price` in cents, `size` in thousandths), with its
/// trailing comma.
fn level(s: &mut String, price: u32, size: u32, orders: u32) {
    *s += &format!(
        r#"{{"price":"{}.{:02}","size":"{}.{:03}","orders":{orders}}},"#,
        price / 100,
        price % 100,
        size / 10,
        size % 1000,
    );
}
