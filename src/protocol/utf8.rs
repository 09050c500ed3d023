//! UTF-8 validation of text messages, whole or piece by piece.
//!
//! Owns: deciding, as early as the bytes allow, whether a text message is
//! valid UTF-8 — across fragment boundaries and across the pieces of one
//! frame that arrive in separate reads (Autobahn 6.4.* "fail fast").
//! Must not touch: framing or buffers; it only looks at the bytes it is given.
//!
//! Whole runs are checked with `simdutf8` (SIMD); only a code point split
//! between two pieces (at most 3 carried bytes) is handled here by hand.

/// The input is not valid UTF-8 (close code 1007).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Streaming UTF-8 validator: feed pieces in order, then [`finish`](Self::finish).
///
/// Holds at most the 3 bytes of an unfinished code point; 5 bytes in all.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: u8,
}

/// Number of bytes of the code point that starts with `lead` (0 if `lead`
/// cannot start one).
fn sequence_width(lead: u8) -> usize {
    match lead {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => 0,
    }
}

/// Checks `bytes`; `Ok(n)` means all is valid except a trailing, so far
/// valid, unfinished code point of `n` bytes.
fn validate_prefix(bytes: &[u8]) -> Result<usize, InvalidUtf8> {
    if simdutf8::basic::from_utf8(bytes).is_ok() {
        return Ok(0);
    }
    match simdutf8::compat::from_utf8(bytes) {
        Ok(_) => Ok(0),
        Err(e) if e.error_len().is_none() => Ok(bytes.len() - e.valid_up_to()),
        Err(_) => Err(InvalidUtf8),
    }
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// True if no unfinished code point is carried.
    pub fn is_clean(&self) -> bool {
        self.carry_len == 0
    }

    /// Validates the next piece. Fails as soon as the bytes seen so far can
    /// no longer be the start of valid UTF-8.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carry_len > 0 {
            let have = usize::from(self.carry_len);
            let width = sequence_width(self.carry[0]);
            // carry holds a valid unfinished prefix, so width > have.
            let take = (width - have).min(piece.len());
            let mut cp = [0u8; 4];
            cp[..have].copy_from_slice(&self.carry[..have]);
            cp[have..have + take].copy_from_slice(&piece[..take]);
            let n = have + take;
            let unfinished = validate_prefix(&cp[..n])?;
            if unfinished > 0 {
                // Still unfinished (piece ran out): keep carrying.
                self.carry = cp;
                self.carry_len = n as u8;
                return Ok(());
            }
            self.carry_len = 0;
            piece = &piece[take..];
        }
        let unfinished = validate_prefix(piece)?;
        if unfinished > 0 {
            self.carry[..unfinished].copy_from_slice(&piece[piece.len() - unfinished..]);
            self.carry_len = unfinished as u8;
        }
        Ok(())
    }

    /// Ends the message: fails if it stopped inside a code point. Resets.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let clean = self.is_clean();
        *self = Self::default();
        if clean {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

/// Validates a whole message at once.
#[inline]
pub fn validate(bytes: &[u8]) -> Result<(), InvalidUtf8> {
    simdutf8::basic::from_utf8(bytes)
        .map(|_| ())
        .map_err(|_| InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn pieces_valid(bytes: &[u8], cuts: &[usize]) -> bool {
        let mut v = Utf8Validator::new();
        let mut start = 0;
        for &c in cuts {
            let c = c.min(bytes.len()).max(start);
            if v.feed(&bytes[start..c]).is_err() {
                return false;
            }
            start = c;
        }
        v.feed(&bytes[start..]).is_ok() && v.finish().is_ok()
    }

    #[test]
    fn splits_inside_every_code_point_width() {
        let s = "aé€😀z".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert!(pieces_valid(s, &[i, j]), "cut at {i},{j}");
            }
        }
    }

    #[test]
    fn fails_fast_on_impossible_continuation() {
        // 0xF4 0x90 would be > U+10FFFF: invalid at the second byte already.
        let mut v = Utf8Validator::new();
        v.feed(b"ok\xf4").unwrap();
        assert_eq!(v.feed(b"\x90"), Err(InvalidUtf8));
    }

    #[test]
    fn unfinished_code_point_fails_at_finish() {
        let mut v = Utf8Validator::new();
        v.feed(b"\xe2\x82").unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
        // finish resets the validator for the next message.
        v.feed(b"ok").unwrap();
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn surrogates_and_overlongs_are_rejected() {
        for bad in [&b"\xed\xa0\x80"[..], b"\xc0\xaf", b"\xe0\x80\xaf", b"\xff"] {
            let mut v = Utf8Validator::new();
            assert!(v.feed(bad).and_then(|_| v.finish()).is_err(), "{bad:?}");
            assert!(validate(bad).is_err());
        }
    }

    proptest! {
        #[test]
        fn streaming_agrees_with_std(bytes in proptest::collection::vec(any::<u8>(), 0..64),
                                     cuts in proptest::collection::vec(0usize..64, 0..6)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let expected = std::str::from_utf8(&bytes).is_ok();
            prop_assert_eq!(pieces_valid(&bytes, &cuts), expected);
        }

        #[test]
        fn valid_strings_pass_in_any_pieces(s in "\\PC{0,24}", cuts in proptest::collection::vec(0usize..96, 0..6)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert!(pieces_valid(s.as_bytes(), &cuts));
        }
    }
}
