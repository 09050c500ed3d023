//! One core's share of the hub index: which of its connections subscribe
//! to which channel, and which of its connections belong to which user.
//!
//! Owns: the per-core indexes (channel → local connection keys, user →
//! local connection keys), keeping the shared [`Registry`] in step on a
//! core's first and last member of a name, and — in the same map, so a
//! publish is one hash lookup — the core's cached answers for channels it
//! publishes to without subscribers of its own (bounded by
//! [`CACHE_CAP`]). Must not touch: connections, sockets, other cores'
//! indexes; what a connection is (its user, grants and subscriptions are
//! the [`Hub`]'s). `!Send` in spirit: only its core uses it.
//!
//! [`Hub`]: super::Hub

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::registry::{Cached, CoreMask, Names, Registry, Stale, CACHE_CAP};

/// One name as this core sees it.
struct Local {
    /// Local members; empty for a channel this core only publishes to.
    keys: FxHashSet<u32>,
    /// With members: the shared entry this core's bit is set in (current
    /// as long as that bit is: see [`Names::join`]). Without: what this
    /// core last looked up.
    shared: Cached,
}

/// Name → local members and shared entry, over one of the registry's
/// [`Names`].
struct Index {
    names: FxHashMap<Arc<str>, Local>,
    /// Names with no local member (cached answers only).
    cached_only: usize,
    cap: usize,
}

impl Index {
    fn new(cap: usize) -> Self {
        Self {
            names: FxHashMap::default(),
            cached_only: 0,
            cap: cap.max(1),
        }
    }

    /// Adds `key`; the interned name if it was not there yet.
    fn add(&mut self, shared: &Names, core: usize, name: &str, key: u32) -> Option<Arc<str>> {
        let Some((n, _)) = self.names.get_key_value(name) else {
            let n: Arc<str> = name.into();
            let local = Local {
                keys: std::iter::once(key).collect(),
                shared: Cached::Present(shared.join(&n, core)),
            };
            self.names.insert(n.clone(), local);
            shared.touched(&n);
            return Some(n);
        };
        let n = n.clone();
        let local = self.names.get_mut(name).expect("just found");
        if local.keys.is_empty() {
            // Cached only until now: this core joins.
            local.shared = Cached::Present(shared.join(&n, core));
            self.cached_only -= 1;
        }
        let added = local.keys.insert(key);
        if added {
            shared.touched(&n);
        }
        added.then_some(n)
    }

    /// Removes `key`; true if it was there.
    fn remove(&mut self, shared: &Names, core: usize, name: &str, key: u32) -> bool {
        let Some(local) = self.names.get_mut(name) else {
            return false;
        };
        if !local.keys.remove(&key) {
            return false;
        }
        if local.keys.is_empty() {
            if let Some((n, _)) = self.names.remove_entry(name) {
                shared.leave(&n, core);
                shared.touched(&n);
            }
        } else if let Some((n, _)) = self.names.get_key_value(name) {
            shared.touched(n);
        }
        true
    }

    /// Removes `key` from every name's members; how many it was in.
    fn forget(&mut self, shared: &Names, core: usize, key: u32) -> usize {
        let mut removed = 0;
        let mut empty = Vec::new();
        for (name, local) in &mut self.names {
            if local.keys.remove(&key) {
                removed += 1;
                if local.keys.is_empty() {
                    empty.push(name.clone());
                }
            }
        }
        for name in empty {
            self.names.remove(&name);
            shared.leave(&name, core);
            shared.touched(&name);
        }
        removed
    }

    /// Local members of `name`, if it has any.
    fn keys(&self, name: &str) -> Option<&FxHashSet<u32>> {
        self.names
            .get(name)
            .map(|l| &l.keys)
            .filter(|k| !k.is_empty())
    }

    /// Names with local members.
    fn with_members(&self) -> impl Iterator<Item = (&Arc<str>, &FxHashSet<u32>)> {
        self.names
            .iter()
            .filter(|(_, l)| !l.keys.is_empty())
            .map(|(n, l)| (n, &l.keys))
    }

