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
//! publisher gave it; a node message is a request or reply (below), a
//! probe (`"{origin} probe {seq}"`), or — still read, from nodes of
//! earlier versions during a rolling upgrade — `"{origin} send {conn}
//! {data}"`, `"{origin} close {conn} {code}"` or
//! `"{origin} frame {conn} t|b "` followed by a gateway message's raw
//! bytes (text or binary), where `conn` is the `core-key-gen` part of a
//! connection id.
//!
//! Request/reply between nodes (an operation on another node's
//! connection whose outcome the asker waits for): a request is
//! `"{origin} req {id} {op}"` on the owner's node subject, its reply
//! `"{origin} rep {id} {outcome}"` on the asker's. `op` is one of
//! `gpost {conn} t|b {body}` (raw bytes), `gget {conn}`, `gdel {conn}`,
//! `gjoin {conn} {channel}`, `gleave {conn} {channel}` (the gateway's
//! `@connections`), `send {conn} {data}` and `close {conn} {code}` (the
//! admin API); `outcome` is `done`, `gone`, `full`, `busy`, `badchannel`,
//! `toomany` or `info {json}`. Each is at most [`MAX_REQUEST_BYTES`]; an
//! unknown op or outcome is not ours (counted by the caller, dropped).

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
    /// An operation the sender waits on (request id `id`, unique per
    /// sender).
    Request { id: u64, op: Op },
    /// The outcome of the receiver's request `id`.
    Reply { id: u64, outcome: Outcome },
}

/// Largest request or reply payload: a gateway message (128 KiB) or an
/// admin send (`admin.max_body_bytes`, 1 MiB by default) with room to
/// spare. A larger one is not sent (the asker is told) nor read.
pub const MAX_REQUEST_BYTES: usize = 2 << 20;

/// Largest `info` outcome (a gateway connection's `GET` answer).
pub const MAX_INFO_BYTES: usize = 16 << 10;

/// An operation on one connection of the receiving node, asked by
/// another node that waits for its [`Outcome`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The gateway's `@connections` POST: a raw message, queued only if
    /// it fits.
    GatewayPost {
        conn: ConnId,
        text: bool,
        body: bytes::Bytes,
    },
    /// The gateway's `@connections` GET.
    GatewayGet { conn: ConnId },
    /// The gateway's `@connections` DELETE.
    GatewayDelete { conn: ConnId },
    /// `PUT` (`join`) or `DELETE` of `@connections/{id}/channels/{name}`.
    GatewayMembership {
        conn: ConnId,
        channel: String,
        join: bool,
    },
    /// The admin API's send (JSON text).
    Send { conn: ConnId, data: String },
    /// The admin API's disconnect.
    Close { conn: ConnId, code: u16 },
}

/// What the owner of a connection says of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (queued, closed, joined or left).
    Done,
    /// No such connection there (any more).
    Gone,
    /// Over the connection's `connection.max_pending_bytes`: not queued.
    Full,
    /// A core's inbox was full, or the owner was too busy to answer.
    Busy,
    /// Not a channel name clients may use.
    InvalidChannel,
    /// Over `hub.max_subscriptions`.
    TooManyChannels,
    /// The gateway connection's `GET` answer (JSON).
    Info(String),
}

impl Outcome {
    fn word(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Gone => "gone",
            Outcome::Full => "full",
            Outcome::Busy => "busy",
            Outcome::InvalidChannel => "badchannel",
            Outcome::TooManyChannels => "toomany",
            Outcome::Info(_) => "info",
        }
    }
}

/// `origin` and `env` as one payload.
pub fn encode(origin: u32, env: &Envelope<'_>) -> Vec<u8> {
    match env {
        Envelope::Request { id, op } => return encode_request(origin, *id, op),
        Envelope::Reply { id, outcome } => {
            let mut out = format!("{origin} rep {id} {}", outcome.word());
            if let Outcome::Info(json) = outcome {
                out.push(' ');
                out.push_str(json);
            }
            return out.into_bytes();
        }
        _ => {}
    }
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
        Envelope::Frame { .. } | Envelope::Request { .. } | Envelope::Reply { .. } => {
            unreachable!("encoded above")
        }
    }
    .into_bytes()
}

fn encode_request(origin: u32, id: u64, op: &Op) -> Vec<u8> {
    let head = format!("{origin} req {id} ");
    let mut out = head.into_bytes();
    let rest = match op {
        Op::GatewayPost { conn, text, body } => {
            let kind = if *text { 't' } else { 'b' };
            out.extend_from_slice(format!("gpost {conn} {kind} ").as_bytes());
            out.extend_from_slice(body);
            return out;
        }
        Op::GatewayGet { conn } => format!("gget {conn}"),
        Op::GatewayDelete { conn } => format!("gdel {conn}"),
        Op::GatewayMembership {
            conn,
            channel,
            join,
        } => {
            let verb = if *join { "gjoin" } else { "gleave" };
            format!("{verb} {conn} {channel}")
        }
        Op::Send { conn, data } => format!("send {conn} {data}"),
        Op::Close { conn, code } => format!("close {conn} {code}"),
    };
    out.extend_from_slice(rest.as_bytes());
    out
}

