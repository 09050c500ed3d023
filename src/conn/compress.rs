//! permessage-deflate (RFC 7692) as one connection uses it: the agreed
//! parameters, the compressor and inflater that must live as long as the
//! connection (context takeover), and the per-core ones every connection
//! without context takeover borrows instead.
//!
//! Owns: which coder compresses or inflates a given connection's message,
//! the per-core scratch buffer they write into, the per-fan-out cache
//! of a published message compressed once per window size
//! ([`SharedFrame`]), and the cross-core cell that makes that once per
//! publish for the server's own window ([`SharedDeflate`]). Must not touch: framing and message assembly (the
//! connection's: RSV1, fragments, UTF-8), the DEFLATE codec itself
//! (`protocol::deflate`), negotiation (`protocol::deflate_offer`).
//!
//! Memory: a connection that agreed compression holds one small box
//! ([`Deflate`]); with context takeover on a side, that side's coder is
//! allocated on its first message and kept (≈ 260 KiB for a 15-bit
//! compressor, ≈ 40 KiB for a 15-bit inflater); without it, the core's
//! shared coder (one per window size) serves every connection, reset after
//! each message.

use std::sync::{Arc, OnceLock};

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
    /// Messages compressed since the core last took the count
    /// ([`Codecs::take_compressed`]): `wsedge_compression_compressed_total`.
    compressed: u64,
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

    /// How many messages this core compressed since the last call (the
    /// core folds it into its counters once per loop turn).
    pub fn take_compressed(&mut self) -> u64 {
        std::mem::take(&mut self.compressed)
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
        codecs.compressed += 1;
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

/// A published message compressed at most once for all the cores it goes
/// to: for connections that agreed the server's own window
/// (`compression.server_max_window_bits`, what a client that does not ask
/// for a smaller one gets) without server context takeover — the
/// parameters nearly every connection has. It travels beside the plain
/// frame in every core's delivery (a clone of one `Arc`); the first core
/// that has such a subscriber compresses, the others take its frame.
///
/// Why lazily, on the first core that needs it, rather than on the
/// publishing thread before the hand-off: the publisher (a core, or the
/// control plane for API and cluster publishes) does not know whether any
/// subscriber compresses (the registry knows cores per channel, not
/// connections' extensions), and keeping a second per-channel core mask
/// for compressing members would add a shared write to every subscribe.
/// Lazily, a publish nobody compressing receives costs nothing but the
/// cell (one allocation, only with compression on and only for a publish
/// to more than one core), and the work lands on a core that has a
/// compressing subscriber — never on one that has none. A core that asks
/// while another is compressing waits for it ([`OnceLock::get_or_init`]):
/// at most the time it would have spent compressing the same message
/// itself, and then it is done (measured in PERF.md "Compression").
#[derive(Debug, Clone)]
pub struct SharedDeflate(Arc<SharedInner>);

#[derive(Debug)]
struct SharedInner {
    bits: u8,
    /// The channel published to (the cell travels as the delivery's
    /// target, see `inbox::Target::ChannelDeflate`).
    channel: Arc<str>,
    frame: OnceLock<Bytes>,
}

impl SharedDeflate {
    /// An empty cell for a publish on `channel`, for connections that
    /// agreed a `bits` server window without context takeover.
    pub fn new(bits: u8, channel: Arc<str>) -> Self {
        Self(Arc::new(SharedInner {
            bits: bits.clamp(9, 15),
            channel,
            frame: OnceLock::new(),
        }))
    }

    /// The channel of the publish.
    pub fn channel(&self) -> &Arc<str> {
        &self.0.channel
    }

    /// The compressed frame, if a core made it already.
    pub fn get(&self) -> Option<&Bytes> {
        self.0.frame.get()
    }
}

/// A published frame on its way to many connections of one core: the
/// plain frame as the hub encoded it, and — made on first need, once per
/// window size — the same message compressed for connections without
/// server context takeover (for the server's window, through the
/// publish's [`SharedDeflate`] when it has one: once for every core).
#[derive(Debug)]
pub struct SharedFrame {
    plain: Bytes,
    /// The data message's opcode and where its payload starts, if the
    /// frame is one final unfragmented data frame (what the hub encodes);
    /// otherwise it always goes out plain.
    message: Option<(OpCode, usize)>,
    compressed: [Option<Bytes>; WINDOWS],
    /// Shared with the publish's other cores, if it went to several.
    shared: Option<SharedDeflate>,
}

impl SharedFrame {
    /// Wraps a server frame encoded elsewhere.
    pub fn new(plain: Bytes) -> Self {
        Self::with_shared(plain, None)
    }

    /// Wraps a server frame encoded elsewhere, with the cell its other
    /// cores share for the server's window.
    pub fn with_shared(plain: Bytes, shared: Option<SharedDeflate>) -> Self {
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
            shared,
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
    /// frame (compressed at the first call for that window on this core,
    /// or — for the shared cell's window — on the first of the publish's
    /// cores).
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
        let payload = &self.plain[start..];
        let frame = match &self.shared {
            Some(s) if s.0.bits == bits.clamp(9, 15) => {
                s.0.frame
                    .get_or_init(|| compress_into(bits, level, op, payload, codecs, enc))
                    .clone()
            }
            _ => compress_into(bits, level, op, payload, codecs, enc),
        };
        *cached = Some(frame.clone());
        Some(frame)
    }
}

/// `payload` compressed by the core's context-free coder for `bits`, as
/// one final frame of `op` (counted).
fn compress_into(
    bits: u8,
    level: u32,
    op: OpCode,
    payload: &[u8],
    codecs: &mut Codecs,
    enc: &mut FrameEncoder,
) -> Bytes {
    let mut out = std::mem::take(&mut codecs.out);
    out.clear();
    codecs.deflater(bits, level).compress(payload, &mut out);
    let frame = enc.compressed(op, &out);
    codecs.out = out;
    codecs.compressed += 1;
    codecs.trim();
    frame
}
