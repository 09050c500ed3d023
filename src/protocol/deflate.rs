//! permessage-deflate's per-message codec (RFC 7692 §7.2): compressing an
//! outgoing message's payload and inflating an incoming one, with the
//! window sizes and context takeover the negotiation agreed.
//!
//! Owns: one connection's (or one shared, context-free) compressor and
//! inflater, the `00 00 ff ff` tail the RFC strips and restores, and the
//! bound on inflated size: inflating stops at `max_message_size`, so a
//! small compressed message that would expand past it (a zip bomb) is
//! refused without the memory ever being allocated.
//! Must not touch: framing (RSV1, fragmentation: the connection's), the
//! negotiation ([`super::deflate_offer`]).
//!
//! Built on `flate2` with the `zlib-rs` backend (a maintained pure-Rust
//! zlib), which, unlike miniz, compresses with window sizes below 15 bits.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use thiserror::Error;

/// The tail a sync flush ends with, stripped from every compressed
/// message (§7.2.1) and put back before inflating (§7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output grows in steps of this much (or less near the limit).
const STEP: usize = 16 * 1024;

/// Why an incoming compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum InflateError {
    /// It inflates past the message size limit (close 1009).
    #[error("the inflated message is over the size limit")]
    TooBig,
    /// Not a valid DEFLATE stream (close 1007: invalid payload data).
    #[error("the compressed message is not valid DEFLATE data")]
    Corrupt,
}

/// Compresses messages for one direction of one connection — or, with no
/// context takeover, for any number of connections sharing the output.
pub struct MessageDeflater {
    inner: Compress,
    no_context_takeover: bool,
}

impl std::fmt::Debug for MessageDeflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageDeflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl MessageDeflater {
    /// `window_bits` 9..=15 (zlib cannot compress with 8); `level` 0..=9.
    pub fn new(window_bits: u8, no_context_takeover: bool, level: u32) -> Self {
        let bits = window_bits.clamp(9, 15);
        Self {
            inner: Compress::new_with_window_bits(Compression::new(level.min(9)), false, bits),
            no_context_takeover,
        }
    }

    /// Appends `payload` compressed (without the tail) to `out`.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        if payload.is_empty() {
            // §7.2.3.6: one empty stored block's first byte; the peer adds
            // the rest (`00 00 ff ff`). The window is untouched, so the
            // compressor's context carries on.
            out.push(0x00);
            return;
        }
        let start = out.len();
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(STEP.max(input.len() / 2 + 64));
            }
            let before_in = self.inner.total_in();
            // `BufError` only means no progress was possible (all in, all
            // flushed): the loop's condition below ends it.
            let _ = self.inner.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(self.inner.total_in() - before_in) as usize..];
            // The sync flush is complete once all input is in and zlib
            // stopped with room to spare.
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out[start..].ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if self.no_context_takeover {
            self.inner.reset();
        }
    }
}

/// Inflates one connection's incoming compressed messages.
pub struct MessageInflater {
    inner: Decompress,
    no_context_takeover: bool,
}

impl std::fmt::Debug for MessageInflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageInflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl MessageInflater {
    /// `window_bits` 8..=15: the client's agreed window (a larger one would
    /// also do; a smaller one is what saves memory).
    pub fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Self {
            // A window at least as large as the client's always works; zlib
            // inflates raw streams with 9..=15 bits, so 8 becomes 9.
            inner: Decompress::new_with_window_bits(false, window_bits.clamp(9, 15)),
            no_context_takeover,
        }
    }

    /// Appends the inflated message to `out`, which may grow by at most
    /// `max` bytes: [`InflateError::TooBig`] as soon as more would come.
    /// After an error the inflater is reset (the connection closes anyway).
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        let start = out.len();
        let result = self
            .feed(compressed, start, max, out)
            .and_then(|()| self.feed(&TAIL, start, max, out));
        if result.is_err() || self.no_context_takeover {
            self.inner.reset(false);
        }
        result
    }

    fn feed(
        &mut self,
        mut input: &[u8],
        start: usize,
        max: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), InflateError> {
        loop {
            // Room for one byte past the limit, to tell "exactly max" from "more".
            let room = (max + 1).saturating_sub(out.len() - start);
            if room == 0 {
                return Err(InflateError::TooBig);
            }
            let cap = out.len() + room.min(STEP);
            let (before_in, before_out) = (self.inner.total_in(), out.len());
            let status = decompress_capped(&mut self.inner, input, out, cap)
                .map_err(|_| InflateError::Corrupt)?;
            input = &input[(self.inner.total_in() - before_in) as usize..];
            if out.len() - start > max {
                return Err(InflateError::TooBig);
            }
            match status {
                // A final block ends the stream: start the next message afresh.
                Status::StreamEnd => {
                    self.inner.reset(false);
                    return Ok(());
                }
                _ if input.is_empty() && out.len() < cap => return Ok(()),
                _ if out.len() == before_out && self.inner.total_in() == before_in => {
                    return Err(InflateError::Corrupt)
                }
                _ => {}
            }
        }
    }
}

