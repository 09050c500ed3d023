//! permessage-deflate (RFC 7692) as one connection uses it: the agreed
//! parameters, the compressor and inflater that must live as long as the
//! connection (context takeover), and the per-core ones every connection
//! without context takeover borrows instead.
//!
//! Owns: which coder compresses or inflates a given connection's message,
//! the per-core scratch buffer they write into, and the per-fan-out cache
//! of a published message compressed once per window size
//! ([`SharedFrame`]). Must not touch: framing and message assembly (the
//! connection's: RSV1, fragments, UTF-8), the DEFLATE codec itself
//! (`protocol::deflate`), negotiation (`protocol::deflate_offer`).
//!
//! Memory: a connection that agreed compression holds one small box
//! ([`Deflate`]); with context takeover on a side, that side's coder is
//! allocated on its first message and kept (≈ 260 KiB for a 15-bit
//! compressor, ≈ 40 KiB for a 15-bit inflater); without it, the core's
//! shared coder (one per window size) serves every connection, reset after
//! each message.

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::protocol::deflate::{InflateError, MessageDeflater, MessageInflater};
use crate::protocol::deflate_offer::Agreed;
use crate::protocol::encoder::FrameEncoder;
use crate::protocol::{FrameHeader, OpCode, Role};

/// The scratch buffer is given back when a message left it larger than
/// this (a 16 MiB message must not pin 16 MiB per core).
const SCRATCH_KEEP: usize = 256 * 1024;

/// Window sizes a coder can have (9..=15; an 8-bit client window inflates
/// with 9).
const WINDOWS: usize = 7;

fn slot(bits: u8) -> usize {
    usize::from(bits.clamp(9, 15) - 9)
}

/// One core's coders for connections without context takeover (made on
/// first use, one per window size) and the scratch buffer every
/// compression and inflation of the core writes into.
#[derive(Debug, Default)]
pub struct Codecs {
    deflaters: [Option<MessageDeflater>; WINDOWS],
    inflaters: [Option<MessageInflater>; WINDOWS],
    /// The last result of [`Deflate::compress`] / [`SharedFrame`]
    /// compression.
    out: Vec<u8>,
}

impl Codecs {
    /// An empty set: nothing is allocated until a connection compresses.
    pub fn new() -> Self {
        Self::default()
    }

    fn deflater(&mut self, bits: u8, level: u32) -> &mut MessageDeflater {
        self.deflaters[slot(bits)].get_or_insert_with(|| MessageDeflater::new(bits, true, level))
    }

    fn inflater(&mut self, bits: u8) -> &mut MessageInflater {
        self.inflaters[slot(bits)].get_or_insert_with(|| MessageInflater::new(bits, true))
    }

    /// Bytes the scratch buffer holds (tests: the zip-bomb bound).
    pub fn scratch_capacity(&self) -> usize {
        self.out.capacity()
    }

    /// Gives the scratch buffer back if a large message grew it.
    fn trim(&mut self) {
        if self.out.capacity() > SCRATCH_KEEP {
            self.out = Vec::new();
        }
    }
}

/// A connection's permessage-deflate state: what was agreed, and the
/// coders it keeps for context takeover.
#[derive(Debug)]
pub struct Deflate {
    agreed: Agreed,
    /// Only with server context takeover, from the first compressed send.
    deflater: Option<MessageDeflater>,
    /// Only with client context takeover, from the first compressed
    /// message received.
    inflater: Option<MessageInflater>,
}

impl Deflate {
    /// The state for a connection that agreed `agreed`: no coder yet.
    pub fn new(agreed: Agreed) -> Self {
        Self {
            agreed,
            deflater: None,
            inflater: None,
        }
    }

    /// What was agreed.
    pub fn agreed(&self) -> &Agreed {
        &self.agreed
    }

    /// The server window, when this connection's compressed messages do
    /// not depend on earlier ones (no server context takeover): then a
    /// message compressed once for that window serves every such
    /// connection.
    pub fn shared_window(&self) -> Option<u8> {
        self.agreed
            .server_no_context_takeover
            .then_some(self.agreed.server_max_window_bits)
    }

