//! The few facts shared by all cores: which cores have subscribers of a
//! channel and which cores hold connections of a user.
//!
//! Owns: channel → core mask and user → core mask, sharded behind
//! read-write locks. Written only when a core gains its first or loses its
//! last local subscriber/connection for a name; read once per publish to
//! pick the cores to hand the frame to (one read lock on one shard, never
//! per subscriber). Must not touch: connections, frames.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

use crate::sharded::Sharded;

/// Cores as a bit mask (bit i = core i); at most 64 cores.
pub type CoreMask = u64;

/// Most cores a server may run (one bit each in a [`CoreMask`]).
pub const MAX_CORES: usize = 64;

/// Name → mask of the cores that have it.
#[derive(Default)]
struct Masks {
    shards: Sharded<Arc<str>, RwLock<FxHashMap<Arc<str>, CoreMask>>>,
    /// Names with a non-zero mask.
    len: AtomicU64,
}

impl Masks {
    fn get(&self, name: &str) -> CoreMask {
        self.shards.read(name).get(name).copied().unwrap_or(0)
    }

    fn set(&self, name: &Arc<str>, core: usize, present: bool) {
        let mut map = self.shards.write(name);
        let bit = 1u64 << core;
        if present {
            let mask = map.entry(name.clone()).or_insert(0);
            if *mask == 0 {
                self.len.fetch_add(1, Ordering::Relaxed);
            }
            *mask |= bit;
        } else if let Some(mask) = map.get_mut(name) {
            *mask &= !bit;
            if *mask == 0 {
                map.remove(name);
                self.len.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

/// Shared, read-mostly hub registry.
#[derive(Default)]
pub struct Registry {
    channels: Masks,
    users: Masks,
}

impl Registry {
    /// Cores with at least one subscriber of `channel`.
    pub fn channel_cores(&self, channel: &str) -> CoreMask {
        self.channels.get(channel)
    }

    /// Cores with at least one connection of `user`.
    pub fn user_cores(&self, user: &str) -> CoreMask {
        self.users.get(user)
    }

    /// A core gained its first (`true`) or lost its last (`false`) local
    /// subscriber of `channel`.
    pub fn set_channel_core(&self, channel: &Arc<str>, core: usize, present: bool) {
        self.channels.set(channel, core, present);
    }

    /// A core gained its first or lost its last connection of `user`.
    pub fn set_user_core(&self, user: &Arc<str>, core: usize, present: bool) {
        self.users.set(user, core, present);
    }

    /// Channels with at least one subscriber anywhere.
    pub fn channel_count(&self) -> u64 {
        self.channels.len.load(Ordering::Relaxed)
    }

    /// Users with at least one connection anywhere.
    pub fn users_online(&self) -> u64 {
        self.users.len.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_follow_first_and_last() {
        let r = Registry::default();
        let news: Arc<str> = "news".into();
        r.set_channel_core(&news, 0, true);
        r.set_channel_core(&news, 3, true);
        assert_eq!(r.channel_cores("news"), 0b1001);
        assert_eq!(r.channel_count(), 1);
        r.set_channel_core(&news, 0, false);
        assert_eq!(r.channel_cores("news"), 0b1000);
        r.set_channel_core(&news, 3, false);
        assert_eq!(r.channel_cores("news"), 0);
        assert_eq!(r.channel_count(), 0);
        let alice: Arc<str> = "alice".into();
        r.set_user_core(&alice, 1, true);
        assert_eq!(r.users_online(), 1);
        assert_eq!(r.user_cores("alice"), 0b10);
        assert_eq!(r.user_cores("bob"), 0);
    }
}
