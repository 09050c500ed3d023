//! What admission reads off a parsed upgrade request beyond RFC 6455: the
//! connection token, the client's IP behind a trusted proxy, and the
//! subprotocol answered when the token came as one.
//!
//! Owns: wsedge's conventions for these (`?ws_token=`, the `ws_token.`
//! subprotocol with `wsedge` answered, which header lines carry the client
//! IP). Must not touch: the HTTP parse (the protocol layer's
//! [`UpgradeRequest`] gives the target and raw headers), the forwarded
//! header's walk (`client_ip`), the decision.

use std::net::IpAddr;

use super::client_ip::{self, ClientIp, Syntax};
use crate::config::AdmissionConfig;
use crate::protocol::handshake::UpgradeRequest;

/// Subprotocol prefix that carries a token (for browsers, which cannot set
/// headers): `new WebSocket(url, ["wsedge", "ws_token." + token])`.
pub const TOKEN_PROTOCOL_PREFIX: &str = "ws_token.";
/// The subprotocol answered when the token came in the protocol list and
/// no configured subprotocol matched (browsers require an answer).
pub const DEFAULT_PROTOCOL: &str = "wsedge";
/// The query parameter that carries a token.
pub const TOKEN_PARAM: &str = "ws_token";

/// The connection token, if any: the query's `ws_token` (non-empty) first,
/// else a `ws_token.<token>` subprotocol entry. A secret: read for the
/// decision, never kept or logged.
pub fn token(req: &UpgradeRequest) -> Option<&str> {
    let from_query = req.query().and_then(|q| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == TOKEN_PARAM && !v.is_empty()).then_some(v)
        })
    });
    from_query.or_else(|| protocol_token(req))
}

/// The token from a `ws_token.` subprotocol entry, if any.
fn protocol_token(req: &UpgradeRequest) -> Option<&str> {
    req.offered_protocols().find_map(|o| {
        std::str::from_utf8(o)
            .ok()?
            .strip_prefix(TOKEN_PROTOCOL_PREFIX)
    })
}

/// The subprotocol to answer when none of the configured ones matched:
/// [`DEFAULT_PROTOCOL`] if the token came as a subprotocol and the client
/// offered it too.
pub fn answer_protocol(req: &UpgradeRequest) -> Option<&'static str> {
    let offered = || req.offered_protocols();
    (req.subprotocol().is_none()
        && protocol_token(req).is_some()
        && offered().any(|o| o == DEFAULT_PROTOCOL.as_bytes()))
    .then_some(DEFAULT_PROTOCOL)
}

/// The client of `req` from `peer`: when `peer` is one of `cfg`'s trusted
/// proxies, the configured header's lines (all of them, in order) walked
/// from the right past trusted proxies (see [`super::client_ip`]).
pub fn client_ip(req: &UpgradeRequest, peer: IpAddr, cfg: &AdmissionConfig) -> ClientIp {
    let trusted = &cfg.trusted_proxies;
    if !trusted.iter().any(|n| n.contains(peer)) {
        return ClientIp::Peer(peer);
    }
    let name = cfg.client_ip_header.trim();
    let lines: Vec<&[u8]> = req
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
        .collect();
    client_ip::client_ip(peer, trusted, Syntax::of_header(name), &lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::handshake::{parse_request, HandshakeConfig};

    fn request(target: &str, extra: &str) -> UpgradeRequest {
        let head = format!(
            "GET {target} HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
        );
        let chat = ["chat".to_string()];
        let cfg = HandshakeConfig {
            max_request_bytes: 8192,
            max_headers: 32,
            subprotocols: &chat,
        };
        parse_request(head.as_bytes(), &cfg).unwrap().unwrap()
    }

    #[test]
    fn token_from_query_first_then_subprotocol() {
        let req = request("/ws?a=1&ws_token=abc.def", "");
        assert_eq!(token(&req), Some("abc.def"));
        assert_eq!(answer_protocol(&req), None);
        let req = request(
            "/ws?ws_token=",
            "Sec-WebSocket-Protocol: wsedge, ws_token.tok\r\n",
        );
        assert_eq!(token(&req), Some("tok"));
        assert_eq!(answer_protocol(&req), Some(DEFAULT_PROTOCOL));
        // A configured subprotocol that matched is answered instead.
        let req = request(
            "/ws",
            "Sec-WebSocket-Protocol: chat, wsedge, ws_token.tok\r\n",
        );
        assert_eq!(answer_protocol(&req), None);
        // Without "wsedge" offered there is nothing to answer.
        let req = request("/ws", "Sec-WebSocket-Protocol: ws_token.tok\r\n");
        assert_eq!(answer_protocol(&req), None);
        assert_eq!(token(&request("/ws", "")), None);
    }

    #[test]
    fn client_ip_only_from_a_trusted_proxy() {
        let cfg = AdmissionConfig {
            trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
            ..AdmissionConfig::default()
        };
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let other: IpAddr = "10.9.9.9".parse().unwrap();
        let req = request("/echo", "X-Forwarded-For: 10.0.0.1, 127.0.0.1\r\n");
        let client = "10.0.0.1".parse::<IpAddr>().unwrap();
        assert_eq!(client_ip(&req, peer, &cfg), ClientIp::Forwarded(client));
        assert_eq!(client_ip(&req, other, &cfg), ClientIp::Peer(other));
        let req = request("/echo", "X-Forwarded-For: not-an-ip\r\n");
        assert_eq!(client_ip(&req, peer, &cfg), ClientIp::Malformed(peer));
        assert_eq!(
            client_ip(&request("/echo", ""), peer, &cfg),
            ClientIp::Peer(peer)
        );
    }

    #[test]
    fn client_ip_reads_every_line_of_the_configured_header() {
        let mut cfg = AdmissionConfig {
            trusted_proxies: vec!["127.0.0.1".parse().unwrap()],
            ..AdmissionConfig::default()
        };
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let req = request(
            "/echo",
            "x-forwarded-for: 6.6.6.6\r\nForwarded: for=192.0.2.2\r\n\
             X-Forwarded-For: 192.0.2.1\r\n",
        );
        let ip = |s: &str| ClientIp::Forwarded(s.parse().unwrap());
        assert_eq!(client_ip(&req, peer, &cfg), ip("192.0.2.1"));
        cfg.client_ip_header = "Forwarded".into();
        assert_eq!(client_ip(&req, peer, &cfg), ip("192.0.2.2"));
    }
}