/// Inflates into `out` up to a total length of `cap` (never more memory:
/// the room is reserved exactly), keeping what was written.
fn decompress_capped(
    d: &mut Decompress,
    input: &[u8],
    out: &mut Vec<u8>,
    cap: usize,
) -> Result<Status, flate2::DecompressError> {
    let len = out.len();
    out.reserve_exact(cap - len);
    out.resize(cap, 0);
    let before = d.total_out();
    let r = d.decompress(input, &mut out[len..cap], FlushDecompress::Sync);
    let written = (d.total_out() - before) as usize;
    out.truncate(len + written);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(msgs: &[Vec<u8>], server_bits: u8, nct: bool) {
        let mut d = MessageDeflater::new(server_bits, nct, 6);
        let mut i = MessageInflater::new(server_bits, nct);
        for m in msgs {
            let mut c = Vec::new();
            d.compress(m, &mut c);
            assert!(!c.ends_with(&TAIL) || m.is_empty(), "tail stripped");
            let mut back = Vec::new();
            i.inflate(&c, m.len(), &mut back).unwrap();
            assert_eq!(&back, m);
        }
    }

    #[test]
    fn messages_round_trip_with_and_without_context() {
        let msgs: Vec<Vec<u8>> = vec![
            b"Hello".to_vec(),
            b"Hello".to_vec(),
            Vec::new(),
            br#"{"type":"message","channel":"news","data":{"text":"hi"}}"#.repeat(50),
            (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect(),
        ];
        for bits in [9, 12, 15] {
            round_trip(&msgs, bits, false);
            round_trip(&msgs, bits, true);
        }
    }

    #[test]
    fn the_rfc_example_inflates() {
        // RFC 7692 §7.2.3.1: "Hello" compressed, without the tail.
        let mut i = MessageInflater::new(15, false);
        let mut out = Vec::new();
        i.inflate(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00], 100, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello");
        // §7.2.3.2: the same message again, sharing the sliding window.
        out.clear();
        i.inflate(&[0xf2, 0x00, 0x11, 0x00, 0x00], 100, &mut out)
            .unwrap();
        assert_eq!(out, b"Hello");
    }

    #[test]
    fn context_takeover_makes_repeats_smaller_and_its_absence_does_not() {
        let msg = br#"{"type":"message","channel":"prices","data":{"sym":"ABC","bid":101.25}}"#;
        let sizes = |nct| {
            let mut d = MessageDeflater::new(15, nct, 6);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            d.compress(msg, &mut a);
            d.compress(msg, &mut b);
            (a.len(), b.len())
        };
        let (first, second) = sizes(false);
        assert!(second < first / 2, "{first} then {second}");
        let (first, second) = sizes(true);
        assert_eq!(first, second);
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let bomb = vec![0u8; 10 << 20];
        let mut d = MessageDeflater::new(15, true, 9);
        let mut c = Vec::new();
        d.compress(&bomb, &mut c);
        assert!(c.len() < 20_000, "{}", c.len());
        let mut i = MessageInflater::new(15, true);
        let mut out = Vec::new();
        assert_eq!(i.inflate(&c, 1 << 20, &mut out), Err(InflateError::TooBig));
        assert!(out.len() <= (1 << 20) + 1, "{}", out.len());
        assert!(out.capacity() <= (1 << 20) + STEP + 1, "{}", out.capacity());
        // Exactly at the limit is fine.
        out.clear();
        let mut i = MessageInflater::new(15, true);
        i.inflate(&c, 10 << 20, &mut out).unwrap();
        assert_eq!(out.len(), 10 << 20);
    }

    #[test]
    fn corrupt_input_is_refused() {
        let mut i = MessageInflater::new(15, false);
        let mut out = Vec::new();
        // BTYPE = 11 (reserved) in the first block header.
        assert_eq!(
            i.inflate(&[0xff, 0xff, 0xff], 1000, &mut out),
            Err(InflateError::Corrupt)
        );
    }

    proptest! {
        #[test]
        fn any_messages_round_trip(
            msgs in proptest::collection::vec(proptest::collection::vec(0u8..8, 0..3000), 1..6),
            bits in 9u8..=15,
            nct: bool,
        ) {
            round_trip(&msgs, bits, nct);
        }

        #[test]
        fn any_input_inflates_within_the_limit_or_is_refused(
            data in proptest::collection::vec(any::<u8>(), 0..400),
            max in 0usize..5000,
        ) {
            let mut i = MessageInflater::new(15, false);
            let mut out = Vec::new();
            match i.inflate(&data, max, &mut out) {
                Ok(()) => prop_assert!(out.len() <= max),
                Err(_) => prop_assert!(out.len() <= max + 1),
            }
        }
    }
}
