//! Connection quotas per key (source IP, user), shared by all cores.
//!
//! Owns: counting open connections per key against a maximum, in sharded
//! maps that drop a key when its count returns to zero. Must not touch:
//! which key a connection has (see `Admission`).

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;

use rustc_hash::FxBuildHasher;

const SHARDS: usize = 16;

/// Open-connection counts per key.
pub struct SlotCounts<K> {
    shards: Vec<Mutex<HashMap<K, u32>>>,
}

impl<K: Hash + Eq> Default for SlotCounts<K> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl<K: Hash + Eq + Clone> SlotCounts<K> {
    fn shard(&self, key: &K) -> std::sync::MutexGuard<'_, HashMap<K, u32>> {
        let i = FxBuildHasher.hash_one(key) as usize % SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one of `key`'s `max` slots; false if none is left.
    pub fn take(&self, key: &K, max: u32) -> bool {
        let mut s = self.shard(key);
        let n = s.entry(key.clone()).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// Returns a slot taken by [`SlotCounts::take`].
    pub fn give_back(&self, key: &K) {
        let mut s = self.shard(key);
        if let Some(n) = s.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.remove(key);
            }
        }
    }

    /// Open connections of `key`.
    pub fn count(&self, key: &K) -> u32 {
        self.shard(key).get(key).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_taken_and_given_back() {
        let s = SlotCounts::<String>::default();
        let k = "a".to_string();
        assert!(s.take(&k, 2));
        assert!(s.take(&k, 2));
        assert!(!s.take(&k, 2));
        s.give_back(&k);
        assert_eq!(s.count(&k), 1);
        assert!(s.take(&k, 2));
    }
}
