//! Fuzz entry points, kept in the library so the `fuzz/` targets are
//! one-line shims and the committed corpus can be replayed by a normal
//! test on stable (`tests/fuzz_corpus.rs`). Each function takes arbitrary
//! bytes, asserts the invariants of the code it drives and panics only if
//! one breaks (never on input it merely rejects).
//!
//! | function | drives | invariants |
//! |---|---|---|
//! | [`frame_parser`] | `FrameDecoder` in chunks | consumed ≤ given; incomplete input consumes nothing; a frame re-encodes to its own bytes (exactly, when its length was minimally encoded); streamed pieces are the payload's prefix; unmasking matches a scalar reference |
//! | [`frame_differential`] | `FrameDecoder` and tungstenite's `FrameHeader::parse` | both accept or both reject, with equal frames (after applying the RFC rules tungstenite checks later) |
//! | [`handshake`] | `parse_request`, `write_accept`, `write_error` | accepted requests are complete for `httparse` too and incomplete when cut; responses are well-formed HTTP |
//! | [`utf8_incremental`] | `Utf8Validator` over random cuts | agrees with `std::str::from_utf8` on the whole and on every prefix it has seen (fail fast, never early) |
//! | [`connection`] | one `Conn` through a random life, driven as a core drives it | see [`connection`]; among them: no frame after a close frame, valid close codes, bounded out queue, every queued message arrives intact, deadlines after `handle_timeout` are in the future |
//! | [`client_request`] | the hub's JSON request parser and the frames answering it | an accepted request is a JSON object whose fields say the same; `data` is carried byte for byte; every answer frame is one well-formed text frame of valid JSON |
//!
//! Owns: invariant checks over arbitrary input and the tiny byte decoder the
//! structure-aware targets use. Must not touch: I/O, the clock (time is
//! virtual: one `Instant` taken as the origin, then advanced by the input),
//! global state.
#![doc(hidden)]

use std::collections::VecDeque;
use std::io::{Cursor, IoSlice};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::{Config, ConnConfig};
use crate::conn::outbound::MAX_IOVECS;
use crate::conn::{Conn, Ctx, EndReason, Event, Phase, Push, Route, SlowConsumerPolicy, Tally};
use crate::error::HandshakeError;
use crate::protocol::close::is_valid_close_code;
use crate::protocol::encoder::FrameEncoder;
use crate::protocol::frame::{encode_frame, encode_masked_frame};
use crate::protocol::handshake::{self, HandshakeConfig};
use crate::protocol::utf8::{self, Utf8Validator};
use crate::protocol::{Frame, FrameDecoder, FrameHeader, OpCode, Role};

/// Reads structured choices off the front of the fuzz input; past its end
/// every read yields zeros, so any input decodes to something.
struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.byte(), self.byte()])
    }

    /// One of `choices`, picked by the next byte.
    fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[usize::from(self.byte()) % choices.len()]
    }

    /// Up to `n` bytes (fewer at the end of the input).
    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }
}

/// RFC 6455 §5.3 unmasking, one byte at a time: the reference the decoder's
/// word-at-a-time path must agree with.
fn unmask_scalar(masked: &[u8], key: [u8; 4]) -> Vec<u8> {
    masked
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ key[i % 4])
        .collect()
}

// ---------------------------------------------------------------------------
// frame_parser

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
    let mut dec = FrameDecoder::new(Role::Server, PARSER_MAX_FRAME);
    let back = dec
        .decode(&mut again)
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
    let mut dec = FrameDecoder::new(Role::Server, PARSER_MAX_FRAME);
    let mut buf = BytesMut::new();
    let mut fed = 0usize;
    let mut consumed = 0usize;
    let mut streamed = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        fed += piece.len();
        loop {
            let before = buf.len();
            match dec.decode(&mut buf) {
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

// ---------------------------------------------------------------------------
// frame_differential

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
    let mut dec = FrameDecoder::new(Role::Server, max);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match dec.decode(&mut buf) {
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

// ---------------------------------------------------------------------------
// handshake

/// Checks that `out` is one complete HTTP/1.1 response head (plus a body of
/// its `Content-Length`, if any) with `status`; returns its headers.
fn check_response(out: &[u8], status: u16) -> Vec<(String, Vec<u8>)> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("response does not parse: {other:?}"),
    };
    assert_eq!(resp.version, Some(1));
    assert_eq!(resp.code, Some(status));
    let headers: Vec<(String, Vec<u8>)> = resp
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let body_len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .expect("Content-Length is a number")
        });
    assert_eq!(head_len + body_len, out.len(), "response length");
    headers
}

/// Did the client list `protocol` in a `Sec-WebSocket-Protocol` header?
fn offered_protocol(req: &httparse::Request<'_, '_>, protocol: &[u8]) -> bool {
    req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-protocol")
            && h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii() == protocol)
    })
}

