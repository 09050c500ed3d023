//! The client side of wsedge's frame codec, as the modes use it: masked
//! frames out, decoded frames in.
//!
//! Owns: the one place the load client uses `wsedge::protocol`'s codec
//! (the codec is RFC 6455's, not the server's internals). Must not touch:
//! sockets (`conn` and the modes read and write them) or what a payload
//! means to a mode.

use std::io;

use bytes::BytesMut;
use wsedge::protocol::frame::encode_masked_frame;
use wsedge::protocol::{Frame, FrameDecoder, OpCode, Role};

/// The largest frame the client accepts from a server.
const MAX_FRAME: u64 = 1 << 24;

/// A decoder for what a server sends (unmasked frames).
pub fn client_decoder() -> FrameDecoder {
    FrameDecoder::new(Role::Client)
}

/// The next complete frame in `rx`, consuming it; a protocol error as an
/// I/O error.
pub fn next_frame(decoder: &mut FrameDecoder, rx: &mut BytesMut) -> io::Result<Option<Frame>> {
    decoder
        .decode(rx, MAX_FRAME)
        .map_err(|e| io::Error::other(e.to_string()))
}

/// Appends one final, masked frame to `out`.
pub fn push_masked(out: &mut BytesMut, opcode: OpCode, key: [u8; 4], payload: &[u8]) {
    encode_masked_frame(out, true, opcode, key, payload);
}
