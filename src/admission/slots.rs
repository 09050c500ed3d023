//! Connection quotas per key (source IP, user), shared by all cores.
//!
//! Owns: counting open connections per key against a maximum, in sharded
//! maps that drop a key when its count returns to zero. Must not touch:
//! which key a connection has (see `Admission`).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use crate::sharded::Sharded;

/// Open-connection counts per key.
pub struct SlotCounts<K> {
    shards: Sharded<K, Mutex<HashMap<K, u32>>>,
}

impl<K: Hash + Eq> Default for SlotCounts<K> {
    fn default() -> Self {
        Self {
            shards: Sharded::default(),
        }
    }
}

impl<K: Hash + Eq + Clone> SlotCounts<K> {
    /// Takes one of `key`'s `max` slots; false if none is left.
    pub fn take(&self, key: &K, max: u32) -> bool {
        let mut s = self.shards.lock(key);
        let n = s.entry(key.clone()).or_insert(0);
        if *n >= max {
            return false;
        }
        *n += 1;
        true
    }

    /// Returns a slot taken by [`SlotCounts::take`].
    pub fn give_back(&self, key: &K) {
        let mut s = self.shards.lock(key);
        if let Some(n) = s.get_mut(key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.remove(key);
            }
        }
    }

    /// Open connections of `key`.
    pub fn count(&self, key: &K) -> u32 {
        self.shards.lock(key).get(key).copied().unwrap_or(0)
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