/// Arbitrary bytes as an HTTP upgrade request. The first byte picks the
/// limits, the server's subprotocols, the client-IP header and whether
/// error responses carry `Retry-After`.
///
/// Invariants: no panic; `Ok(None)` only below `max_request_bytes` (the
/// bytes a connection buffers are bounded); an accepted request is one
/// `httparse` also parses as complete, with the same length, method `GET`,
/// HTTP/1.1 and target, within the size limit, with a chosen subprotocol
/// that the client offered, and every strict prefix of its head is
/// `Ok(None)`; the `101` answer and every error response are one
/// well-formed HTTP response each.
///
/// Returns the status answered: 101, the refusal's status, or `None` when
/// the head is incomplete (or `data` empty).
pub fn handshake(data: &[u8]) -> Option<u16> {
    let (&seed, data) = data.split_first()?;
    let subprotocols: Vec<String> = match (seed >> 4) & 3 {
        0 => Vec::new(),
        1 => vec!["chat".into()],
        2 => vec!["superchat".into(), "chat".into()],
        _ => vec!["v2.wsedge".into(), "v1.wsedge".into(), "x".into()],
    };
    let cfg = HandshakeConfig {
        max_request_bytes: [64, 512, 1024, 8192][usize::from(seed & 3)],
        max_headers: [0, 1, 4, 32][usize::from((seed >> 2) & 3)],
        subprotocols: &subprotocols,
        client_ip_header: (seed & 0x40 != 0).then_some("x-forwarded-for"),
    };
    let retry_after = (seed & 0x80 != 0).then_some(30);
    match handshake::parse_request(data, &cfg) {
        Ok(Some(parsed)) => {
            let mut headers = vec![httparse::EMPTY_HEADER; cfg.max_headers];
            let mut req = httparse::Request::new(&mut headers);
            assert_eq!(
                req.parse(data),
                Ok(httparse::Status::Complete(parsed.head_len)),
                "httparse disagrees on an accepted request"
            );
            assert_eq!(req.method, Some("GET"));
            assert_eq!(req.version, Some(1));
            assert_eq!(req.path, Some(&*parsed.request.target));
            assert!(parsed.head_len <= cfg.max_request_bytes);
            if let Some(i) = parsed.request.subprotocol {
                assert!(
                    offered_protocol(&req, cfg.subprotocols[i].as_bytes()),
                    "chose a subprotocol the client did not offer"
                );
            }
            use base64::Engine as _;
            let accept = base64::engine::general_purpose::STANDARD
                .decode(&parsed.accept_key)
                .expect("accept key is base64");
            assert_eq!(accept.len(), 20, "accept key is a SHA-1");

            // The same head alone parses the same; any strict prefix of it
            // is incomplete (a slow client is never refused early).
            assert_eq!(
                handshake::parse_request(&data[..parsed.head_len], &cfg).as_ref(),
                Ok(&Some(parsed.clone()))
            );
            let n = parsed.head_len;
            let cuts = [0, 1, n / 2, n.saturating_sub(2), n.saturating_sub(1)];
            for cut in cuts {
                assert_eq!(
                    handshake::parse_request(&data[..cut], &cfg),
                    Ok(None),
                    "a prefix of {cut} bytes of an accepted head is not incomplete"
                );
            }

            let mut out = BytesMut::new();
            handshake::write_accept(&mut out, &parsed, &cfg);
            let headers = check_response(&out, 101);
            let value = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(
                value("sec-websocket-accept").as_deref(),
                Some(parsed.accept_key.as_bytes())
            );
            let answered = match parsed.request.subprotocol {
                Some(i) => Some(cfg.subprotocols[i].as_bytes().to_vec()),
                None if parsed.answer_default_protocol => {
                    Some(handshake::DEFAULT_PROTOCOL.as_bytes().to_vec())
                }
                None => None,
            };
            assert_eq!(value("sec-websocket-protocol"), answered);
            if parsed.answer_default_protocol {
                assert!(parsed.request.token.is_some());
                assert!(
                    offered_protocol(&req, handshake::DEFAULT_PROTOCOL.as_bytes()),
                    "answered the default subprotocol the client did not offer"
                );
            }
            Some(101)
        }
        Ok(None) => {
            assert!(
                data.len() < cfg.max_request_bytes,
                "an incomplete head at or over the limit must be refused"
            );
            None
        }
        Err(e) => {
            let mut out = BytesMut::new();
            handshake::write_error(&mut out, e, retry_after);
            check_response(&out, e.status().0);
            Some(e.status().0)
        }
    }
}

// ---------------------------------------------------------------------------
// utf8_incremental

/// Random bytes cut at random points, fed piece by piece to the streaming
/// validator. The first byte says how many cut bytes follow (0-7); each
/// picks a cut position.
///
/// Invariants: the streamed verdict (every `feed` and `finish` ok) equals
/// `std::str::from_utf8` on the whole, and so does the one-shot
/// `utf8::validate`; after each successful `feed` the bytes so far are
/// valid or end in an unfinished code point (never a definite error: no
/// late detection), and `is_clean` says which; a failing `feed` fails only
/// if the bytes so far contain a definite error (no early failure).
pub fn utf8_incremental(data: &[u8]) {
    let Some((&n, data)) = data.split_first() else {
        return;
    };
    let (cut_bytes, bytes) = data.split_at(usize::from(n % 8).min(data.len()));
    let mut cuts: Vec<usize> = cut_bytes
        .iter()
        .map(|&c| usize::from(c) * bytes.len() / 255)
        .collect();
    cuts.sort_unstable();
    cuts.push(bytes.len());

    let whole_ok = std::str::from_utf8(bytes).is_ok();
    assert_eq!(utf8::validate(bytes).is_ok(), whole_ok, "one-shot validate");

    let mut v = Utf8Validator::new();
    let mut start = 0;
    let mut streamed_ok = true;
    for end in cuts {
        let seen = std::str::from_utf8(&bytes[..end]);
        match v.feed(&bytes[start..end]) {
            Ok(()) => match seen {
                Ok(_) => assert!(v.is_clean(), "valid so far but carrying"),
                Err(e) => {
                    assert!(
                        e.error_len().is_none(),
                        "accepted a definite error at {}",
                        e.valid_up_to()
                    );
                    assert!(!v.is_clean(), "unfinished code point not carried");
                }
            },
            Err(_) => {
                let e = seen.expect_err("rejected valid bytes");
                assert!(e.error_len().is_some(), "rejected an unfinished code point");
                streamed_ok = false;
                break;
            }
        }
        start = end;
    }
    if streamed_ok {
        streamed_ok = v.finish().is_ok();
        // `finish` resets the validator for the next message.
        assert!(v.is_clean());
        assert_eq!(v.feed(b"ok"), Ok(()));
    }
    assert_eq!(streamed_ok, whole_ok, "streamed verdict differs from std");
}

