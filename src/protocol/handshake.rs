//! The HTTP/1.1 upgrade (RFC 6455 §4.2): request parsing and responses.
//!
//! Owns: reading an upgrade request with `httparse` under size and header
//! limits, checking it, choosing a subprotocol, and writing the `101`
//! answer or an error status with a short text body.
//! Must not touch: routing decisions beyond returning the request target,
//! sockets, time (the handshake timeout lives in `conn`).

use std::fmt::Write as _;

use base64::Engine as _;
use bytes::{BufMut, BytesMut};

use crate::error::HandshakeError;

/// Limits and choices for the upgrade, borrowed from the configuration
/// (`Config::handshake`).
#[derive(Debug, Clone, Copy)]
pub struct HandshakeConfig<'a> {
    /// Largest request head accepted, in bytes (431 beyond it).
    pub max_request_bytes: usize,
    /// Most headers accepted (431 beyond it).
    pub max_headers: usize,
    /// Subprotocols the server speaks, most preferred first.
    pub subprotocols: &'a [String],
    /// Header whose first entry names the client's IP (set by a trusted
    /// proxy), captured for the admission layer; any case.
    pub client_ip_header: Option<&'a str>,
}

/// What the server keeps of an accepted upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// Request target as sent: path and query (kept for routing and tokens).
    pub target: Box<str>,
    /// Index into [`HandshakeConfig::subprotocols`] of the chosen one.
    pub subprotocol: Option<usize>,
    /// The `Origin` header, if any.
    pub origin: Option<Box<str>>,
    /// A connection token, from `?ws_token=` or a `ws_token.<token>`
    /// subprotocol entry. A secret: taken out by admission, never logged.
    pub token: Option<Box<str>>,
    /// The first entry of the configured client-IP header, if present.
    pub forwarded_for: Option<Box<str>>,
}

/// Subprotocol prefix that carries a token (for browsers, which cannot set
/// headers): `new WebSocket(url, ["wsedge", "ws_token." + token])`.
pub const TOKEN_PROTOCOL_PREFIX: &str = "ws_token.";
/// The subprotocol answered when the token came in the protocol list and
/// no configured subprotocol matched (browsers require an answer).
pub const DEFAULT_PROTOCOL: &str = "wsedge";

impl UpgradeRequest {
    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }
}

