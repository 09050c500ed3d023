//! The `handshake` harness: arbitrary bytes as an HTTP upgrade request
//! through `protocol::handshake::parse_request`, then `write_accept` or
//! `write_error`, under limits the first byte picks.
//!
//! Checks: an incomplete head is only ever below `max_request_bytes`; an
//! accepted request is one `httparse` parses the same way (complete, same
//! length, `GET`, HTTP/1.1, same target, same headers), every strict
//! prefix of it is incomplete and its subprotocol was offered; the `101`
//! and every error response are one well-formed HTTP response each.
//!
//! Must not touch: I/O, the clock, global state, admission's decisions
//! (the refusals checked are the parser's own; admission's reading of the
//! token subprotocol is used for the `101`).

use bytes::BytesMut;

use crate::admission::request;
use crate::error::Rejection;
use crate::protocol::handshake::{self, HandshakeConfig};

/// Checks that `out` is one complete HTTP/1.1 response head (plus a body of
/// its `Content-Length`, if any) with `status`; returns its headers.
fn check_response(out: &[u8], status: u16) -> Vec<(String, Vec<u8>)> {
    let mut headers = [httparse::EMPTY_HEADER; 16];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("response does not parse: {other:?}"),
    };
    assert_eq!(resp.version, Some(1));
    assert_eq!(resp.code, Some(status));
    let headers: Vec<(String, Vec<u8>)> = resp
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .collect();
    let body_len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| {
            std::str::from_utf8(v)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .expect("Content-Length is a number")
        });
    assert_eq!(head_len + body_len, out.len(), "response length");
    headers
}

/// Did the client list `protocol` in a `Sec-WebSocket-Protocol` header?
fn offered_protocol(req: &httparse::Request<'_, '_>, protocol: &[u8]) -> bool {
    req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-protocol")
            && h.value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii() == protocol)
    })
}

/// HTTP optional whitespace trimmed at both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Arbitrary bytes as an HTTP upgrade request. The first byte picks the
/// limits, the server's subprotocols and whether error responses carry
/// `Retry-After` (bit 0x40 is unused: it once picked a client-IP header,
/// which admission reads now).
///
/// Invariants: no panic; `Ok(None)` only below `max_request_bytes` (the
/// bytes a connection buffers are bounded); an accepted request is one
/// `httparse` also parses as complete, with the same length, method `GET`,
/// HTTP/1.1, target and headers (the request's own header scan reads
/// every header `httparse` read, in order, with the same value), within
/// the size limit, with a chosen subprotocol that the client offered, and
/// every strict prefix of its head is `Ok(None)`; the `101` answer (with
/// admission's subprotocol for a token when no configured one matched) and
/// every error response are one well-formed HTTP response each.
///
/// Returns the status answered: 101, the refusal's status, or `None` when
/// the head is incomplete (or `data` empty).
pub fn handshake(data: &[u8]) -> Option<u16> {
    let (&seed, data) = data.split_first()?;
    let subprotocols: Vec<String> = match (seed >> 4) & 3 {
        0 => Vec::new(),
        1 => vec!["chat".into()],
        2 => vec!["superchat".into(), "chat".into()],
        _ => vec!["v2.wsedge".into(), "v1.wsedge".into(), "x".into()],
    };
    let cfg = HandshakeConfig {
        max_request_bytes: [64, 512, 1024, 8192][usize::from(seed & 3)],
        max_headers: [0, 1, 4, 32][usize::from((seed >> 2) & 3)],
        subprotocols: &subprotocols,
    };
    let retry_after = (seed & 0x80 != 0).then_some(30);
    match handshake::parse_request(data, &cfg) {
        Ok(Some(parsed)) => {
            let mut headers = vec![httparse::EMPTY_HEADER; cfg.max_headers];
            let mut req = httparse::Request::new(&mut headers);
            assert_eq!(
                req.parse(data),
                Ok(httparse::Status::Complete(parsed.head_len())),
                "httparse disagrees on an accepted request"
            );
            assert_eq!(req.method, Some("GET"));
            assert_eq!(req.version, Some(1));
            assert_eq!(req.path, Some(parsed.target()));
            assert!(parsed.head_len() <= cfg.max_request_bytes);
            let ours: Vec<(&str, &[u8])> = parsed.headers().collect();
            let theirs: Vec<(&str, &[u8])> = req
                .headers
                .iter()
                .map(|h| (h.name, trim_ows(h.value)))
                .collect();
            assert_eq!(ours, theirs, "the header scan disagrees with httparse");
            if let Some(i) = parsed.subprotocol() {
                assert!(
                    offered_protocol(&req, cfg.subprotocols[i].as_bytes()),
                    "chose a subprotocol the client did not offer"
                );
            }
            let accept_key = parsed.accept_key();
            use base64::Engine as _;
            let accept = base64::engine::general_purpose::STANDARD
                .decode(&accept_key)
                .expect("accept key is base64");
            assert_eq!(accept.len(), 20, "accept key is a SHA-1");

            // The same head alone parses the same; any strict prefix of it
            // is incomplete (a slow client is never refused early).
            let n = parsed.head_len();
            assert_eq!(
                handshake::parse_request(&data[..n], &cfg).as_ref(),
                Ok(&Some(parsed.clone()))
            );
            let cuts = [0, 1, n / 2, n.saturating_sub(2), n.saturating_sub(1)];
            for cut in cuts {
                assert_eq!(
                    handshake::parse_request(&data[..cut], &cfg),
                    Ok(None),
                    "a prefix of {cut} bytes of an accepted head is not incomplete"
                );
            }

            let fallback = request::answer_protocol(&parsed);
            let mut out = BytesMut::new();
            handshake::write_accept(&mut out, &parsed, &cfg, fallback);
            let headers = check_response(&out, 101);
            let value = |name: &str| {
                headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            };
            assert_eq!(
                value("sec-websocket-accept").as_deref(),
                Some(accept_key.as_bytes())
            );
            let answered = match parsed.subprotocol() {
                Some(i) => Some(cfg.subprotocols[i].as_bytes().to_vec()),
                None => fallback.map(|p| p.as_bytes().to_vec()),
            };
            assert_eq!(value("sec-websocket-protocol"), answered);
            if let Some(p) = fallback {
                assert!(request::token(&parsed).is_some());
                assert!(
                    offered_protocol(&req, p.as_bytes()),
                    "answered the default subprotocol the client did not offer"
                );
            }
            Some(101)
        }
        Ok(None) => {
            assert!(
                data.len() < cfg.max_request_bytes,
                "an incomplete head at or over the limit must be refused"
            );
            None
        }
        Err(e) => {
            let rejection = Rejection::from(e);
            let mut answer = rejection.answer();
            answer.retry_after = retry_after;
            let mut out = BytesMut::new();
            handshake::write_error(&mut out, answer, &rejection.to_string());
            check_response(&out, answer.status);
            Some(answer.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::connection::UPGRADES;

    #[test]
    fn handshake_accepts_the_rfc_sample() {
        // Seed 0x0f: 8 KiB and 32 headers, no subprotocols, no
        // Retry-After.
        let mut data = vec![0x0f];
        data.extend_from_slice(UPGRADES[0]);
        assert_eq!(handshake(&data), Some(101));
        // The same request under a 64-byte limit is refused, not accepted.
        data[0] = 0x0c;
        assert_eq!(handshake(&data), Some(431));
        // Cut short under a large limit: incomplete.
        data[0] = 0x0f;
        assert_eq!(handshake(&data[..40]), None);
    }
}
