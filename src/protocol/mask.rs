//! RFC 6455 §5.3 payload masking.
//!
//! Owns: XOR-ing a payload with the 4-byte masking key, starting at any key
//! phase (a frame's payload may be unmasked in several pieces as it arrives).
//! Must not touch: framing, buffers, or anything that allocates.
//!
//! Hand-written rather than taken from a crate because it runs over every
//! byte a client sends: the fast path XORs 32 bytes per step with four `u64`
//! words in plain safe Rust, which LLVM turns into SIMD on x86-64 (see the
//! `unmask` criterion bench for the numbers against the byte loop and
//! `memcpy`). [`apply_mask_scalar`] is the reference it is tested against at
//! every offset, length and phase.

/// XORs `buf` with `key`, where `buf[0]` lines up with `key[phase % 4]`.
///
/// Masking is its own inverse, so this both masks and unmasks.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], phase: usize) {
    // The key as it lines up with buf[0], repeated to fill a u64.
    let p = phase % 4;
    let rotated = [key[p], key[(p + 1) % 4], key[(p + 2) % 4], key[(p + 3) % 4]];
    let k64 = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);

    let mut wide = buf.chunks_exact_mut(32);
    for chunk in &mut wide {
        for word in chunk.chunks_exact_mut(8) {
            let v = u64::from_ne_bytes(word.try_into().expect("chunks_exact(8) yields 8 bytes"));
            word.copy_from_slice(&(v ^ k64).to_ne_bytes());
        }
    }
    let rest = wide.into_remainder();
    let mut words = rest.chunks_exact_mut(8);
    for word in &mut words {
        let v = u64::from_ne_bytes(word.try_into().expect("chunks_exact(8) yields 8 bytes"));
        word.copy_from_slice(&(v ^ k64).to_ne_bytes());
    }
    // Every full 8-byte step keeps the phase, so the tail starts at `phase`.
    let tail = words.into_remainder();
    apply_mask_scalar(tail, key, phase);
}

/// Byte-at-a-time reference implementation of [`apply_mask`].
#[inline]
pub fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4], phase: usize) {
    for (i, b) in buf.iter_mut().enumerate() {
        *b ^= key[(phase + i) % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_mask_matches_scalar_at_every_length_offset_and_phase() {
        let key = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..300u32).map(|i| (i * 31 % 251) as u8).collect();
        for offset in 0..8 {
            for len in 0..(data.len() - offset) {
                for phase in 0..4 {
                    let mut fast = data[offset..offset + len].to_vec();
                    let mut slow = fast.clone();
                    apply_mask(&mut fast, key, phase);
                    apply_mask_scalar(&mut slow, key, phase);
                    assert_eq!(fast, slow, "offset {offset} len {len} phase {phase}");
                }
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_at_once() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        let mut pieces = data.clone();
        let (a, b) = pieces.split_at_mut(37);
        apply_mask(a, key, 0);
        apply_mask(b, key, 37);
        assert_eq!(whole, pieces);
    }

    #[test]
    fn rfc_example_hello() {
        // RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
        let mut masked = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut masked, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&masked, b"Hello");
    }
}
