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
pub use crate::protocol::error::{Answer, HandshakeError, ProtocolError, ProtocolErrorKind};

impl ProtocolError {
    /// The close code sent to the peer for this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            Self::InvalidUtf8 | Self::BadCompressedData => code::INVALID_PAYLOAD,
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

impl Rejection {
    /// Every kind, in counter order (a refusal with data, such as a
    /// `Retry-After`, is listed once with its data zeroed).
    pub const ALL: [Rejection; 29] = [
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
        Self::Refused(Refusal::TokenLifetimeTooLong),
        Self::Refused(Refusal::Backend { status: 0 }),
        Self::Refused(Refusal::BackendTimeout),
        Self::Refused(Refusal::BackendUnreachable),
        Self::Refused(Refusal::GatewayBusy),
    ];

    /// This rejection with its data zeroed: its entry in [`Self::ALL`].
    fn kind(self) -> Self {
        match self {
            Self::Refused(Refusal::TooManyAttempts { .. }) => {
                Self::Refused(Refusal::TooManyAttempts { retry_after: 0 })
            }
            Self::Refused(Refusal::Backend { .. }) => Self::Refused(Refusal::Backend { status: 0 }),
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
                Refusal::TokenLifetimeTooLong => "token_lifetime_too_long",
                Refusal::OriginForbidden => "origin_forbidden",
                Refusal::TooManyAttempts { .. } => "too_many_attempts",
                Refusal::IpQuota => "ip_quota",
                Refusal::UserQuota => "user_quota",
                Refusal::ServerFull => "server_full",
                Refusal::Backend { .. } => "backend_refused",
                Refusal::BackendTimeout => "backend_timeout",
                Refusal::BackendUnreachable => "backend_unreachable",
                Refusal::GatewayBusy => "gateway_busy",
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
                | Refusal::TokenExpired
                | Refusal::TokenLifetimeTooLong
                | Refusal::TokenReplayed,
            ) => (401, "Unauthorized", "", None),
            Self::Refused(Refusal::OriginForbidden) => (403, "Forbidden", "", None),
            Self::Refused(Refusal::TooManyAttempts { retry_after }) => {
                (429, "Too Many Requests", "", Some(u64::from(retry_after)))
            }
            Self::Refused(Refusal::IpQuota | Refusal::UserQuota) => {
                (429, "Too Many Requests", "", None)
            }
            Self::Refused(Refusal::ServerFull | Refusal::GatewayBusy) => {
                (503, "Service Unavailable", "", None)
            }
            Self::DecisionTimeout | Self::Refused(Refusal::BackendTimeout) => {
                (504, "Gateway Timeout", "", None)
            }
            Self::Refused(Refusal::BackendUnreachable) => (502, "Bad Gateway", "", None),
            // The backend's own status, passed through; one that cannot end
            // an upgrade (not 3xx to 5xx) is the backend's fault: 502.
            Self::Refused(Refusal::Backend { status }) => {
                match http::StatusCode::from_u16(status) {
                    Ok(s) if (300..600).contains(&status) => {
                        (status, s.canonical_reason().unwrap_or("Error"), "", None)
                    }
                    _ => (502, "Bad Gateway", "", None),
                }
            }
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
        let backend = |status| Rejection::Refused(Refusal::Backend { status }).answer();
        assert_eq!(
            (backend(403).status, backend(403).phrase),
            (403, "Forbidden")
        );
        assert_eq!(backend(400).status, 400);
        assert_eq!(backend(599).status, 599);
        assert_eq!(backend(200).status, 502, "not a refusal status");
        assert_eq!(
            Rejection::Refused(Refusal::Backend { status: 418 }).index(),
            Rejection::Refused(Refusal::Backend { status: 0 }).index()
        );
        assert_eq!(
            Rejection::Refused(Refusal::BackendTimeout).answer().status,
            504
        );
        assert_eq!(
            Rejection::Refused(Refusal::BackendUnreachable)
                .answer()
                .status,
            502
        );
    }

    #[test]
    fn protocol_errors_map_to_rfc_close_codes() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
        assert_eq!(ProtocolError::MessageTooLarge { max: 1 }.close_code(), 1009);
        assert_eq!(ProtocolError::BadCompressedData.close_code(), 1007);
        assert_eq!(ProtocolError::ReservedBits.close_code(), 1002);
        assert_eq!(ProtocolError::InvalidCloseCode(5).close_code(), 1002);
    }
}
