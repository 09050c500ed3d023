//! permessage-deflate (RFC 7692) on the client side, for `--compression`:
//! the offer, compressing what a mode sends and inflating what it
//! receives, with wsedge's own codec (`wsedge::protocol::deflate`).
//!
//! Owns: the one offer the client makes — no context takeover either way
//! (`client_no_context_takeover; server_no_context_takeover`, 15-bit
//! windows), what a server shared by many connections agrees to cheaply —
//! and one compressor and one inflater for all of a thread's connections
//! (without context takeover no message depends on an earlier one, so
//! they can be shared). Must not touch: sockets, the upgrade exchange
//! (`conn`), what a payload means to a mode.

use std::io;

use bytes::{Bytes, BytesMut};
use wsedge::protocol::deflate::{MessageDeflater, MessageInflater};
use wsedge::protocol::{Frame, OpCode};

use crate::frame;

/// The `Sec-WebSocket-Extensions` line of the upgrade request.
pub const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; \
                         client_no_context_takeover; server_no_context_takeover\r\n";

/// The largest message the client inflates.
const MAX_MESSAGE: usize = 1 << 24;

/// A thread's compressor and inflater.
pub struct ClientDeflate {
    deflater: MessageDeflater,
    inflater: MessageInflater,
    scratch: Vec<u8>,
}

impl ClientDeflate {
    /// Level 1, as the server's default (`compression.level`).
    pub fn new() -> Self {
        Self {
            deflater: MessageDeflater::new(15, true, 1),
            inflater: MessageInflater::new(15, true),
            scratch: Vec::new(),
        }
    }

    /// Appends `payload` compressed as one final, masked RSV1 frame.
    pub fn push_masked(
        &mut self,
        out: &mut BytesMut,
        opcode: OpCode,
        key: [u8; 4],
        payload: &[u8],
    ) {
        self.scratch.clear();
        self.deflater.compress(payload, &mut self.scratch);
        let at = out.len();
        frame::push_masked(out, opcode, key, &self.scratch);
        out[at] |= 0x40;
    }

    /// The message a frame carries: inflated if it came compressed (RSV1),
    /// else the payload itself. A corrupt or oversized one is an error.
    pub fn message(&mut self, f: &Frame) -> io::Result<Bytes> {
        if !f.rsv1 {
            return Ok(f.payload.clone());
        }
        let mut out = Vec::new();
        self.inflater
            .inflate(&f.payload, MAX_MESSAGE, &mut out)
            .map_err(|e| io::Error::other(format!("inflating a server message: {e}")))?;
        Ok(out.into())
    }
}

/// The 101's head agreed permessage-deflate.
pub fn agreed(head: &[u8]) -> bool {
    String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .contains("sec-websocket-extensions: permessage-deflate")
}
