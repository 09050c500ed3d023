//! Every reason wsedge refuses input, and the one place each is mapped to
//! what the peer sees: an RFC 6455 close code after the upgrade, an HTTP
//! status (with a short text body) before it.
//!
//! Owns: the error enums and their mappings. Must not touch: I/O, counters.

use thiserror::Error;

use crate::protocol::close::code;

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
    /// A close frame with a one-byte payload.
    #[error("close frame payload of one byte")]
    CloseFrameTooShort,
    /// A close code a peer may not send.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
}

impl ProtocolError {
    /// The close code sent to the peer for this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            Self::InvalidUtf8 => code::INVALID_PAYLOAD,
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => code::MESSAGE_TOO_BIG,
            _ => code::PROTOCOL_ERROR,
        }
    }

    /// The counter slot for this error.
    pub fn kind(&self) -> ProtocolErrorKind {
        match self {
            Self::InvalidUtf8 => ProtocolErrorKind::InvalidUtf8,
            Self::FrameTooLarge { .. } | Self::MessageTooLarge { .. } => {
                ProtocolErrorKind::TooLarge
            }
            Self::InvalidCloseCode(_) | Self::CloseFrameTooShort => ProtocolErrorKind::BadClose,
            _ => ProtocolErrorKind::Framing,
        }
    }
}

/// Coarse protocol-error classes, one counter each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolErrorKind {
    Framing,
    InvalidUtf8,
    TooLarge,
    BadClose,
}

/// Why an HTTP upgrade request was refused. Each has one HTTP status.
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
    #[error("no such route")]
    NotFound,
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
    #[error("handshake not completed in time")]
    Timeout,
    #[error("connection token required")]
    TokenMissing,
    #[error("connection token malformed")]
    TokenMalformed,
    #[error("connection token signature invalid")]
    TokenBadSignature,
    #[error("connection token expired")]
    TokenExpired,
    #[error("connection token already used")]
    TokenReplayed,
    #[error("origin not allowed")]
    OriginForbidden,
    #[error("too many connection attempts")]
    TooManyAttempts,
    #[error("too many connections from this address")]
    IpQuota,
    #[error("too many connections for this user")]
    UserQuota,
    #[error("server full")]
    ServerFull,
}

impl HandshakeError {
    /// Every variant, in counter order.
    pub const ALL: [HandshakeError; 23] = [
        Self::Malformed,
        Self::RequestTooLarge,
        Self::TooManyHeaders,
        Self::HttpVersion,
        Self::MethodNotAllowed,
        Self::NotFound,
        Self::MissingHost,
        Self::NotWebSocket,
        Self::MissingConnectionUpgrade,
        Self::UnsupportedVersion,
        Self::MissingKey,
        Self::InvalidKey,
        Self::Timeout,
        Self::TokenMissing,
        Self::TokenMalformed,
        Self::TokenBadSignature,
        Self::TokenExpired,
        Self::TokenReplayed,
        Self::OriginForbidden,
        Self::TooManyAttempts,
        Self::IpQuota,
        Self::UserQuota,
        Self::ServerFull,
    ];

    /// Index into [`Self::ALL`] (the counter slot).
    pub fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|e| *e == self)
            .expect("ALL lists every variant")
    }

    /// Stable snake_case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::RequestTooLarge => "request_too_large",
            Self::TooManyHeaders => "too_many_headers",
            Self::HttpVersion => "http_version",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::NotFound => "not_found",
            Self::MissingHost => "missing_host",
            Self::NotWebSocket => "not_websocket",
            Self::MissingConnectionUpgrade => "missing_connection_upgrade",
            Self::UnsupportedVersion => "unsupported_version",
            Self::MissingKey => "missing_key",
            Self::InvalidKey => "invalid_key",
            Self::Timeout => "timeout",
            Self::TokenMissing => "token_missing",
            Self::TokenMalformed => "token_malformed",
            Self::TokenBadSignature => "token_bad_signature",
            Self::TokenExpired => "token_expired",
            Self::TokenReplayed => "token_replayed",
            Self::OriginForbidden => "origin_forbidden",
            Self::TooManyAttempts => "too_many_attempts",
            Self::IpQuota => "ip_quota",
            Self::UserQuota => "user_quota",
            Self::ServerFull => "server_full",
        }
    }

    /// HTTP status code and reason phrase.
    pub fn status(self) -> (u16, &'static str) {
        match self {
            Self::Malformed
            | Self::HttpVersion
            | Self::MissingHost
            | Self::MissingConnectionUpgrade
            | Self::MissingKey
            | Self::InvalidKey => (400, "Bad Request"),
            Self::NotFound => (404, "Not Found"),
            Self::MethodNotAllowed => (405, "Method Not Allowed"),
            Self::Timeout => (408, "Request Timeout"),
            Self::NotWebSocket | Self::UnsupportedVersion => (426, "Upgrade Required"),
            Self::RequestTooLarge | Self::TooManyHeaders => {
                (431, "Request Header Fields Too Large")
            }
            Self::TokenMissing
            | Self::TokenMalformed
            | Self::TokenBadSignature
            | Self::TokenExpired => (401, "Unauthorized"),
            Self::TokenReplayed | Self::OriginForbidden => (403, "Forbidden"),
            Self::TooManyAttempts | Self::IpQuota | Self::UserQuota => (429, "Too Many Requests"),
            Self::ServerFull => (503, "Service Unavailable"),
        }
    }

    /// Extra response headers the status calls for (each ending in CRLF).
    pub fn extra_headers(self) -> &'static str {
        match self {
            Self::MethodNotAllowed => "Allow: GET\r\n",
            Self::NotWebSocket => "Upgrade: websocket\r\n",
            Self::UnsupportedVersion => "Sec-WebSocket-Version: 13\r\n",
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_handshake_error_has_a_distinct_slot_and_name() {
        let mut names: Vec<_> = HandshakeError::ALL.iter().map(|e| e.name()).collect();
        for (i, e) in HandshakeError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert!((400..600).contains(&e.status().0));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), HandshakeError::ALL.len());
    }

    #[test]
    fn protocol_errors_map_to_rfc_close_codes() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
        assert_eq!(ProtocolError::MessageTooLarge { max: 1 }.close_code(), 1009);
        assert_eq!(ProtocolError::ReservedBits.close_code(), 1002);
        assert_eq!(ProtocolError::InvalidCloseCode(5).close_code(), 1002);
    }
}
