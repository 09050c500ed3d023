//! The `frame_parser` harness: arbitrary bytes, cut into chunks whose
//! size the first byte picks, through the server-side `FrameDecoder`
//! (1 MiB frame limit), including its streaming `unmask_partial` path.
//!
//! Checks: the decoder consumes no more than it was given and nothing on
//! `Ok(None)`; each decoded frame is exactly the bytes it consumed
//! (re-encoding gives them back) and its payload is the scalar unmasking
//! of the wire; streamed pieces are the payload's prefix; an error is the
//! header's own error; what is left at the end is an incomplete frame.
//!
//! Must not touch: I/O, the clock, global state; nothing outlives one
//! input.

use bytes::BytesMut;

use super::unmask_scalar;
use crate::protocol::frame::encode_masked_frame;
use crate::protocol::{Frame, FrameDecoder, FrameHeader, Role};

/// Payload limit of the [`frame_parser`] decoder.
const PARSER_MAX_FRAME: u64 = 1 << 20;

/// Checks one decoded frame against the exact bytes it was decoded from.
fn check_reencode(wire: &[u8], frame: &Frame) {
    let (header, header_len) = FrameHeader::parse(wire, Role::Server, PARSER_MAX_FRAME)
        .expect("the bytes of a decoded frame parse again")
        .expect("the bytes of a decoded frame hold its header");
    assert_eq!((header.fin, header.opcode), (frame.fin, frame.opcode));
    assert_eq!(header.payload_len, frame.payload.len() as u64);
    assert_eq!(header_len + frame.payload.len(), wire.len(), "frame length");
    let key = header.mask.expect("server-side frames are masked");
    assert_eq!(
        unmask_scalar(&wire[header_len..], key),
        frame.payload,
        "payload differs from the scalar unmasking of the wire"
    );

    let mut again = BytesMut::new();
    encode_masked_frame(&mut again, frame.fin, frame.opcode, key, &frame.payload);
    if header.encoded_len() == header_len {
        // The sender used the minimal length encoding, as RFC 6455 §5.2
        // requires: re-encoding must give back the very same bytes.
        assert_eq!(&again[..], wire, "re-encoded frame differs from the wire");
    } else {
        // A longer length form than needed (accepted, like tungstenite and
        // most peers do): same first byte, same key, same masked payload.
        let again_header_len = header.encoded_len();
        assert_eq!(again[0], wire[0]);
        assert_eq!(&again[again_header_len..], &wire[header_len..]);
        assert_eq!(
            &again[again_header_len - 4..again_header_len],
            &wire[header_len - 4..header_len]
        );
    }
    let mut dec = FrameDecoder::new(Role::Server);
    let back = dec
        .decode(&mut again, PARSER_MAX_FRAME)
        .expect("re-encoded frame decodes")
        .expect("re-encoded frame is complete");
    assert_eq!((back.fin, back.opcode), (frame.fin, frame.opcode));
    assert_eq!(back.payload, frame.payload);
    assert!(again.is_empty(), "re-encoded frame is consumed exactly");
}

/// Arbitrary bytes, fed to the server-side frame decoder in chunks whose
/// size comes from the first input byte (the existing corpus format).
///
/// Invariants: no panic; the decoder never consumes more than it was
/// given, and nothing on `Ok(None)`; every decoded frame is exactly the
/// bytes it consumed (re-encoding gives them back when the length was
/// minimally encoded; otherwise the same frame with the same key and
/// masked payload), and its payload is the scalar unmasking of the wire;
/// the pieces `unmask_partial` handed out are the payload's first
/// `streamed` bytes; an error ends decoding, and what is left at the end
/// really is an incomplete frame.
pub fn frame_parser(data: &[u8]) {
    let Some((&seed, data)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(seed % 64) + 1;
    let mut dec = FrameDecoder::new(Role::Server);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut consumed = 0usize;
    let mut streamed = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            let before = buf.len();
            match dec.decode(&mut buf, PARSER_MAX_FRAME) {
                Ok(Some(frame)) => {
                    let used = before - buf.len();
                    assert!(consumed + used <= fed, "consumed more than given");
                    check_reencode(&data[consumed..consumed + used], &frame);
                    consumed += used;
                    assert_eq!(frame.streamed, streamed.len(), "streamed count");
                    assert_eq!(
                        &frame.payload[..frame.streamed],
                        &streamed[..],
                        "streamed pieces are the payload's prefix"
                    );
                    streamed.clear();
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "incomplete input consumes nothing");
                    assert_eq!(consumed + buf.len(), fed, "every byte is consumed or kept");
                    if let Some((_, piece)) = dec.unmask_partial(&mut buf) {
                        streamed.extend_from_slice(piece);
                    }
                    break;
                }
                Err(e) => {
                    // Errors come from the header alone, which has not been
                    // touched by partial unmasking: the same bytes give the
                    // same error.
                    assert_eq!(
                        FrameHeader::parse(&data[consumed..fed], Role::Server, PARSER_MAX_FRAME),
                        Err(e)
                    );
                    return;
                }
            }
        }
    }
    // What is left is a frame that has not fully arrived.
    match FrameHeader::parse(&data[consumed..], Role::Server, PARSER_MAX_FRAME) {
        Ok(Some((header, header_len))) => assert!(
            (data.len() - consumed) < header_len + header.payload_len as usize,
            "a complete frame was left undecoded"
        ),
        Ok(None) => {}
        Err(e) => panic!("a bad header was left undecoded: {e}"),
    }
}
