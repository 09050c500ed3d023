//! The `client_request` harness: arbitrary bytes as one client text
//! message on `/ws` through the hub's JSON request parser
//! (`hub::protocol::parse_request`), and the frames the hub answers with.
//!
//! Checks: for UTF-8 input, an accepted request is a JSON object whose
//! fields say the same as the parsed request, with `data` carried byte for
//! byte; a refusal is `bad_request` with the right `id`; every answer frame
//! (`message`, `ack`, `pong`, `error`) is one final unmasked text frame of
//! valid JSON. Other bytes need only not panic.
//!
//! Must not touch: I/O, the clock, global state, the hub's registry or any
//! connection: only the pure parser and frame builders of `hub::protocol`.

use bytes::Bytes;

use crate::protocol::{FrameHeader, OpCode, Role};

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
