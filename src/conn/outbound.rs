//! A connection's queue of bytes waiting to be written.
//!
//! Owns: the ordered `Bytes` chunks still to send and their total size, the
//! gather list for one vectored write, and consuming what the socket took.
//! Must not touch: sockets (the driver writes), policy (the connection
//! decides what the byte budget means).
//!
//! An empty queue holds no heap memory.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};

use crate::protocol::encoder::Encoded;

/// Most slices offered to one `writev` (Linux IOV_MAX is 1024; 64 keeps
/// the gather list on the stack and is plenty for one syscall).
pub const MAX_IOVECS: usize = 64;

/// Ring slots allocated when a queue first holds two chunks (16 × 32 B
/// `Bytes` = 512 B, within the allocator's per-thread cache): room for a
/// pipelined batch's headers and payloads without regrowing.
const INITIAL_SLOTS: usize = 16;

/// Outbound byte queue.
///
/// The first chunk sits inline (`front`), the rest in a ring (`rest`), so a
/// queue that only ever holds one chunk at a time — a 101, a ping, one
/// fan-out delivery (a whole frame in one `Bytes`) — never allocates. The
/// ring is allocated when two chunks wait at once (an echo: header and
/// payload; a pipelined batch) and is kept while the connection is busy, so
/// a busy connection does not pay an allocation per flush; the connection
/// gives it back with [`OutQueue::release_idle`] at its ping tick if the
/// queue is empty then. An idle connection therefore holds no queue memory
/// after at most one ping interval, and none at all if it was never sent
/// two chunks at once.
#[derive(Debug, Default)]
pub struct OutQueue {
    front: Option<Bytes>,
    /// Boxed: a queue that never held two chunks at once (most idle
    /// connections) pays one pointer for it, not a `VecDeque`'s 32 bytes.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<Bytes>>>,
    len: usize,
}

impl OutQueue {
    /// Appends a chunk (empty chunks are skipped).
    #[inline]
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        self.len += chunk.len();
        if self.front.is_none() {
            // Only empty when the ring is empty too (see `advance`).
            debug_assert!(self.rest.as_ref().map_or(true, |r| r.is_empty()));
            self.front = Some(chunk);
            return;
        }
        self.rest
            .get_or_insert_with(|| {
                let mut ring = VecDeque::new();
                ring.reserve_exact(INITIAL_SLOTS);
                Box::new(ring)
            })
            .push_back(chunk);
    }

    /// Appends an encoded frame.
    #[inline]
    pub fn push_frame(&mut self, frame: Encoded) {
        match frame {
            Encoded::One(a) => self.push(a),
            Encoded::Two(a, b) => {
                self.push(a);
                self.push(b);
            }
        }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Fills `slices` with the front chunks; returns how many were filled.
    pub fn io_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        let chunks = self
            .front
            .iter()
            .chain(self.rest.iter().flat_map(|r| r.iter()));
        for (slot, chunk) in slices.iter_mut().zip(chunks) {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// Drops `written` bytes from the front.
    pub fn advance(&mut self, mut written: usize) {
        debug_assert!(written <= self.len);
        self.len -= written.min(self.len);
        while written > 0 {
            let Some(front) = self.front.as_mut() else {
                return;
            };
            if written >= front.len() {
                written -= front.len();
                // Keep the invariant: `front` is empty only with the ring.
                self.front = self.rest.as_mut().and_then(|r| r.pop_front());
            } else {
                front.advance(written);
                return;
            }
        }
    }

    /// Gives the ring's memory back if nothing waits (the connection calls
    /// this when it has been quiet: at its ping tick).
    pub fn release_idle(&mut self) {
        if self.front.is_none() {
            self.rest = None;
        }
    }

    /// Slots the ring holds allocated (0 when it holds no heap memory).
    pub fn capacity(&self) -> usize {
        self.rest.as_ref().map_or(0, |r| r.capacity())
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.front = None;
        self.rest = None;
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_writes_advance_across_chunks() {
        let mut q = OutQueue::default();
        q.push(Bytes::from_static(b"abc"));
        q.push(Bytes::new());
        q.push(Bytes::from_static(b"defg"));
        assert_eq!(q.len(), 7);
        q.advance(4);
        assert_eq!(q.len(), 3);
        let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
        let n = q.io_slices(&mut slices);
        assert_eq!(n, 1);
        assert_eq!(&*slices[0], b"efg");
        q.advance(3);
        assert!(q.is_empty());
        assert_eq!(q.capacity(), 16, "a busy queue keeps its ring");
        q.release_idle();
        assert_eq!(q.capacity(), 0, "an idle queue gives it back");
    }

    #[test]
    fn one_chunk_at_a_time_never_allocates() {
        let mut q = OutQueue::default();
        for i in 0..100u8 {
            q.push(Bytes::from(vec![i; 10]));
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            assert_eq!(q.io_slices(&mut slices), 1);
            assert_eq!(&*slices[0], &[i; 10][..]);
            q.advance(4);
            q.advance(6);
            assert!(q.is_empty());
        }
        assert_eq!(q.capacity(), 0);
    }

    #[test]
    fn order_holds_across_the_inline_slot_and_the_ring() {
        let mut q = OutQueue::default();
        let mut expect = Vec::new();
        let mut got = Vec::new();
        for round in 0..50u32 {
            for i in 0..(round % 7) {
                let b = Bytes::from(format!("<{round}.{i}>"));
                expect.extend_from_slice(&b);
                q.push(b);
            }
            // Write a prefix of whatever waits, as a short write would.
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = q.io_slices(&mut slices);
            let all: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
            let take = all.len() / 2 + usize::from(round % 3 == 0) * (all.len() / 2);
            got.extend_from_slice(&all[..take]);
            q.advance(take);
        }
        while !q.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = q.io_slices(&mut slices);
            let all: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
            got.extend_from_slice(&all);
            q.advance(all.len());
        }
        assert_eq!(got, expect);
    }
}
