//! A hierarchical timing wheel: O(1) insert and cancel, expiry by elapsed
//! ticks, no per-entry timers and no scan of all entries.
//!
//! Owns: deadlines as `(tick, value)` pairs. Must not touch: sockets,
//! connections or the clock — time is a `u64` tick passed in (the core uses
//! milliseconds since it started). No `unsafe`, as in the whole crate.
//!
//! # Design
//!
//! After the tokio timer wheel (written anew, not copied): 6 levels of 64
//! slots. A slot of level `L` is `64^L` ticks wide, so level 0 holds the
//! next 64 ticks one per slot and the wheel as a whole spans `2^36` ticks
//! (≈ 2.2 years of milliseconds).
//!
//! - **Placement.** An entry goes to the level of the highest bit in which
//!   its deadline differs from `elapsed`: `((elapsed ^ when) | 63)`'s top
//!   bit, divided by 6 (the `| 63` makes level 0 the minimum). Its slot is
//!   the deadline's 6-bit digit at that level. Below the top level, an
//!   occupied slot is therefore always *after* the slot `elapsed` is in.
//! - **Clamping.** A deadline more than `2^36 - 1` ticks ahead is placed as
//!   if it were exactly that far ahead; its real `when` is kept. Such an
//!   entry (and any entry placed in the top level's next turn) makes the
//!   top level a ring: a top-level slot at or before `elapsed`'s belongs to
//!   the next turn. When its slot comes round the entry is placed again
//!   from its real `when`: re-clamped or moved down, never fired early and
//!   never lost.
//! - **Cascading.** [`TimingWheel::poll`] finds the first occupied slot (a
//!   lower level always comes before a higher one), and once `now` reaches
//!   that slot's start it sets `elapsed` to it and re-places every entry
//!   in the slot: those now due go to the due list, the rest to lower
//!   levels. `elapsed` never passes the start of an occupied slot without
//!   emptying it, which keeps the placement invariant true.
//! - **Finding the next slot.** Each level keeps a `u64` occupancy bitmap;
//!   the first occupied slot after `elapsed`'s is a rotate and a
//!   `trailing_zeros`, so [`TimingWheel::next_deadline`] costs at most six
//!   of those.
//! - **Storage.** Entries live in one `Slab`; each slot (and the due list)
//!   is an intrusive doubly linked list through `u32` slab indices with a
//!   `NIL` sentinel, so insert and cancel are O(1), cancel needs no search,
//!   and nothing is allocated per insert once the slab has grown.
//! - **Keys.** A [`TimerKey`] is the slab index and a generation taken
//!   from a wheel-wide counter. A stale key (entry fired or cancelled, slab
//!   slot maybe reused) finds a different generation and does nothing. The
//!   counter is a `u32` that skips 0 on wrap; a stale key could alias only
//!   an entry inserted into the same slab slot exactly a multiple of
//!   `2^32 - 1` inserts later.
//!
//! # Memory
//!
//! An entry is `when: u64`, the value, the generation (`NonZeroU32`), two
//! `u32` links and two `u8`s for its list: **24 bytes plus `T`**, rounded
//! up to the alignment (32 bytes for the core's `(u32, u32)` value, 24 for
//! `()`). The generation's zero niche holds the slab's vacant/occupied tag,
//! so a slab slot is no bigger than the entry (checked by a test, on
//! 64-bit targets). The wheel itself is a fixed ~1.6 KiB of list heads.

use std::fmt;
use std::num::NonZeroU32;

use slab::Slab;

/// Levels in the wheel.
const LEVELS: usize = 6;
/// Bits of the deadline each level resolves (`log2(SLOTS)`).
const SLOT_BITS: u32 = 6;
/// Slots per level.
const SLOTS: usize = 1 << SLOT_BITS;
/// Mask of a slot number within a level.
const SLOT_MASK: u64 = SLOTS as u64 - 1;
/// Farthest ahead of `elapsed` an entry is placed (one top-level turn, minus
/// one tick); later deadlines are clamped to this and placed again later.
const MAX_AHEAD: u64 = (1 << (SLOT_BITS as u64 * LEVELS as u64)) - 1;
/// End-of-list sentinel; never a valid slab index (checked on insert).
const NIL: u32 = u32::MAX;
/// Pseudo-level of the list of due entries.
const DUE: u8 = LEVELS as u8;

