//! RFC 6455 §5.2 frame codec.
//!
//! Owns: parsing frame headers out of a `BytesMut`, enforcing every framing
//! rule that needs no extension (RSV bits, opcodes, control-frame size and
//! fragmentation, the 64-bit length MSB, masking direction, the frame size
//! limit) and the one framing rule of permessage-deflate (RFC 7692 §6.1:
//! RSV1, when the extension was agreed, only on a data message's first
//! frame — the decoder is told whether it was, [`FrameDecoder::with_rsv1`]), unmasking payloads in place and handing them out as zero-copy
//! `Bytes` slices; and encoding (never masked) server frames.
//! Must not touch: message assembly, UTF-8, close codes, sockets or time.
//!
//! Incomplete input is `Ok(None)` and consumes nothing. While a frame's
//! payload is still arriving, [`FrameDecoder::unmask_partial`] unmasks what
//! is there, so a text frame can be UTF-8-checked before it is complete.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::ProtocolError;
use super::mask::apply_mask;

/// Frame opcodes (RFC 6455 §5.2). Reserved values are rejected at parse time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    /// Decodes the 4-bit opcode field.
    pub fn from_u8(v: u8) -> Result<Self, ProtocolError> {
        Ok(match v {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(ProtocolError::UnknownOpcode(other)),
        })
    }

    /// The 4-bit wire value.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong.
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// Which side of the connection this codec runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Expects masked frames from clients.
    Server,
    /// Expects unmasked frames from a server.
    Client,
}

/// The parsed fixed part of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    /// RSV1: "this message is compressed" (permessage-deflate).
    pub rsv1: bool,
    pub opcode: OpCode,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
}

impl FrameHeader {
    /// Parses a header from the front of `buf`. `Ok(None)` if `buf` is too
    /// short to hold the whole header; otherwise the header and its length.
    /// A payload longer than `max_payload` fails as soon as its length field
    /// is in, before the masking key.
    pub fn parse(
        buf: &[u8],
        role: Role,
        max_payload: u64,
    ) -> Result<Option<(Self, usize)>, ProtocolError> {
        Self::parse_ext(buf, role, max_payload, false)
    }

