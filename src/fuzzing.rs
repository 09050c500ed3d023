//! Fuzz entry points, kept in the library so the `fuzz/` targets are
//! one-line shims and the committed corpus can be replayed by a normal
//! test on stable (`tests/fuzz_corpus.rs`). Each function asserts the
//! invariants of the code it drives and panics only if one breaks.
//!
//! Owns: invariant checks over arbitrary input. Must not touch: I/O.
#![doc(hidden)]

use bytes::BytesMut;

use crate::protocol::frame::encode_masked_frame;
use crate::protocol::{FrameDecoder, Role};

/// Arbitrary bytes, fed to the server-side frame decoder in chunks whose
/// sizes come from the first input byte. Invariants: no panic; every frame
/// decoded re-encodes to bytes that decode to the same frame; the decoder
/// never consumes more than it was given; decoding stops at the first
/// error.
pub fn frame_parser(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(seed % 64) + 1;
    let mut dec = FrameDecoder::new(Role::Server, 1 << 20);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut consumed = 0usize;
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            let before = buf.len();
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    consumed += before - buf.len();
                    assert!(consumed <= fed);
                    let mut wire = BytesMut::new();
                    encode_masked_frame(
                        &mut wire,
                        frame.fin,
                        frame.opcode,
                        [1, 2, 3, 4],
                        &frame.payload,
                    );
                    let mut again = FrameDecoder::new(Role::Server, 1 << 20);
                    let back = again
                        .decode(&mut wire)
                        .expect("re-encoded frame decodes")
                        .expect("re-encoded frame is complete");
                    assert_eq!((back.fin, back.opcode), (frame.fin, frame.opcode));
                    assert_eq!(back.payload, frame.payload);
                    assert!(wire.is_empty());
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "incomplete input consumes nothing");
                    let _ = dec.unmask_partial(&mut buf);
                    break;
                }
                Err(_) => return,
            }
        }
    }
}
