//! Shared state split into [`SHARDS`] locked shards, one chosen per key.
//!
//! Owns: picking a key's shard (FxHash of the key, modulo [`SHARDS`]) and
//! handing out that shard's lock guard, with lock poisoning ignored (a
//! panic elsewhere must not take admission or the hub down with it). The
//! lock kind is the caller's: `Mutex` for exclusive access, `RwLock` for
//! read-mostly state. Must not touch: what a shard holds (a map, a map plus
//! expiry order, sweep counters) or any total across shards — each user
//! owns its shard type and its counts.
//!
//! Hand-written rather than `dashmap`: a dashmap shard is one map with its
//! own lock and a shard count taken from the CPU count, while our users
//! keep extra state beside the map in each shard (`admission::ip` sweeps,
//! `admission::replay` expiry order and a per-shard cap) and need the same
//! sixteen shards on every machine. The whole type is one hash and one
//! array index in front of a std lock.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rustc_hash::FxBuildHasher;

/// How many shards every [`Sharded`] has.
pub const SHARDS: usize = 16;

/// [`SHARDS`] locks `L` (a `Mutex<S>` or `RwLock<S>`), the one for a key
/// of type `K` chosen by hashing it.
///
/// A key may be looked up as any `Q` that `K` borrows as (like a
/// `HashMap`): `Arc<str>` and `str` pick the same shard.
pub struct Sharded<K: ?Sized, L> {
    shards: [L; SHARDS],
    key: PhantomData<fn(&K)>,
}

impl<K: ?Sized, L: Default> Default for Sharded<K, L> {
    fn default() -> Self {
        Self {
            shards: std::array::from_fn(|_| L::default()),
            key: PhantomData,
        }
    }
}

impl<K: ?Sized, L> Sharded<K, L> {
    /// The shard (0..[`SHARDS`]) that `key` lives in; the same for the same
    /// key in every `Sharded`, on every call.
    #[inline]
    pub fn index<Q>(&self, key: &Q) -> usize
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        FxBuildHasher.hash_one(key) as usize % SHARDS
    }

    #[inline]
    fn shard<Q>(&self, key: &Q) -> &L
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        &self.shards[self.index(key)]
    }
}

impl<K: ?Sized, S> Sharded<K, Mutex<S>> {
    /// Locks `key`'s shard.
    #[inline]
    pub fn lock<Q>(&self, key: &Q) -> MutexGuard<'_, S>
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        lock(self.shard(key))
    }

    /// Every shard in index order, each locked only while the iterator
    /// holds its guard (one at a time: not a snapshot across shards).
    pub fn lock_each(&self) -> impl Iterator<Item = MutexGuard<'_, S>> {
        self.shards.iter().map(lock)
    }
}

impl<K: ?Sized, S> Sharded<K, RwLock<S>> {
    /// Read-locks `key`'s shard.
    #[inline]
    pub fn read<Q>(&self, key: &Q) -> RwLockReadGuard<'_, S>
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Write-locks `key`'s shard.
    #[inline]
    pub fn write<Q>(&self, key: &Q) -> RwLockWriteGuard<'_, S>
    where
        K: Borrow<Q>,
        Q: Hash + ?Sized,
    {
        self.shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Every shard in index order, each read-locked only while the
    /// iterator holds its guard (not a snapshot across shards).
    pub fn read_each(&self) -> impl Iterator<Item = RwLockReadGuard<'_, S>> {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner))
    }
}

