//! The `utf8_incremental` harness: random bytes cut at random points, fed
//! piece by piece to the streaming `Utf8Validator`.
//!
//! Checks: the streamed verdict and the one-shot `utf8::validate` equal
//! `std::str::from_utf8` on the whole; after every piece the validator
//! has failed iff the bytes so far hold a definite error (fail fast, never
//! early) and carries iff they end inside a code point; `finish` resets it.
//!
//! Must not touch: I/O, the clock, global state.

use crate::protocol::utf8::{self, Utf8Validator};

/// Random bytes cut at random points, fed piece by piece to the streaming
/// validator. The first byte says how many cut bytes follow (0-7); each
/// picks a cut position.
///
/// Invariants: the streamed verdict (every `feed` and `finish` ok) equals
/// `std::str::from_utf8` on the whole, and so does the one-shot
/// `utf8::validate`; after each successful `feed` the bytes so far are
/// valid or end in an unfinished code point (never a definite error: no
/// late detection), and `is_clean` says which; a failing `feed` fails only
/// if the bytes so far contain a definite error (no early failure).
pub fn utf8_incremental(data: &[u8]) {
    let Some((&n, data)) = data.split_first() else {
        return;
    };
    let (cut_bytes, bytes) = data.split_at(usize::from(n % 8).min(data.len()));
    let mut cuts: Vec<usize> = cut_bytes
        .iter()
        .map(|&c| usize::from(c) * bytes.len() / 255)
        .collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());

    let whole_ok = std::str::from_utf8(bytes).is_ok();
    assert_eq!(utf8::validate(bytes).is_ok(), whole_ok, "one-shot validate");

    let mut v = Utf8Validator::new();
    let mut start = 0;
    let mut streamed_ok = true;
    for end in cuts {
        let seen = std::str::from_utf8(&bytes[..end]);
        match v.feed(&bytes[start..end]) {
            Ok(()) => match seen {
                Ok(_) => assert!(v.is_clean(), "valid so far but carrying"),
                Err(e) => {
                    assert!(
                        e.error_len().is_none(),
                        "accepted a definite error at {}",
                        e.valid_up_to()
                    );
                    assert!(!v.is_clean(), "unfinished code point not carried");
                }
            },
            Err(_) => {
                let e = seen.expect_err("rejected valid bytes");
                assert!(e.error_len().is_some(), "rejected an unfinished code point");
                streamed_ok = false;
                break;
            }
        }
        start = end;
    }
    if streamed_ok {
        streamed_ok = v.finish().is_ok();
        // `finish` resets the validator for the next message.
        assert!(v.is_clean());
        assert_eq!(v.feed(b"ok"), Ok(()));
    }
    assert_eq!(streamed_ok, whole_ok, "streamed verdict differs from std");
}
