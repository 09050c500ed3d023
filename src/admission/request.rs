//! What admission reads off a parsed upgrade request beyond RFC 6455: the
//! connection token, the client's IP behind a trusted proxy, and the
//! subprotocol answered when the token came as one.
//!
//! Owns: wsedge's conventions for these (`?ws_token=`, the `ws_token.`
//! subprotocol with `wsedge` answered, the first entry of the configured
//! client-IP header). Must not touch: the HTTP parse (the protocol layer's
//! [`UpgradeRequest`] gives the target and raw headers), the decision.

use std::net::IpAddr;

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

/// The client's IP: the peer's, or the first entry of the configured
/// client-IP header when the peer is a trusted proxy.
pub fn client_ip(req: &UpgradeRequest, peer: IpAddr, cfg: &AdmissionConfig) -> IpAddr {
    if !cfg.trusted_proxies.contains(&peer) {
        return peer;
    }
    req.header(&cfg.client_ip_header)
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(peer)
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
        assert_eq!(
            client_ip(&req, peer, &cfg),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(&req, other, &cfg), other);
        let req = request("/echo", "X-Forwarded-For: not-an-ip\r\n");
        assert_eq!(client_ip(&req, peer, &cfg), peer);
    }
}
