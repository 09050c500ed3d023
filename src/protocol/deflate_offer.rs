//! permessage-deflate negotiation (RFC 7692 §5–§7): reading a client's
//! `Sec-WebSocket-Extensions` offers and choosing the answer.
//!
//! Owns: parsing the header's extension list (tokens, `;` parameters,
//! quoted values), validating each `permessage-deflate` offer by the RFC's
//! rules, and picking the first offer the server's [`DeflatePolicy`] can
//! accept, with the parameters the answer must carry. Pure: no
//! compression here, no I/O.
//! Must not touch: compressing or inflating (a later layer), the
//! handshake's other headers.
//!
//! The rules applied (RFC 7692):
//! - An offer with an unknown parameter, a parameter given twice, a value
//!   where none is allowed, or a window size outside 8..=15 (decimal, no
//!   leading zero) is *declined*: the server moves to the next offer
//!   (§5: "MUST decline"). An offer the server cannot honour (a
//!   `server_max_window_bits` below what it can compress with) is declined
//!   too.
//! - `server_no_context_takeover` offered → the answer carries it; the
//!   server may also add it by policy.
//! - `server_max_window_bits=N` offered → the answer carries a value
//!   ≤ N; not offered → the answer carries the server's own limit when it
//!   is below 15.
//! - `client_max_window_bits` may be in the answer only if it was offered
//!   (§7.1.2.2); it is written when the client named a value (then ≤ it)
//!   or the policy asks for less than 15.
//! - `client_no_context_takeover` may be added by policy either way.

use std::fmt;

/// What the server allows and wants (the `[compression]` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflatePolicy {
    /// Reset the server's compressor after every message (less memory per
    /// connection; lets one compressed message be shared by many).
    pub server_no_context_takeover: bool,
    /// Ask clients to reset theirs (the server's inflater keeps no
    /// window between messages).
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window the server compresses with (9..=15: zlib cannot
    /// compress with an 8-bit window).
    pub server_max_window_bits: u8,
    /// Largest window the server asks clients to compress with (8..=15).
    pub client_max_window_bits: u8,
}

impl Default for DeflatePolicy {
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

/// The agreed parameters: what the answer says and both sides then use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// The window the server compresses with.
    pub server_max_window_bits: u8,
    /// The window the client compresses with (the server's inflater needs
    /// at most this).
    pub client_max_window_bits: u8,
    /// Whether `server_max_window_bits` is written in the answer.
    send_server_bits: bool,
    /// Whether `client_max_window_bits` is written in the answer.
    send_client_bits: bool,
}

impl fmt::Display for Agreed {
    /// The `Sec-WebSocket-Extensions` answer value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("permessage-deflate")?;
        if self.server_no_context_takeover {
            f.write_str("; server_no_context_takeover")?;
        }
        if self.client_no_context_takeover {
            f.write_str("; client_no_context_takeover")?;
        }
        if self.send_server_bits {
            write!(
                f,
                "; server_max_window_bits={}",
                self.server_max_window_bits
            )?;
        }
        if self.send_client_bits {
            write!(
                f,
                "; client_max_window_bits={}",
                self.client_max_window_bits
            )?;
        }
        Ok(())
    }
}

/// One `permessage-deflate` offer, validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Offer {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `None`: not offered; `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// The first offer of `header_values` (every `Sec-WebSocket-Extensions`
/// line of the request, in order) the policy accepts, or `None` — then the
/// connection goes on uncompressed and the answer has no extension.
pub fn negotiate<'a>(
    header_values: impl IntoIterator<Item = &'a str>,
    policy: &DeflatePolicy,
) -> Option<Agreed> {
    header_values
        .into_iter()
        .flat_map(split_list)
        .filter_map(|ext| parse_offer(ext.as_str()))
        .find_map(|offer| accept(&offer, policy))
}