// ---------------------------------------------------------------------------
// connection

/// Upgrade requests the connection target can send (it also sends raw
/// bytes, so broken requests arrive that way too).
const UPGRADES: [&[u8]; 7] = [
    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    b"GET /ws?user=a HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
      Sec-WebSocket-Protocol: chat, x\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    b"GET /nowhere HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    b"POST /echo HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
      Sec-WebSocket-Protocol: wsedge, ws_token.abc\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
];

/// Close codes the application may start a close with (valid ones, and
/// 1005, which means "no code" and sends an empty close payload).
const APP_CLOSE_CODES: [u16; 8] = [1000, 1001, 1008, 1011, 1005, 3000, 4000, 4999];

/// Limits and deadlines for one connection run, from the input. Durations
/// are never zero: a zero interval would be a configuration that asks for
/// a busy loop, which the config layer is responsible for refusing.
fn conn_config(inp: &mut Input<'_>) -> ConnConfig {
    let ms = Duration::from_millis;
    let flags = inp.byte();
    ConnConfig {
        max_request_bytes: if flags & 1 == 0 { 8192 } else { 200 },
        max_headers: if flags & 2 == 0 { 32 } else { 4 },
        subprotocols: if flags & 4 == 0 {
            Vec::new()
        } else {
            vec!["chat".into()]
        },
        slow_consumer: if flags & 8 == 0 {
            SlowConsumerPolicy::Close
        } else {
            SlowConsumerPolicy::Drop
        },
        max_frame_size: inp.pick(&[70_000, 1024, 125, 0]),
        max_message_size: inp.pick(&[200_000, 1024, 125, 0]),
        write_budget: inp.pick(&[1 << 20, 4096, 64, 0]),
        max_pending_bytes: inp.pick(&[1 << 20, 4096, 100, 0]),
        buffer_growth_step: if flags & 16 == 0 { 256 * 1024 } else { 64 },
        handshake_timeout: inp.pick(&[ms(10_000), ms(1), ms(500)]),
        ping_interval: inp.pick(&[ms(25_000), ms(1), ms(300)]),
        pong_timeout: inp.pick(&[ms(10_000), ms(1), ms(300)]),
        idle_timeout: inp.pick(&[None, Some(ms(60_000)), Some(ms(1)), Some(ms(400))]),
        close_timeout: inp.pick(&[ms(5_000), ms(1), ms(200)]),
    }
}

/// Appends a client frame with the header fields as given (so also broken
/// ones): `len_form` 0 is the minimal length encoding, 1 forces 16 bits,
/// 2 forces 64 bits.
fn client_frame(out: &mut Vec<u8>, b0: u8, mask: Option<[u8; 4]>, len_form: u8, payload: &[u8]) {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    out.push(b0);
    let len = payload.len();
    match len_form {
        0 if len < 126 => out.push(mask_bit | len as u8),
        0 | 1 if len <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(unmask_scalar(payload, key));
        }
        None => out.extend_from_slice(payload),
    }
}

/// Order of the phases: a connection only moves forward.
fn phase_rank(p: Phase) -> u8 {
    match p {
        Phase::Handshake => 0,
        Phase::Open => 1,
        Phase::Closing => 2,
        Phase::Closed => 3,
        Phase::Dead => 4,
    }
}

/// Where the peer's view of our output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerStage {
    /// Waiting for the HTTP response head.
    Head,
    /// After a `101`: WebSocket frames.
    Frames,
    /// After an error response: its body, then nothing.
    Refused { body_left: usize },
}

/// The client's side of the wire: parses everything the connection writes
/// and checks it.
struct Peer {
    stage: PeerStage,
    head: Vec<u8>,
    rx: BytesMut,
    decoder: FrameDecoder,
    close_seen: bool,
    frames: u64,
    /// Data frames queued for the peer (`send_message` said yes, or
    /// `push_frame` queued), in order: each must arrive intact.
    expected: VecDeque<(OpCode, Bytes)>,
}

impl Peer {
    fn new() -> Self {
        Self {
            stage: PeerStage::Head,
            head: Vec::new(),
            rx: BytesMut::new(),
            // Server frames are unmasked: the client role rejects masked ones.
            decoder: FrameDecoder::new(Role::Client, 1 << 30),
            close_seen: false,
            frames: 0,
            expected: VecDeque::new(),
        }
    }