/// `"{origin} req …"` or `"{origin} rep …"`; `None` for anything else
/// (including a malformed one: the caller counts it).
fn decode_request(payload: &[u8]) -> Option<(u32, Envelope<'static>)> {
    if payload.len() > MAX_REQUEST_BYTES {
        return None;
    }
    let mut parts = payload.splitn(4, |&b| b == b' ');
    let origin = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let kind = parts.next()?;
    if kind != b"req" && kind != b"rep" {
        return None;
    }
    let id: u64 = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let rest = parts.next()?;
    if kind == b"rep" {
        let text = std::str::from_utf8(rest).ok()?;
        let (word, arg) = match text.split_once(' ') {
            Some((w, a)) => (w, Some(a)),
            None => (text, None),
        };
        let outcome = match (word, arg) {
            ("done", None) => Outcome::Done,
            ("gone", None) => Outcome::Gone,
            ("full", None) => Outcome::Full,
            ("busy", None) => Outcome::Busy,
            ("badchannel", None) => Outcome::InvalidChannel,
            ("toomany", None) => Outcome::TooManyChannels,
            ("info", Some(json)) if json.len() <= MAX_INFO_BYTES => Outcome::Info(json.into()),
            _ => return None,
        };
        return Some((origin, Envelope::Reply { id, outcome }));
    }
    let mut args = rest.splitn(4, |&b| b == b' ');
    let op = args.next()?;
    let conn: ConnId = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
    let op = if op == b"gpost" {
        let text = match args.next()? {
            b"t" => true,
            b"b" => false,
            _ => return None,
        };
        let body = bytes::Bytes::copy_from_slice(args.next()?);
        Op::GatewayPost { conn, text, body }
    } else {
        // The rest is text, spaces and all.
        let tail: Vec<&[u8]> = args.collect();
        let tail = std::str::from_utf8(&tail.join(&b' ')).ok()?.to_owned();
        match (op, tail.is_empty()) {
            (b"gget", true) => Op::GatewayGet { conn },
            (b"gdel", true) => Op::GatewayDelete { conn },
            (b"gjoin" | b"gleave", false) => Op::GatewayMembership {
                conn,
                channel: tail,
                join: op == b"gjoin",
            },
            (b"send", false) => Op::Send { conn, data: tail },
            (b"close", false) => Op::Close {
                conn,
                code: tail.parse().ok()?,
            },
            _ => return None,
        }
    };
    Some((origin, Envelope::Request { id, op }))
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
        if let Some(req) = decode_request(payload) {
            return Some(req);
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

    #[test]
    fn requests_and_replies_round_trip() {
        let conn = ConnId {
            core: 1,
            key: 2,
            gen: 3,
        };
        let ops = [
            Op::GatewayPost {
                conn,
                text: false,
                body: bytes::Bytes::from_static(b"\xff req 9 rep \x00"),
            },
            Op::GatewayPost {
                conn,
                text: true,
                body: bytes::Bytes::new(),
            },
            Op::GatewayGet { conn },
            Op::GatewayDelete { conn },
            Op::GatewayMembership {
                conn,
                channel: "room 1: é".into(),
                join: true,
            },
            Op::GatewayMembership {
                conn,
                channel: "x".into(),
                join: false,
            },
            Op::Send {
                conn,
                data: r#"{"a": "b c"}"#.into(),
            },
            Op::Close { conn, code: 4000 },
        ];
        for (i, op) in ops.into_iter().enumerate() {
            let env = Envelope::Request { id: i as u64, op };
            let bytes = encode(77, &env);
            assert_eq!(decode(&bytes, true), Some((77, env.clone())), "{env:?}");
            // Only on a node subject.
            assert_ne!(decode(&bytes, false), Some((77, env)));
        }
        for outcome in [
            Outcome::Done,
            Outcome::Gone,
            Outcome::Full,
            Outcome::Busy,
            Outcome::InvalidChannel,
            Outcome::TooManyChannels,
            Outcome::Info(r#"{"connectedAt": "x y"}"#.into()),
        ] {
            let env = Envelope::Reply {
                id: u64::MAX,
                outcome,
            };
            assert_eq!(decode(&encode(5, &env), true), Some((5, env)));
        }
    }

    #[test]
    fn malformed_requests_and_replies_are_refused_without_panicking() {
        let big = format!("1 rep 1 info {}", "x".repeat(MAX_INFO_BYTES + 1));
        let mut huge = b"1 req 1 gpost 1-2-3 b ".to_vec();
        huge.resize(MAX_REQUEST_BYTES + 1, b'a');
        for bad in [
            &b"1 req"[..],
            b"1 req 1",
            b"1 req x gget 1-2-3",
            b"1 req 1 gget",
            b"1 req 1 gget 1-2",
            b"1 req 1 gget 1-2-3 extra",
            b"1 req 1 gpost 1-2-3 q body",
            b"1 req 1 gpost 1-2-3",
            b"1 req 1 gjoin 1-2-3",
            b"1 req 1 send 1-2-3",
            b"1 req 1 close 1-2-3 x",
            b"1 req 1 close 1-2-3 70000",
            b"1 req 1 nope 1-2-3",
            b"1 req 1 gjoin 1-2-3 \xff",
            b"1 rep 1",
            b"1 rep 1 done extra",
            b"1 rep 1 info",
            b"1 rep 1 maybe",
            b"1 rep -1 done",
            b"x rep 1 done",
            big.as_bytes(),
            &huge,
        ] {
            assert_eq!(
                decode(bad, true),
                None,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Every prefix of a good one: refused or read, never a panic.
        let good = encode(
            9,
            &Envelope::Request {
                id: 3,
                op: Op::GatewayMembership {
                    conn: ConnId {
                        core: 0,
                        key: 1,
                        gen: 1,
                    },
                    channel: "a b".into(),
                    join: true,
                },
            },
        );
        for n in 0..good.len() {
            let _ = decode(&good[..n], true);
        }
    }
}
