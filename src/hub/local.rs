//! One core's share of the hub index: which of its connections subscribe
//! to which channel, and which of its connections belong to which user.
//!
//! Owns: the per-core indexes (channel → local connection keys, user →
//! local connection keys), keeping the shared [`Registry`] in step on a
//! core's first and last member of a name, and the core's
//! [`MaskCache`] of channels it publishes to without subscribing. Must not
//! touch: connections, sockets, other cores' indexes; what a connection
//! is (its user, grants and subscriptions are the [`Hub`]'s). `!Send` in
//! spirit: only its core uses it.
//!
//! [`Hub`]: super::Hub

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::registry::{CoreMask, Entry, MaskCache, Names, Registry};

/// The local members of one name, and the shared entry this core's bit is
/// set in (current as long as that bit is: see [`Names::join`]).
struct Local {
    keys: FxHashSet<u32>,
    entry: Arc<Entry>,
}

/// Name → local members, over one of the registry's [`Names`].
#[derive(Default)]
struct Index {
    names: FxHashMap<Arc<str>, Local>,
}

impl Index {
    /// Adds `key`; the interned name if it was not there yet.
    fn add(&mut self, shared: &Names, core: usize, name: &str, key: u32) -> Option<Arc<str>> {
        if let Some(local) = self.names.get_mut(name) {
            if !local.keys.insert(key) {
                return None;
            }
            return self.names.get_key_value(name).map(|(n, _)| n.clone());
        }
        let n: Arc<str> = name.into();
        let entry = shared.join(&n, core);
        let mut keys = FxHashSet::default();
        keys.insert(key);
        self.names.insert(n.clone(), Local { keys, entry });
        Some(n)
    }

    /// Removes `key`; true if it was there.
    fn remove(&mut self, shared: &Names, core: usize, name: &str, key: u32) -> bool {
        let Some(local) = self.names.get_mut(name) else {
            return false;
        };
        let removed = local.keys.remove(&key);
        if local.keys.is_empty() {
            if let Some((n, _)) = self.names.remove_entry(name) {
                shared.leave(&n, core);
            }
        }
        removed
    }

    fn keys(&self, name: &str) -> Option<&FxHashSet<u32>> {
        self.names.get(name).map(|l| &l.keys)
    }
}

/// The channels and users of one core.
pub struct LocalHub {
    core: usize,
    registry: Arc<Registry>,
    channels: Index,
    users: Index,
    /// Channels this core publishes to without local subscribers.
    cache: MaskCache,
}

impl LocalHub {
    /// An empty index for core `core`.
    pub fn new(core: usize, registry: Arc<Registry>) -> Self {
        Self {
            core,
            registry,
            channels: Index::default(),
            users: Index::default(),
            cache: MaskCache::default(),
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
    /// A local hash lookup and one atomic load; no lock (see
    /// [`super::registry`]).
    pub fn other_cores(&mut self, channel: &str) -> (CoreMask, Option<Arc<str>>) {
        let me = !(1u64 << self.core);
        let (name, mask) = match self.channels.names.get_key_value(channel) {
            Some((n, local)) => (n, local.entry.mask() & me),
            None => match self.cache.lookup(&self.registry.channels, channel) {
                Some((n, mask)) => (n, mask & me),
                None => return (0, None),
            },
        };
        (mask, (mask != 0).then(|| name.clone()))
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

    /// Local connections of `user`.
    pub fn user_conns(&self, user: &str) -> Option<&FxHashSet<u32>> {
        self.users.keys(user)
    }

    /// The `n` channels with the most local subscribers, most first.
    pub fn top_channels(&self, n: usize) -> Vec<(Arc<str>, usize)> {
        let mut all: Vec<(Arc<str>, usize)> = self
            .channels
            .names
            .iter()
            .map(|(name, l)| (name.clone(), l.keys.len()))
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
        self.channels.names.len()
    }

    /// Subscriptions held by local connections.
    pub fn subscription_count(&self) -> usize {
        self.channels.names.values().map(|l| l.keys.len()).sum()
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

    #[test]
    fn a_publish_hands_on_to_the_other_cores_only() {
        let reg = Arc::new(Registry::default());
        let mut a = LocalHub::new(0, reg.clone());
        let mut b = LocalHub::new(1, reg.clone());
        assert_eq!(a.other_cores("news"), (0, None));
        b.subscribe("news", 7);
        let (mask, name) = a.other_cores("news");
        assert_eq!((mask, name.as_deref()), (0b10, Some("news")));
        a.subscribe("news", 3);
        assert_eq!(a.other_cores("news").0, 0b10, "not itself");
        assert_eq!(b.other_cores("news").0, 0b01);
        b.unsubscribe("news", 7);
        assert_eq!(a.other_cores("news"), (0, None));
    }
}
