//! What both broker links do with a message, whatever the bus: turn an
//! [`Out`] into a subject and a payload, and hand a received message to
//! the cores (or to the probe).
//!
//! Owns: [`encode`], [`inbound`] and the [`Naming`] of subjects per bus.
//! Must not touch: connections to a broker (the links), any core's state
//! (only [`HubHandle`]: bounded inboxes, never waited on).

use std::sync::atomic::Ordering;

use serde_json::value::RawValue;

use super::probe::Probe;
use super::wire::{self, Envelope, Subject};
use super::{LinkStats, Out, Uplink};
use crate::hub::HubHandle;

/// How subjects are spelled on a bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Redis channel names: any bytes, so the name itself.
    Redis,
    /// NATS subjects: `.`-separated tokens without spaces or wildcards, so
    /// names are base64url-encoded.
    Nats,
}

impl Naming {
    /// The subject's name on this bus.
    pub fn subject(self, prefix: &str, s: &Subject<'_>) -> String {
        match self {
            Naming::Redis => wire::subject(prefix, s),
            Naming::Nats => wire::nats_subject(prefix, s),
        }
    }
}

/// The channels named by `subjects` (spelled for this bus under
/// `prefix`); user and node subjects left out.
pub fn channel_names(naming: Naming, prefix: &str, subjects: &[String]) -> Vec<String> {
    subjects
        .iter()
        .filter_map(|s| {
            let parsed = match naming {
                Naming::Redis => wire::parse_subject(prefix, s).map(|s| match s {
                    Subject::Channel(c) => Subject::Channel(c.into_owned().into()),
                    other => other,
                }),
                Naming::Nats => wire::parse_nats_subject(prefix, s),
            };
            match parsed {
                Some(Subject::Channel(c)) => Some(c.into_owned()),
                _ => None,
            }
        })
        .collect()
}

/// The subject and payload of one outgoing message from node `node`.
pub fn encode(naming: Naming, prefix: &str, node: u32, out: Out) -> (String, Vec<u8>) {
    let subject = |s: &Subject<'_>| naming.subject(prefix, s);
    match out {
        Out::Channel { channel, data } => (
            subject(&Subject::channel(&channel)),
            wire::encode(node, &Envelope::Data(&data)),
        ),
        Out::User { user, data } => (
            subject(&Subject::user(&user)),
            wire::encode(node, &Envelope::Data(&data)),
        ),
        Out::Request { node: to, id, op } => (
            subject(&Subject::Node(to)),
            wire::encode(node, &Envelope::Request { id, op }),
        ),
        Out::Reply {
            node: to,
            id,
            outcome,
        } => (
            subject(&Subject::Node(to)),
            wire::encode(node, &Envelope::Reply { id, outcome }),
        ),
    }
}

/// One message received on `subject` (parsed; `None` when not ours):
/// to the cores, unless it is this node's own (already delivered here)
/// or not ours to read; a probe of our own goes to `probe`; another
/// node's request is performed here (on a blocking thread) and a reply
/// goes to the request waiting on it.
pub fn inbound(
    hub: &HubHandle,
    uplink: &Uplink,
    stats: &LinkStats,
    subject: Option<Subject<'_>>,
    payload: &[u8],
    probe: &mut Probe,
) {
    let node = uplink.node();
    let node_subject = matches!(subject, Some(Subject::Node(_)));
    let Some((origin, env)) = wire::decode(payload, node_subject) else {
        stats.malformed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if let Envelope::Probe(seq) = env {
        if origin == node {
            probe.returned(seq, std::time::Instant::now());
        }
        return;
    }
    if origin == node {
        return;
    }
    let data = |d: &str| {
        serde_json::from_str::<&RawValue>(d)
            .ok()
            .map(|r| r.to_owned())
    };
    let delivered = match (subject, env) {
        (Some(Subject::Channel(ch)), Envelope::Data(d)) => {
            data(d).map(|raw| hub.publish_local(&ch, &raw)).is_some()
        }
        (Some(Subject::User(u)), Envelope::Data(d)) => data(d)
            .map(|raw| hub.send_to_user_local(&u, &raw))
            .is_some(),
        // Send, Frame and Close: what nodes of an earlier version send
        // (fire and forget) during a rolling upgrade.
        (Some(Subject::Node(n)), Envelope::Send { conn, data: d }) if n == node => data(d)
            .map(|raw| hub.send_to_connection(conn, &raw))
            .is_some(),
        (Some(Subject::Node(n)), Envelope::Frame { conn, text, body }) if n == node => {
            let frame = crate::hub::protocol::data_frame(text, body);
            let _ = hub.send_frame(conn, frame);
            true
        }
        (Some(Subject::Node(n)), Envelope::Close { conn, code }) if n == node => {
            let _ = hub.disconnect(conn, code);
            true
        }
        (Some(Subject::Node(n)), Envelope::Request { id, op }) if n == node => {
            uplink.requests().serve(uplink, origin, id, op);
            true
        }
        (Some(Subject::Node(n)), Envelope::Reply { id, outcome }) if n == node => {
            // A late reply (its asker gave up) is dropped.
            uplink.requests().answered(origin, id, outcome);
            true
        }
        _ => false,
    };
    if delivered {
        stats.received.fetch_add(1, Ordering::Relaxed);
    } else {
        stats.malformed.fetch_add(1, Ordering::Relaxed);
    }
}
