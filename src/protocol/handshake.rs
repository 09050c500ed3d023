//! The HTTP/1.1 upgrade (RFC 6455 §4.2): request parsing and responses.
//!
//! Owns: reading an upgrade request with `httparse` under size and header
//! limits, the RFC's checks (method, version, `Host`, `Upgrade`,
//! `Connection`, `Sec-WebSocket-Version`, `Sec-WebSocket-Key`), choosing a
//! configured subprotocol from those offered, and writing the `101` answer
//! or an error response with a short text body.
//! Must not touch: routing and admission (tokens, client IPs behind
//! proxies, origins policy: `admission` reads them off [`UpgradeRequest`]),
//! what a refusal's status is (`error::Rejection::answer`), sockets, time
//! (the handshake timeout lives in `conn`).

use std::fmt;
use std::fmt::Write as _;
use std::ops::Range;

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use super::error::{Answer, HandshakeError};

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
}

/// A complete upgrade request that passed the RFC's checks: an owned copy
/// of its head (so a request waiting for a decision pins no shared receive
/// block) and what the protocol read from it. Kept by the connection only
/// until the upgrade is answered.
///
/// `Debug` shows the path only: the query and headers may carry a token.
#[derive(Clone, PartialEq, Eq)]
pub struct UpgradeRequest {
    /// Request line, headers and the blank line, as received.
    head: Bytes,
    /// Where the request target is in `head`.
    target: Range<usize>,
    /// Index into [`HandshakeConfig::subprotocols`] of the chosen one.
    subprotocol: Option<usize>,
}

impl fmt::Debug for UpgradeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradeRequest")
            .field("path", &self.path())
            .field("head_len", &self.head.len())
            .finish_non_exhaustive()
    }
}

/// Trims spaces and tabs (HTTP's optional whitespace) at both ends.
fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

impl UpgradeRequest {
    /// Bytes the request head took: what follows it in the stream are
    /// WebSocket frames the client sent early.
    pub fn head_len(&self) -> usize {
        self.head.len()
    }

    /// The request target as sent: path and query.
    pub fn target(&self) -> &str {
        // The range was taken from `httparse`'s `&str` target.
        std::str::from_utf8(&self.head[self.target.clone()]).unwrap_or("")
    }

    /// The path part of the target (before `?`).
    pub fn path(&self) -> &str {
        let t = self.target();
        t.split('?').next().unwrap_or(t)
    }

