//! The few facts shared by all cores: which cores have subscribers of a
//! channel and which cores hold connections of a user — read by every
//! publish without taking a lock.
//!
//! Owns: the interned [`Entry`] of each name (its core mask), the sharded
//! map that interns them, and [`Cached`], what a core remembers of a name
//! and when that stops holding. Must not touch: connections, frames, a
//! core's local index (it is only told a core's first and last member of
//! a name; the core keeps its `Cached` answers there, in its own map).
//!
//! # Design: interned entries, cached per core
//!
//! Each name with members somewhere is one `Arc<Entry { mask: AtomicU64,
//! retired: AtomicBool }>` in a 16-shard map (`Sharded`, an `RwLock` per
//! shard). A core's first member of a name sets its bit ([`Names::join`])
//! and its last member clears it ([`Names::leave`]) — both under the
//! shard's write lock, always on the map's *current* entry; the leave that
//! empties a mask marks that entry retired and removes it, so a later join
//! interns a new one. Those are rare events (once per core per name, not
//! per message).
//!
//! A publishing core looks the name up in its own index (a plain hash
//! map, no lock: [`super::local`]), where it finds the entry it joined or
//! a [`Cached`] answer, then reads the entry's mask with one `Acquire`
//! load. A retired entry is looked up again in the shared map (a read
//! lock, once); a name that was absent is cached as absent together with
//! its shard's *epoch*, a counter bumped under the write lock whenever a
//! name is added to that shard, and stays absent while the epoch is
//! unchanged. So a publish touches no lock word and writes no shared
//! memory: the entry's cache line is only read, and stays shared by all
//! the cores that publish to it. A core's cached answers are bounded
//! ([`CACHE_CAP`]): retired and stale ones go first, then half of the rest.
//!
//! Why this keeps "a publish after a subscription was acked reaches the
//! subscriber": the subscriber's core sets its bit (or interns the entry,
//! bumping the epoch) before it sends the ack. Anything that happens after
//! the ack — a publish on any core, or through the control plane — reads
//! either the same entry (and sees the bit: the `fetch_or` happened
//! before), or a retired one (the retire happened before the new entry was
//! interned, under the same lock, so the flag is seen and the name looked
//! up again), or an absent mark whose epoch has moved on (looked up
//! again). No path returns the old mask. An answer found stale again right
//! after its look-up can only be about a name that changed meanwhile (an
//! acked member keeps its entry current), so a publisher then takes it as
//! "no other core" rather than looping. The control plane
//! (`HubHandle`) reads the map itself, under the shard's read lock: it is
//! not a core and not on the per-message path. The one way an acked
//! subscriber still misses a publish is a full inbox at its core, where
//! the delivery is dropped and counted (see [`crate::inbox`]).
//!
//! Rejected alternatives: a
//! per-core snapshot updated by messages would need every core to
//! acknowledge an update before the subscriber's ack (a round trip across
//! all cores per first subscription); `arc-swap` RCU of the whole map
//! copies the map on every first/last change (quadratic for many
//! channels), or per entry is what this is, without the extra crate.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rustc_hash::FxHashMap;

use crate::sharded::{Sharded, SHARDS};

/// Cores as a bit mask (bit i = core i); at most 64 cores.
pub type CoreMask = u64;

/// Most cores a server may run (one bit each in a [`CoreMask`]).
pub const MAX_CORES: usize = 64;

/// Most names a core caches without members of its own (≈ 100 B each
/// with the name): a core publishing to more distinct channels than this
/// looks some up again (one read lock each), and never holds more than
/// ≈ 1 MiB for them.
pub const CACHE_CAP: usize = 8_192;

/// The interned, shared state of one name.
#[derive(Debug, Default)]
pub struct Entry {
    /// Cores with at least one member of the name.
    mask: AtomicU64,
    /// Set (under the shard lock) when the mask became empty and the entry
    /// left the map: holders must look the name up again.
    retired: AtomicBool,
}

impl Entry {
    /// The cores with members now.
    #[inline]
    pub fn mask(&self) -> CoreMask {
        self.mask.load(Ordering::Acquire)
    }

