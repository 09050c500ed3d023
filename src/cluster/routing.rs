//! Which broker subjects this node subscribes to, and when: a channel's
//! or user's subject only while the node has local members of it (counted
//! across its cores by the hub registry), kept for a linger after the last
//! one left, subscribed and unsubscribed in batches.
//!
//! Owns: [`Changes`] (the names whose membership changed on any core since
//! the last look: what the cores tell through the registry's
//! [`Watch`]) and [`Interest`] (the subscribed set, the lingering ones
//! and the batches to send) — both free of IO. Must not touch: the broker
//! connection (the link sends the batches), the cores.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustc_hash::{FxHashMap, FxHashSet};

use super::wire::Subject;
use crate::hub::registry::{Kind, Watch};
use crate::hub::Registry;

/// Most changed names remembered between two looks; past it the cluster
/// looks at every name again (a resynchronisation), so nothing is lost
/// and memory stays bounded.
pub const CHANGES_CAP: usize = 65_536;

/// Names whose membership changed, for routing and for presence (each
/// takes its own copy), with a wake-up for the link.
#[derive(Default)]
pub struct Changes {
    inner: Mutex<Both>,
    /// Wakes the link task (routing); presence looks on its own tick.
    pub notify: tokio::sync::Notify,
}

/// What changed since the last [`Changes::take_routing`] /
/// [`Changes::take_presence`].
#[derive(Default, Debug)]
pub struct Pending {
    pub names: FxHashSet<(Kind, Arc<str>)>,
    /// More than [`CHANGES_CAP`] names changed: look at all of them.
    pub overflow: bool,
}

#[derive(Default)]
struct Both {
    routing: Pending,
    presence: Pending,
}

impl Changes {
    fn with<T>(&self, f: impl FnOnce(&mut Pending, &mut Pending) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let Both { routing, presence } = &mut *g;
        f(routing, presence)
    }

    /// What changed for routing since the last call.
    pub fn take_routing(&self) -> Pending {
        self.with(|r, _| std::mem::take(r))
    }

    /// What changed for presence since the last call.
    pub fn take_presence(&self) -> Pending {
        self.with(|_, p| std::mem::take(p))
    }

    /// Marks everything as changed for presence (after a reconnect: the
    /// node's part is written again).
    pub fn resync_presence(&self) {
        self.with(|_, p| p.overflow = true);
    }
}

impl Watch for Changes {
    fn touched(&self, kind: Kind, name: &Arc<str>) {
        self.with(|r, p| {
            for set in [r, p] {
                if set.overflow {
                    continue;
                }
                if set.names.len() >= CHANGES_CAP {
                    set.names.clear();
                    set.overflow = true;
                } else {
                    set.names.insert((kind, name.clone()));
                }
            }
        });
        self.notify.notify_one();
    }
}

/// The channels whose broker subscription the link has confirmed (the
/// broker answered the subscribe, so a publish made after that reaches
/// this node). The link writes it; a core reads it when a client
/// subscribes, to send the ack only once it holds (README "Running a
/// cluster").
#[derive(Debug, Default)]
pub struct Confirmed {
    names: std::sync::RwLock<FxHashSet<Box<str>>>,
}

impl Confirmed {
    /// True if this node's subscription to `channel` is confirmed.
    pub fn contains(&self, channel: &str) -> bool {
        self.names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(channel)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, FxHashSet<Box<str>>> {
        self.names.write().unwrap_or_else(|e| e.into_inner())
    }

    /// These channels are subscribed now.
    pub fn insert<'a>(&self, channels: impl IntoIterator<Item = &'a str>) {
        let mut g = self.write();
        for c in channels {
            if !g.contains(c) {
                g.insert(c.into());
            }
        }
    }

    /// These channels are about to be unsubscribed.
    pub fn remove<'a>(&self, channels: impl IntoIterator<Item = &'a str>) {
        let mut g = self.write();
        for c in channels {
            g.remove(c);
        }
    }

    /// The link is down: nothing is subscribed.
    pub fn clear(&self) {
        self.write().clear();
    }
}

/// The subjects this node is subscribed to on the broker (or will be
/// again after a reconnect), with the ones lingering before their
/// unsubscribe.
#[derive(Debug)]
pub struct Interest {
    subscribed: FxHashSet<String>,
    lingering: FxHashMap<String, Instant>,
    to_subscribe: Vec<String>,
    linger: Duration,
}

impl Interest {
    /// Nothing subscribed; a subject lingers `linger` after its last member.
    pub fn new(linger: Duration) -> Self {
        Self {
            subscribed: FxHashSet::default(),
            lingering: FxHashMap::default(),
            to_subscribe: Vec::new(),
            linger,
        }
    }