/// Handle to a scheduled entry, for [`TimingWheel::cancel`]. Stale handles
/// are harmless: they cancel nothing. `Option<TimerKey>` is 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    gen: NonZeroU32,
}

/// One scheduled value and its place in a list.
struct Entry<T> {
    /// The real deadline (never the clamped one).
    when: u64,
    value: T,
    /// Matches the [`TimerKey`] handed out for this entry.
    gen: NonZeroU32,
    prev: u32,
    next: u32,
    /// `0..LEVELS`, or [`DUE`].
    level: u8,
    /// Slot within `level`; 0 on the due list.
    slot: u8,
}

/// Deadlines of one core; see the module docs for the design.
///
/// Call order for a driver: [`insert`](Self::insert) and
/// [`cancel`](Self::cancel) at any time; sleep at most until
/// [`next_deadline`](Self::next_deadline); then call
/// [`poll`](Self::poll) with the current tick until it returns `None`.
pub struct TimingWheel<T> {
    entries: Slab<Entry<T>>,
    /// First entry of each slot's list, or `NIL`.
    heads: [[u32; SLOTS]; LEVELS],
    /// Bit `s` of `occupied[l]` is set iff `heads[l][s] != NIL`.
    occupied: [u64; LEVELS],
    /// First entry of the due list (`when <= elapsed`), or `NIL`.
    due: u32,
    elapsed: u64,
    /// Generation for the next insert.
    next_gen: NonZeroU32,
}

impl<T> Default for TimingWheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for TimingWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimingWheel")
            .field("len", &self.len())
            .field("elapsed", &self.elapsed)
            .field("next_deadline", &self.next_deadline())
            .field("occupied", &self.occupied)
            .finish_non_exhaustive()
    }
}

/// Width in ticks of one slot of `level`.
fn slot_range(level: usize) -> u64 {
    1 << (SLOT_BITS as usize * level)
}

/// Level for a deadline `when` seen from `elapsed`: the level of the
/// highest bit in which they differ, at least 0, at most the top level.
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | SLOT_MASK;
    let significant = (u64::BITS - 1 - masked.leading_zeros()) as usize;
    (significant / SLOT_BITS as usize).min(LEVELS - 1)
}

/// Slot of `when` within `level`: its 6-bit digit at that level.
fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (SLOT_BITS as usize * level)) & SLOT_MASK) as usize
}

impl<T> TimingWheel<T> {
    /// An empty wheel at tick 0.
    pub fn new() -> Self {
        Self {
            entries: Slab::new(),
            heads: [[NIL; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            due: NIL,
            elapsed: 0,
            next_gen: NonZeroU32::MIN,
        }
    }

    /// Entries held, due ones not yet polled included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tick the wheel has advanced to. Never decreases.
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Schedules `value` for tick `when` and returns its key. A `when` at
    /// or before [`elapsed`](Self::elapsed) is due: the next
    /// [`poll`](Self::poll) returns it, whatever its `now`. A `when` after
    /// `elapsed` is returned by the first `poll` whose `now` reaches it —
    /// including a later call of a drain already under way.
    ///
    /// Any `when` is accepted; one beyond the wheel's `2^36`-tick range is
    /// held and re-placed until it is in range. O(1), no allocation unless
    /// the slab grows.
    ///
    /// # Panics
    ///
    /// If `2^32 - 1` entries are already held (slab indices are `u32`).
    pub fn insert(&mut self, when: u64, value: T) -> TimerKey {
        let gen = self.next_gen;
        // Skip 0 on wrap: the generation is a `NonZeroU32`.
        self.next_gen = NonZeroU32::new(gen.get().wrapping_add(1)).unwrap_or(NonZeroU32::MIN);
        let vacant = self.entries.vacant_entry();
        let index = u32::try_from(vacant.key())
            .ok()
            .filter(|&i| i != NIL)
            .expect("invariant: fewer than 2^32 - 1 timers, so slab keys fit a u32 below NIL");
        vacant.insert(Entry {
            when,
            value,
            gen,
            prev: NIL,
            next: NIL,
            level: DUE,
            slot: 0,
        });
        self.place(index);
        TimerKey { index, gen }
    }

    /// Removes the entry `key` refers to and returns its value; `None` if
    /// it has already been returned by [`poll`](Self::poll) or cancelled,
    /// even if its slab slot now holds another entry (which is left
    /// alone). O(1).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        match self.entries.get(key.index as usize) {
            Some(e) if e.gen == key.gen => {}
            _ => return None,
        }
        self.unlink(key.index);
        Some(self.entries.remove(key.index as usize).value)
    }