    /// Caches what the shared map says of `name` now (one read lock).
    fn refresh(&mut self, shared: &Names, name: &str) {
        let now = Cached::look_up(shared, name);
        if let Some(local) = self.names.get_mut(name) {
            if local.keys.is_empty() {
                local.shared = now;
            }
            return;
        }
        if self.cached_only >= self.cap {
            self.make_room(shared);
        }
        self.names.insert(
            name.into(),
            Local {
                keys: FxHashSet::default(),
                shared: now,
            },
        );
        self.cached_only += 1;
    }

    /// Drops cached answers that went stale; if that freed too little,
    /// half of the rest (whichever the map lists first). Names with local
    /// members stay.
    fn make_room(&mut self, shared: &Names) {
        self.names
            .retain(|_, l| !l.keys.is_empty() || l.shared.mask(shared).is_ok());
        let mut cached = self.names.values().filter(|l| l.keys.is_empty()).count();
        if cached >= self.cap {
            let mut drop = cached - self.cap / 2;
            self.names.retain(|_, l| {
                let go = drop > 0 && l.keys.is_empty();
                drop -= usize::from(go);
                !go
            });
            cached = self.names.values().filter(|l| l.keys.is_empty()).count();
        }
        self.cached_only = cached;
    }
}

/// The channels and users of one core.
pub struct LocalHub {
    core: usize,
    registry: Arc<Registry>,
    channels: Index,
    users: Index,
}

impl LocalHub {
    /// An empty index for core `core`.
    pub fn new(core: usize, registry: Arc<Registry>) -> Self {
        Self::with_cache_cap(core, registry, CACHE_CAP)
    }

    /// An empty index caching at most `cap` channels it has no
    /// subscribers of.
    pub fn with_cache_cap(core: usize, registry: Arc<Registry>, cap: usize) -> Self {
        Self {
            core,
            registry,
            channels: Index::new(cap),
            users: Index::new(cap),
        }
    }

    /// The shared registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Adds `key` to `channel`. Returns the interned name if it was not
    /// subscribed yet, `None` if it already was. The registry knows this
    /// core has the channel when it returns.
    pub fn subscribe(&mut self, channel: &str, key: u32) -> Option<Arc<str>> {
        self.channels
            .add(&self.registry.channels, self.core, channel, key)
    }

    /// Removes `key` from `channel`; true if it was subscribed.
    pub fn unsubscribe(&mut self, channel: &str, key: u32) -> bool {
        self.channels
            .remove(&self.registry.channels, self.core, channel, key)
    }

    /// Local subscribers of `channel`.
    pub fn subscribers(&self, channel: &str) -> Option<&FxHashSet<u32>> {
        self.channels.keys(channel)
    }

    /// The other cores with subscribers of `channel`, and its interned
    /// name when there are any: what a publish from this core hands on.
    /// One local hash lookup and atomic loads; no lock, no shared write
    /// (see [`super::registry`]). `Err(Stale)` when this core has to look
    /// the channel up again: [`LocalHub::refresh`], then ask again.
    #[inline]
    pub fn other_cores(&self, channel: &str) -> Result<(CoreMask, Option<&Arc<str>>), Stale> {
        let (name, local) = self.channels.names.get_key_value(channel).ok_or(Stale)?;
        let mask = local.shared.mask(&self.registry.channels)? & !(1u64 << self.core);
        Ok((mask, (mask != 0).then_some(name)))
    }

    /// Looks `channel` up again in the shared registry (one read lock),
    /// after [`LocalHub::other_cores`] said `Stale`.
    #[cold]
    pub fn refresh(&mut self, channel: &str) {
        self.channels.refresh(&self.registry.channels, channel);
    }

    /// Adds connection `key` to `user`'s set; returns the interned name.
    pub fn add_user(&mut self, user: &str, key: u32) -> Arc<str> {
        match self.users.add(&self.registry.users, self.core, user, key) {
            Some(n) => n,
            None => self
                .users
                .names
                .get_key_value(user)
                .map(|(n, _)| n.clone())
                .expect("just found in the index"),
        }
    }

    /// Removes connection `key` from `user`'s set.
    pub fn remove_user(&mut self, user: &str, key: u32) {
        self.users
            .remove(&self.registry.users, self.core, user, key);
    }

    /// Removes `key` from every channel and user set, whatever the
    /// connection's own lists say: after a panic they may be out of step
    /// with the index (a subscribe cut short between the two). Returns the
    /// channel subscriptions removed. Scans the whole index, so it is for
    /// the panic path only.
    pub fn forget(&mut self, key: u32) -> usize {
        let removed = self
            .channels
            .forget(&self.registry.channels, self.core, key);
        self.users.forget(&self.registry.users, self.core, key);
        removed
    }

