//! Encoding outbound frames into shared, reference-counted `Bytes`.
//!
//! Owns: a per-core arena (`BytesMut`) that small frames are written into
//! and split off from, so that sending a small message costs no allocation
//! of its own (one 64 KiB block serves hundreds of frames), and the rule
//! for large payloads: only the header is written, the payload is passed
//! on as the zero-copy `Bytes` it already is.
//! Must not touch: queues, sockets, connection state.

use bytes::{Bytes, BytesMut};

use super::close::encode_close;
use super::frame::{encode_frame, encode_frame_rsv1, FrameHeader, OpCode};

/// Payloads up to this size are copied next to their header (one iovec,
/// cheaper than a second slice); larger ones are sent as their own slice.
pub const INLINE_PAYLOAD_MAX: usize = 2048;

const ARENA_BLOCK: usize = 64 * 1024;

/// One encoded frame: a header-plus-payload chunk, or a header chunk
/// followed by the untouched payload.
#[derive(Debug, Clone)]
pub enum Encoded {
    One(Bytes),
    Two(Bytes, Bytes),
}

impl Encoded {
    /// Total bytes on the wire.
    pub fn len(&self) -> usize {
        match self {
            Self::One(a) => a.len(),
            Self::Two(a, b) => a.len() + b.len(),
        }
    }

    /// True if the frame has no bytes (never for a real frame).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Arena-backed server frame encoder; one per core.
#[derive(Debug, Default)]
pub struct FrameEncoder {
    arena: BytesMut,
}

impl FrameEncoder {
    /// An encoder with an empty arena (the first frame allocates a block).
    pub fn new() -> Self {
        Self::default()
    }

    fn room(&mut self, need: usize) {
        if self.arena.capacity() < need {
            // Reclaims the old block in place once every frame cut from it
            // has been written and dropped; otherwise starts a new block.
            self.arena.reserve(need.max(ARENA_BLOCK));
        }
    }

    /// Encodes a final server frame carrying `payload`.
    pub fn frame(&mut self, opcode: OpCode, payload: Bytes) -> Encoded {
        self.fragment(true, opcode, payload)
    }

    /// Encodes one server frame with an explicit FIN bit.
    pub fn fragment(&mut self, fin: bool, opcode: OpCode, payload: Bytes) -> Encoded {
        self.encode(fin, false, opcode, payload)
    }

    /// Encodes a final server frame whose payload is a compressed message
    /// (RSV1 set: permessage-deflate), copied from the compressor's
    /// scratch buffer: header and payload in one contiguous `Bytes` (a
    /// fan-out queues it on many connections).
    pub fn compressed(&mut self, opcode: OpCode, payload: &[u8]) -> Bytes {
        self.room(payload.len() + 10);
        encode_frame_rsv1(&mut self.arena, true, true, opcode, payload);
        self.arena.split().freeze()
    }

    fn encode(&mut self, fin: bool, rsv1: bool, opcode: OpCode, payload: Bytes) -> Encoded {
        if payload.len() <= INLINE_PAYLOAD_MAX {
            self.room(payload.len() + 10);
            encode_frame_rsv1(&mut self.arena, fin, rsv1, opcode, &payload);
            Encoded::One(self.arena.split().freeze())
        } else {
            self.room(10);
            FrameHeader {
                fin,
                rsv1,
                opcode,
                mask: None,
                payload_len: payload.len() as u64,
            }
            .encode(&mut self.arena);
            Encoded::Two(self.arena.split().freeze(), payload)
        }
    }

    /// Encodes a control frame from a borrowed payload (at most 125 bytes).
    pub fn control(&mut self, opcode: OpCode, payload: &[u8]) -> Bytes {
        debug_assert!(opcode.is_control() && payload.len() <= 125);
        self.room(payload.len() + 2);
        encode_frame(&mut self.arena, true, opcode, payload);
        self.arena.split().freeze()
    }

    /// Encodes a close frame (no payload if `code` is 1005).
    pub fn close(&mut self, code: u16, reason: &str) -> Bytes {
        self.room(127);
        encode_close(&mut self.arena, code, reason);
        self.arena.split().freeze()
    }

    /// Copies arbitrary bytes (an HTTP response head) into the arena.
    /// Forgets bytes written but not yet split off (a frame cut short by a
    /// panic), so they cannot prefix the next frame. Frames already handed
    /// out are unaffected; the block's remaining room is kept.
    pub fn discard_partial(&mut self) {
        self.arena.clear();
    }

    pub fn raw(&mut self, bytes: &[u8]) -> Bytes {
        self.room(bytes.len());
        self.arena.extend_from_slice(bytes);
        self.arena.split().freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_share_one_block() {
        let mut enc = FrameEncoder::new();
        let a = enc.frame(OpCode::Text, Bytes::from_static(b"hi"));
        let b = enc.frame(OpCode::Binary, Bytes::from_static(b"yo"));
        let (Encoded::One(a), Encoded::One(b)) = (a, b) else {
            panic!("small frames are inline");
        };
        assert_eq!(&a[..], &[0x81, 2, b'h', b'i']);
        assert_eq!(&b[..], &[0x82, 2, b'y', b'o']);
        // Adjacent in the same allocation.
        assert_eq!(a.as_ptr().wrapping_add(a.len()), b.as_ptr());
    }

    #[test]
    fn large_payload_is_not_copied() {
        let mut enc = FrameEncoder::new();
        let payload = Bytes::from(vec![7u8; 70_000]);
        let Encoded::Two(head, body) = enc.frame(OpCode::Binary, payload.clone()) else {
            panic!("large frames are split");
        };
        assert_eq!(&head[..], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(body.as_ptr(), payload.as_ptr());
    }
}
