//! A hierarchical timing wheel: O(1) insert and cancel, expiry by elapsed
//! ticks, no per-entry timers and no scans of all entries.
//!
//! Owns: deadlines as (tick, value) pairs. Must not touch: sockets,
//! connections or the clock — time is a `u64` tick passed in (the core
//! uses milliseconds since it started).
//!
//! Design (after the tokio timer wheel, written anew): 6 levels of 64
//! slots. Level `L` slots are `64^L` ticks wide, so the wheel spans `2^36`
//! ticks (≈ 2.2 years of milliseconds); later deadlines are parked in the
//! top level and re-placed when their slot comes round, never fired early.
//! An entry goes to the level of the highest bit in which its deadline
//! differs from `elapsed`; when a higher-level slot's start is reached, its
//! entries cascade into lower levels. Each level has a `u64` occupancy
//! bitmap, so finding the next deadline is a rotate and a
//! `trailing_zeros` per level. Entries live in a `Slab` and each slot is an
//! intrusive doubly linked list through slab indices — no `unsafe`, no
//! allocation per insert once the slab has grown. An entry is
//! `24 bytes + size_of::<T>()` (rounded up to alignment) plus the slab tag.

use slab::Slab;

const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// Farthest a deadline is placed ahead of `elapsed` (one top-level turn).
const MAX_AHEAD: u64 = (1 << (SLOT_BITS as u64 * LEVELS as u64)) - 1;
const NIL: u32 = u32::MAX;
/// Pseudo-level of the list of due entries.
const DUE: u8 = LEVELS as u8;

/// Handle to a scheduled entry; stale handles are harmless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    gen: u32,
}

#[derive(Debug)]
struct Entry<T> {
    when: u64,
    value: T,
    gen: u32,
    prev: u32,
    next: u32,
    level: u8,
    slot: u8,
}

/// The wheel. See the module docs.
#[derive(Debug)]
pub struct TimingWheel<T> {
    entries: Slab<Entry<T>>,
    heads: [[u32; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
    due: u32,
    elapsed: u64,
    next_gen: u32,
}

impl<T> Default for TimingWheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Width in ticks of one slot at `level`.
fn slot_range(level: usize) -> u64 {
    1 << (SLOT_BITS as usize * level)
}

/// Level for a deadline `when` seen from `elapsed` (capped at the top).
fn level_for(elapsed: u64, when: u64) -> usize {
    let masked = (elapsed ^ when) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    (significant / SLOT_BITS as usize).min(LEVELS - 1)
}

fn slot_for(when: u64, level: usize) -> usize {
    ((when >> (SLOT_BITS as usize * level)) & (SLOTS as u64 - 1)) as usize
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
            next_gen: 0,
        }
    }

    /// Entries scheduled (including due ones not yet polled).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The tick the wheel has advanced to.
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Schedules `value` for tick `when`. A `when` at or before
    /// [`elapsed`](Self::elapsed) is due at the next [`poll`](Self::poll).
    pub fn insert(&mut self, when: u64, value: T) -> TimerKey {
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let index = self.entries.insert(Entry {
            when,
            value,
            gen,
            prev: NIL,
            next: NIL,
            level: 0,
            slot: 0,
        });
        let index = u32::try_from(index).expect("fewer than 2^32 timers");
        self.place(index);
        TimerKey { index, gen }
    }

    /// Removes a scheduled entry; `None` if it already fired or was
    /// cancelled (even if its slab slot has been reused since).
    pub fn cancel(&mut self, key: TimerKey) -> Option<T> {
        match self.entries.get(key.index as usize) {
            Some(e) if e.gen == key.gen => {}
            _ => return None,
        }
        self.unlink(key.index);
        Some(self.entries.remove(key.index as usize).value)
    }

    /// The earliest tick at which [`poll`](Self::poll) may return an entry:
    /// the start of the first occupied slot, which can be earlier than
    /// that entry's own deadline (a poll then cascades and returns
    /// nothing). Good as a poll timeout. `Some(elapsed)` if entries are due.
    pub fn next_deadline(&self) -> Option<u64> {
        if self.due != NIL {
            return Some(self.elapsed);
        }
        self.next_expiration().map(|(_, _, deadline)| deadline)
    }

