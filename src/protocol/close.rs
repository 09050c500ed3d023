//! Close frames (RFC 6455 §5.5.1, §7.4): status codes and payload rules.
//!
//! Owns: which close codes a peer may send, parsing a received close
//! payload, and building the close payload we send.
//! Must not touch: connection state; the close *handshake* lives in `conn`.

use bytes::BytesMut;

use super::error::ProtocolError;
use super::frame::{encode_frame, OpCode};
use super::utf8;

/// Well-known close codes used by the server.
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Reserved: "no status code was present". Never sent on the wire.
    pub const NO_STATUS: u16 = 1005;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// May a peer send `code` in a close frame? (RFC 6455 §7.4.1 plus the
/// IANA registry: 1012–1014 are registered; 3000–4999 are for libraries
/// and applications; 1004–1006, 1015 and everything else are not.)
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// A received close frame's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code, or 1005 if the payload was empty.
    pub code: u16,
    /// Length of the UTF-8 reason in bytes (the text itself is not kept:
    /// wsedge never logs what peers say).
    pub reason_len: usize,
}

/// Parses and validates a received close payload.
pub fn parse_close_payload(payload: &[u8]) -> Result<CloseFrame, ProtocolError> {
    match payload.len() {
        0 => Ok(CloseFrame {
            code: code::NO_STATUS,
            reason_len: 0,
        }),
        1 => Err(ProtocolError::CloseFrameTooShort),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            utf8::validate(&payload[2..]).map_err(|_| ProtocolError::InvalidUtf8)?;
            Ok(CloseFrame {
                code,
                reason_len: payload.len() - 2,
            })
        }
    }
}

/// Appends a server close frame with `code` (none if `code` is 1005) and a
/// reason cut to fit the 125-byte control payload on a char boundary.
pub fn encode_close(out: &mut BytesMut, code: u16, reason: &str) {
    if code == code::NO_STATUS {
        encode_frame(out, true, OpCode::Close, &[]);
        return;
    }
    let mut cut = reason.len().min(123);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = [0u8; 125];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    payload[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
    encode_frame(out, true, OpCode::Close, &payload[..2 + cut]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_table() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ] {
            assert!(is_valid_close_code(ok), "{ok}");
        }
        for bad in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(bad), "{bad}");
        }
    }

    #[test]
    fn parses_and_rejects_payloads() {
        assert_eq!(parse_close_payload(&[]).unwrap().code, 1005);
        assert_eq!(
            parse_close_payload(&[3]),
            Err(ProtocolError::CloseFrameTooShort)
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xe8, b'o', b'k']).unwrap(),
            CloseFrame {
                code: 1000,
                reason_len: 2
            }
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xe8, 0xff]),
            Err(ProtocolError::InvalidUtf8)
        );
        assert_eq!(
            parse_close_payload(&[0x03, 0xed]),
            Err(ProtocolError::InvalidCloseCode(1005))
        );
    }

    #[test]
    fn long_reason_is_cut_on_a_char_boundary() {
        let reason = "é".repeat(100);
        let mut out = BytesMut::new();
        encode_close(&mut out, 1001, &reason);
        assert_eq!(out[1] as usize, out.len() - 2);
        assert!(out[1] <= 125);
        assert!(std::str::from_utf8(&out[4..]).is_ok());
    }
}
