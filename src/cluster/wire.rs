//! What travels on the broker: subject names and message payloads.
//!
//! Owns: the text form of every subject (`{prefix}c:{channel}`,
//! `{prefix}u:{user}`, `{prefix}n:{node}`) and presence key, and the
//! payloads ([`Envelope`]), encoded and parsed here only. Must not touch:
//! connections to the broker, cores, or what a message means to the hub.
//!
//! Payloads are text: the origin node's id first (so a node drops its
//! own publishes coming back), then the operation. A channel or user
//! message is `"{origin} {data}"` with `data` the publish's JSON as the
//! publisher gave it; a node message is `"{origin} send {conn} {data}"`,
//! `"{origin} close {conn} {code}"`, `"{origin} probe {seq}"` or
//! `"{origin} frame {conn} t|b "` followed by a gateway message's raw
//! bytes (text or binary), where `conn` is the `core-key-gen` part of a
//! connection id.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::hub::ConnId;

/// What a subject names (borrowed from a Redis name, decoded from a
/// NATS one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject<'a> {
    Channel(Cow<'a, str>),
    User(Cow<'a, str>),
    Node(u32),
}

impl<'a> Subject<'a> {
    /// A channel's subject.
    pub fn channel(name: &'a str) -> Self {
        Subject::Channel(Cow::Borrowed(name))
    }

    /// A user's subject.
    pub fn user(name: &'a str) -> Self {
        Subject::User(Cow::Borrowed(name))
    }
}

/// The subject's name on NATS under `prefix`: `{prefix}c.{name}`,
/// `{prefix}u.{name}` with the name in unpadded base64url (a NATS subject
/// token may hold no `.`, space or wildcard), `{prefix}n.{node}`.
pub fn nats_subject(prefix: &str, s: &Subject<'_>) -> String {
    match s {
        Subject::Channel(c) => format!("{prefix}c.{}", URL_SAFE_NO_PAD.encode(c.as_bytes())),
        Subject::User(u) => format!("{prefix}u.{}", URL_SAFE_NO_PAD.encode(u.as_bytes())),
        Subject::Node(n) => format!("{prefix}n.{n}"),
    }
}

/// What a NATS subject under `prefix` names; `None` for any other.
pub fn parse_nats_subject(prefix: &str, name: &str) -> Option<Subject<'static>> {
    let rest = name.strip_prefix(prefix)?;
    let (kind, value) = rest.split_at_checked(2)?;
    let text = || -> Option<Cow<'static, str>> {
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        String::from_utf8(bytes).ok().map(Cow::Owned)
    };
    match kind {
        "c." => text().map(Subject::Channel),
        "u." => text().map(Subject::User),
        "n." => value.parse().ok().map(Subject::Node),
        _ => None,
    }
}

/// The subject's name on the broker under `prefix`.
pub fn subject(prefix: &str, s: &Subject<'_>) -> String {
    match s {
        Subject::Channel(c) => format!("{prefix}c:{c}"),
        Subject::User(u) => format!("{prefix}u:{u}"),
        Subject::Node(n) => format!("{prefix}n:{n}"),
    }
}

/// What a broker subject name under `prefix` names; `None` for any other.
pub fn parse_subject<'a>(prefix: &str, name: &'a str) -> Option<Subject<'a>> {
    let rest = name.strip_prefix(prefix)?;
    let (kind, value) = rest.split_at_checked(2)?;
    match kind {
        "c:" => Some(Subject::channel(value)),
        "u:" => Some(Subject::user(value)),
        "n:" => value.parse().ok().map(Subject::Node),
        _ => None,
    }
}

/// The presence hash of a channel or user: field = node id, value = that
/// node's part (JSON).
pub fn presence_key(prefix: &str, s: &Subject<'_>) -> String {
    format!("{prefix}p:{}", &subject("", s))
}

/// The sorted set of node leases: member = node id, score = expiry in
/// Unix milliseconds.
pub fn leases_key(prefix: &str) -> String {
    format!("{prefix}nodes")
}

