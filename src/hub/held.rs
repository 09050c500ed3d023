//! Subscribe acks held until this node's broker subscription to the
//! channel is confirmed (clustered, link up): a client that publishes
//! through another node the instant its ack arrives must not find this
//! node not yet subscribed. The same for the answer to a membership
//! `PUT` of the gateway's `@connections` API (a join).
//!
//! Owns: [`HeldAcks`], one core's bounded list of acks waiting, free of IO
//! and clock (`now` comes in). Must not touch: the broker or the link
//! (they say which channels are confirmed through the
//! [`Uplink`](crate::cluster::Uplink)), connections (the engine queues
//! what is released).

use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::Sender;

use crate::inbox::Membership;

/// Acks held at once per core; a subscribe beyond it is acked at once.
pub const MAX_HELD: usize = 4_096;

/// What waits: a client's ack frame, or the answer to a join.
#[derive(Debug)]
pub enum Waiting {
    Ack(Bytes),
    Join(Sender<Membership>),
}

#[derive(Debug)]
struct Held {
    key: u32,
    channel: Box<str>,
    what: Waiting,
    since: Instant,
}

/// One core's held acks.
#[derive(Debug)]
pub struct HeldAcks {
    held: Vec<Held>,
    timeout: Duration,
}

impl HeldAcks {
    /// Acks held at most `timeout` (then sent anyway).
    pub fn new(timeout: Duration) -> Self {
        Self {
            held: Vec::new(),
            timeout,
        }
    }

    /// Holds `what` (connection `key`'s ack of subscribing to `channel`,
    /// or the answer to its join) at `now`; gives it back if the list is
    /// full (send it at once).
    pub fn hold(
        &mut self,
        key: u32,
        channel: &str,
        what: Waiting,
        now: Instant,
    ) -> Option<Waiting> {
        if self.held.len() >= MAX_HELD {
            return Some(what);
        }
        self.held.push(Held {
            key,
            channel: channel.into(),
            what,
            since: now,
        });
        None
    }

    /// True if none is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Connection `key` stopped being open: its held acks are dropped,
    /// a held join is answered gone.
    pub fn forget(&mut self, key: u32) {
        if !self.held.is_empty() {
            self.held.retain(|h| {
                if h.key != key {
                    return true;
                }
                if let Waiting::Join(tx) = &h.what {
                    let _ = tx.try_send(Membership::Gone);
                }
                false
            });
        }
    }

    /// The acks to send now, in the order held: each whose channel
    /// `confirmed` says is subscribed, all of them if `!up` (local
    /// delivery needs no broker), and any held for the timeout. A join
    /// released is answered here (done).
    pub fn release(
        &mut self,
        now: Instant,
        up: bool,
        confirmed: impl Fn(&str) -> bool,
        out: &mut Vec<(u32, Bytes)>,
    ) {
        let timeout = self.timeout;
        self.held.retain_mut(|h| {
            let go =
                !up || now.saturating_duration_since(h.since) >= timeout || confirmed(&h.channel);
            if go {
                match &mut h.what {
                    Waiting::Ack(frame) => out.push((h.key, std::mem::take(frame))),
                    Waiting::Join(tx) => {
                        let _ = tx.try_send(Membership::Done);
                    }
                }
            }
            !go
        });
    }

    /// When the oldest held ack is sent anyway.
    pub fn deadline(&self) -> Option<Instant> {
        self.held
            .iter()
            .map(|h| h.since)
            .min()
            .map(|t| t + self.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_go_once_confirmed_down_or_late_and_a_closed_connection_drops_its_own() {
        let t0 = Instant::now();
        let mut h = HeldAcks::new(Duration::from_secs(2));
        let f = |s: &'static str| Bytes::from_static(s.as_bytes());
        let a = |s: &'static str| Waiting::Ack(f(s));
        assert!(h.hold(1, "a", a("1a"), t0).is_none());
        assert!(h.hold(2, "b", a("2b"), t0).is_none());
        assert!(h
            .hold(3, "a", a("3a"), t0 + Duration::from_secs(1))
            .is_none());
        assert!(h.hold(4, "c", a("4c"), t0).is_none());
        h.forget(4);
        assert_eq!(h.deadline(), Some(t0 + Duration::from_secs(2)));
        let mut out = Vec::new();
        h.release(t0, true, |_| false, &mut out);
        assert!(out.is_empty());
        h.release(t0, true, |c| c == "a", &mut out);
        assert_eq!(out, [(1, f("1a")), (3, f("3a"))]);
        out.clear();
        h.release(t0 + Duration::from_secs(2), true, |_| false, &mut out);
        assert_eq!(out, [(2, f("2b"))], "held no longer than the timeout");
        assert!(h.is_empty() && h.deadline().is_none());
        assert!(h.hold(5, "d", a("5d"), t0).is_none());
        out.clear();
        h.release(t0, false, |_| false, &mut out);
        assert_eq!(out, [(5, f("5d"))], "link down: at once");
        for k in 0..MAX_HELD as u32 {
            assert!(h.hold(k, "x", a("x"), t0).is_none());
        }
        assert!(
            matches!(h.hold(0, "x", a("y"), t0), Some(Waiting::Ack(b)) if b == f("y")),
            "bounded"
        );
    }
}
