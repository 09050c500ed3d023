//! Fuzz entry points, kept in the library so the `fuzz/` targets are
//! one-line shims and the committed corpus can be replayed by a normal
//! test on stable (`tests/fuzz_corpus.rs`). Each function takes arbitrary
//! bytes, asserts the invariants of the code it drives and panics only if
//! one breaks (never on input it merely rejects).
//!
//! | function | drives | invariants |
//! |---|---|---|
//! | [`frame_parser`](fn@frame_parser) | `FrameDecoder` in chunks | consumed ≤ given; incomplete input consumes nothing; a frame re-encodes to its own bytes (exactly, when its length was minimally encoded); streamed pieces are the payload's prefix; unmasking matches a scalar reference |
//! | [`frame_differential`](fn@frame_differential) | `FrameDecoder` and tungstenite's `FrameHeader::parse` | both accept or both reject, with equal frames (after applying the RFC rules tungstenite checks later) |
//! | [`handshake`](fn@handshake) | `parse_request`, `write_accept`, `write_error` | accepted requests are complete for `httparse` too and incomplete when cut; responses are well-formed HTTP |
//! | [`utf8_incremental`](fn@utf8_incremental) | `Utf8Validator` over random cuts | agrees with `std::str::from_utf8` on the whole and on every prefix it has seen (fail fast, never early) |
//! | [`connection`](fn@connection) | one `Conn` through a random life, driven as a core drives it | see [`connection`](fn@connection); among them: no frame after a close frame, valid close codes, bounded out queue, every queued message arrives intact, deadlines after `handle_timeout` are in the future |
//! | [`deflate_offer`](fn@deflate_offer) | permessage-deflate negotiation over arbitrary extension lines | an answer only for an offer naming it; windows within bounds; policy's no-context-takeover kept; the answer agreed to again unchanged |
//! | [`deflate_inflate`](fn@deflate_inflate) | permessage-deflate inflating, arbitrary bytes or round-tripped messages, under a size limit | output and reserved memory within the limit (plus one step); `Ok` within it; messages round-trip or are `TooBig` exactly when over it |
//! | [`client_request`](fn@client_request) | the hub's JSON request parser and the frames answering it | an accepted request is a JSON object whose fields say the same; `data` is carried byte for byte; every answer frame is one well-formed text frame of valid JSON |
//! | [`cluster_wire`](fn@cluster_wire) | the cluster's broker payload codec (`cluster::wire::decode`) | a payload read as a message re-encodes to one read the same; requests, replies and `info` within their bounds |
//!
//! Owns: invariant checks over arbitrary input and the tiny byte decoder the
//! structure-aware targets use. Must not touch: I/O, the clock (time is
//! virtual: one `Instant` taken as the origin, then advanced by the input),
//! global state.
//!
//! One file per target, named after it (`fuzzing/<target>.rs`, with the
//! target's own checks and helpers); the helpers several targets share
//! (the input decoder, the scalar unmasking reference) are here.
//!
//! Compiled only under `cfg(fuzzing)` (which `cargo fuzz` sets) or the
//! `fuzzing` feature (which the fuzz crate and `cargo test`, through the
//! self dev-dependency in `Cargo.toml`, turn on), never into the product.
#![doc(hidden)]

mod client_request;
mod cluster_wire;
mod connection;
mod deflate_inflate;
mod deflate_offer;
mod frame_differential;
mod frame_parser;
mod handshake;
mod utf8_incremental;

pub use client_request::client_request;
pub use cluster_wire::cluster_wire;
pub use connection::connection;
pub use deflate_inflate::deflate_inflate;
pub use deflate_offer::deflate_offer;
pub use frame_differential::frame_differential;
pub use frame_parser::frame_parser;
pub use handshake::handshake;
pub use utf8_incremental::utf8_incremental;

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
