//! Every reason wsedge refuses input, and the one place each is mapped to
//! what the peer sees: an RFC 6455 close code after the upgrade
//! ([`ProtocolError::close_code`]), an HTTP status with a short text body
//! before it ([`Rejection::answer`], for the protocol layer's
//! [`HandshakeError`]s and admission's [`Refusal`]s alike).
//!
//! Owns: the error enums and their mappings. Must not touch: I/O, counters.

use thiserror::Error;

use crate::admission::Refusal;
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

/// An upgrade request that breaks HTTP/1.1 or RFC 6455 §4.2.1: the
/// protocol layer's own refusals (policy refusals are
/// [`admission::Refusal`](crate::admission::Refusal)s). Each is answered
/// through [`Rejection::answer`].
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

/// Every way an upgrade ends without a `101`, whoever decided it: one
/// counter each ([`Rejection::index`], [`Rejection::name`]) and one
/// mapping to what the client sees ([`Rejection::answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Rejection {
    /// The request broke HTTP/1.1 or RFC 6455 (the protocol layer).
    #[error(transparent)]
    Request(#[from] HandshakeError),
    /// No route for the request path (the server's route table).
    #[error("no such route")]
    NotFound,
    /// The request head did not arrive within the handshake timeout.
    #[error("handshake not completed in time")]
    Timeout,
    /// The request was complete, but the decision on it (made elsewhere:
    /// admission left it pending) did not arrive within the handshake
    /// timeout.
    #[error("no decision on the upgrade in time")]
    DecisionTimeout,
    /// Admission said no: tokens, origins, attempts, quotas.
    #[error(transparent)]
    Refused(#[from] Refusal),
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

impl Rejection {
    /// Every kind, in counter order (a refusal with data, such as a
    /// `Retry-After`, is listed once with its data zeroed).
    pub const ALL: [Rejection; 24] = [
        Self::Request(HandshakeError::Malformed),
        Self::Request(HandshakeError::RequestTooLarge),
        Self::Request(HandshakeError::TooManyHeaders),
        Self::Request(HandshakeError::HttpVersion),
        Self::Request(HandshakeError::MethodNotAllowed),
        Self::NotFound,
        Self::Request(HandshakeError::MissingHost),
        Self::Request(HandshakeError::NotWebSocket),
        Self::Request(HandshakeError::MissingConnectionUpgrade),
        Self::Request(HandshakeError::UnsupportedVersion),
        Self::Request(HandshakeError::MissingKey),
        Self::Request(HandshakeError::InvalidKey),
        Self::Timeout,
        Self::Refused(Refusal::TokenMissing),
        Self::Refused(Refusal::TokenMalformed),
        Self::Refused(Refusal::TokenBadSignature),
        Self::Refused(Refusal::TokenExpired),
        Self::Refused(Refusal::TokenReplayed),
        Self::Refused(Refusal::OriginForbidden),
        Self::Refused(Refusal::TooManyAttempts { retry_after: 0 }),
        Self::Refused(Refusal::IpQuota),
        Self::Refused(Refusal::UserQuota),
        Self::Refused(Refusal::ServerFull),
        Self::DecisionTimeout,
    ];

    /// This rejection with its data zeroed: its entry in [`Self::ALL`].
    fn kind(self) -> Self {
        match self {
            Self::Refused(Refusal::TooManyAttempts { .. }) => {
                Self::Refused(Refusal::TooManyAttempts { retry_after: 0 })
            }
            other => other,
        }
    }

    /// Index into [`Self::ALL`] (the counter slot).
    pub fn index(self) -> usize {
        let kind = self.kind();
        Self::ALL
            .iter()
            .position(|e| *e == kind)
            .expect("ALL lists every kind")
    }

    /// Stable snake_case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::Request(e) => match e {
                HandshakeError::Malformed => "malformed",
                HandshakeError::RequestTooLarge => "request_too_large",
                HandshakeError::TooManyHeaders => "too_many_headers",
                HandshakeError::HttpVersion => "http_version",
                HandshakeError::MethodNotAllowed => "method_not_allowed",
                HandshakeError::MissingHost => "missing_host",
                HandshakeError::NotWebSocket => "not_websocket",
                HandshakeError::MissingConnectionUpgrade => "missing_connection_upgrade",
                HandshakeError::UnsupportedVersion => "unsupported_version",
                HandshakeError::MissingKey => "missing_key",
                HandshakeError::InvalidKey => "invalid_key",
            },
            Self::NotFound => "not_found",
            Self::Timeout => "timeout",
            Self::DecisionTimeout => "decision_timeout",
            Self::Refused(r) => match r {
                Refusal::TokenMissing => "token_missing",
                Refusal::TokenMalformed => "token_malformed",
                Refusal::TokenBadSignature => "token_bad_signature",
                Refusal::TokenExpired => "token_expired",
                Refusal::TokenReplayed => "token_replayed",
                Refusal::OriginForbidden => "origin_forbidden",
                Refusal::TooManyAttempts { .. } => "too_many_attempts",
                Refusal::IpQuota => "ip_quota",
                Refusal::UserQuota => "user_quota",
                Refusal::ServerFull => "server_full",
            },
        }
    }

    /// The one mapping from a rejection to what the client is answered
    /// (the body is the rejection's text; see the README's status table).
    pub fn answer(self) -> Answer {
        use HandshakeError as H;
        let (status, phrase, headers, retry_after) = match self {
            Self::Request(
                H::Malformed
                | H::HttpVersion
                | H::MissingHost
                | H::MissingConnectionUpgrade
                | H::MissingKey
                | H::InvalidKey,
            ) => (400, "Bad Request", "", None),
            Self::NotFound => (404, "Not Found", "", None),
            Self::Request(H::MethodNotAllowed) => {
                (405, "Method Not Allowed", "Allow: GET\r\n", None)
            }
            Self::Timeout => (408, "Request Timeout", "", None),
            Self::Request(H::NotWebSocket) => {
                (426, "Upgrade Required", "Upgrade: websocket\r\n", None)
            }
            Self::Request(H::UnsupportedVersion) => (
                426,
                "Upgrade Required",
                "Sec-WebSocket-Version: 13\r\n",
                None,
            ),
            Self::Request(H::RequestTooLarge | H::TooManyHeaders) => {
                (431, "Request Header Fields Too Large", "", None)
            }
            Self::Refused(
                Refusal::TokenMissing
                | Refusal::TokenMalformed
                | Refusal::TokenBadSignature
                | Refusal::TokenExpired,
            ) => (401, "Unauthorized", "", None),
            Self::Refused(Refusal::TokenReplayed | Refusal::OriginForbidden) => {
                (403, "Forbidden", "", None)
            }
            Self::Refused(Refusal::TooManyAttempts { retry_after }) => {
                (429, "Too Many Requests", "", Some(u64::from(retry_after)))
            }
            Self::Refused(Refusal::IpQuota | Refusal::UserQuota) => {
                (429, "Too Many Requests", "", None)
            }
            Self::Refused(Refusal::ServerFull) => (503, "Service Unavailable", "", None),
            Self::DecisionTimeout => (504, "Gateway Timeout", "", None),
        };
        Answer {
            status,
            phrase,
            headers,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rejection_has_a_distinct_slot_name_and_status() {
        let mut names: Vec<_> = Rejection::ALL.iter().map(|e| e.name()).collect();
        for (i, e) in Rejection::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert!((400..600).contains(&e.answer().status));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rejection::ALL.len());
        let late = Rejection::Refused(Refusal::TooManyAttempts { retry_after: 30 });
        assert_eq!(
            late.index(),
            Rejection::ALL
                .iter()
                .position(|e| e.name() == "too_many_attempts")
                .unwrap()
        );
        assert_eq!(late.answer().retry_after, Some(30));
    }

    #[test]
    fn protocol_errors_map_to_rfc_close_codes() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
        assert_eq!(ProtocolError::MessageTooLarge { max: 1 }.close_code(), 1009);
        assert_eq!(ProtocolError::ReservedBits.close_code(), 1002);
        assert_eq!(ProtocolError::InvalidCloseCode(5).close_code(), 1002);
    }
}
