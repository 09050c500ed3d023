//! `deflate_offer`: arbitrary `Sec-WebSocket-Extensions` lines through the
//! permessage-deflate negotiation.

use crate::protocol::deflate_offer::{negotiate, DeflatePolicy};

use super::Input;

/// The first byte picks the policy; the rest, split at `\n`, are the
/// header lines. Invariants: an answer only for a list that names
/// permessage-deflate; its windows within the policy's and the RFC's
/// bounds; a no-context-takeover the client offered is in the answer; the
/// answer, offered back under the same policy, is agreed to unchanged.
pub fn deflate_offer(data: &[u8]) {
    let mut input = Input::new(data);
    let p = input.byte();
    let policy = DeflatePolicy {
        server_no_context_takeover: p & 1 != 0,
        client_no_context_takeover: p & 2 != 0,
        server_max_window_bits: 9 + (p >> 2) % 7,
        client_max_window_bits: 8 + (p >> 5) % 8,
    };
    let text = String::from_utf8_lossy(input.take(usize::MAX));
    let lines: Vec<&str> = text.split('\n').collect();
    let Some(agreed) = negotiate(lines.iter().copied(), &policy) else {
        return;
    };
    assert!(text.to_ascii_lowercase().contains("permessage-deflate"));
    assert!((9..=policy.server_max_window_bits).contains(&agreed.server_max_window_bits));
    assert!((8..=15).contains(&agreed.client_max_window_bits));
    if policy.server_no_context_takeover {
        assert!(agreed.server_no_context_takeover);
    }
    if policy.client_no_context_takeover {
        assert!(agreed.client_no_context_takeover);
    }
    let answer = agreed.to_string();
    assert_eq!(
        negotiate([answer.as_str()], &policy),
        Some(agreed),
        "{answer}"
    );
}