fn accept(offer: &Offer, policy: &DeflatePolicy) -> Option<Agreed> {
    let own = policy.server_max_window_bits.clamp(9, 15);
    let (server_bits, send_server_bits) = match offer.server_max_window_bits {
        // zlib cannot compress with an 8-bit window: decline.
        Some(n) if n < 9 => return None,
        Some(n) => (n.min(own), true),
        None => (own, own < 15),
    };
    let (client_bits, send_client_bits) = match offer.client_max_window_bits {
        None => (15, false),
        Some(offered) => {
            let want = policy.client_max_window_bits.clamp(8, 15);
            let bits = offered.map_or(want, |o| o.min(want));
            (bits, bits < 15 || offered.is_some())
        }
    };
    Some(Agreed {
        server_no_context_takeover: offer.server_no_context_takeover
            || policy.server_no_context_takeover,
        client_no_context_takeover: offer.client_no_context_takeover
            || policy.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        send_server_bits,
        send_client_bits,
    })
}

/// A `permessage-deflate` element of the list, validated; `None` for
/// another extension or an offer that must be declined.
fn parse_offer(ext: &str) -> Option<Offer> {
    let mut parts = split_outside_quotes(ext, ';').into_iter();
    let name = parts.next()?;
    if !name.trim().eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
            None => (param.trim(), None),
        };
        let slot = match key.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
        match (slot, value) {
            (0, None) => offer.server_no_context_takeover = true,
            (1, None) => offer.client_no_context_takeover = true,
            (2, Some(v)) => offer.server_max_window_bits = Some(window_bits(&v)?),
            (3, None) => offer.client_max_window_bits = Some(None),
            (3, Some(v)) => offer.client_max_window_bits = Some(Some(window_bits(&v)?)),
            _ => return None,
        }
    }
    Some(offer)
}

/// 8..=15 written as a decimal integer without a leading zero.
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || v.len() > 2 || v.starts_with('0') || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|n| (8..=15).contains(n))
}