    fn receive(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.stage {
                PeerStage::Head => {
                    self.head.extend_from_slice(bytes);
                    bytes = &[];
                    let Some(end) = self.head.windows(4).position(|w| w == b"\r\n\r\n") else {
                        assert!(self.head.len() < 4096, "response head without an end");
                        continue;
                    };
                    let rest = self.head.split_off(end + 4);
                    let mut headers = [httparse::EMPTY_HEADER; 16];
                    let mut resp = httparse::Response::new(&mut headers);
                    assert_eq!(
                        resp.parse(&self.head),
                        Ok(httparse::Status::Complete(end + 4)),
                        "response head"
                    );
                    if resp.code == Some(101) {
                        assert!(resp
                            .headers
                            .iter()
                            .any(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept")));
                        self.stage = PeerStage::Frames;
                    } else {
                        let body_left = resp
                            .headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                            .expect("an error response has a Content-Length");
                        self.stage = PeerStage::Refused { body_left };
                    }
                    self.receive(&rest);
                }
                PeerStage::Refused { body_left } => {
                    assert!(bytes.len() <= body_left, "output after the refusal");
                    self.stage = PeerStage::Refused {
                        body_left: body_left - bytes.len(),
                    };
                    bytes = &[];
                }
                PeerStage::Frames => {
                    self.rx.extend_from_slice(bytes);
                    bytes = &[];
                    while let Some(frame) = self
                        .decoder
                        .decode(&mut self.rx)
                        .unwrap_or_else(|e| panic!("the server wrote an invalid frame: {e}"))
                    {
                        self.check_frame(&frame);
                    }
                }
            }
        }
    }

    fn check_frame(&mut self, frame: &Frame) {
        assert!(
            !self.close_seen,
            "{:?} frame written after our close frame",
            frame.opcode
        );
        self.frames += 1;
        assert!(frame.fin, "the server sends whole messages");
        if matches!(frame.opcode, OpCode::Text | OpCode::Binary) {
            let (opcode, payload) = self.expected.pop_front().expect("a data frame nobody sent");
            assert_eq!(frame.opcode, opcode, "data frame type");
            assert!(frame.payload == payload, "data frame payload corrupted");
        }
        match frame.opcode {
            OpCode::Continuation => panic!("the server never fragments"),
            OpCode::Text => {
                assert!(
                    std::str::from_utf8(&frame.payload).is_ok(),
                    "text frame is UTF-8"
                )
            }
            OpCode::Binary | OpCode::Ping | OpCode::Pong => {}
            OpCode::Close => {
                self.close_seen = true;
                let p = &frame.payload;
                assert_ne!(p.len(), 1, "close payload of one byte");
                if p.len() >= 2 {
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    assert!(is_valid_close_code(code), "sent close code {code}");
                    assert!(
                        std::str::from_utf8(&p[2..]).is_ok(),
                        "close reason is UTF-8"
                    );
                }
            }
        }
        if frame.opcode.is_control() {
            assert!(frame.payload.len() <= 125, "control frame over 125 bytes");
        }
    }

    /// At the end: the output was whole frames (or a whole response).
    fn finish(&self) {
        match self.stage {
            PeerStage::Head => assert!(self.head.is_empty(), "a partial response head"),
            PeerStage::Refused { body_left } => assert_eq!(body_left, 0, "a partial body"),
            PeerStage::Frames => {
                assert!(self.rx.is_empty(), "a partial frame");
                assert!(self.decoder.pending_header().is_none(), "a partial frame");
            }
        }
        assert!(self.expected.is_empty(), "queued messages never arrived");
    }
}

/// One connection and everything a core would hand it, plus the peer.
struct Sim {
    cfg: Config,
    conn: Conn,
    enc: FrameEncoder,
    events: Vec<Event>,
    tally: Tally,
    now: Instant,
    /// Bytes the peer sent that the "socket" holds until the driver reads.
    socket_in: BytesMut,
    eof_sent: bool,
    read_chunk: usize,
    /// Admission's answer to every upgrade request: `None` accepts.
    refusal: Option<(HandshakeError, Option<u64>)>,
    peer: Peer,
    phase: Phase,
    opened: Option<Route>,
    refused: bool,
    ended: Option<EndReason>,
    messages: u64,
    /// Bytes the application queued itself (sends, pushes) since the queue
    /// was last empty: the connection cannot bound those.
    app_bytes: usize,
    ping_timed_out: bool,
}

impl Sim {
    fn new(
        conn: ConnConfig,
        read_chunk: usize,
        refusal: Option<(HandshakeError, Option<u64>)>,
    ) -> Self {
        let now = Instant::now();
        let cfg = Config {
            conn,
            ..Config::default()
        };
        Self {
            conn: Conn::new(now, &cfg),
            cfg,
            enc: FrameEncoder::new(),
            events: Vec::new(),
            tally: Tally::default(),
            now,
            socket_in: BytesMut::new(),
            eof_sent: false,
            read_chunk,
            refusal,
            peer: Peer::new(),
            phase: Phase::Handshake,
            opened: None,
            refused: false,
            ended: None,
            messages: 0,
            app_bytes: 0,
            ping_timed_out: false,
        }
    }