    /// The deadline of the entry `key` refers to; `None` if it has been
    /// returned by [`poll`](Self::poll) or cancelled. O(1). (So a holder of
    /// a key need not keep its own copy of the tick.)
    pub fn when(&self, key: TimerKey) -> Option<u64> {
        match self.entries.get(key.index as usize) {
            Some(e) if e.gen == key.gen => Some(e.when),
            _ => None,
        }
    }

    /// The earliest tick at which [`poll`](Self::poll) can return an entry,
    /// or `None` if the wheel is empty: `Some(elapsed)` while due entries
    /// wait, else the start of the first occupied slot.
    ///
    /// That start is never later than any held deadline but can be earlier
    /// than the deadline of every entry in the slot (for a slot above level
    /// 0, or one holding a clamped entry): a `poll` at that tick then only
    /// moves entries down and returns `None`, and the next call here gives
    /// a later tick. So it is a correct sleep bound — waking early costs a
    /// spare wake-up, never a late timer — but not always the exact
    /// deadline. O(levels).
    pub fn next_deadline(&self) -> Option<u64> {
        if self.due != NIL {
            return Some(self.elapsed);
        }
        self.next_slot().map(|(_, _, start)| start)
    }

    /// Returns one entry whose deadline is at or before `now`, as
    /// `(when, value)`, advancing [`elapsed`](Self::elapsed) and moving
    /// entries down the levels as far as needed; `None` when nothing is
    /// due at `now`, and then `elapsed() == max(elapsed, now)`.
    ///
    /// Call until it returns `None`: that drain returns exactly the entries
    /// with `when <= now` — every entry comes out of the first drain whose
    /// `now` reaches its deadline, never earlier and never later. Entries
    /// due at the same time come out in no particular order. A `now`
    /// before `elapsed` counts as `elapsed`. O(1) per call amortised: an
    /// entry is moved at most once per level (plus once per `2^36 - 2^30`
    /// ticks while clamped).
    pub fn poll(&mut self, now: u64) -> Option<(u64, T)> {
        loop {
            if self.due != NIL {
                let index = self.due;
                self.unlink(index);
                let e = self.entries.remove(index as usize);
                return Some((e.when, e.value));
            }
            match self.next_slot() {
                Some((level, slot, start)) if start <= now => {
                    debug_assert!(start > self.elapsed, "occupied slots lie ahead");
                    self.elapsed = start;
                    self.cascade(level, slot);
                }
                _ => {
                    self.elapsed = self.elapsed.max(now);
                    return None;
                }
            }
        }
    }

    /// Empties a slot whose start `elapsed` has reached: due entries go to
    /// the due list, the rest to lower levels (or, clamped, the top
    /// level's next turn — never back into this slot).
    fn cascade(&mut self, level: usize, slot: usize) {
        let mut index = self.heads[level][slot];
        self.heads[level][slot] = NIL;
        self.occupied[level] &= !(1 << slot);
        while index != NIL {
            let next = self.entries[index as usize].next;
            self.place(index);
            index = next;
        }
    }