    /// [`FrameHeader::parse`], with RSV1 allowed (`rsv1_allowed`: the
    /// permessage-deflate extension was agreed) on text, binary and — the
    /// caller checks that it starts no message — nothing else: RSV1 on a
    /// control or continuation frame is [`ProtocolError::ReservedBits`]
    /// either way (RFC 7692 §6.1), as are RSV2 and RSV3.
    pub fn parse_ext(
        buf: &[u8],
        role: Role,
        max_payload: u64,
        rsv1_allowed: bool,
    ) -> Result<Option<(Self, usize)>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        if b0 & 0x30 != 0 {
            return Err(ProtocolError::ReservedBits);
        }
        let fin = b0 & 0x80 != 0;
        let rsv1 = b0 & 0x40 != 0;
        let opcode = OpCode::from_u8(b0 & 0x0f)?;
        if rsv1 && !(rsv1_allowed && matches!(opcode, OpCode::Text | OpCode::Binary)) {
            return Err(ProtocolError::ReservedBits);
        }
        let masked = b1 & 0x80 != 0;
        match (role, masked) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedClientFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedServerFrame),
            _ => {}
        }
        let len7 = b1 & 0x7f;
        if opcode.is_control() {
            if !fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if len7 > 125 {
                return Err(ProtocolError::ControlTooLong);
            }
        }
        let (payload_len, mut pos) = match len7 {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let len = u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes checked"));
                if len >> 63 != 0 {
                    return Err(ProtocolError::LengthMsbSet);
                }
                (len, 10)
            }
            n => (u64::from(n), 2),
        };
        if payload_len > max_payload {
            return Err(ProtocolError::FrameTooLarge {
                len: payload_len,
                max: max_payload,
            });
        }
        let mask = if masked {
            if buf.len() < pos + 4 {
                return Ok(None);
            }
            let key = buf[pos..pos + 4].try_into().expect("4 bytes checked");
            pos += 4;
            Some(key)
        } else {
            None
        };
        Ok(Some((
            Self {
                fin,
                rsv1,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// Length of this header on the wire.
    pub fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        len + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Appends this header to `out`.
    pub fn encode(&self, out: &mut impl BufMut) {
        let b0 = (u8::from(self.fin) << 7) | (u8::from(self.rsv1) << 6) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        out.put_u8(b0);
        match self.payload_len {
            n @ 0..=125 => out.put_u8(mask_bit | n as u8),
            n @ 126..=0xffff => {
                out.put_u8(mask_bit | 126);
                out.put_u16(n as u16);
            }
            n => {
                out.put_u8(mask_bit | 127);
                out.put_u64(n);
            }
        }
        if let Some(key) = self.mask {
            out.put_slice(&key);
        }
    }
}

/// A complete frame with its payload unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1 (only ever set when the decoder allowed it).
    pub rsv1: bool,
    pub opcode: OpCode,
    /// The payload, unmasked; a zero-copy slice of the receive buffer.
    pub payload: Bytes,
    /// How many leading payload bytes were already handed out by
    /// [`FrameDecoder::unmask_partial`] while the frame was incomplete.
    pub streamed: usize,
}

/// The header of a frame whose payload is still arriving, flattened (24
/// bytes, not the 32 of a `FrameHeader` and two `usize`s: it sits in every
/// connection).
#[derive(Debug, Clone, Copy)]
struct Pending {
    payload_len: u64,
    /// Payload bytes already unmasked in place (and handed out).
    unmasked: u64,
    mask: Option<[u8; 4]>,
    /// FIN (0x80) and RSV1 (0x40), as in the first header byte (one byte
    /// for both keeps this at 24).
    bits: u8,
    opcode: OpCode,
    /// At most 14.
    header_len: u8,
}

impl Pending {
    fn header(&self) -> FrameHeader {
        FrameHeader {
            fin: self.bits & 0x80 != 0,
            rsv1: self.bits & 0x40 != 0,
            opcode: self.opcode,
            mask: self.mask,
            payload_len: self.payload_len,
        }
    }

    fn header_len(&self) -> usize {
        usize::from(self.header_len)
    }
}

/// Streaming frame parser for one connection.
///
/// Call [`decode`](Self::decode) with the connection's unconsumed bytes
/// until it returns `Ok(None)`. The buffer must keep the bytes of an
/// incomplete frame, unchanged, between calls.
#[derive(Debug, Clone)]
///
/// It keeps no limit of its own: the frame size limit comes with each
/// [`decode`](Self::decode) (a connection reads it from the shared
/// settings rather than keep a copy).
pub struct FrameDecoder {
    role: Role,
    /// Whether RSV1 may start a data message (permessage-deflate agreed).
    rsv1: bool,
    pending: Option<Pending>,
}

impl FrameDecoder {
    /// A decoder for `role`.
    pub fn new(role: Role) -> Self {
        Self {
            role,
            rsv1: false,
            pending: None,
        }
    }

    /// This decoder, letting RSV1 through on text and binary frames when
    /// `allowed` (permessage-deflate was agreed; see
    /// [`FrameHeader::parse_ext`]).
    pub fn with_rsv1(mut self, allowed: bool) -> Self {
        self.rsv1 = allowed;
        self
    }

    /// Header of the frame currently arriving, if its header is complete.
    pub fn pending_header(&self) -> Option<FrameHeader> {
        self.pending.as_ref().map(Pending::header)
    }

    /// Total wire length of the frame currently arriving, if known.
    pub fn pending_frame_len(&self) -> Option<usize> {
        self.pending
            .as_ref()
            .map(|p| p.header_len() + p.payload_len as usize)
    }

    fn header(&mut self, buf: &[u8], max_frame: u64) -> Result<Option<Pending>, ProtocolError> {
        if let Some(p) = self.pending {
            return Ok(Some(p));
        }
        let Some((header, header_len)) =
            FrameHeader::parse_ext(buf, self.role, max_frame, self.rsv1)?
        else {
            return Ok(None);
        };
        let p = Pending {
            payload_len: header.payload_len,
            unmasked: 0,
            mask: header.mask,
            bits: (u8::from(header.fin) << 7) | (u8::from(header.rsv1) << 6),
            opcode: header.opcode,
            header_len: header_len as u8,
        };
        self.pending = Some(p);
        Ok(Some(p))
    }

    /// Splits the next complete frame off the front of `buf`, refusing a
    /// payload longer than `max_frame` (pass the same limit every time).
    ///
    /// `Ok(None)`: more bytes are needed; nothing was consumed. An error is
    /// final for this connection (the decoder state is then unspecified).
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_frame: u64,
    ) -> Result<Option<Frame>, ProtocolError> {
        let Some(p) = self.header(buf, max_frame)? else {
            return Ok(None);
        };
        // payload_len <= max_frame, which the caller sized to fit in memory.
        let total = p.header_len() + p.payload_len as usize;
        if buf.len() < total {
            return Ok(None);
        }
        self.pending = None;
        let mut payload = buf.split_to(total);
        payload.advance(p.header_len());
        let unmasked = p.unmasked as usize;
        if let Some(key) = p.mask {
            apply_mask(&mut payload[unmasked..], key, unmasked);
        }
        Ok(Some(Frame {
            fin: p.bits & 0x80 != 0,
            rsv1: p.bits & 0x40 != 0,
            opcode: p.opcode,
            payload: payload.freeze(),
            streamed: unmasked,
        }))
    }

    /// For an incomplete frame whose header has arrived: unmasks the payload
    /// bytes present in `buf` that were not handed out before, and returns
    /// them with the header. Call only after `decode` returned `Ok(None)`.
    pub fn unmask_partial<'a>(&mut self, buf: &'a mut BytesMut) -> Option<(FrameHeader, &'a [u8])> {
        let p = self.pending.as_mut()?;
        let start = p.header_len() + p.unmasked as usize;
        let end = buf.len().min(p.header_len() + p.payload_len as usize);
        if end <= start {
            return Some((p.header(), &[]));
        }
        let piece = &mut buf[start..end];
        if let Some(key) = p.mask {
            apply_mask(piece, key, p.unmasked as usize);
        }
        p.unmasked += piece.len() as u64;
        Some((p.header(), &buf[start..end]))
    }
}