/// A complete, valid upgrade request as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// What the connection keeps.
    pub request: UpgradeRequest,
    /// `Sec-WebSocket-Accept` value to answer with (not kept).
    pub accept_key: String,
    /// Bytes the request head took; what follows are WebSocket frames the
    /// client sent early.
    pub head_len: usize,
    /// Answer [`DEFAULT_PROTOCOL`] (the token came as a subprotocol).
    pub answer_default_protocol: bool,
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// Parses an upgrade request from the front of `buf`.
///
/// `Ok(None)` if the head is incomplete (and within limits).
pub fn parse_request(
    buf: &[u8],
    cfg: &HandshakeConfig<'_>,
) -> Result<Option<Parsed>, HandshakeError> {
    let mut headers = vec![httparse::EMPTY_HEADER; cfg.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= cfg.max_request_bytes {
                Err(HandshakeError::RequestTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HandshakeError::TooManyHeaders),
        Err(httparse::Error::Version) => return Err(HandshakeError::HttpVersion),
        Err(_) => return Err(HandshakeError::Malformed),
    };
    if len > cfg.max_request_bytes {
        return Err(HandshakeError::RequestTooLarge);
    }
    if req.version != Some(1) {
        return Err(HandshakeError::HttpVersion);
    }
    if req.method != Some("GET") {
        return Err(HandshakeError::MethodNotAllowed);
    }
    let target = req.path.ok_or(HandshakeError::Malformed)?;

    let mut host = false;
    let mut upgrade = false;
    let mut connection = false;
    let mut version = None;
    let mut key = None;
    let mut origin = None;
    let mut offered: Vec<&[u8]> = Vec::new();
    let mut forwarded_for = None;
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("host") {
            host = true;
        } else if name.eq_ignore_ascii_case("upgrade") {
            upgrade |= has_token(h.value, "websocket");
        } else if name.eq_ignore_ascii_case("connection") {
            connection |= has_token(h.value, "upgrade");
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            version = Some(h.value);
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            key = Some(h.value);
        } else if name.eq_ignore_ascii_case("origin") {
            origin = std::str::from_utf8(h.value).ok().map(Box::from);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            offered.extend(h.value.split(|&b| b == b',').map(|t| t.trim_ascii()));
        } else if cfg
            .client_ip_header
            .is_some_and(|c| name.eq_ignore_ascii_case(c))
        {
            forwarded_for = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().into());
        }
    }
    if !upgrade {
        return Err(HandshakeError::NotWebSocket);
    }
    if !connection {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    if !host {
        return Err(HandshakeError::MissingHost);
    }
    if version.map(<[u8]>::trim_ascii) != Some(b"13") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    let key = key.ok_or(HandshakeError::MissingKey)?.trim_ascii();
    match base64::engine::general_purpose::STANDARD.decode(key) {
        Ok(raw) if raw.len() == 16 => {}
        _ => return Err(HandshakeError::InvalidKey),
    }
    let subprotocol = cfg
        .subprotocols
        .iter()
        .position(|p| offered.contains(&p.as_bytes()));
    let protocol_token = offered.iter().find_map(|o| {
        let o = std::str::from_utf8(o).ok()?;
        o.strip_prefix(TOKEN_PROTOCOL_PREFIX).map(Box::<str>::from)
    });
    let answer_default = subprotocol.is_none()
        && protocol_token.is_some()
        && offered.contains(&DEFAULT_PROTOCOL.as_bytes());
    let query_token = target.split_once('?').and_then(|(_, q)| {
        q.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == "ws_token" && !v.is_empty()).then(|| Box::<str>::from(v))
        })
    });
    Ok(Some(Parsed {
        request: UpgradeRequest {
            target: target.into(),
            subprotocol,
            origin,
            token: query_token.or(protocol_token),
            forwarded_for,
        },
        answer_default_protocol: answer_default,
        accept_key: tungstenite::handshake::derive_accept_key(key),
        head_len: len,
    }))
}