    /// The query part of the target (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.target().split_once('?').map(|(_, q)| q)
    }

    /// Every header as (name as sent, value without surrounding
    /// whitespace), in order. The head was validated by `httparse`, so a
    /// plain line scan reads it the same way (the `handshake` fuzz target
    /// checks that).
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        let mut lines = self
            .head
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            // `httparse` skips empty lines before the request line.
            .skip_while(|l| l.is_empty());
        lines.next(); // the request line
        lines.take_while(|l| !l.is_empty()).filter_map(|l| {
            let colon = l.iter().position(|&b| b == b':')?;
            let name = std::str::from_utf8(&l[..colon]).ok()?;
            Some((name, trim_ows(&l[colon + 1..])))
        })
    }

    /// The first header named `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The `Origin` header, if any (and UTF-8).
    pub fn origin(&self) -> Option<&str> {
        std::str::from_utf8(self.header("origin")?).ok()
    }

    /// Every subprotocol the client offered, over all its
    /// `Sec-WebSocket-Protocol` headers, in order.
    pub fn offered_protocols(&self) -> impl Iterator<Item = &[u8]> {
        self.headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-protocol"))
            .flat_map(|(_, v)| v.split(|&b| b == b',').map(<[u8]>::trim_ascii))
    }

    /// Every `Sec-WebSocket-Extensions` header value, in order (those that
    /// are not UTF-8 are skipped: no extension token could be in them).
    /// What to make of them is the caller's (`deflate_offer::negotiate`).
    pub fn extension_offers(&self) -> impl Iterator<Item = &str> {
        self.headers()
            .filter(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Index into [`HandshakeConfig::subprotocols`] of the one chosen (the
    /// server's most preferred among those offered), if any.
    pub fn subprotocol(&self) -> Option<usize> {
        self.subprotocol
    }

    /// The `Sec-WebSocket-Accept` value answering this request's key.
    pub fn accept_key(&self) -> String {
        let key = self.header("sec-websocket-key").unwrap_or_default();
        tungstenite::handshake::derive_accept_key(key)
    }
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
) -> Result<Option<UpgradeRequest>, HandshakeError> {
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
    // `target` borrows from `buf`: its offset there is its place in the head.
    let start = target.as_ptr() as usize - buf.as_ptr() as usize;
    let target = start..start + target.len();

    let mut host = false;
    let mut upgrade = false;
    let mut connection = false;
    let mut version = None;
    let mut key = None;
    let mut offered: Vec<&[u8]> = Vec::new();
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
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            offered.extend(h.value.split(|&b| b == b',').map(|t| t.trim_ascii()));
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
    Ok(Some(UpgradeRequest {
        head: Bytes::copy_from_slice(&buf[..len]),
        target,
        subprotocol,
    }))
}

/// Appends the `101 Switching Protocols` answer to `req`, with the chosen
/// configured subprotocol, or else `fallback_protocol` if given (a
/// subprotocol the caller answers by a convention of its own).
pub fn write_accept(
    out: &mut BytesMut,
    req: &UpgradeRequest,
    cfg: &HandshakeConfig<'_>,
    fallback_protocol: Option<&str>,
) {
    write_accept_ext(out, req, cfg, fallback_protocol, None);
}

/// [`write_accept`] with the agreed `Sec-WebSocket-Extensions` answer, if
/// any (the caller negotiated it from [`UpgradeRequest::extension_offers`]).
pub fn write_accept_ext(
    out: &mut BytesMut,
    req: &UpgradeRequest,
    cfg: &HandshakeConfig<'_>,
    fallback_protocol: Option<&str>,
    extension: Option<&str>,
) {
    let mut head = String::with_capacity(160);
    head.push_str(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
    );
    let _ = write!(head, "Sec-WebSocket-Accept: {}\r\n", req.accept_key());
    let protocol = req
        .subprotocol
        .and_then(|i| cfg.subprotocols.get(i))
        .map(String::as_str)
        .or(fallback_protocol);
    if let Some(p) = protocol {
        let _ = write!(head, "Sec-WebSocket-Protocol: {p}\r\n");
    }
    if let Some(e) = extension {
        let _ = write!(head, "Sec-WebSocket-Extensions: {e}\r\n");
    }
    head.push_str("\r\n");
    out.put_slice(head.as_bytes());
}

/// Appends an error response: the answer's status line and headers,
/// `Connection: close`, `Retry-After` if given, and `body` (one line of
/// text) as `text/plain`.
pub fn write_error(out: &mut BytesMut, answer: Answer, body: &str) {
    let retry = answer
        .retry_after
        .map_or(String::new(), |s| format!("Retry-After: {s}\r\n"));
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n{}{retry}\r\n",
        answer.status,
        answer.phrase,
        body.len() + 1,
        answer.headers
    );
    out.put_slice(head.as_bytes());
    out.put_slice(body.as_bytes());
    out.put_slice(b"\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Rejection;

    const GOOD: &str = "GET /echo?x=1 HTTP/1.1\r\nHost: h\r\nUpgrade: WebSocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: chat, superchat\r\n\r\n";

    /// The default limits, with `subprotocols`.
    fn config(subprotocols: &[String]) -> HandshakeConfig<'_> {
        HandshakeConfig {
            max_request_bytes: 8192,
            max_headers: 32,
            subprotocols,
        }
    }

    fn parse(req: &str) -> Result<Option<UpgradeRequest>, HandshakeError> {
        let subprotocols = ["superchat".to_string(), "chat".to_string()];
        parse_request(req.as_bytes(), &config(&subprotocols))
    }

    #[test]
    fn accepts_rfc_sample_key() {
        let req = parse(GOOD).unwrap().unwrap();
        assert_eq!(req.head_len(), GOOD.len());
        assert_eq!(req.accept_key(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(req.path(), "/echo");
        assert_eq!(req.query(), Some("x=1"));
        // Server preference order wins.
        assert_eq!(req.subprotocol(), Some(0));
        assert!(!format!("{req:?}").contains("x=1"), "Debug shows no query");
    }

    #[test]
    fn headers_are_read_as_sent() {
        let req = GOOD.replace(
            "Host: h\r\n",
            "Host: h\r\nX-Forwarded-For:  10.0.0.1, 10.0.0.2 \r\nOrigin: https://a.example\r\n\
             Sec-WebSocket-Protocol: wsedge, ws_token.t\r\n",
        );
        let req = parse(&req).unwrap().unwrap();
        assert_eq!(
            req.header("x-forwarded-for"),
            Some(&b"10.0.0.1, 10.0.0.2"[..])
        );
        assert_eq!(req.origin(), Some("https://a.example"));
        assert_eq!(req.header("nope"), None);
        let offered: Vec<&[u8]> = req.offered_protocols().collect();
        assert_eq!(
            offered,
            [&b"wsedge"[..], b"ws_token.t", b"chat", b"superchat"]
        );
        assert_eq!(req.headers().count(), 9);
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
        let req = parse(GOOD).unwrap().unwrap();
        let mut out = BytesMut::new();
        let superchat = ["superchat".to_string()];
        write_accept(&mut out, &req, &config(&superchat), Some("ignored"));
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 "));
        assert!(text.contains("Sec-WebSocket-Protocol: superchat\r\n"));
        assert!(text.ends_with("\r\n\r\n"));

        let mut out = BytesMut::new();
        write_accept(&mut out, &req, &config(&[]), Some("wsedge"));
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.contains("Sec-WebSocket-Protocol: wsedge\r\n"));

        let mut out = BytesMut::new();
        let rejection = Rejection::from(HandshakeError::UnsupportedVersion);
        write_error(&mut out, rejection.answer(), &rejection.to_string());
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("Sec-WebSocket-Version: 13\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert_eq!(body, format!("{rejection}\n"));
        assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
    }
}