/// A message as it travels, after the origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// A publish or user message: the JSON data.
    Data(&'a str),
    /// Send `data` to one connection of the receiving node.
    Send { conn: ConnId, data: &'a str },
    /// Close one connection of the receiving node.
    Close { conn: ConnId, code: u16 },
    /// A node's probe of its own subject.
    Probe(u64),
    /// A raw message (text or binary) to one connection of the receiving
    /// node: the gateway's `@connections` POST.
    Frame {
        conn: ConnId,
        text: bool,
        body: &'a [u8],
    },
}

/// `origin` and `env` as one payload.
pub fn encode(origin: u32, env: &Envelope<'_>) -> Vec<u8> {
    if let Envelope::Frame { conn, text, body } = env {
        let kind = if *text { 't' } else { 'b' };
        let mut out = format!("{origin} frame {conn} {kind} ").into_bytes();
        out.extend_from_slice(body);
        return out;
    }
    match env {
        Envelope::Data(d) => format!("{origin} {d}"),
        Envelope::Send { conn, data } => format!("{origin} send {conn} {data}"),
        Envelope::Close { conn, code } => format!("{origin} close {conn} {code}"),
        Envelope::Probe(seq) => format!("{origin} probe {seq}"),
        Envelope::Frame { .. } => unreachable!("encoded above"),
    }
    .into_bytes()
}

/// The origin and the message of a payload received on a subject of
/// kind `node` (true) or a channel/user subject (false); `None` when it is
/// not one (a foreign or corrupt message is dropped, counted by the
/// caller).
pub fn decode(payload: &[u8], node: bool) -> Option<(u32, Envelope<'_>)> {
    if node {
        if let Some(frame) = decode_frame(payload) {
            return Some(frame);
        }
    }
    let text = std::str::from_utf8(payload).ok()?;
    let (origin, rest) = text.split_once(' ')?;
    let origin = origin.parse().ok()?;
    if !node {
        return Some((origin, Envelope::Data(rest)));
    }
    let (op, rest) = rest.split_once(' ')?;
    let env = match op {
        "send" => {
            let (conn, data) = rest.split_once(' ')?;
            Envelope::Send {
                conn: conn.parse().ok()?,
                data,
            }
        }
        "close" => {
            let (conn, code) = rest.split_once(' ')?;
            Envelope::Close {
                conn: conn.parse().ok()?,
                code: code.parse().ok()?,
            }
        }
        "probe" => Envelope::Probe(rest.parse().ok()?),
        _ => return None,
    };
    Some((origin, env))
}

/// `"{origin} frame {conn} t|b {body}"`, whose body may be any bytes.
fn decode_frame(payload: &[u8]) -> Option<(u32, Envelope<'_>)> {
    let mut parts = payload.splitn(5, |&b| b == b' ');
    let origin = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    if parts.next()? != b"frame" {
        return None;
    }
    let conn = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let text = match parts.next()? {
        b"t" => true,
        b"b" => false,
        _ => return None,
    };
    let body = parts.next()?;
    Some((origin, Envelope::Frame { conn, text, body }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip_and_foreign_names_are_refused() {
        for s in [
            Subject::channel("news"),
            Subject::channel("a:b c. é*>"),
            Subject::user("alice"),
            Subject::Node(16_777_215),
        ] {
            let name = subject("wsedge:", &s);
            assert_eq!(parse_subject("wsedge:", &name), Some(s.clone()));
            let nats = nats_subject("wsedge:", &s);
            assert!(!nats.contains(' ') && !nats.contains('*') && !nats.contains('>'));
            assert_eq!(nats.matches('.').count(), 1, "{nats}");
            assert_eq!(parse_nats_subject("wsedge:", &nats), Some(s));
        }
        assert_eq!(parse_nats_subject("wsedge:", "wsedge:c.!!"), None);
        assert_eq!(parse_subject("wsedge:", "other:c:x"), None);
        assert_eq!(parse_subject("wsedge:", "wsedge:x:y"), None);
        assert_eq!(parse_subject("wsedge:", "wsedge:n:abc"), None);
        assert_eq!(parse_subject("wsedge:", "wsedge:"), None);
        assert_eq!(presence_key("p/", &Subject::user("u")), "p/p:u:u");
    }

    #[test]
    fn payloads_round_trip() {
        let conn = ConnId {
            core: 1,
            key: 2,
            gen: 3,
        };
        let data = r#"{"a": "b c"}"#;
        let cases = [
            (false, Envelope::Data(data)),
            (true, Envelope::Send { conn, data }),
            (true, Envelope::Close { conn, code: 4000 }),
            (true, Envelope::Probe(77)),
            (
                true,
                Envelope::Frame {
                    conn,
                    text: false,
                    body: b"\xff \x00 frame",
                },
            ),
            (
                true,
                Envelope::Frame {
                    conn,
                    text: true,
                    body: b"",
                },
            ),
        ];
        for (node, env) in cases {
            let bytes = encode(42, &env);
            assert_eq!(decode(&bytes, node), Some((42, env)));
        }
        for bad in [
            &b"x {}"[..],
            b"",
            b"1",
            b"1 nope 2",
            b"1 send 1-2 {}",
            b"\xff 1",
        ] {
            assert_eq!(decode(bad, true), None, "{bad:?}");
        }
    }
}