    /// Returns one entry whose deadline is at or before `now`, as
    /// `(when, value)`, advancing the wheel as far as needed; `None` when
    /// nothing is due at `now` (the wheel has then advanced to `now`).
    /// Each entry is returned by the first call whose `now` reaches its
    /// deadline: never earlier, never later.
    pub fn poll(&mut self, now: u64) -> Option<(u64, T)> {
        loop {
            if self.due != NIL {
                let index = self.due;
                self.unlink(index);
                let e = self.entries.remove(index as usize);
                return Some((e.when, e.value));
            }
            match self.next_expiration() {
                Some((level, slot, deadline)) if deadline <= now => {
                    self.elapsed = self.elapsed.max(deadline);
                    self.cascade(level, slot);
                }
                _ => {
                    self.elapsed = self.elapsed.max(now);
                    return None;
                }
            }
        }
    }

    /// Empties a slot whose start has been reached: due entries go to the
    /// due list, the rest to lower levels.
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

    /// Links an entry into the list its deadline calls for.
    fn place(&mut self, index: u32) {
        let when = self.entries[index as usize].when;
        let (level, slot) = if when <= self.elapsed {
            (DUE, 0)
        } else {
            let at = when.min(self.elapsed + MAX_AHEAD);
            let level = level_for(self.elapsed, at);
            (level as u8, slot_for(at, level) as u8)
        };
        let head = if level == DUE {
            std::mem::replace(&mut self.due, index)
        } else {
            self.occupied[level as usize] |= 1 << slot;
            std::mem::replace(&mut self.heads[level as usize][slot as usize], index)
        };
        if head != NIL {
            self.entries[head as usize].prev = index;
        }
        let e = &mut self.entries[index as usize];
        e.level = level;
        e.slot = slot;
        e.prev = NIL;
        e.next = head;
    }

