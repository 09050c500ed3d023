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

/// Ring slots allocated when an empty queue gets its first chunk (16 ×
/// 32 B `Bytes` = 512 B, within the allocator's per-thread cache).
const INITIAL_SLOTS: usize = 16;

/// Outbound byte queue.
#[derive(Debug, Default)]
pub struct OutQueue {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl OutQueue {
    /// Appends a chunk (empty chunks are skipped).
    pub fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            if self.chunks.capacity() == 0 {
                // One allocation per busy spell: room for a pipelined
                // batch's headers and payloads without regrowing.
                self.chunks.reserve_exact(INITIAL_SLOTS);
            }
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Appends an encoded frame.
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
        for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
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
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if written >= front.len() {
                written -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(written);
                return;
            }
        }
        if self.chunks.is_empty() {
            // Drained: give the ring back, so an idle connection holds no
            // queue memory (≈144 B with the allocator's header for the
            // smallest ring). The next write allocates it again: one
            // malloc/free pair per flush that empties the queue, not per
            // message (`cargo bench --bench allocs` counts it). Shrunk, not
            // replaced: dropping a deque is a call to its drop glue once
            // panics unwind, freeing an empty one's buffer is not.
            self.chunks.shrink_to_fit();
        }
    }

    /// Slots the ring holds allocated (0 when it holds no heap memory).
    pub fn capacity(&self) -> usize {
        self.chunks.capacity()
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.chunks = VecDeque::new();
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
        assert_eq!(q.capacity(), 0, "a drained queue holds no allocation");
    }
}