    /// True once this entry no longer stands for its name.
    #[inline]
    pub fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }
}

/// A shard's epoch, on its own cache line (bumped only when a name is
/// added to the shard; read by publishers holding an "absent" mark).
#[derive(Default)]
#[repr(align(128))]
struct Epoch(AtomicU64);

/// What the shared map says about a name right now.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Interned, with this name (the map's key) and entry.
    Present(Arc<str>, Arc<Entry>),
    /// Not there; stays so while shard `shard`'s epoch is `epoch`.
    Absent { shard: usize, epoch: u64 },
}

/// Which of the registry's maps a name is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Channel,
    User,
}

/// Told (clustered) whenever a name's local membership changes on any
/// core: a member added or removed. Called on the core, so it must be
/// quick and never block (the cluster records the name and wakes its
/// task). Not on the per-message path.
pub trait Watch: Send + Sync {
    /// `name`'s members changed on some core.
    fn touched(&self, kind: Kind, name: &Arc<str>);
}

/// One shard's names.
type Shard = FxHashMap<Arc<str>, Arc<Entry>>;

/// Name → interned entry, for channels or for users.
#[derive(Default)]
pub struct Names {
    shards: Sharded<Arc<str>, RwLock<Shard>>,
    epochs: [Epoch; SHARDS],
    /// Names with a non-empty mask.
    len: AtomicU64,
    /// Clustered: who is told of membership changes, set once at start.
    watch: std::sync::OnceLock<(Kind, Arc<dyn Watch>)>,
}

impl Names {
    /// Core `core` has its first member of `name`: sets its bit on the
    /// current entry (interning one if there is none) and returns that
    /// entry. Its bit stays set, so the entry stays current, until the
    /// matching [`Names::leave`].
    pub fn join(&self, name: &Arc<str>, core: usize) -> Arc<Entry> {
        debug_assert!(core < MAX_CORES);
        let mut map = self.shards.write(&**name);
        let entry = match map.get(&**name) {
            Some(e) => e.clone(),
            None => {
                let e = Arc::new(Entry::default());
                map.insert(name.clone(), e.clone());
                self.len.fetch_add(1, Ordering::Relaxed);
                // Release: a holder of an "absent" mark that sees the new
                // epoch also sees the entry in the map.
                self.epochs[self.shards.index(&**name)]
                    .0
                    .fetch_add(1, Ordering::Release);
                e
            }
        };
        entry.mask.fetch_or(1 << core, Ordering::Release);
        entry
    }