    /// Unlinks an entry from its list (it stays in the slab).
    fn unlink(&mut self, index: u32) {
        let (prev, next, level, slot) = {
            let e = &self.entries[index as usize];
            (e.prev, e.next, e.level, e.slot)
        };
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

    /// The first occupied slot: (level, slot, start tick).
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        let now = self.elapsed;
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied == 0 {
                continue;
            }
            let range = slot_range(level);
            let level_range = range * SLOTS as u64;
            // Search from the slot after the current one: the current slot
            // is never occupied below the top level, and at the top level
            // it holds the next turn's entries, which come last.
            let start = ((now / range) + 1) % SLOTS as u64;
            let slot = (occupied.rotate_right(start as u32).trailing_zeros() as u64 + start)
                % SLOTS as u64;
            let level_start = now & !(level_range - 1);
            let mut deadline = level_start + slot * range;
            if deadline <= now {
                // Only the top level can hold a slot at or behind `elapsed`:
                // deadlines beyond one turn are parked there, so the top
                // level is a ring and such a slot belongs to the next turn.
                debug_assert_eq!(level, LEVELS - 1);
                deadline += level_range;
            }
            return Some((level, slot as usize, deadline));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(w: &mut TimingWheel<u32>, now: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        while let Some(e) = w.poll(now) {
            out.push(e);
        }
        out.sort_unstable();
        out
    }

    #[test]
    fn level_table_at_boundaries() {
        let cases = [
            (0, 1, 0),
            (0, 63, 0),
            (0, 64, 1),
            (0, 4095, 1),
            (0, 4096, 2),
            (0, (1 << 18) - 1, 2),
            (0, 1 << 18, 3),
            (0, 1 << 24, 4),
            (0, 1 << 30, 5),
            (0, (1 << 36) - 1, 5),
            (0, 1 << 40, 5),
            (63, 64, 1),
            (64, 127, 0),
            (4095, 4096, 2),
        ];
        for (elapsed, when, level) in cases {
            assert_eq!(
                level_for(elapsed, when),
                level,
                "elapsed {elapsed} when {when}"
            );
        }
    }

    #[test]
    fn fires_exactly_at_deadline_on_level_zero() {
        let mut w = TimingWheel::new();
        w.insert(5, 1);
        w.insert(5, 2);
        w.insert(7, 3);
        assert_eq!(w.next_deadline(), Some(5));
        assert_eq!(drain(&mut w, 4), vec![]);
        assert_eq!(drain(&mut w, 5), vec![(5, 1), (5, 2)]);
        assert_eq!(drain(&mut w, 6), vec![]);
        assert_eq!(drain(&mut w, 100), vec![(7, 3)]);
        assert!(w.is_empty());
        assert_eq!(w.elapsed(), 100);
    }

    #[test]
    fn far_deadlines_cascade_and_fire_on_time() {
        let mut w = TimingWheel::new();
        for (i, when) in [70u64, 4100, 300_000, 20_000_000, 1 << 31]
            .iter()
            .enumerate()
        {
            w.insert(*when, i as u32);
        }
        for (i, when) in [70u64, 4100, 300_000, 20_000_000, 1 << 31]
            .iter()
            .enumerate()
        {
            assert_eq!(drain(&mut w, when - 1), vec![], "not before {when}");
            assert_eq!(drain(&mut w, *when), vec![(*when, i as u32)]);
        }
    }

    #[test]
    fn deadlines_beyond_the_range_are_parked_not_lost() {
        let mut w = TimingWheel::new();
        let far = (1u64 << 36) * 3 + 12_345;
        w.insert(far, 9);
        let mut now = 0;
        while now < far - 1 {
            now = (now + (1 << 33)).min(far - 1);
            assert_eq!(drain(&mut w, now), vec![]);
        }
        assert_eq!(drain(&mut w, far), vec![(far, 9)]);
    }

    #[test]
    fn past_deadline_is_due_at_once() {
        let mut w = TimingWheel::new();
        drain(&mut w, 1000);
        w.insert(10, 1);
        assert_eq!(w.next_deadline(), Some(1000));
        assert_eq!(drain(&mut w, 1000), vec![(10, 1)]);
    }

    #[test]
    fn cancel_and_stale_keys() {
        let mut w = TimingWheel::new();
        let a = w.insert(100, 1);
        let b = w.insert(100, 2);
        assert_eq!(w.cancel(a), Some(1));
        assert_eq!(w.cancel(a), None);
        // Reuse a's slab slot; the stale key must not touch the new entry.
        let c = w.insert(200, 3);
        assert_eq!(w.cancel(a), None);
        assert_eq!(drain(&mut w, 100), vec![(100, 2)]);
        assert_eq!(w.cancel(b), None, "fired entries cannot be cancelled");
        assert_eq!(w.cancel(c), Some(3));
        assert_eq!(w.next_deadline(), None);
        assert_eq!(w.occupied, [0; LEVELS]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64),
        Cancel(usize),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..=1 << 20).prop_map(Op::Insert),
            1 => (0u64..=1 << 40).prop_map(Op::Insert),
            2 => any::<usize>().prop_map(Op::Cancel),
            3 => (0u64..=5000).prop_map(Op::Advance),
            1 => (0u64..=1 << 22).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The wheel agrees with a sorted list: the same entries fire in the
        /// same advance, none early.
        #[test]
        fn matches_sorted_list_model(ops in proptest::collection::vec(op(), 1..200)) {
            let mut wheel = TimingWheel::new();
            let mut model: Vec<(u64, u32, TimerKey)> = Vec::new();
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
                    Op::Cancel(i) => {
                        if !model.is_empty() {
                            let (_, id, key) = model.remove(i % model.len());
                            prop_assert_eq!(wheel.cancel(key), Some(id));
                        }
                    }
                    Op::Advance(dt) => {
                        now += dt;
                        if let Some(d) = wheel.next_deadline() {
                            // The poll timeout never overshoots a due entry.
                            let earliest = model.iter().map(|e| e.0).min().unwrap();
                            prop_assert!(d <= earliest.max(wheel.elapsed()));
                        }
                        let mut fired: Vec<(u64, u32)> = Vec::new();
                        while let Some((when, id)) = wheel.poll(now) {
                            prop_assert!(when <= now);
                            fired.push((when, id));
                        }
                        fired.sort_unstable();
                        let mut expected: Vec<(u64, u32)> = model
                            .iter()
                            .filter(|e| e.0 <= now)
                            .map(|e| (e.0, e.1))
                            .collect();
                        expected.sort_unstable();
                        model.retain(|e| e.0 > now);
                        prop_assert_eq!(fired, expected);
                        prop_assert_eq!(wheel.len(), model.len());
                    }
                }
            }
        }
    }
}
