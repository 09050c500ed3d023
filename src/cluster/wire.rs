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

use crate::hub::ConnId;

/// What a subject names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject<'a> {
    Channel(&'a str),
    User(&'a str),
    Node(u32),
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
        "c:" => Some(Subject::Channel(value)),
        "u:" => Some(Subject::User(value)),
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
            Subject::Channel("news"),
            Subject::Channel("a:b c é"),
            Subject::User("alice"),
            Subject::Node(16_777_215),
        ] {
            let name = subject("wsedge:", &s);
            assert_eq!(parse_subject("wsedge:", &name), Some(s));
        }
        assert_eq!(parse_subject("wsedge:", "other:c:x"), None);
        assert_eq!(parse_subject("wsedge:", "wsedge:x:y"), None);
        assert_eq!(parse_subject("wsedge:", "wsedge:n:abc"), None);
        assert_eq!(parse_subject("wsedge:", "wsedge:"), None);
        assert_eq!(presence_key("p/", &Subject::User("u")), "p/p:u:u");
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