    /// Core `core` lost its last member of `name`: clears its bit; the
    /// entry is retired and dropped from the map if no core is left.
    pub fn leave(&self, name: &str, core: usize) {
        let mut map = self.shards.write(name);
        let Some(entry) = map.get(name) else {
            return;
        };
        let left = entry.mask.fetch_and(!(1 << core), Ordering::Release) & !(1 << core);
        if left == 0 {
            entry.retired.store(true, Ordering::Release);
            map.remove(name);
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Has `watch` told of every membership change of these names as
    /// `kind` from now on (once, before the cores start; later calls are
    /// ignored).
    pub fn set_watch(&self, kind: Kind, watch: Arc<dyn Watch>) {
        let _ = self.watch.set((kind, watch));
    }

    /// A core added or removed a member of `name` (tells the watcher, if
    /// any).
    #[inline]
    pub fn touched(&self, name: &Arc<str>) {
        if let Some((kind, w)) = self.watch.get() {
            w.touched(*kind, name);
        }
    }

    /// Every name with members now (one read lock per shard): for the
    /// cluster's resynchronisation after a broker reconnect.
    pub fn names(&self) -> Vec<Arc<str>> {
        self.shards
            .read_each()
            .flat_map(|shard| shard.keys().cloned().collect::<Vec<_>>())
            .collect()
    }

    /// The name's entry now (one read lock), or an "absent" mark.
    pub fn lookup(&self, name: &str) -> Lookup {
        let map = self.shards.read(name);
        match map.get_key_value(name) {
            Some((n, e)) => Lookup::Present(n.clone(), e.clone()),
            None => {
                let shard = self.shards.index(name);
                // Read under the lock: no join can add the name meanwhile.
                let epoch = self.epochs[shard].0.load(Ordering::Acquire);
                Lookup::Absent { shard, epoch }
            }
        }
    }

    /// The cores with members of `name` now, and the interned name (one
    /// read lock: for the control plane, not the per-message path).
    pub fn mask(&self, name: &str) -> Option<(Arc<str>, CoreMask)> {
        let map = self.shards.read(name);
        let (n, e) = map.get_key_value(name)?;
        Some((n.clone(), e.mask()))
    }

    /// True while an "absent" mark taken at `epoch` still holds.
    #[inline]
    fn still_absent(&self, shard: usize, epoch: u64) -> bool {
        self.epochs[shard].0.load(Ordering::Acquire) == epoch
    }

    /// Names with a member anywhere.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// True if no name has a member.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The shared hub registry: channels and users.
#[derive(Default)]
pub struct Registry {
    pub channels: Names,
    pub users: Names,
}

impl Registry {
    /// Channels with at least one subscriber anywhere.
    pub fn channel_count(&self) -> u64 {
        self.channels.len()
    }

    /// Users with at least one connection anywhere.
    pub fn users_online(&self) -> u64 {
        self.users.len()
    }
}

/// A cached answer that no longer holds (or none was cached).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale;

/// What a core remembers of a name it looked up (or joined).
#[derive(Debug, Clone)]
pub enum Cached {
    /// The entry, good while it is not retired (always, while this core's
    /// own bit is set in it).
    Present(Arc<Entry>),
    /// No core had it; good while shard `shard`'s epoch is `epoch`.
    Absent { shard: usize, epoch: u64 },
}

impl Cached {
    /// What the shared map says now (one read lock).
    pub fn look_up(names: &Names, name: &str) -> Cached {
        match names.lookup(name) {
            Lookup::Present(_, e) => Cached::Present(e),
            Lookup::Absent { shard, epoch } => Cached::Absent { shard, epoch },
        }
    }

    /// The cores with members, if this answer still holds: atomic loads,
    /// no lock. `Err(Stale)`: look the name up again.
    #[inline]
    pub fn mask(&self, names: &Names) -> Result<CoreMask, Stale> {
        match self {
            Cached::Present(e) if !e.is_retired() => Ok(e.mask()),
            Cached::Absent { shard, epoch } if names.still_absent(*shard, *epoch) => Ok(0),
            _ => Err(Stale),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn name(s: &str) -> Arc<str> {
        s.into()
    }

    #[test]
    fn masks_follow_first_and_last() {
        let r = Registry::default();
        let news = name("news");
        let e = r.channels.join(&news, 0);
        assert!(Arc::ptr_eq(&e, &r.channels.join(&news, 3)), "one entry");
        assert_eq!(e.mask(), 0b1001);
        assert_eq!(r.channel_count(), 1);
        r.channels.leave("news", 0);
        assert_eq!(r.channels.mask("news").unwrap().1, 0b1000);
        assert!(!e.is_retired());
        r.channels.leave("news", 3);
        assert!(e.is_retired(), "empty: retired and gone");
        assert!(r.channels.mask("news").is_none());
        assert_eq!(r.channel_count(), 0);
        let again = r.channels.join(&news, 1);
        assert!(!Arc::ptr_eq(&e, &again), "a new entry after a retire");
        r.users.join(&name("alice"), 1);
        assert_eq!(r.users_online(), 1);
        assert_eq!(r.users.mask("alice").unwrap().1, 0b10);
        assert!(r.users.mask("bob").is_none());
        r.channels.leave("never", 0);
        assert_eq!(r.channel_count(), 1);
    }

    #[test]
    fn a_cached_answer_goes_stale_on_a_retire_or_a_new_name_in_its_shard() {
        let names = Names::default();
        let absent = Cached::look_up(&names, "news");
        assert_eq!(absent.mask(&names), Ok(0));
        let news = name("news");
        names.join(&news, 2);
        assert_eq!(absent.mask(&names), Err(Stale), "the shard's epoch moved");
        let present = Cached::look_up(&names, "news");
        assert_eq!(present.mask(&names), Ok(0b100));
        names.join(&news, 0);
        assert_eq!(present.mask(&names), Ok(0b101), "the same entry");
        names.leave("news", 0);
        names.leave("news", 2);
        assert_eq!(present.mask(&names), Err(Stale), "retired");
        assert_eq!(Cached::look_up(&names, "news").mask(&names), Ok(0));
        names.join(&news, 1);
        assert_eq!(Cached::look_up(&names, "news").mask(&names), Ok(0b10));
    }

    /// Cores join and leave a few channels over and over (retiring and
    /// re-interning entries, moving epochs), each telling "acked" after
    /// its join; publishers with their own caches must see every acked
    /// subscriber until it leaves. Bounded: a fixed number of rounds.
    #[test]
    fn a_publish_after_an_ack_sees_the_subscriber_under_churn() {
        const SUBSCRIBERS: usize = 3;
        const PUBLISHERS: usize = 2;
        const ROUNDS: usize = 1_000;
        const CHANNELS: [&str; 3] = ["a", "b", "c"];
        let names = Arc::new(Names::default());
        // acked[s] = round << 2 | channel + 1 while subscriber s is joined
        // and acked; 0 while it is not.
        let acked: Arc<Vec<AtomicU64>> =
            Arc::new((0..SUBSCRIBERS).map(|_| AtomicU64::new(0)).collect());
        let checks = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicBool::new(false));
        std::thread::scope(|scope| {
            let mut subscribers = Vec::new();
            for s in 0..SUBSCRIBERS {
                let (names, acked) = (names.clone(), acked.clone());
                subscribers.push(scope.spawn(move || {
                    let core = s + PUBLISHERS;
                    for round in 0..ROUNDS {
                        let ch = (round + s) % CHANNELS.len();
                        let n: Arc<str> = CHANNELS[ch].into();
                        names.join(&n, core);
                        // The ack: after the join, published with Release.
                        acked[s].store(((round as u64) << 2) | (ch as u64 + 1), Ordering::Release);
                        std::thread::yield_now();
                        // Unacked before the leave.
                        acked[s].store(0, Ordering::Release);
                        names.leave(&n, core);
                    }
                }));
            }
            for p in 0..PUBLISHERS {
                let (names, acked, checks, done) =
                    (names.clone(), acked.clone(), checks.clone(), done.clone());
                scope.spawn(move || {
                    // This publisher's own answers, as a core keeps them.
                    let mut cache: FxHashMap<&str, Cached> = FxHashMap::default();
                    while !done.load(Ordering::Acquire) {
                        for (s, a) in acked.iter().enumerate() {
                            let seen = a.load(Ordering::Acquire);
                            if seen == 0 {
                                continue;
                            }
                            let ch = ((seen & 3) - 1) as usize;
                            let name = CHANNELS[ch];
                            let cached = cache
                                .entry(name)
                                .or_insert_with(|| Cached::look_up(&names, name));
                            // Stale again at once only if the name changed
                            // meanwhile; an acked member keeps its entry
                            // current, so 0 is right then.
                            let mask = cached.mask(&names).unwrap_or_else(|Stale| {
                                *cached = Cached::look_up(&names, name);
                                cached.mask(&names).unwrap_or(0)
                            });
                            // The subscriber may have left since (then its
                            // ack was withdrawn first): only an ack still
                            // standing after the read must be in the mask.
                            let bit = 1 << (s + PUBLISHERS);
                            if mask & bit == 0 {
                                assert_ne!(
                                    a.load(Ordering::Acquire),
                                    seen,
                                    "publisher {p} missed acked subscriber {s} on {}",
                                    CHANNELS[ch]
                                );
                            }
                            checks.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
            // Stop the publishers once the subscribers are done.
            for s in subscribers {
                s.join().expect("subscriber");
            }
            done.store(true, Ordering::Release);
        });
        assert_eq!(names.len(), 0, "every entry retired");
        assert!(checks.load(Ordering::Relaxed) > 0);
    }
}