    /// Links an unlinked entry into the list its deadline calls for, as
    /// seen from `elapsed`.
    fn place(&mut self, index: u32) {
        let when = self.entries[index as usize].when;
        if when <= self.elapsed {
            self.link(index, DUE, 0);
            return;
        }
        let at = when.min(self.elapsed.saturating_add(MAX_AHEAD));
        let level = level_for(self.elapsed, at);
        // Both fit a u8: level < LEVELS, slot < SLOTS.
        self.link(index, level as u8, slot_for(at, level) as u8);
    }

    /// Pushes an unlinked entry onto the front of list (`level`, `slot`).
    fn link(&mut self, index: u32, level: u8, slot: u8) {
        let head = if level == DUE {
            &mut self.due
        } else {
            self.occupied[level as usize] |= 1 << slot;
            &mut self.heads[level as usize][slot as usize]
        };
        let next = std::mem::replace(head, index);
        if next != NIL {
            self.entries[next as usize].prev = index;
        }
        let e = &mut self.entries[index as usize];
        e.level = level;
        e.slot = slot;
        e.prev = NIL;
        e.next = next;
    }

    /// Unlinks an entry from its list; it stays in the slab.
    fn unlink(&mut self, index: u32) {
        let e = &self.entries[index as usize];
        let (prev, next, level, slot) = (e.prev, e.next, e.level, e.slot);
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else if level == DUE {
            self.due = next;
        } else {
            self.heads[level as usize][slot as usize] = next;
            if next == NIL {
                self.occupied[level as usize] &= !(1 << slot);
            }
        }
    }

