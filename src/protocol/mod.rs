//! The sans-IO RFC 6455 protocol layer: pure functions and small state
//! machines over byte buffers. No sockets, no clock, no `unsafe`.
//!
//! - [`frame`]: frame header codec, zero-copy payloads, framing rules.
//! - [`mask`]: payload (un)masking, word-at-a-time.
//! - [`utf8`]: whole-message and streaming UTF-8 validation.
//! - [`close`]: close codes and close payloads.
//! - [`handshake`]: the HTTP/1.1 upgrade request and its responses.
//! - [`deflate_offer`]: permessage-deflate negotiation (RFC 7692).
//! - [`error`]: what a peer can get wrong in either (their mappings to close
//!   codes and HTTP statuses are `crate::error`'s).

pub mod close;
pub mod deflate_offer;
pub mod encoder;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use frame::{Frame, FrameDecoder, FrameHeader, OpCode, Role};
