//! Why a connection ended: one enum, one counter per variant.
//!
//! Owns: the list of end reasons and their stable names. Must not touch:
//! the decision (that is `Conn`'s) or the counting (the core's).

use crate::error::{ProtocolErrorKind, Rejection};

/// The reason a connection ended, recorded once, when it stops being open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The peer started the close handshake.
    PeerClose,
    /// The peer's TCP went away (EOF) without a close frame.
    PeerGone,
    /// A socket error (reset, broken pipe).
    IoError,
    /// No answer to our ping within the pong timeout.
    PingTimeout,
    /// No data message within the idle timeout.
    IdleTimeout,
    /// The peer never answered our close frame.
    CloseTimeout,
    /// The server is shutting down (1001).
    Shutdown,
    /// The upgrade request was refused (see the handshake counters).
    HandshakeFailed,
    /// The upgrade request did not arrive in time (408), or the decision
    /// on it did not (504).
    HandshakeTimeout,
    /// Framing violation (1002).
    ProtocolError,
    /// Invalid UTF-8 (1007).
    InvalidUtf8,
    /// Frame or message too large (1009).
    TooLarge,
    /// Invalid close frame (1002).
    BadClose,
    /// Outbound queue over its budget under the `close` policy (1008).
    SlowConsumer,
    /// Disconnected through the admin API.
    Kicked,
    /// Over its rate limit under the `close` policy (1008).
    RateLimited,
    /// A panic while the server handled it (1011): the core closed it and
    /// serves the rest (README "Fault isolation").
    InternalError,
    /// Gateway mode: a message found the gateway's event queue full
    /// (`gateway.queue_capacity`); closed 1013 (try again later).
    BackendBusy,
}

impl EndReason {
    /// Every variant, in counter order.
    pub const ALL: [EndReason; 18] = [
        Self::PeerClose,
        Self::PeerGone,
        Self::IoError,
        Self::PingTimeout,
        Self::IdleTimeout,
        Self::CloseTimeout,
        Self::Shutdown,
        Self::HandshakeFailed,
        Self::HandshakeTimeout,
        Self::ProtocolError,
        Self::InvalidUtf8,
        Self::TooLarge,
        Self::BadClose,
        Self::SlowConsumer,
        Self::Kicked,
        Self::RateLimited,
        Self::InternalError,
        Self::BackendBusy,
    ];

    /// Index into [`Self::ALL`].
    pub fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|r| *r == self)
            .expect("ALL lists every variant")
    }

    /// Stable snake_case name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Self::PeerClose => "peer_close",
            Self::PeerGone => "peer_gone",
            Self::IoError => "io_error",
            Self::PingTimeout => "ping_timeout",
            Self::IdleTimeout => "idle_timeout",
            Self::CloseTimeout => "close_timeout",
            Self::Shutdown => "shutdown",
            Self::HandshakeFailed => "handshake_failed",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::ProtocolError => "protocol_error",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::TooLarge => "too_large",
            Self::BadClose => "bad_close",
            Self::SlowConsumer => "slow_consumer",
            Self::Kicked => "kicked",
            Self::RateLimited => "rate_limited",
            Self::InternalError => "internal_error",
            Self::BackendBusy => "backend_busy",
        }
    }
}

impl From<ProtocolErrorKind> for EndReason {
    fn from(kind: ProtocolErrorKind) -> Self {
        match kind {
            ProtocolErrorKind::Framing => Self::ProtocolError,
            ProtocolErrorKind::InvalidUtf8 => Self::InvalidUtf8,
            ProtocolErrorKind::TooLarge => Self::TooLarge,
            ProtocolErrorKind::BadClose => Self::BadClose,
        }
    }
}

impl From<Rejection> for EndReason {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::Timeout | Rejection::DecisionTimeout => Self::HandshakeTimeout,
            _ => Self::HandshakeFailed,
        }
    }
}