/// A token, or a quoted-string's content (`\x` unescaped); `None` for an
/// unterminated quote.
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else {
        return Some(v.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else if c == '"' {
            return None;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The header's comma-separated extensions (commas inside quotes kept).
fn split_list(header: &str) -> Vec<String> {
    split_outside_quotes(header, ',')
        .into_iter()
        .filter(|e| !e.trim().is_empty())
        .collect()
}

fn split_outside_quotes(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(std::mem::take(&mut cur));
            continue;
        }
        cur.push(c);
    }
    out.push(cur);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(offers: &[&str], policy: DeflatePolicy) -> Option<String> {
        negotiate(offers.iter().copied(), &policy).map(|a| a.to_string())
    }

    fn plain(offers: &[&str]) -> Option<String> {
        answer(offers, DeflatePolicy::default())
    }

    #[test]
    fn the_plain_offer_is_accepted_as_is() {
        assert_eq!(
            plain(&["permessage-deflate"]).as_deref(),
            Some("permessage-deflate")
        );
        // What browsers send: the server keeps the client at 15 bits
        // without saying so.
        assert_eq!(
            plain(&["permessage-deflate; client_max_window_bits"]).as_deref(),
            Some("permessage-deflate")
        );
    }

    #[test]
    fn offered_parameters_are_honoured() {
        assert_eq!(
            plain(&["permessage-deflate; server_no_context_takeover"]).as_deref(),
            Some("permessage-deflate; server_no_context_takeover")
        );
        assert_eq!(
            plain(&["permessage-deflate; server_max_window_bits=9"]).as_deref(),
            Some("permessage-deflate; server_max_window_bits=9")
        );
        assert_eq!(
            plain(&["permessage-deflate; client_max_window_bits=10; client_no_context_takeover"])
                .as_deref(),
            Some("permessage-deflate; client_no_context_takeover; client_max_window_bits=10")
        );
        assert_eq!(
            plain(&[r#"permessage-deflate; server_max_window_bits="12""#]).as_deref(),
            Some("permessage-deflate; server_max_window_bits=12"),
            "quoted values are unquoted"
        );
    }

    #[test]
    fn the_policy_narrows_what_is_offered() {
        let policy = DeflatePolicy {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 10,
            client_max_window_bits: 11,
        };
        assert_eq!(
            answer(&["permessage-deflate"], policy).as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"),
            "client_max_window_bits only where offered"
        );
        assert_eq!(
            answer(&["permessage-deflate; server_max_window_bits=12; client_max_window_bits"], policy)
                .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10; client_max_window_bits=11")
        );
        assert_eq!(
            answer(&["permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"], policy)
                .as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits=9")
        );
        let a = negotiate(["permessage-deflate; client_max_window_bits=9"], &policy).unwrap();
        assert_eq!(
            (a.server_max_window_bits, a.client_max_window_bits),
            (10, 9)
        );
    }

    #[test]
    fn invalid_offers_are_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1a",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
            // zlib cannot compress with an 8-bit window.
            "permessage-deflate; server_max_window_bits=8",
        ] {
            assert_eq!(plain(&[bad]), None, "{bad}");
            assert_eq!(
                plain(&[&format!(
                    "{bad}, permessage-deflate; client_no_context_takeover"
                )])
                .as_deref(),
                Some("permessage-deflate; client_no_context_takeover"),
                "{bad} then a good offer"
            );
        }
    }

    #[test]
    fn an_unterminated_quote_spoils_the_rest_of_its_line() {
        let bad = r#"permessage-deflate; server_max_window_bits="9, permessage-deflate"#;
        assert_eq!(plain(&[bad]), None);
        // Another header line is parsed on its own.
        assert_eq!(
            plain(&[bad, "permessage-deflate"]).as_deref(),
            Some("permessage-deflate")
        );
    }

    #[test]
    fn several_lines_and_other_extensions() {
        assert_eq!(
            plain(&[
                "x-webkit-deflate-frame",
                "foo; a=\"b,c\", permessage-deflate; server_max_window_bits=11"
            ])
            .as_deref(),
            Some("permessage-deflate; server_max_window_bits=11")
        );
        assert_eq!(plain(&["x-webkit-deflate-frame"]), None);
        assert_eq!(plain(&[""]), None);
        assert_eq!(plain(&[]), None);
        assert_eq!(
            plain(&["PerMessage-Deflate"]).as_deref(),
            Some("permessage-deflate")
        );
    }

    #[test]
    fn autobahn_13_offers_are_accepted() {
        // Cases 13.1-13.7: (no_context_takeover, max_window_bits) offers.
        for (offer, bits) in [
            ("permessage-deflate", 15),
            ("permessage-deflate; server_no_context_takeover", 15),
            ("permessage-deflate; server_max_window_bits=9", 9),
            ("permessage-deflate; server_max_window_bits=15", 15),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
                9,
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=15",
                15,
            ),
        ] {
            let a = negotiate([offer], &DeflatePolicy::default()).expect(offer);
            assert_eq!(a.server_max_window_bits, bits, "{offer}");
            assert_eq!(
                a.server_no_context_takeover,
                offer.contains("no_context"),
                "{offer}"
            );
        }
    }

    proptest::proptest! {
        /// Any header text: no panic, and an answer only for a list that
        /// names permessage-deflate, within the policy's bounds.
        #[test]
        fn any_header_is_handled(header in "[ -~]{0,120}") {
            let policy = DeflatePolicy { server_max_window_bits: 12, ..DeflatePolicy::default() };
            if let Some(a) = negotiate([header.as_str()], &policy) {
                proptest::prop_assert!(header.to_ascii_lowercase().contains("permessage-deflate"));
                proptest::prop_assert!((9..=12).contains(&a.server_max_window_bits));
                proptest::prop_assert!((8..=15).contains(&a.client_max_window_bits));
                let text = a.to_string();
                proptest::prop_assert!(negotiate([text.as_str()], &policy).is_some(), "{text}");
            }
        }
    }
}
