//! `deflate_inflate`: the permessage-deflate inflate path with its output
//! bound — arbitrary compressed bytes, and messages that must round-trip.

use crate::protocol::deflate::{InflateError, MessageDeflater, MessageInflater};

use super::Input;

/// How far past `max` the output buffer may be reserved: the inflater
/// grows it in steps of at most this (`protocol::deflate`'s step), plus the
/// one byte that tells "exactly max" from "more".
const SLACK: usize = 16 * 1024 + 1;

/// The first byte picks the window (9..=15), context takeover and the mode;
/// the next two the size limit (0..=65 535).
///
/// Mode "arbitrary": the rest is one compressed message. Invariants: no
/// panic; `Ok` leaves at most `max` bytes; an error at most `max + 1`; the
/// buffer never reserved past `max` + one step; a second message on the
/// same inflater (after an error it was reset) obeys the same.
///
/// Mode "round trip": the rest, split at `0xff`, are messages compressed by
/// a `MessageDeflater` with the same window and context takeover. Each
/// inflates back to itself when it fits in `max`, and is `TooBig` (never
/// `Corrupt`) when it does not; after `TooBig` the stream is started anew
/// on both sides.
pub fn deflate_inflate(data: &[u8]) {
    let mut input = Input::new(data);
    let p = input.byte();
    let bits = 9 + p % 7;
    let no_context = p & 0x10 != 0;
    let round_trip = p & 0x20 != 0;
    let max = usize::from(input.u16());
    let rest = input.take(usize::MAX);
    if round_trip {
        let mut d = MessageDeflater::new(bits, no_context, 6);
        let mut i = MessageInflater::new(bits, no_context);
        for msg in rest.split(|&b| b == 0xff) {
            let mut c = Vec::new();
            d.compress(msg, &mut c);
            let mut back = Vec::new();
            match i.inflate(&c, max, &mut back) {
                Ok(()) => assert_eq!(back, msg),
                Err(e) => {
                    assert_eq!(e, InflateError::TooBig);
                    assert!(msg.len() > max);
                    assert!(back.capacity() <= max + SLACK);
                    // The inflater was reset; so must the deflater be.
                    d = MessageDeflater::new(bits, no_context, 6);
                }
            }
        }
    } else {
        let mut i = MessageInflater::new(bits, no_context);
        for piece in [rest, rest] {
            let mut out = Vec::new();
            match i.inflate(piece, max, &mut out) {
                Ok(()) => assert!(out.len() <= max),
                Err(_) => assert!(out.len() <= max + 1),
            }
            assert!(out.capacity() <= max + SLACK, "{}", out.capacity());
        }
    }
}
