//! The `frame_differential` harness: the same bytes through wsedge's
//! `FrameDecoder` (server role, in chunks) and tungstenite 0.30's frame
//! parser (whole), with the same frame size limit.
//!
//! Checks: both produce the same frames (FIN, opcode, unmasked payload)
//! and end the same way (all consumed, waiting, rejected), after the RFC
//! 6455 rules tungstenite leaves to its `WebSocketContext` are applied to
//! its parsed header (the normalisations listed in `fuzz/README.md`).
//!
//! Must not touch: I/O, the clock, global state; of tungstenite only its
//! frame header parser and `Frame::from_payload` (no socket, no context).

use std::io::Cursor;

use bytes::{Bytes, BytesMut};

use super::unmask_scalar;
use crate::protocol::{FrameDecoder, Role};

/// How a parse of a whole input ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Every byte was consumed by whole frames.
    Clean,
    /// The last frame's header is not all there yet.
    HeaderIncomplete,
    /// The last frame's header is there, its payload is not.
    PayloadIncomplete,
    /// The input broke a rule.
    Rejected,
}

/// Frames (fin, opcode, unmasked payload) and how the parse ended.
type Parsed = (Vec<(bool, u8, Vec<u8>)>, End);

fn wsedge_frames(data: &[u8], chunk: usize, max: u64) -> Parsed {
    let mut dec = FrameDecoder::new(Role::Server);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf, max) {
                Ok(Some(f)) => frames.push((f.fin, f.opcode.as_u8(), f.payload.to_vec())),
                Ok(None) => {
                    // Exercise the streaming path too; it must not change
                    // what the frame decodes to.
                    let _ = dec.unmask_partial(&mut buf);
                    break;
                }
                Err(_) => return (frames, End::Rejected),
            }
        }
    }
    let end = if dec.pending_header().is_some() {
        End::PayloadIncomplete
    } else if buf.is_empty() {
        End::Clean
    } else {
        End::HeaderIncomplete
    };
    (frames, end)
}

fn tungstenite_frames(data: &[u8], max: u64) -> Parsed {
    use tungstenite::protocol::frame::{Frame as TFrame, FrameHeader as THeader};

    let mut frames = Vec::new();
    let mut cursor = Cursor::new(data);
    loop {
        let start = cursor.position() as usize;
        if start == data.len() {
            return (frames, End::Clean);
        }
        let (header, len) = match THeader::parse(&mut cursor) {
            Ok(Some(h)) => h,
            Ok(None) => return (frames, End::HeaderIncomplete),
            Err(_) => return (frames, End::Rejected),
        };
        // tungstenite's `FrameCodec::read_frame` refuses a length over its
        // `max_frame_size` as soon as the header is in (same rule, same
        // limit as ours).
        if len > max {
            return (frames, End::Rejected);
        }
        // Normalisations: RFC 6455 rules that tungstenite's frame parser
        // leaves to `WebSocketContext::read_message_frame` (checked there,
        // after the whole frame has arrived) and wsedge enforces in the
        // parser, as soon as the header is in. Applied to the parsed header,
        // exactly as the context would:
        // 1. §5.2: RSV1-3 must be 0 without a negotiated extension.
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return (frames, End::Rejected);
        }
        // 2. §5.1: a server must close on an unmasked client frame
        //    (tungstenite: `UnmaskedFrameFromClient` unless
        //    `accept_unmasked_frames`, off by default).
        let Some(key) = header.mask else {
            return (frames, End::Rejected);
        };
        // 3. §5.5: control frames must not be fragmented and carry at most
        //    125 bytes (tungstenite: `FragmentedControlFrame`,
        //    `ControlFrameTooBig`).
        let opcode = u8::from(header.opcode);
        if opcode >= 8 && (!header.is_final || len > 125) {
            return (frames, End::Rejected);
        }
        // 4. §5.5 + §5.2: a control payload always fits the 7-bit length,
        //    so a control header using the 16- or 64-bit form breaks the
        //    "minimal number of bytes" rule. wsedge refuses it from the
        //    7-bit field alone (`ControlTooLong`); tungstenite accepts it.
        let header_len = cursor.position() as usize - start - 4;
        if opcode >= 8 && header_len > 2 {
            return (frames, End::Rejected);
        }
        // Not normalised, because neither side enforces it: §5.2's "minimal
        // number of bytes" for the length of a data frame (both accept the
        // longer forms). The 64-bit length MSB needs no normalisation: any
        // such length is over `max`, which both refuse.
        let body = cursor.position() as usize;
        let Some(end) = body.checked_add(len as usize).filter(|&e| e <= data.len()) else {
            return (frames, End::PayloadIncomplete);
        };
        let frame = TFrame::from_payload(header, Bytes::copy_from_slice(&data[body..end]));
        frames.push((
            frame.header().is_final,
            opcode,
            unmask_scalar(frame.payload(), key),
        ));
        cursor.set_position(end as u64);
    }
}

/// The same bytes through wsedge's decoder (server role, in chunks) and
/// tungstenite 0.30's frame parser (whole). The first byte picks the frame
/// size limit (both get the same) and the chunk size.
///
/// Invariants: both produce the same frames (FIN, opcode, unmasked
/// payload) and both end the same way — all consumed, waiting for more, or
/// rejected — with one allowed difference: wsedge rejects from the first
/// two header bytes (and the length field) what tungstenite can only
/// reject once the whole header, masking key included, is in, so wsedge
/// may reject where tungstenite still waits for the rest of a header.
pub fn frame_differential(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    const LIMITS: [u64; 8] = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20];
    let max = LIMITS[usize::from(seed & 7)];
    let chunk = usize::from(seed >> 3) + 1;
    let (ours, our_end) = wsedge_frames(data, chunk, max);
    let (theirs, their_end) = tungstenite_frames(data, max);
    assert_eq!(ours, theirs, "decoded frames differ");
    let agree =
        our_end == their_end || (our_end == End::Rejected && their_end == End::HeaderIncomplete);
    assert!(
        agree,
        "wsedge ended {our_end:?}, tungstenite {their_end:?} after {} frames",
        ours.len()
    );
}
