//! Memory of used token ids, shared by all cores, so a token works once.
//!
//! Owns: the set of `jti`s seen and not yet expired. Bounded: entries
//! leave as soon as their token expires (checked on every insert into
//! their shard, oldest first — no cleanup task), and a hard cap refuses new
//! tokens rather than growing without bound. Must not touch: signatures.

use std::collections::{BTreeSet, HashSet};
use std::sync::Mutex;

use crate::sharded::{Sharded, SHARDS};

#[derive(Default)]
struct Shard {
    ids: HashSet<Box<str>>,
    by_expiry: BTreeSet<(u64, Box<str>)>,
}

/// Outcome of presenting a token id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// First use: recorded.
    First,
    /// Seen before: a replay.
    Replayed,
    /// The memory is full of unexpired ids.
    Full,
}

/// The used-token memory.
pub struct UsedTokens {
    shards: Sharded<str, Mutex<Shard>>,
    cap_per_shard: usize,
}

impl UsedTokens {
    /// Remembers at most `capacity` unexpired ids.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: Sharded::default(),
            cap_per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Records `jti` (valid until `exp`) at time `now` (Unix seconds).
    pub fn use_once(&self, jti: &str, exp: u64, now: u64) -> Use {
        let mut s = self.shards.lock(jti);
        while let Some((e, _)) = s.by_expiry.first() {
            if *e > now {
                break;
            }
            let (_, id) = s.by_expiry.pop_first().expect("first exists");
            s.ids.remove(&id);
        }
        if s.ids.contains(jti) {
            return Use::Replayed;
        }
        if s.ids.len() >= self.cap_per_shard {
            return Use::Full;
        }
        s.ids.insert(jti.into());
        s.by_expiry.insert((exp, jti.into()));
        Use::First
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.shards.lock_each().map(|s| s.ids.len()).sum()
    }

    /// True if none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_then_replayed_then_forgotten_after_expiry() {
        let u = UsedTokens::new(1000);
        assert_eq!(u.use_once("a", 100, 10), Use::First);
        assert_eq!(u.use_once("a", 100, 11), Use::Replayed);
        assert_eq!(u.len(), 1);
        // After expiry the id is forgotten (a replay then fails on `exp`).
        assert_eq!(u.use_once("b", 300, 100), Use::First);
        assert_eq!(u.use_once("a", 100, 101), Use::First);
    }

    #[test]
    fn bounded() {
        let u = UsedTokens::new(16);
        let mut full = 0;
        for i in 0..100 {
            if u.use_once(&i.to_string(), 1000, 0) == Use::Full {
                full += 1;
            }
        }
        assert!(u.len() <= 16 + SHARDS);
        assert!(full > 0);
    }
}