/// Appends the `101 Switching Protocols` answer.
pub fn write_accept(out: &mut BytesMut, parsed: &Parsed, cfg: &HandshakeConfig<'_>) {
    let req = &parsed.request;
    let mut head = String::with_capacity(160);
    head.push_str(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    let _ = write!(head, "Sec-WebSocket-Accept: {}\r\n", parsed.accept_key);
    if let Some(i) = req.subprotocol {
        let _ = write!(head, "Sec-WebSocket-Protocol: {}\r\n", cfg.subprotocols[i]);
    } else if parsed.answer_default_protocol {
        let _ = write!(head, "Sec-WebSocket-Protocol: {DEFAULT_PROTOCOL}\r\n");
    }
    head.push_str("\r\n");
    out.put_slice(head.as_bytes());
}

/// Appends an error response: status, short text body, `Connection: close`
/// and, for rate limits, `Retry-After` in seconds.
pub fn write_error(out: &mut BytesMut, err: HandshakeError, retry_after: Option<u64>) {
    let (status, phrase) = err.status();
    let body = format!("{err}\n");
    let retry = retry_after.map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
    let head = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n{}{retry}\r\n",
        body.len(),
        err.extra_headers()
    );
    out.put_slice(head.as_bytes());
    out.put_slice(body.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "GET /echo?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n";

    /// The default limits, with `subprotocols`.
    fn config(subprotocols: &[String]) -> HandshakeConfig<'_> {
        HandshakeConfig {
            max_request_bytes: 8192,
            max_headers: 32,
            subprotocols,
            client_ip_header: None,
        }
    }

    fn parse(req: &str) -> Result<Option<Parsed>, HandshakeError> {
        let subprotocols = ["superchat".to_string(), "chat".to_string()];
        parse_request(req.as_bytes(), &config(&subprotocols))
    }

    #[test]
    fn accepts_rfc_sample_key() {
        let parsed = parse(GOOD).unwrap().unwrap();
        assert_eq!(parsed.head_len, GOOD.len());
        assert_eq!(parsed.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let req = parsed.request;
        assert_eq!(req.path(), "/echo");
        assert_eq!(req.query(), Some("x=1"));
        // Server preference order wins.
        assert_eq!(req.subprotocol, Some(0));
    }

    #[test]
    fn token_from_query_or_subprotocol() {
        let req = GOOD.replace("/echo?x=1", "/ws?a=1&ws_token=abc.def");
        assert_eq!(
            parse(&req).unwrap().unwrap().request.token.as_deref(),
            Some("abc.def")
        );
        let req = GOOD.replace("chat, superchat", "wsedge, ws_token.tok");
        let parsed = parse(&req).unwrap().unwrap();
        assert_eq!(parsed.request.token.as_deref(), Some("tok"));
        assert!(parsed.answer_default_protocol);
        let mut out = BytesMut::new();
        write_accept(&mut out, &parsed, &config(&[]));
        assert!(std::str::from_utf8(&out)
            .unwrap()
            .contains("Sec-WebSocket-Protocol: wsedge\r\n"));
    }

    #[test]
    fn partial_request_needs_more() {
        assert_eq!(parse(&GOOD[..40]), Ok(None));
    }

    #[test]
    fn each_defect_gets_its_error() {
        let cases = [
            (
                GOOD.replace("GET", "POST"),
                HandshakeError::MethodNotAllowed,
            ),
            (
                GOOD.replace("HTTP/1.1", "HTTP/1.0"),
                HandshakeError::HttpVersion,
            ),
            (
                GOOD.replace("Upgrade: WebSocket", "Upgrade: h2c"),
                HandshakeError::NotWebSocket,
            ),
            (
                GOOD.replace("keep-alive, Upgrade", "keep-alive"),
                HandshakeError::MissingConnectionUpgrade,
            ),
            (
                GOOD.replace("Version: 13", "Version: 8"),
                HandshakeError::UnsupportedVersion,
            ),
            (
                GOOD.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                HandshakeError::MissingKey,
            ),
            (
                GOOD.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ="),
                HandshakeError::InvalidKey,
            ),
            (GOOD.replace("Host: h\r\n", ""), HandshakeError::MissingHost),
            (
                "GET / HTTP/1.1\r\nHo st: x\r\n\r\n".to_string(),
                HandshakeError::Malformed,
            ),
        ];
        for (req, err) in cases {
            assert_eq!(parse(&req), Err(err), "{req}");
        }
    }

    #[test]
    fn size_and_header_limits() {
        let big = format!("GET /{} HTTP/1.1\r\n", "a".repeat(9000));
        assert_eq!(parse(&big), Err(HandshakeError::RequestTooLarge));
        let many: String = (0..40).map(|i| format!("X-{i}: y\r\n")).collect();
        let req = GOOD.replace("Host: h\r\n", &format!("Host: h\r\n{many}"));
        assert_eq!(parse(&req), Err(HandshakeError::TooManyHeaders));
    }

    #[test]
    fn responses_are_well_formed() {
        let parsed = parse(GOOD).unwrap().unwrap();
        let mut out = BytesMut::new();
        write_accept(&mut out, &parsed, &config(&["superchat".to_string()]));
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 "));
        assert!(text.contains("Sec-WebSocket-Protocol: superchat\r\n"));
        assert!(text.ends_with("\r\n\r\n"));

        let mut out = BytesMut::new();
        write_error(&mut out, HandshakeError::UnsupportedVersion, None);
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    }
}