    /// Local connections of `user`.
    pub fn user_conns(&self, user: &str) -> Option<&FxHashSet<u32>> {
        self.users.keys(user)
    }

    /// The `n` channels with the most local subscribers, most first.
    pub fn top_channels(&self, n: usize) -> Vec<(Arc<str>, usize)> {
        let mut all: Vec<(Arc<str>, usize)> = self
            .channels
            .with_members()
            .map(|(name, keys)| (name.clone(), keys.len()))
            .collect();
        let by_size =
            |a: &(Arc<str>, usize), b: &(Arc<str>, usize)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
        if n < all.len() {
            all.select_nth_unstable_by(n, by_size);
            all.truncate(n);
        }
        all.sort_unstable_by(by_size);
        all
    }

    /// Channels with local subscribers.
    pub fn channel_count(&self) -> usize {
        self.channels.with_members().count()
    }

    /// Subscriptions held by local connections.
    pub fn subscription_count(&self) -> usize {
        self.channels.with_members().map(|(_, k)| k.len()).sum()
    }

    /// Channels cached for publishing without local subscribers.
    pub fn cached_channels(&self) -> usize {
        self.channels.cached_only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cores(reg: &Registry, ch: &str) -> CoreMask {
        reg.channels.mask(ch).map_or(0, |(_, m)| m)
    }

    #[test]
    fn first_and_last_update_the_registry() {
        let reg = Arc::new(Registry::default());
        let mut a = LocalHub::new(0, reg.clone());
        let mut b = LocalHub::new(1, reg.clone());
        assert!(a.subscribe("news", 1).is_some());
        assert!(a.subscribe("news", 1).is_none(), "idempotent");
        assert!(a.subscribe("news", 2).is_some());
        assert!(b.subscribe("news", 1).is_some());
        assert_eq!(cores(&reg, "news"), 0b11);
        assert!(a.unsubscribe("news", 1));
        assert!(!a.unsubscribe("news", 1));
        assert_eq!(cores(&reg, "news"), 0b11);
        a.unsubscribe("news", 2);
        assert_eq!(cores(&reg, "news"), 0b10);
        assert_eq!(a.channel_count(), 0);
        a.add_user("alice", 5);
        a.add_user("alice", 6);
        a.remove_user("alice", 5);
        assert_eq!(reg.users.mask("alice").map(|(_, m)| m), Some(0b1));
        a.remove_user("alice", 6);
        assert!(reg.users.mask("alice").is_none());
        assert_eq!(reg.users_online(), 0);
    }

    /// `other_cores` as a publish asks it (see `Hub::publish`): refreshed
    /// once when stale, with the name copied out.
    fn others(hub: &mut LocalHub, ch: &str) -> (CoreMask, Option<String>) {
        if hub.other_cores(ch).is_err() {
            hub.refresh(ch);
        }
        let (mask, name) = hub.other_cores(ch).unwrap_or((0, None));
        (mask, name.map(|n| n.to_string()))
    }

    #[test]
    fn a_publish_hands_on_to_the_other_cores_only() {
        let reg = Arc::new(Registry::default());
        let mut a = LocalHub::new(0, reg.clone());
        let mut b = LocalHub::new(1, reg.clone());
        assert_eq!(a.other_cores("news"), Err(Stale), "never looked up");
        assert_eq!(others(&mut a, "news"), (0, None));
        assert_eq!(a.other_cores("news"), Ok((0, None)), "absent, cached");
        b.subscribe("news", 7);
        assert_eq!(a.other_cores("news"), Err(Stale), "a name was added");
        assert_eq!(others(&mut a, "news"), (0b10, Some("news".into())));
        a.subscribe("news", 3);
        assert_eq!(others(&mut a, "news").0, 0b10, "not itself");
        assert_eq!(others(&mut b, "news").0, 0b01);
        b.unsubscribe("news", 7);
        assert_eq!(others(&mut a, "news"), (0, None));
    }

    #[test]
    fn cached_channels_stay_within_the_cap_and_become_joined_on_subscribe() {
        let reg = Arc::new(Registry::default());
        let mut far = LocalHub::new(1, reg.clone());
        let mut hub = LocalHub::with_cache_cap(0, reg.clone(), 8);
        for i in 0..5 {
            far.subscribe(&format!("live-{i}"), 1);
        }
        for round in 0..20 {
            for i in 0..10 {
                others(&mut hub, &format!("gone-{round}-{i}"));
                assert!(hub.cached_channels() <= 8);
            }
            for i in 0..5 {
                assert_eq!(others(&mut hub, &format!("live-{i}")).0, 0b10);
            }
        }
        // A channel it only published to, then subscribes to: joined.
        assert_eq!(others(&mut hub, "live-0").0, 0b10);
        hub.subscribe("live-0", 9);
        assert_eq!(cores(&reg, "live-0"), 0b11);
        assert_eq!(hub.subscribers("live-0").map(|s| s.len()), Some(1));
        assert_eq!(hub.channel_count(), 1, "cached ones are not counted");
        assert_eq!(hub.top_channels(10).len(), 1);
        hub.unsubscribe("live-0", 9);
        assert_eq!(cores(&reg, "live-0"), 0b10);
        assert!(hub.subscribers("never").is_none());
    }

    /// Two cores subscribe and unsubscribe over and over, publishing that
    /// they are subscribed only after `subscribe` returned (the ack); two
    /// publishing cores, each with its own index, must count every such
    /// subscriber. Bounded: a fixed number of rounds.
    #[test]
    fn publishers_see_every_acked_subscriber_through_their_own_index() {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        const ROUNDS: u64 = 1_000;
        let reg = Arc::new(Registry::default());
        let acked: Arc<[AtomicU64; 2]> = Arc::new(Default::default());
        let done = Arc::new(AtomicBool::new(false));
        std::thread::scope(|scope| {
            let subs: Vec<_> = (0..2)
                .map(|s| {
                    let (reg, acked) = (reg.clone(), acked.clone());
                    scope.spawn(move || {
                        let mut hub = LocalHub::new(2 + s, reg);
                        for round in 1..=ROUNDS {
                            hub.subscribe("room", 1);
                            acked[s].store(round, Ordering::Release);
                            std::thread::yield_now();
                            acked[s].store(0, Ordering::Release);
                            hub.unsubscribe("room", 1);
                        }
                    })
                })
                .collect();
            for p in 0..2 {
                let (reg, acked, done) = (reg.clone(), acked.clone(), done.clone());
                scope.spawn(move || {
                    let mut hub = LocalHub::with_cache_cap(p, reg, 2);
                    while !done.load(Ordering::Acquire) {
                        for (s, a) in acked.iter().enumerate() {
                            let seen = a.load(Ordering::Acquire);
                            if seen == 0 {
                                continue;
                            }
                            if others(&mut hub, "room").0 & (1 << (2 + s)) == 0 {
                                assert_ne!(a.load(Ordering::Acquire), seen, "missed {s}");
                            }
                        }
                        // Another name beside it in the cache.
                        others(&mut hub, "elsewhere");
                    }
                });
            }
            for s in subs {
                s.join().expect("subscriber");
            }
            done.store(true, Ordering::Release);
        });
        assert_eq!(reg.channel_count(), 0);
    }

    #[test]
    fn forget_sweeps_a_key_out_of_every_set() {
        let reg = Arc::new(Registry::default());
        let mut a = LocalHub::new(0, reg.clone());
        a.subscribe("news", 1);
        a.subscribe("news", 2);
        a.subscribe("solo", 1);
        a.add_user("alice", 1);
        a.add_user("bob", 2);
        others(&mut a, "cached-only");
        assert_eq!(a.forget(1), 2);
        assert_eq!(a.forget(1), 0, "idempotent");
        assert_eq!(a.subscribers("news").map(|s| s.len()), Some(1));
        assert!(a.subscribers("solo").is_none());
        assert_eq!(cores(&reg, "solo"), 0);
        assert_eq!(cores(&reg, "news"), 0b1);
        assert!(a.user_conns("alice").is_none());
        assert!(reg.users.mask("alice").is_none());
        assert_eq!(reg.users.mask("bob").map(|(_, m)| m), Some(0b1));
        assert_eq!(a.cached_channels(), 1, "a cached answer is no member");
    }
}