    fn with<R>(&mut self, f: impl FnOnce(&mut Conn, &mut Ctx<'_>) -> R) -> R {
        let mut ctx = Ctx {
            now: self.now,
            cfg: &self.cfg,
            enc: &mut self.enc,
            events: &mut self.events,
            tally: &mut self.tally,
        };
        f(&mut self.conn, &mut ctx)
    }

    /// Most bytes the queue may hold: the write budget (reading stops
    /// beyond it), plus what one read can add (answers to its control
    /// frames, one echo of an up-to-max message, a handshake answer or
    /// close frame), plus what the application queued on its own.
    fn out_bound(&self) -> usize {
        self.cfg.conn.write_budget
            + self.read_chunk
            + self.cfg.conn.max_message_size
            + 1024
            + self.app_bytes
    }

    /// What the core does with events: count, echo on `/echo`, a small
    /// reply on `/ws` (standing in for the hub).
    fn route_events(&mut self) {
        loop {
            let events = std::mem::take(&mut self.events);
            if events.is_empty() {
                return;
            }
            for ev in events {
                match ev {
                    Event::Upgrade { route } => {
                        assert!(
                            self.opened.is_none() && !self.refused && self.ended.is_none(),
                            "Upgrade out of order"
                        );
                        assert_eq!(self.conn.route(), Some(route));
                        assert!(self.conn.upgrade_request_mut().is_some());
                        self.admit();
                    }
                    Event::Opened { route } => {
                        assert!(
                            self.opened.is_none() && !self.refused && self.ended.is_none(),
                            "Opened out of order"
                        );
                        assert_eq!(self.conn.route(), Some(route));
                        assert!(self.conn.request().is_some());
                        self.opened = Some(route);
                    }
                    Event::Refused(_) => {
                        assert!(
                            self.opened.is_none() && !self.refused,
                            "Refused out of order"
                        );
                        self.refused = true;
                    }
                    Event::Ended(reason) => {
                        assert!(self.ended.is_none(), "Ended twice");
                        assert_eq!(self.conn.end_reason(), Some(reason));
                        self.ping_timed_out = reason == EndReason::PingTimeout;
                        self.ended = Some(reason);
                    }
                    Event::Message { text, payload } => {
                        assert!(
                            self.opened.is_some() && self.ended.is_none(),
                            "a message outside the open phase"
                        );
                        assert!(
                            payload.len() <= self.cfg.conn.max_message_size,
                            "oversize message"
                        );
                        if text {
                            assert!(std::str::from_utf8(&payload).is_ok(), "text is not UTF-8");
                        }
                        self.messages += 1;
                        match self.opened {
                            Some(Route::Echo) => {
                                self.send(text, payload);
                            }
                            _ => {
                                let reply = Bytes::from_static(b"{\"type\":\"ack\"}");
                                self.app_bytes += reply.len() + 2;
                                self.send(true, reply);
                            }
                        }
                    }
                }
            }
        }
    }

    /// `send_message`, remembering what the peer must receive.
    fn send(&mut self, text: bool, payload: Bytes) -> bool {
        let sent = self.with(|c, ctx| c.send_message(text, payload.clone(), ctx));
        if sent {
            let opcode = if text { OpCode::Text } else { OpCode::Binary };
            self.peer.expected.push_back((opcode, payload));
        }
        sent
    }

    /// What the core's admission does with an upgrade request, decided
    /// there and then: accept it and parse what the client sent after it,
    /// or refuse it.
    fn admit(&mut self) {
        match self.refusal {
            None => {
                self.with(|c, ctx| c.accept_upgrade(ctx));
                self.route_events();
                while self.with(|c, ctx| c.process(ctx)) {
                    self.route_events();
                }
                self.route_events();
            }
            Some((err, retry_after)) => {
                self.with(|c, ctx| c.refuse_upgrade(err, retry_after, ctx));
            }
        }
    }

    /// The driver's read loop: reads while the connection wants to, in
    /// chunks of `read_chunk`; the end of the stream comes after its bytes.
    fn pump(&mut self) {
        while !self.conn.is_dead() && self.conn.wants_read(&self.cfg.conn) {
            if self.socket_in.is_empty() {
                if std::mem::take(&mut self.eof_sent) {
                    self.with(|c, ctx| c.handle_eof(ctx));
                    self.route_events();
                }
                return;
            }
            let n = self.read_chunk.min(self.socket_in.len());
            let mut chunk = self.socket_in.split_to(n);
            let mut more = self.with(|c, ctx| c.handle_read(&mut chunk, ctx));
            assert!(chunk.is_empty(), "handle_read takes all its input");
            self.route_events();
            while more {
                more = self.with(|c, ctx| c.process(ctx));
                self.route_events();
            }
            let len = self.conn.out().len();
            assert!(len <= self.out_bound(), "out queue of {len} bytes");
        }
    }

    /// The socket takes up to `max` bytes; the peer sees them.
    fn drain(&mut self, max: usize) {
        let mut left = max;
        while left > 0 && !self.conn.out().is_empty() {
            let out = self.conn.out();
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = out.io_slices(&mut slices);
            let mut written = Vec::new();
            for s in &slices[..n] {
                let take = s.len().min(left - written.len());
                written.extend_from_slice(&s[..take]);
                if take < s.len() {
                    break;
                }
            }
            out.advance(written.len());
            left -= written.len();
            self.peer.receive(&written);
        }
    }

    /// What `settle` does after every input, then the invariants that hold
    /// between any two inputs.
    fn settle(&mut self) {
        if self.conn.out().is_empty() {
            self.app_bytes = 0;
            self.conn.handle_drained();
        }
        let phase = self.conn.phase();
        assert!(
            phase_rank(phase) >= phase_rank(self.phase),
            "phase went back from {:?} to {phase:?}",
            self.phase
        );
        self.phase = phase;
        match phase {
            Phase::Handshake | Phase::Open => {
                assert_eq!(self.conn.end_reason(), None);
                assert_eq!(phase == Phase::Open, self.opened.is_some());
            }
            _ => assert!(self.ended.is_some(), "{phase:?} without an Ended event"),
        }
        assert_eq!(
            self.conn.poll_timeout(&self.cfg.conn).is_none(),
            self.conn.is_dead()
        );
        let len = self.conn.out().len();
        assert!(len <= self.out_bound(), "out queue of {len} bytes");
        assert_eq!(self.tally.messages_in, self.messages);
    }

    fn elapse(&mut self, to: Instant) {
        self.now = self.now.max(to);
        self.with(|c, ctx| c.handle_timeout(ctx));
        self.route_events();
        if let Some(next) = self.conn.poll_timeout(&self.cfg.conn) {
            assert!(
                next > self.now,
                "poll_timeout {:?} not after now in {:?}",
                next - self.now.min(next),
                self.conn.phase()
            );
        }
    }

    fn step(&mut self, inp: &mut Input<'_>) {
        match inp.byte() % 12 {
            0 => {
                let req = inp.pick(&UPGRADES);
                self.socket_in.extend_from_slice(req);
            }
            1 => {
                let n = usize::from(inp.byte());
                let raw = inp.take(n);
                self.socket_in.extend_from_slice(raw);
            }
            2..=4 => {
                // A client frame: mostly valid; `bad` breaks one rule.
                let flags = inp.byte();
                let bad = inp.byte() % 16;
                let opcode = inp.pick(&[1, 2, 0, 0, 1, 2, 8, 9, 10, 9, 0, 1, 2, 3, 0xb, 8]);
                let fin = flags & 1 == 0 || (opcode >= 8 && bad != 5);
                let rsv = if bad == 1 { 0x40 } else { 0 };
                let mask = if bad == 2 {
                    None
                } else {
                    Some([inp.byte(), inp.byte(), inp.byte(), inp.byte()])
                };
                let len_form = match bad {
                    3 => 1,
                    4 => 2,
                    _ => 0,
                };
                let len = match inp.byte() {
                    254 => usize::from(inp.u16()) % 4096,
                    255 => usize::from(inp.u16()) + 64 * 1024,
                    n => usize::from(n),
                };
                let mut payload = inp.take(len).to_vec();
                // Short of input: fill with text that is valid UTF-8.
                payload.resize(len, b'a');
                if opcode == 8 && flags & 2 != 0 && len >= 2 {
                    // A close frame with a code worth trying.
                    let code = inp.pick(&[1000, 1001, 1005, 1006, 999, 1016, 3000, 4999, 5000]);
                    payload[..2].copy_from_slice(&u16::to_be_bytes(code));
                }
                let b0 = (u8::from(fin) << 7) | rsv | opcode;
                let mut wire = Vec::new();
                client_frame(&mut wire, b0, mask, len_form, &payload);
                self.socket_in.extend_from_slice(&wire);
            }
            5 => {
                let ms = u64::from(inp.u16());
                let to = self.now + Duration::from_millis(ms);
                self.elapse(to);
            }
            6 => {
                // Exactly at the next deadline, or just before it.
                if let Some(at) = self.conn.poll_timeout(&self.cfg.conn) {
                    let early = Duration::from_nanos(u64::from(inp.byte() & 1));
                    self.elapse(at.checked_sub(early).unwrap_or(at));
                }
            }
            7 => {
                let text = inp.byte() & 1 == 0;
                let len = match inp.byte() {
                    255 => usize::from(inp.u16()),
                    n => usize::from(n),
                };
                let payload = if text {
                    String::from_utf8_lossy(inp.take(len))
                        .into_owned()
                        .into_bytes()
                } else {
                    inp.take(len).to_vec()
                };
                let payload = Bytes::from(payload);
                let before = self.conn.out().len();
                let open = self.conn.phase() == Phase::Open;
                let sent = self.send(text, payload);
                assert_eq!(sent, open, "send_message accepted iff open");
                self.app_bytes += self.conn.out().len() - before;
            }
            8 => {
                let len = match inp.byte() {
                    255 => usize::from(inp.u16()),
                    n => usize::from(n),
                };
                let payload = Bytes::copy_from_slice(inp.take(len));
                let mut frame = BytesMut::new();
                encode_frame(&mut frame, true, OpCode::Binary, &payload);
                let frame = frame.freeze();
                let flen = frame.len();
                let before = self.conn.out().len();
                let phase = self.conn.phase();
                let res = self.with(|c, ctx| c.push_frame(frame, ctx));
                let after = self.conn.out().len();
                match res {
                    Push::Queued => {
                        assert_eq!(after, before + flen);
                        assert!(
                            after <= self.cfg.conn.max_pending_bytes,
                            "pushed over the limit"
                        );
                        self.app_bytes += flen;
                        self.peer.expected.push_back((OpCode::Binary, payload));
                    }
                    Push::Dropped => {
                        assert_eq!(self.cfg.conn.slow_consumer, SlowConsumerPolicy::Drop);
                        assert_eq!(after, before);
                    }
                    Push::Closed => {
                        assert_eq!(self.cfg.conn.slow_consumer, SlowConsumerPolicy::Close);
                        assert_eq!(self.conn.phase(), Phase::Closing);
                        assert_eq!(self.conn.end_reason(), Some(EndReason::SlowConsumer));
                        self.app_bytes += after - before;
                    }
                    Push::NotOpen => assert_ne!(phase, Phase::Open),
                }
                self.route_events();
            }
            9 => {
                let code = inp.pick(&APP_CLOSE_CODES);
                let reason_len = usize::from(inp.byte() % 200);
                let reason = String::from_utf8_lossy(inp.take(reason_len));
                let why = inp.pick(&[EndReason::Kicked, EndReason::Shutdown]);
                let before = self.conn.out().len();
                self.with(|c, ctx| c.close(code, &reason, why, ctx));
                self.app_bytes += self.conn.out().len() - before;
                self.route_events();
            }
            10 => {
                let max = inp.pick(&[0, 1, 2, 7, 100, 4096, usize::MAX]);
                self.drain(max);
            }
            _ => match inp.byte() % 4 {
                0 => {
                    self.with(|c, ctx| c.handle_io_error(ctx));
                    self.route_events();
                }
                _ => self.eof_sent = true,
            },
        }
        self.pump();
        self.settle();
    }

    /// The driver's last flush before the socket is dropped (or the end of
    /// the run): the peer gets everything.
    fn finish(&mut self) {
        self.drain(usize::MAX);
        self.settle();
        self.peer.finish();
        let frames_out = self.tally.frames_out + u64::from(self.ping_timed_out);
        // The best-effort close on a pong timeout is not counted in
        // `frames_out` (see fuzz/README.md); every other frame is.
        assert_eq!(self.peer.frames, frames_out, "frames written vs counted");
    }
}

/// A structure-aware run of one connection: the input is decoded into a
/// configuration, a read size, admission's answer to the upgrade (accept,
/// or refuse with a status) and a sequence of operations — peer bytes
/// (upgrade requests, raw bytes, client frames, valid or broken), elapsed
/// virtual time (arbitrary or exactly to the next deadline), the
/// application's sends, pushes and closes, the socket taking some output,
/// EOF and I/O errors — driven the way the core drives a connection.
///
/// Invariants: no panic; phases only move forward, and past `Open` the
/// connection has ended (one `Ended`, after at most one `Opened` or
/// `Refused`); messages arrive only while open, within
/// `max_message_size`, text as UTF-8; the output is one HTTP response
/// (then frames after a `101`, nothing after an error), whole unmasked
/// frames, no frame at all after a close frame, close codes the RFC
/// allows, control payloads ≤ 125; every message queued (echo, send,
/// push) reaches the peer intact and in order; `send_message` succeeds iff
/// open and `push_frame` obeys `max_pending_bytes` and the slow-consumer
/// policy; the out queue stays under the write
/// budget plus what one read and the application may add; after
/// `handle_timeout` the next deadline is after `now`; the counters match
/// the frames written and messages delivered.
pub fn connection(data: &[u8]) {
    simulate(data);
}

/// Runs [`connection`]'s simulation; returns the counters and how many
/// frames the peer received.
fn simulate(data: &[u8]) -> (Tally, u64) {
    let mut inp = Input::new(data);
    let cfg = conn_config(&mut inp);
    let read_chunk = inp.pick(&[65536, 1, 2, 7, 64, 1000]);
    let refusal = inp.pick(&[
        None,
        None,
        None,
        Some((HandshakeError::TooManyAttempts, Some(30))),
        Some((HandshakeError::ServerFull, None)),
    ]);
    let mut sim = Sim::new(cfg, read_chunk, refusal);
    while !inp.is_empty() && !sim.conn.is_dead() {
        sim.step(&mut inp);
    }
    sim.finish();
    (sim.tally, sim.peer.frames)
}

/// Parses JSON as RFC 8259's grammar does, which `serde_json::Value` does
/// not quite: an escape of an unpaired UTF-16 surrogate (`"\udc00"`) is
/// grammatical JSON (RFC 8259 §7; §8.2 leaves its meaning to the reader,
/// and `JSON.parse` keeps it), so the hub forwards it inside `data` byte
/// for byte. `Value` refuses it; here each unpaired surrogate escape is
/// read as U+FFFD first, which changes no structure.
fn lenient_json(bytes: &[u8]) -> Result<serde_json::Value, serde_json::Error> {
    fn surrogate(b: &[u8]) -> Option<u16> {
        let hex = std::str::from_utf8(b.get(..4)?).ok()?;
        let v = u16::from_str_radix(hex, 16).ok()?;
        (0xD800..=0xDFFF).contains(&v).then_some(v)
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        if bytes.get(i + 1) == Some(&b'u') {
            if let Some(v) = surrogate(&bytes[i + 2..]) {
                let high = (0xD800..0xDC00).contains(&v);
                let paired = high
                    && bytes.get(i + 6..i + 8) == Some(b"\\u")
                    && surrogate(&bytes[i + 8..]).is_some_and(|w| w >= 0xDC00);
                if paired {
                    out.extend_from_slice(&bytes[i..i + 12]);
                    i += 12;
                } else {
                    out.extend_from_slice(b"\\uFFFD");
                    i += 6;
                }
                continue;
            }
        }
        // Any other escape: copy the backslash and the escaped byte.
        out.extend_from_slice(&bytes[i..(i + 2).min(bytes.len())]);
        i += 2;
    }
    serde_json::from_slice(&out)
}

/// Arbitrary bytes as one client text message on `/ws`
/// (`hub::protocol::parse_request`), and the frames the hub answers with.
///
/// Invariants: no panic; for UTF-8 input (what text frames carry), an
/// accepted request is a JSON object (as
/// `serde_json::Value` reads it) whose `type`, `channel` and `id` say the
/// same as the parsed request, and whose `data` is carried byte for byte;
/// `request_id` agrees with the object's `id`; the `message`, `ack` and
/// `error` frames built from it are each one final, unmasked text frame
/// holding valid JSON with the same channel and data.
pub fn client_request(data: &[u8]) {
    use crate::hub::protocol::{
        ack_frame, error_frame, message_frame, parse_request, pong_frame, request_id,
        validate_channel, ClientRequest, RequestError, MAX_CHANNEL_LEN,
    };
    use serde_json::Value;

    fn frame_json(frame: &Bytes) -> Value {
        let (h, n) = FrameHeader::parse(frame, Role::Client, u64::MAX)
            .expect("server frame parses")
            .expect("server frame is complete");
        assert!(h.fin && h.opcode == OpCode::Text && h.mask.is_none());
        assert_eq!(h.payload_len as usize, frame.len() - n, "one frame exactly");
        lenient_json(&frame[n..]).expect("server frame holds valid JSON")
    }

    let parsed = parse_request(data);
    // Only text messages reach the parser, and the connection layer has
    // validated them as UTF-8 (close 1007 otherwise); serde_json does not
    // re-check the strings it skips, so other bytes only need not panic.
    if std::str::from_utf8(data).is_err() {
        return;
    }
    let value = lenient_json(data);
    if let Ok(Value::Object(obj)) = &value {
        if let Some(id) = obj.get("id").and_then(Value::as_u64) {
            if parsed.is_ok() {
                assert_eq!(request_id(data), Some(id));
            }
        }
    }
    let req = match parsed {
        Ok(req) => req,
        Err(e) => {
            assert_eq!(e, RequestError::BadRequest);
            let id = request_id(data);
            let v = frame_json(&error_frame(id, e));
            assert_eq!(v["code"], "bad_request");
            assert_eq!(v.get("id").and_then(Value::as_u64), id);
            return;
        }
    };
    let obj = match value {
        Ok(Value::Object(obj)) => obj,
        Ok(_) => panic!("accepted a request that is not a JSON object"),
        Err(err) => {
            // Grammatical JSON that `Value` cannot hold: a number beyond
            // f64 (RFC 8259 §6 leaves the range to implementations; the
            // hub forwards `data` verbatim). Anything else is a bug.
            assert!(
                err.to_string().contains("number out of range"),
                "accepted a request that is not JSON: {err}"
            );
            serde_json::from_slice::<serde::de::IgnoredAny>(data)
                .expect("the request is grammatical JSON");
            return;
        }
    };
    let (kind, channel, id) = match &req {
        ClientRequest::Subscribe { channel, id } => ("subscribe", Some(channel), *id),
        ClientRequest::Unsubscribe { channel, id } => ("unsubscribe", Some(channel), *id),
        ClientRequest::Publish { channel, id, .. } => ("publish", Some(channel), *id),
        ClientRequest::Ping { id } => ("ping", None, *id),
    };
    assert_eq!(obj.get("type").and_then(Value::as_str), Some(kind));
    if let Some(channel) = channel {
        assert_eq!(obj.get("channel").and_then(Value::as_str), Some(&**channel));
    }
    assert_eq!(obj.get("id").and_then(Value::as_u64), id);
    if kind == "ping" {
        let mut want = serde_json::json!({"type": "pong"});
        if let Some(id) = id {
            want["id"] = id.into();
        }
        assert_eq!(frame_json(&pong_frame(id)), want);
    }
    if let Some(id) = id {
        assert_eq!(
            frame_json(&ack_frame(id)),
            serde_json::json!({"type": "ack", "id": id})
        );
    }
    if let ClientRequest::Publish {
        data: raw, channel, ..
    } = &req
    {
        let carried: Value = lenient_json(raw.get().as_bytes()).expect("data is JSON");
        assert_eq!(Some(&carried), obj.get("data"));
        let ok = validate_channel(channel, MAX_CHANNEL_LEN).is_ok();
        let v = frame_json(&message_frame(ok.then_some(&**channel), raw));
        assert_eq!(v["type"], "message");
        assert_eq!(v["data"], carried);
        if ok {
            assert_eq!(v["channel"].as_str(), Some(&**channel));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_accepts_the_rfc_sample() {
        // Seed 0x0f: 8 KiB and 32 headers, no subprotocols, no client-IP
        // header, no Retry-After.
        let mut data = vec![0x0f];
        data.extend_from_slice(UPGRADES[0]);
        assert_eq!(handshake(&data), Some(101));
        // The same request under a 64-byte limit is refused, not accepted.
        data[0] = 0x0c;
        assert_eq!(handshake(&data), Some(431));
        // Cut short under a large limit: incomplete.
        data[0] = 0x0f;
        assert_eq!(handshake(&data[..40]), None);
    }

    #[test]
    fn connection_echoes_a_message() {
        // config bytes, read size, admission, upgrade, a masked text
        // frame, drain all.
        let mut data = vec![0; 12];
        data.extend_from_slice(&[0, 0]); // upgrade /echo
        data.extend_from_slice(&[2, 0, 0, 0, 1, 2, 3, 4, 2, b'h', b'i']);
        data.extend_from_slice(&[10, 6]);
        let (tally, frames) = simulate(&data);
        assert_eq!((tally.messages_in, tally.messages_out, frames), (1, 1, 1));
    }
}