#[inline]
fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    use proptest::prelude::*;

    type Counts = Sharded<u64, Mutex<HashMap<u64, u64>>>;

    #[test]
    fn same_key_same_shard_whatever_the_borrowed_form() {
        let a = Sharded::<Arc<str>, Mutex<()>>::default();
        let b = Sharded::<Arc<str>, RwLock<()>>::default();
        for i in 0..1000 {
            let owned: Arc<str> = format!("user-{i}").into();
            let i = a.index(&owned);
            assert_eq!(i, a.index(&owned));
            assert_eq!(i, a.index(&*owned), "str finds the Arc<str>'s shard");
            assert_eq!(i, b.index(&owned), "another Sharded agrees");
            assert!(i < SHARDS);
        }
    }

    #[test]
    fn keys_spread_over_every_shard() {
        let s = Sharded::<str, Mutex<u32>>::default();
        for i in 0..1000 {
            *s.lock(format!("channel-{i}").as_str()) += 1;
        }
        let per_shard: Vec<u32> = s.lock_each().map(|n| *n).collect();
        assert_eq!(per_shard.iter().sum::<u32>(), 1000);
        assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
    }

    #[test]
    fn guards_reach_the_indexed_shard() {
        let s = Sharded::<str, RwLock<Vec<String>>>::default();
        for k in ["a", "b", "news", "alice", "10.1.2.3"] {
            s.write(k).push(k.to_string());
            assert!(s.read(k).iter().any(|x| x == k));
            let i = s.index(k);
            let held: Vec<_> = s.read_each().map(|v| v.contains(&k.to_string())).collect();
            assert!(held[i]);
            assert_eq!(held.iter().filter(|&&h| h).count(), 1);
        }
    }

    #[test]
    fn concurrent_updates_on_different_keys_are_all_counted() {
        const THREADS: u64 = 4;
        const KEYS: u64 = 64;
        const ROUNDS: u64 = 500;
        let counts = Arc::new(Counts::default());
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let counts = Arc::clone(&counts);
                std::thread::spawn(move || {
                    for _ in 0..ROUNDS {
                        for k in 0..KEYS {
                            // Each thread its own keys, all threads the same shards.
                            *counts
                                .lock(&(t * KEYS + k))
                                .entry(t * KEYS + k)
                                .or_default() += 1;
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        let all: HashMap<u64, u64> = counts.lock_each().flat_map(|m| m.clone()).collect();
        assert_eq!(all.len() as u64, THREADS * KEYS);
        assert!(all.values().all(|&n| n == ROUNDS));
        assert_eq!(all.values().sum::<u64>(), THREADS * KEYS * ROUNDS);
    }

    #[test]
    fn concurrent_writers_and_readers_of_one_rwlock_key() {
        let s = Arc::new(Sharded::<str, RwLock<HashMap<String, u64>>>::default());
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let s = Arc::clone(&s);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        *s.write("hot").entry("hot".into()).or_default() += 1;
                        let _ = s.read("hot").get("hot").copied();
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        assert_eq!(s.read("hot")["hot"], 4000);
    }

    #[test]
    fn a_panic_under_the_lock_does_not_poison_later_use() {
        let s = Arc::new(Sharded::<str, Mutex<u32>>::default());
        let s2 = Arc::clone(&s);
        let r = std::thread::spawn(move || {
            let mut g = s2.lock("k");
            *g += 1;
            panic!("while holding the shard");
        })
        .join();
        assert!(r.is_err());
        assert_eq!(*s.lock("k"), 1);
        assert_eq!(s.lock_each().map(|n| *n).sum::<u32>(), 1);
    }

    proptest! {
        /// Sharded counting agrees with one plain map, and every key sits
        /// only in the shard its index names.
        #[test]
        fn agrees_with_one_map(keys in proptest::collection::vec(0u64..200, 0..400)) {
            let s = Counts::default();
            let mut plain: HashMap<u64, u64> = HashMap::new();
            for k in &keys {
                *s.lock(k).entry(*k).or_default() += 1;
                *plain.entry(*k).or_default() += 1;
            }
            for (i, shard) in s.lock_each().enumerate() {
                for (k, n) in shard.iter() {
                    prop_assert_eq!(s.index(k), i);
                    prop_assert_eq!(plain.get(k), Some(n));
                }
            }
            let total: usize = s.lock_each().map(|m| m.len()).sum();
            prop_assert_eq!(total, plain.len());
        }
    }
}