    /// Whether it keeps a coder of its own now (the memory test's view).
    pub fn holds_coders(&self) -> bool {
        self.deflater.is_some() || self.inflater.is_some()
    }

    /// Compresses `payload` and encodes it as one final RSV1 frame.
    pub fn encode(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        level: u32,
        codecs: &mut Codecs,
        enc: &mut FrameEncoder,
    ) -> Bytes {
        let mut out = std::mem::take(&mut codecs.out);
        out.clear();
        let a = self.agreed;
        let deflater = if a.server_no_context_takeover {
            codecs.deflater(a.server_max_window_bits, level)
        } else {
            self.deflater
                .get_or_insert_with(|| MessageDeflater::new(a.server_max_window_bits, false, level))
        };
        deflater.compress(payload, &mut out);
        let frame = enc.compressed(opcode, &out);
        codecs.out = out;
        codecs.trim();
        frame
    }

    /// Inflates one whole compressed message, at most `max` bytes (a zip
    /// bomb stops there, never allocating past it).
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        max: usize,
        codecs: &mut Codecs,
    ) -> Result<Bytes, ProtocolError> {
        let a = self.agreed;
        let mut out = std::mem::take(&mut codecs.out);
        out.clear();
        let inflater = if a.client_no_context_takeover {
            codecs.inflater(a.client_max_window_bits)
        } else {
            self.inflater
                .get_or_insert_with(|| MessageInflater::new(a.client_max_window_bits, false))
        };
        let res = inflater.inflate(compressed, max, &mut out);
        let res = match res {
            Ok(()) => Ok(Bytes::copy_from_slice(&out)),
            Err(InflateError::TooBig) => Err(ProtocolError::MessageTooLarge { max }),
            Err(InflateError::Corrupt) => Err(ProtocolError::BadCompressedData),
        };
        codecs.out = out;
        codecs.trim();
        res
    }
}

/// A published frame on its way to many connections of one core: the
/// plain frame as the hub encoded it, and — made on first need, once per
/// window size — the same message compressed for connections without
/// server context takeover.
#[derive(Debug)]
pub struct SharedFrame {
    plain: Bytes,
    /// The data message's opcode and where its payload starts, if the
    /// frame is one final unfragmented data frame (what the hub encodes);
    /// otherwise it always goes out plain.
    message: Option<(OpCode, usize)>,
    compressed: [Option<Bytes>; WINDOWS],
}

impl SharedFrame {
    /// Wraps a server frame encoded elsewhere.
    pub fn new(plain: Bytes) -> Self {
        let message = match FrameHeader::parse(&plain, Role::Client, u64::MAX) {
            Ok(Some((h, n)))
                if h.fin
                    && matches!(h.opcode, OpCode::Text | OpCode::Binary)
                    && n as u64 + h.payload_len == plain.len() as u64 =>
            {
                Some((h.opcode, n))
            }
            _ => None,
        };
        Self {
            plain,
            message,
            compressed: Default::default(),
        }
    }

    /// The frame as the hub encoded it.
    pub fn plain(&self) -> &Bytes {
        &self.plain
    }

    /// The data message's opcode and payload, if it is one.
    pub fn message(&self) -> Option<(OpCode, Bytes)> {
        self.message
            .map(|(op, start)| (op, self.plain.slice(start..)))
    }

    /// The message compressed with a `bits` window and no context, as one
    /// frame (compressed at the first call for that window).
    pub fn compressed(
        &mut self,
        bits: u8,
        level: u32,
        codecs: &mut Codecs,
        enc: &mut FrameEncoder,
    ) -> Option<Bytes> {
        let (op, start) = self.message?;
        let cached = &mut self.compressed[slot(bits)];
        if let Some(b) = cached {
            return Some(b.clone());
        }
        let mut out = std::mem::take(&mut codecs.out);
        out.clear();
        codecs
            .deflater(bits, level)
            .compress(&self.plain[start..], &mut out);
        let frame = enc.compressed(op, &out);
        codecs.out = out;
        codecs.trim();
        *cached = Some(frame.clone());
        Some(frame)
    }
}
