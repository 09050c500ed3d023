//! One core's share of the hub: which of its connections subscribe to
//! which channel, and which of its connections belong to which user.
//!
//! Owns: the per-core indexes (channel → local connection keys, user →
//! local connection keys) and keeping the shared [`Registry`] masks in
//! step on first/last. Must not touch: connections, sockets, other cores'
//! indexes. `!Send` in spirit: only its core uses it.

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::registry::Registry;

/// Per-core channel and user index.
pub struct LocalHub {
    core: usize,
    registry: Arc<Registry>,
    channels: FxHashMap<Arc<str>, FxHashSet<u32>>,
    users: FxHashMap<Arc<str>, FxHashSet<u32>>,
}

impl LocalHub {
    /// An empty index for core `core`.
    pub fn new(core: usize, registry: Arc<Registry>) -> Self {
        Self {
            core,
            registry,
            channels: FxHashMap::default(),
            users: FxHashMap::default(),
        }
    }

    /// The shared registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Adds `key` to `channel`. Returns the interned name if it was not
    /// subscribed yet, `None` if it already was.
    pub fn subscribe(&mut self, channel: &str, key: u32) -> Option<Arc<str>> {
        if let Some(set) = self.channels.get_mut(channel) {
            if !set.insert(key) {
                return None;
            }
            return self.channels.get_key_value(channel).map(|(n, _)| n.clone());
        }
        let name: Arc<str> = channel.into();
        let mut set = FxHashSet::default();
        set.insert(key);
        self.channels.insert(name.clone(), set);
        self.registry.set_channel_core(&name, self.core, true);
        Some(name)
    }

    /// Removes `key` from `channel`; true if it was subscribed.
    pub fn unsubscribe(&mut self, channel: &str, key: u32) -> bool {
        let Some(set) = self.channels.get_mut(channel) else {
            return false;
        };
        let removed = set.remove(&key);
        if set.is_empty() {
            if let Some((name, _)) = self.channels.remove_entry(channel) {
                self.registry.set_channel_core(&name, self.core, false);
            }
        }
        removed
    }

    /// Local subscribers of `channel`.
    pub fn subscribers(&self, channel: &str) -> Option<&FxHashSet<u32>> {
        self.channels.get(channel)
    }

    /// Adds connection `key` to `user`'s set; returns the interned name.
    pub fn add_user(&mut self, user: &str, key: u32) -> Arc<str> {
        if let Some(set) = self.users.get_mut(user) {
            set.insert(key);
            if let Some((name, _)) = self.users.get_key_value(user) {
                return name.clone();
            }
        }
        let name: Arc<str> = user.into();
        let mut set = FxHashSet::default();
        set.insert(key);
        self.users.insert(name.clone(), set);
        self.registry.set_user_core(&name, self.core, true);
        name
    }

    /// Removes connection `key` from `user`'s set.
    pub fn remove_user(&mut self, user: &str, key: u32) {
        let Some(set) = self.users.get_mut(user) else {
            return;
        };
        set.remove(&key);
        if set.is_empty() {
            if let Some((name, _)) = self.users.remove_entry(user) {
                self.registry.set_user_core(&name, self.core, false);
            }
        }
    }

    /// Removes `key` from every channel and user set, whatever the
    /// connection's own lists say: after a panic they may be out of step
    /// with the index (a subscribe cut short between the two). Returns the
    /// channel subscriptions removed. Scans the whole index, so it is for
    /// the panic path only.
    pub fn forget(&mut self, key: u32) -> usize {
        let mut removed = 0;
        let mut empty = Vec::new();
        for (name, set) in &mut self.channels {
            if set.remove(&key) {
                removed += 1;
                if set.is_empty() {
                    empty.push(name.clone());
                }
            }
        }
        for name in empty {
            self.channels.remove(&name);
            self.registry.set_channel_core(&name, self.core, false);
        }
        let mut empty = Vec::new();
        for (name, set) in &mut self.users {
            if set.remove(&key) && set.is_empty() {
                empty.push(name.clone());
            }
        }
        for name in empty {
            self.users.remove(&name);
            self.registry.set_user_core(&name, self.core, false);
        }
        removed
    }

    /// Local connections of `user`.
    pub fn user_conns(&self, user: &str) -> Option<&FxHashSet<u32>> {
        self.users.get(user)
    }

    /// Channels with local subscribers.
    /// The `n` channels with the most local subscribers, most first.
    pub fn top_channels(&self, n: usize) -> Vec<(Arc<str>, usize)> {
        let mut all: Vec<(Arc<str>, usize)> = self
            .channels
            .iter()
            .map(|(name, set)| (name.clone(), set.len()))
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

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Subscriptions held by local connections.
    pub fn subscription_count(&self) -> usize {
        self.channels.values().map(|s| s.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_and_last_update_the_registry() {
        let reg = Arc::new(Registry::default());
        let mut a = LocalHub::new(0, reg.clone());
        let mut b = LocalHub::new(1, reg.clone());
        assert!(a.subscribe("news", 1).is_some());
        assert!(a.subscribe("news", 1).is_none(), "idempotent");
        assert!(a.subscribe("news", 2).is_some());
        assert!(b.subscribe("news", 1).is_some());
        assert_eq!(reg.channel_cores("news"), 0b11);
        assert!(a.unsubscribe("news", 1));
        assert!(!a.unsubscribe("news", 1));
        assert_eq!(reg.channel_cores("news"), 0b11);
        a.unsubscribe("news", 2);
        assert_eq!(reg.channel_cores("news"), 0b10);
        assert_eq!(a.channel_count(), 0);
        a.add_user("alice", 5);
        a.add_user("alice", 6);
        a.remove_user("alice", 5);
        assert_eq!(reg.user_cores("alice"), 0b1);
        a.remove_user("alice", 6);
        assert_eq!(reg.user_cores("alice"), 0);
        assert_eq!(reg.users_online(), 0);
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
        assert_eq!(a.forget(1), 2);
        assert_eq!(a.forget(1), 0, "idempotent");
        assert_eq!(a.subscribers("news").map(|s| s.len()), Some(1));
        assert!(a.subscribers("solo").is_none());
        assert_eq!(reg.channel_cores("solo"), 0);
        assert_eq!(reg.channel_cores("news"), 0b1);
        assert!(a.user_conns("alice").is_none());
        assert_eq!(reg.user_cores("alice"), 0);
        assert_eq!(reg.user_cores("bob"), 0b1);
    }
}