    /// The first occupied slot as `(level, slot, start tick)`.
    ///
    /// Below the top level occupied slots lie after `elapsed`'s slot and
    /// within its level window, so the lowest occupied level holds the
    /// earliest. The top level is a ring: the search starts after
    /// `elapsed`'s slot and a slot at or before it is in the next turn.
    fn next_slot(&self) -> Option<(usize, usize, u64)> {
        let level = (0..LEVELS).find(|&l| self.occupied[l] != 0)?;
        let width = slot_range(level);
        let current = (self.elapsed >> (SLOT_BITS as usize * level)) & SLOT_MASK;
        let after = ((current + 1) & SLOT_MASK) as u32;
        // Slots ahead of `current`, 1..=64 (64: `current` itself, next turn).
        let ahead = u64::from(self.occupied[level].rotate_right(after).trailing_zeros()) + 1;
        debug_assert!(level == LEVELS - 1 || current + ahead < SLOTS as u64);
        let slot = ((current + ahead) & SLOT_MASK) as usize;
        // No overflow: this is the start of a slot that holds a deadline.
        let start = (self.elapsed & !(width - 1)) + ahead * width;
        Some((level, slot, start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Polls until `None`; the fired entries, sorted.
    fn drain(w: &mut TimingWheel<u32>, now: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        while let Some(e) = w.poll(now) {
            out.push(e);
        }
        assert!(w.elapsed() >= now);
        out.sort_unstable();
        out
    }

    /// The level by definition: the lowest level whose window (all the
    /// bits above it) `elapsed` and `when` share, capped at the top level.
    fn reference_level(elapsed: u64, when: u64) -> usize {
        (0..LEVELS)
            .find(|&l| {
                let shift = SLOT_BITS as usize * (l + 1);
                shift >= 64 || elapsed >> shift == when >> shift
            })
            .unwrap_or(LEVELS - 1)
    }

    /// Checks the links and bitmaps agree with each other and with `len`.
    fn assert_consistent(w: &TimingWheel<u32>) {
        let mut seen = 0;
        let mut walk = |head: u32, level: u8, slot: u8| {
            let (mut prev, mut i) = (NIL, head);
            while i != NIL {
                let e = &w.entries[i as usize];
                assert_eq!((e.prev, e.level, e.slot), (prev, level, slot));
                if level == DUE {
                    assert!(e.when <= w.elapsed);
                } else {
                    assert!(e.when > w.elapsed);
                }
                seen += 1;
                (prev, i) = (i, e.next);
            }
        };
        walk(w.due, DUE, 0);
        for level in 0..LEVELS {
            for slot in 0..SLOTS {
                let head = w.heads[level][slot];
                assert_eq!(head != NIL, w.occupied[level] & (1 << slot) != 0);
                walk(head, level as u8, slot as u8);
            }
        }
        assert_eq!(seen, w.len());
    }

    #[test]
    fn level_table_at_boundaries() {
        let cases = [
            (0, 0, 0),
            (0, 1, 0),
            (0, 63, 0),
            (0, 64, 1),
            (0, 4095, 1),
            (0, 4096, 2),
            (0, (1 << 18) - 1, 2),
            (0, 1 << 18, 3),
            (0, (1 << 24) - 1, 3),
            (0, 1 << 24, 4),
            (0, (1 << 30) - 1, 4),
            (0, 1 << 30, 5),
            (0, (1 << 36) - 1, 5),
            (0, 1 << 36, 5),
            (0, 1 << 40, 5),
            (0, u64::MAX, 5),
            (63, 64, 1),
            (64, 127, 0),
            (127, 128, 1),
            (4095, 4096, 2),
            (4096, 8191, 1),
            (4096, 4159, 0),
            ((1 << 30) - 1, 1 << 30, 5),
            ((1 << 36) - 1, 1 << 36, 5),
            (u64::MAX - 1, u64::MAX, 0),
        ];
        for (elapsed, when, level) in cases {
            assert_eq!(
                level_for(elapsed, when),
                level,
                "elapsed {elapsed} when {when}"
            );
            assert_eq!(
                reference_level(elapsed, when),
                level,
                "reference, {elapsed} {when}"
            );
        }
    }

    #[test]
    fn level_for_agrees_with_reference_at_every_bit() {
        let bases = [
            0,
            1,
            63,
            64,
            4095,
            4096,
            (1 << 30) - 1,
            (1 << 36) - 1,
            1 << 36,
            0x0123_4567_89ab_cdef,
            u64::MAX - (1 << 40),
            u64::MAX,
        ];
        for elapsed in bases {
            for bit in 0..64 {
                let top = elapsed ^ (1 << bit);
                // Differs in `bit` only, and in `bit` and every bit below.
                for when in [top, top ^ ((1u64 << bit) - 1)] {
                    let want = (bit.max(5) / 6).min(LEVELS - 1);
                    assert_eq!(level_for(elapsed, when), want, "{elapsed:#x} {when:#x}");
                    assert_eq!(reference_level(elapsed, when), want);
                }
            }
        }
        for level in 0..LEVELS {
            assert_eq!(slot_range(level), 64u64.pow(level as u32));
        }
        assert_eq!(MAX_AHEAD, slot_range(LEVELS - 1) * SLOTS as u64 - 1);
    }

    #[test]
    fn fires_exactly_at_deadline_on_level_zero() {
        let mut w = TimingWheel::new();
        w.insert(5, 1);
        w.insert(5, 2);
        w.insert(7, 3);
        assert_eq!(w.next_deadline(), Some(5), "level 0 slots are exact");
        assert_eq!(drain(&mut w, 4), vec![]);
        assert_eq!(w.elapsed(), 4);
        assert_eq!(drain(&mut w, 5), vec![(5, 1), (5, 2)]);
        assert_eq!(w.next_deadline(), Some(7));
        assert_eq!(drain(&mut w, 6), vec![]);
        assert_eq!(drain(&mut w, 100), vec![(7, 3)]);
        assert!(w.is_empty());
        assert_eq!(w.elapsed(), 100);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn far_deadlines_cascade_and_fire_on_time() {
        let whens = [70u64, 4100, 300_000, 20_000_000, 1 << 31, (1 << 36) - 1];
        let mut w = TimingWheel::new();
        for (i, &when) in whens.iter().enumerate() {
            w.insert(when, i as u32);
        }
        for (i, &when) in whens.iter().enumerate() {
            assert!(w.next_deadline().unwrap() <= when);
            assert_eq!(drain(&mut w, when - 1), vec![], "not before {when}");
            assert_consistent(&w);
            assert_eq!(drain(&mut w, when), vec![(when, i as u32)]);
        }
        assert!(w.is_empty());
    }

    #[test]
    fn next_deadline_is_a_slot_start_never_after_the_entry() {
        let mut w = TimingWheel::new();
        w.insert(100, 1);
        // 100 is in level 1, slot 1: ticks 64..128.
        assert_eq!(w.next_deadline(), Some(64));
        assert_eq!(drain(&mut w, 64), vec![], "the slot start only cascades");
        assert_eq!(w.next_deadline(), Some(100));
        assert_eq!(drain(&mut w, 100), vec![(100, 1)]);
    }

    #[test]
    fn cancel_returns_the_value_once() {
        let mut w = TimingWheel::new();
        let a = w.insert(100, 1);
        let b = w.insert(100, 2);
        let c = w.insert(1 << 40, 3);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.cancel(c), Some(3));
        assert_eq!(w.len(), 1);
        assert_consistent(&w);
        assert_eq!(drain(&mut w, 100), vec![(100, 2)]);
        assert_eq!(w.cancel(b), None, "fired entries cannot be cancelled");
        assert_eq!(w.next_deadline(), None);
        assert_eq!(w.occupied, [0; LEVELS]);
    }

    #[test]
    fn stale_key_after_slot_reuse_cancels_nothing() {
        let mut w = TimingWheel::new();
        let a = w.insert(100, 1);
        assert_eq!(w.cancel(a), Some(1));
        let b = w.insert(200, 2);
        assert_eq!(a.index, b.index, "the slab slot is reused");
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.len(), 1);
        // Same after the reused slot's entry has fired and the slot is
        // reused again.
        assert_eq!(drain(&mut w, 200), vec![(200, 2)]);
        let c = w.insert(300, 3);
        assert_eq!(c.index, b.index);
        assert_eq!(w.cancel(b), None);
        assert_eq!(w.cancel(a), None);
        assert_eq!(w.cancel(c), Some(3));
        assert_eq!(
            w.cancel(TimerKey {
                index: 12345,
                gen: NonZeroU32::MIN
            }),
            None
        );
    }

    #[test]
    fn key_generation_skips_zero_on_wrap() {
        let mut w = TimingWheel::new();
        w.next_gen = NonZeroU32::MAX;
        let a = w.insert(10, 1);
        let b = w.insert(10, 2);
        assert_eq!((a.gen, b.gen), (NonZeroU32::MAX, NonZeroU32::MIN));
        assert_eq!(w.cancel(b), Some(2));
        assert_eq!(w.cancel(a), Some(1));
    }

    #[test]
    fn cancel_of_a_due_entry_before_poll() {
        let mut w = TimingWheel::new();
        drain(&mut w, 50);
        let a = w.insert(10, 1);
        let b = w.insert(50, 2);
        w.insert(40, 3);
        assert_eq!(w.cancel(b), Some(2));
        assert_eq!(w.cancel(a), Some(1));
        assert_consistent(&w);
        assert_eq!(drain(&mut w, 50), vec![(40, 3)]);
    }

    #[test]
    fn past_deadline_is_due_at_once() {
        let mut w = TimingWheel::new();
        drain(&mut w, 1000);
        w.insert(10, 1);
        w.insert(1000, 2);
        assert_eq!(w.next_deadline(), Some(1000));
        assert_eq!(drain(&mut w, 0), vec![(10, 1), (1000, 2)]);
    }

    #[test]
    fn now_before_elapsed_counts_as_elapsed() {
        let mut w = TimingWheel::new();
        w.insert(1001, 1);
        drain(&mut w, 1000);
        assert_eq!(drain(&mut w, 10), vec![]);
        assert_eq!(w.elapsed(), 1000, "elapsed never goes back");
        assert_eq!(drain(&mut w, 1001), vec![(1001, 1)]);
    }

    #[test]
    fn insert_during_a_drain_fires_in_that_drain() {
        let mut w = TimingWheel::new();
        w.insert(10, 1);
        w.insert(5000, 2);
        assert_eq!(w.poll(9000), Some((10, 1)));
        assert!(w.elapsed() < 8000, "the wheel advances lazily");
        // Between `elapsed` and `now`: due within this drain.
        w.insert(8000, 3);
        // Beyond `now`: not in this drain.
        w.insert(9001, 4);
        assert_eq!(drain(&mut w, 9000), vec![(5000, 2), (8000, 3)]);
        assert_eq!(drain(&mut w, 9001), vec![(9001, 4)]);
    }

    #[test]
    fn deadlines_beyond_the_range_are_clamped_not_lost_nor_early() {
        let mut w = TimingWheel::new();
        drain(&mut w, 777);
        let far = (1u64 << 36) * 3 + 12_345;
        w.insert(far, 9);
        let mut cascades = 0;
        while let Some(d) = w.next_deadline().filter(|&d| d < far) {
            assert_eq!(drain(&mut w, d), vec![], "not early at {d}");
            assert_consistent(&w);
            cascades += 1;
        }
        assert!(cascades > 3, "re-placed each turn, got {cascades}");
        assert_eq!(drain(&mut w, far - 1), vec![]);
        assert_eq!(drain(&mut w, far), vec![(far, 9)]);
    }

    #[test]
    fn u64_max_deadlines_do_not_overflow() {
        let mut w = TimingWheel::new();
        // Jump first: from 0, a clamped entry would be re-placed 2^28 times.
        drain(&mut w, u64::MAX - (1 << 40));
        w.insert(u64::MAX, 1);
        w.insert(u64::MAX - 1, 2);
        drain(&mut w, u64::MAX - (1 << 20));
        w.insert(u64::MAX - 3, 3);
        let mut fired = Vec::new();
        while let Some(d) = w.next_deadline() {
            fired.extend(drain(&mut w, d).into_iter().map(|(when, v)| {
                assert_eq!(when, d);
                v
            }));
        }
        assert_eq!(fired, vec![3, 2, 1]);
        assert_eq!(w.elapsed(), u64::MAX);
        w.insert(u64::MAX, 4);
        assert_eq!(drain(&mut w, u64::MAX), vec![(u64::MAX, 4)]);
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn entry_is_24_bytes_plus_value_and_slab_adds_none() {
        use std::mem::size_of;
        /// The shape of `slab` 0.4's private slot type.
        #[allow(dead_code)]
        enum SlabSlot<T> {
            Vacant(usize),
            Occupied(T),
        }
        assert_eq!(size_of::<Entry<()>>(), 24);
        assert_eq!(size_of::<Entry<(u32, u32)>>(), 32);
        assert_eq!(size_of::<SlabSlot<Entry<()>>>(), 24);
        assert_eq!(size_of::<SlabSlot<Entry<(u32, u32)>>>(), 32);
        assert_eq!(size_of::<Option<TimerKey>>(), 8);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        /// Cancel a live entry (index into the model, modulo its length).
        Cancel(usize),
        /// Cancel with a key whose entry fired or was cancelled.
        CancelStale(usize),
        Advance(u64),
    }

    fn ops(insert_far: u64, advance_far: u64) -> impl Strategy<Value = Vec<Op>> {
        let op = prop_oneof![
            8 => (0u64..=1 << 20).prop_map(Op::Insert),
            1 => (0u64..=insert_far).prop_map(Op::Insert),
            3 => any::<usize>().prop_map(Op::Cancel),
            1 => any::<usize>().prop_map(Op::CancelStale),
            5 => (0u64..=5000).prop_map(Op::Advance),
            1 => (0u64..=advance_far).prop_map(Op::Advance),
        ];
        proptest::collection::vec(op, 1..200)
    }

    /// Runs `ops` against the wheel and a plain list of live entries: the
    /// same entries fire in the same advance, none early, none late.
    fn check_against_model(ops: Vec<Op>) -> Result<(), TestCaseError> {
        let mut wheel = TimingWheel::new();
        let mut model: Vec<(u64, u32, TimerKey)> = Vec::new();
        let mut dead: Vec<TimerKey> = Vec::new();
        let mut now = 0u64;
        let mut next_id = 0u32;
        for op in ops {
            match op {
                Op::Insert(delay) => {
                    let when = now + delay;
                    let key = wheel.insert(when, next_id);
                    model.push((when, next_id, key));
                    next_id += 1;
                }
                Op::Cancel(i) if !model.is_empty() => {
                    let (_, id, key) = model.swap_remove(i % model.len());
                    prop_assert_eq!(wheel.cancel(key), Some(id));
                    dead.push(key);
                }
                Op::CancelStale(i) if !dead.is_empty() => {
                    prop_assert_eq!(wheel.cancel(dead[i % dead.len()]), None);
                }
                Op::Cancel(_) | Op::CancelStale(_) => {}
                Op::Advance(dt) => {
                    now += dt;
                    let earliest = model.iter().map(|e| e.0).min();
                    match (wheel.next_deadline(), earliest) {
                        // The sleep bound never overshoots an entry.
                        (Some(d), Some(e)) => {
                            prop_assert!(d >= wheel.elapsed());
                            prop_assert!(d <= e.max(wheel.elapsed()));
                        }
                        (None, None) => {}
                        (d, e) => prop_assert!(false, "next_deadline {:?}, earliest {:?}", d, e),
                    }
                    let before = wheel.elapsed();
                    let mut fired = Vec::new();
                    while let Some((when, id)) = wheel.poll(now) {
                        prop_assert!(when <= now, "{} fired at {}", when, now);
                        fired.push((when, id));
                    }
                    prop_assert_eq!(wheel.elapsed(), before.max(now));
                    fired.sort_unstable();
                    let mut expected: Vec<(u64, u32)> = model
                        .iter()
                        .filter(|e| e.0 <= now)
                        .map(|e| (e.0, e.1))
                        .collect();
                    expected.sort_unstable();
                    dead.extend(model.iter().filter(|e| e.0 <= now).map(|e| e.2));
                    model.retain(|e| e.0 > now);
                    prop_assert_eq!(fired, expected);
                }
            }
            prop_assert_eq!(wheel.len(), model.len());
        }
        assert_consistent(&wheel);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Millisecond-like workload: most deadlines within ~17 minutes,
        /// some up to 2^40 ticks; advances of up to 5 s, some up to ~70 min.
        #[test]
        fn matches_sorted_list_model(ops in ops(1 << 40, 1 << 22)) {
            check_against_model(ops)?;
        }

        /// Huge spans, so clamped entries are re-placed and fire: deadlines
        /// up to 2^44 ticks ahead, advances up to 2^41.
        #[test]
        fn matches_model_across_clamped_spans(ops in ops(1 << 44, 1 << 41)) {
            check_against_model(ops)?;
        }

        /// A driver that sleeps exactly until `next_deadline` sees each
        /// entry fire at a `now` equal to its deadline: the bound is never
        /// late, and the wheel never needs a poll between bounds.
        #[test]
        fn driving_by_next_deadline_fires_each_entry_at_its_deadline(
            delays in proptest::collection::vec(
                prop_oneof![3 => 0u64..=1 << 20, 1 => 0u64..=1 << 42],
                1..100,
            ),
            start in 0u64..=1 << 40,
        ) {
            let mut w = TimingWheel::new();
            prop_assert_eq!(w.poll(start), None);
            let mut pending: Vec<u64> = Vec::new();
            for (i, &delay) in delays.iter().enumerate() {
                w.insert(start + delay, i as u32);
                pending.push(start + delay);
            }
            pending.sort_unstable();
            let mut fired = Vec::new();
            while let Some(now) = w.next_deadline() {
                while let Some((when, i)) = w.poll(now) {
                    prop_assert_eq!(when, now);
                    prop_assert_eq!(when, start + delays[i as usize]);
                    fired.push(when);
                }
            }
            prop_assert_eq!(fired, pending);
            prop_assert!(w.is_empty());
        }

        #[test]
        fn level_for_matches_reference(elapsed: u64, when: u64) {
            prop_assert_eq!(level_for(elapsed, when), reference_level(elapsed, when));
        }
    }
}