    /// `subject` has local members (`wanted`) or none any more, at `now`.
    pub fn want(&mut self, subject: String, wanted: bool, now: Instant) {
        if wanted {
            self.lingering.remove(&subject);
            if self.subscribed.insert(subject.clone()) {
                self.to_subscribe.push(subject);
            }
        } else if self.subscribed.contains(&subject) && !self.lingering.contains_key(&subject) {
            self.lingering.insert(subject, now + self.linger);
        }
    }

    /// Subjects to subscribe to now (one batch).
    pub fn take_subscribes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.to_subscribe)
    }

    /// Subjects whose linger ended by `now`: forgotten here, to be
    /// unsubscribed (one batch).
    pub fn take_unsubscribes(&mut self, now: Instant) -> Vec<String> {
        let done: Vec<String> = self
            .lingering
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for s in &done {
            self.lingering.remove(s);
            self.subscribed.remove(s);
        }
        done
    }

    /// After a reconnect: every subscribed subject, to subscribe again
    /// (the pending batch is part of it).
    pub fn resubscribe_all(&mut self) -> Vec<String> {
        self.to_subscribe.clear();
        self.subscribed.iter().cloned().collect()
    }

    /// Subjects subscribed now.
    pub fn len(&self) -> usize {
        self.subscribed.len()
    }

    /// True if none.
    pub fn is_empty(&self) -> bool {
        self.subscribed.is_empty()
    }
}

/// Reads the membership changes the cores reported (`all`: every name
/// the registry has, after a reconnect) into `interest`, each name's
/// subject spelled by `subject`.
pub fn apply(
    changes: &Changes,
    registry: &Registry,
    interest: &mut Interest,
    now: Instant,
    all: bool,
    subject: impl Fn(&Subject<'_>) -> String,
) {
    let pending = changes.take_routing();
    let mut names: Vec<(Kind, Arc<str>)> = pending.names.into_iter().collect();
    if all || pending.overflow {
        let channels = registry.channels.names().into_iter();
        names.extend(channels.map(|n| (Kind::Channel, n)));
        let users = registry.users.names().into_iter();
        names.extend(users.map(|n| (Kind::User, n)));
    }
    for (kind, name) in names {
        let (map, s) = match kind {
            Kind::Channel => (&registry.channels, Subject::channel(&name)),
            Kind::User => (&registry.users, Subject::user(&name)),
        };
        let wanted = map.mask(&name).is_some_and(|(_, m)| m != 0);
        interest.want(subject(&s), wanted, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_subscribed_once_and_unsubscribed_after_its_linger() {
        let t0 = Instant::now();
        let linger = Duration::from_secs(2);
        let mut i = Interest::new(linger);
        i.want("a".into(), true, t0);
        i.want("a".into(), true, t0);
        i.want("b".into(), true, t0);
        let mut subs = i.take_subscribes();
        subs.sort();
        assert_eq!(subs, ["a", "b"], "one subscribe per subject, batched");
        assert!(i.take_subscribes().is_empty());
        i.want("a".into(), false, t0);
        assert!(i.take_unsubscribes(t0 + Duration::from_secs(1)).is_empty());
        // Back within the linger: no unsubscribe, no new subscribe.
        i.want("a".into(), true, t0 + Duration::from_secs(1));
        assert!(i.take_subscribes().is_empty());
        assert!(i.take_unsubscribes(t0 + linger * 2).is_empty());
        i.want("b".into(), false, t0 + linger);
        i.want("b".into(), false, t0 + linger * 2); // the first linger holds
        assert_eq!(i.take_unsubscribes(t0 + linger * 2), ["b"]);
        assert_eq!(i.len(), 1);
        assert_eq!(i.resubscribe_all(), ["a"]);
        // Unknown subject leaving: nothing.
        i.want("zzz".into(), false, t0);
        assert!(i.take_unsubscribes(t0 + linger * 9).is_empty());
    }

    #[test]
    fn changes_are_kept_for_both_readers_and_overflow_into_a_resync() {
        let c = Changes::default();
        let n: Arc<str> = "news".into();
        c.touched(Kind::Channel, &n);
        c.touched(Kind::Channel, &n);
        assert_eq!(c.take_routing().names.len(), 1);
        assert_eq!(c.take_presence().names.len(), 1);
        assert!(c.take_routing().names.is_empty());
        for i in 0..=CHANGES_CAP {
            c.touched(Kind::User, &Arc::from(i.to_string()));
        }
        let p = c.take_presence();
        assert!(p.overflow && p.names.is_empty());
    }
}
