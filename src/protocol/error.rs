//! The protocol layer's own error types: what a peer can get wrong in
//! RFC 6455 framing after the upgrade ([`ProtocolError`]) and in the
//! HTTP/1.1 upgrade request before it ([`HandshakeError`]), and the shape of
//! an HTTP refusal ([`Answer`]).
//!
//! Owns: the types. Must not touch: what each maps to (close code, HTTP
//! status, counter slot): `crate::error` holds those mappings, in one place,
//! beside the refusals of the layers above (admission, routes).

use thiserror::Error;

/// A peer broke the WebSocket protocol or a configured limit after the
/// upgrade. Each variant is final for the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1–3 set, but no extension was negotiated.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// Opcode 3–7 or 0xB–0xF.
    #[error("unknown opcode {0:#x}")]
    UnknownOpcode(u8),
    /// A control frame without FIN.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame with more than 125 payload bytes.
    #[error("control frame payload longer than 125 bytes")]
    ControlTooLong,
    /// The most significant bit of a 64-bit payload length was set.
    #[error("64-bit payload length with the most significant bit set")]
    LengthMsbSet,
    /// Clients must mask every frame (RFC 6455 §5.1).
    #[error("client frame not masked")]
    UnmaskedClientFrame,
    /// Servers must never mask (seen by the client side of the codec).
    #[error("server frame masked")]
    MaskedServerFrame,
    /// A frame's payload exceeds `max_frame_size`.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge { len: u64, max: u64 },
    /// A message's total size exceeds `max_message_size`.
    #[error("message exceeds the limit of {max} bytes")]
    MessageTooLarge { max: usize },
    /// A continuation frame with no message to continue.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new data frame while a fragmented message is still open.
    #[error("new data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A text message or close reason that is not valid UTF-8.
    #[error("invalid UTF-8 in text payload")]
    InvalidUtf8,
    /// A compressed message (permessage-deflate) that is not valid
    /// DEFLATE data.
    #[error("compressed message is not valid DEFLATE data")]
    BadCompressedData,
    /// A close frame with a one-byte payload.
    #[error("close frame payload of one byte")]
    CloseFrameTooShort,
    /// A close code a peer may not send.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
}

/// Coarse protocol-error classes, one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolErrorKind {
    Framing,
    InvalidUtf8,
    TooLarge,
    BadClose,
}

/// An upgrade request that breaks HTTP/1.1 or RFC 6455 §4.2.1: the
/// protocol layer's own refusals (policy refusals are
/// [`admission::Refusal`](crate::admission::Refusal)s). Each is answered
/// through [`Rejection::answer`](crate::error::Rejection::answer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    #[error("malformed HTTP request")]
    Malformed,
    #[error("request head larger than the limit")]
    RequestTooLarge,
    #[error("too many request headers")]
    TooManyHeaders,
    #[error("HTTP/1.1 required")]
    HttpVersion,
    #[error("method must be GET")]
    MethodNotAllowed,
    #[error("missing Host header")]
    MissingHost,
    #[error("Upgrade: websocket required")]
    NotWebSocket,
    #[error("Connection header must contain the upgrade token")]
    MissingConnectionUpgrade,
    #[error("unsupported Sec-WebSocket-Version (13 required)")]
    UnsupportedVersion,
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    #[error("Sec-WebSocket-Key must be 16 bytes in base64")]
    InvalidKey,
}

/// What a refused client is answered: status line, extra headers and
/// `Retry-After`; the body is the rejection's text (its `Display`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub phrase: &'static str,
    /// Extra response headers, each ending in CRLF.
    pub headers: &'static str,
    /// Seconds until a retry can succeed (a `Retry-After` header).
    pub retry_after: Option<u64>,
}