/// Appends an unmasked server frame (header and payload) to `out`.
pub fn encode_frame(out: &mut BytesMut, fin: bool, opcode: OpCode, payload: &[u8]) {
    encode_frame_rsv1(out, fin, false, opcode, payload);
}

/// [`encode_frame`] with the RSV1 bit given (a compressed message's first
/// frame).
pub fn encode_frame_rsv1(
    out: &mut BytesMut,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    payload: &[u8],
) {
    let header = FrameHeader {
        fin,
        rsv1,
        opcode,
        mask: None,
        payload_len: payload.len() as u64,
    };
    out.reserve(header.encoded_len() + payload.len());
    header.encode(out);
    out.extend_from_slice(payload);
}

/// Appends a masked frame to `out` (what a client sends; used by tests,
/// the load client and fuzzing).
pub fn encode_masked_frame(
    out: &mut BytesMut,
    fin: bool,
    opcode: OpCode,
    key: [u8; 4],
    payload: &[u8],
) {
    let header = FrameHeader {
        fin,
        rsv1: false,
        opcode,
        mask: Some(key),
        payload_len: payload.len() as u64,
    };
    out.reserve(header.encoded_len() + payload.len());
    header.encode(out);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: u64 = 1 << 24;

    fn decode_all(wire: &[u8], cuts: &[usize]) -> Result<Vec<Frame>, ProtocolError> {
        let mut dec = FrameDecoder::new(Role::Server);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut start = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(wire.len())).collect();
        cuts.sort_unstable();
        cuts.push(wire.len());
        for c in cuts {
            let c = c.max(start);
            buf.extend_from_slice(&wire[start..c]);
            start = c;
            loop {
                match dec.decode(&mut buf, MAX)? {
                    Some(f) => frames.push(f),
                    None => {
                        dec.unmask_partial(&mut buf);
                        break;
                    }
                }
            }
        }
        assert!(buf.is_empty(), "all bytes consumed");
        Ok(frames)
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 §5.7 single-frame masked "Hello".
        let wire = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let frames = decode_all(&wire, &[]).unwrap();
        assert_eq!(frames.len(), 1);
        assert!(frames[0].fin);
        assert_eq!(frames[0].opcode, OpCode::Text);
        assert_eq!(&frames[0].payload[..], b"Hello");
        // Unmasked server "Hello".
        let mut out = BytesMut::new();
        encode_frame(&mut out, true, OpCode::Text, b"Hello");
        assert_eq!(&out[..], &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    }

    #[test]
    fn rejects_rule_violations() {
        let cases: &[(&[u8], ProtocolError)] = &[
            (&[0xc1, 0x80, 0, 0, 0, 0], ProtocolError::ReservedBits),
            (&[0x83, 0x80, 0, 0, 0, 0], ProtocolError::UnknownOpcode(3)),
            (&[0x8b, 0x80, 0, 0, 0, 0], ProtocolError::UnknownOpcode(0xb)),
            (&[0x09, 0x80, 0, 0, 0, 0], ProtocolError::FragmentedControl),
            (&[0x89, 0xfe, 0, 126], ProtocolError::ControlTooLong),
            (
                &[0x81, 0x05, b'h', b'e', b'l', b'l', b'o'],
                ProtocolError::UnmaskedClientFrame,
            ),
            (
                &[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0],
                ProtocolError::LengthMsbSet,
            ),
            (
                &[0x82, 0xff, 0, 0, 0, 0, 0x10, 0, 0, 0],
                ProtocolError::FrameTooLarge {
                    len: 1 << 28,
                    max: MAX,
                },
            ),
        ];
        for (wire, err) in cases {
            assert_eq!(decode_all(wire, &[]).unwrap_err(), *err, "{wire:x?}");
        }
    }

    #[test]
    fn incomplete_input_consumes_nothing() {
        let mut wire = BytesMut::new();
        encode_masked_frame(&mut wire, true, OpCode::Binary, [9, 8, 7, 6], &[5u8; 300]);
        for n in 0..wire.len() {
            let mut dec = FrameDecoder::new(Role::Server);
            let mut buf = BytesMut::from(&wire[..n]);
            assert_eq!(dec.decode(&mut buf, MAX).unwrap(), None);
            assert_eq!(buf.len(), n);
        }
    }

    #[test]
    fn partial_unmask_hands_out_each_byte_once() {
        let mut wire = BytesMut::new();
        encode_masked_frame(&mut wire, true, OpCode::Text, [1, 2, 3, 4], b"hello world");
        let mut dec = FrameDecoder::new(Role::Server);
        let mut buf = BytesMut::from(&wire[..9]);
        assert!(dec.decode(&mut buf, MAX).unwrap().is_none());
        let (h, piece) = dec.unmask_partial(&mut buf).unwrap();
        assert_eq!(h.opcode, OpCode::Text);
        assert_eq!(piece, b"hel");
        buf.extend_from_slice(&wire[9..12]);
        assert!(dec.decode(&mut buf, MAX).unwrap().is_none());
        assert_eq!(dec.unmask_partial(&mut buf).unwrap().1, b"lo ");
        buf.extend_from_slice(&wire[12..]);
        let f = dec.decode(&mut buf, MAX).unwrap().unwrap();
        assert_eq!(&f.payload[..], b"hello world");
        assert_eq!(f.streamed, 6);
    }

    fn arb_frame() -> impl Strategy<Value = (bool, OpCode, [u8; 4], Vec<u8>)> {
        let data = (
            any::<bool>(),
            prop_oneof![
                Just(OpCode::Continuation),
                Just(OpCode::Text),
                Just(OpCode::Binary)
            ],
            any::<[u8; 4]>(),
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..130),
                proptest::collection::vec(any::<u8>(), 60_000..70_000),
            ],
        );
        let control = (
            Just(true),
            prop_oneof![Just(OpCode::Close), Just(OpCode::Ping), Just(OpCode::Pong)],
            any::<[u8; 4]>(),
            proptest::collection::vec(any::<u8>(), 0..=125),
        );
        prop_oneof![4 => data, 1 => control]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn round_trip_at_random_split_points(
            frames in proptest::collection::vec(arb_frame(), 1..6),
            cuts in proptest::collection::vec(0usize..200_000, 0..8),
        ) {
            let mut wire = BytesMut::new();
            for (fin, op, key, payload) in &frames {
                encode_masked_frame(&mut wire, *fin, *op, *key, payload);
            }
            let decoded = decode_all(&wire, &cuts).unwrap();
            prop_assert_eq!(decoded.len(), frames.len());
            let mut reencoded = BytesMut::new();
            for (f, (fin, op, key, payload)) in decoded.iter().zip(&frames) {
                prop_assert_eq!(f.fin, *fin);
                prop_assert_eq!(f.opcode, *op);
                prop_assert_eq!(&f.payload[..], &payload[..]);
                encode_masked_frame(&mut reencoded, f.fin, f.opcode, *key, &f.payload);
            }
            prop_assert_eq!(&reencoded[..], &wire[..]);
        }
    }
}
