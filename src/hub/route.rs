//! The one road a message takes out of its origin, whatever the origin (a
//! client's publish on a core, the control plane's publish or send):
//! encoded once into a frame, then handed to every other core that has a
//! recipient, through its inbox.
//!
//! Owns: encoding a publish or a direct message once ([`publish_frame`],
//! [`direct_frame`]) and the fan-out across cores ([`to_cores`]). Must not
//! touch: who the recipients are (the registry and the per-core indexes
//! say) or the local part of a fan-out (the core's [`Hub`] hands its own
//! connection keys to the engine).
//!
//! [`Hub`]: super::Hub

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::value::RawValue;

use super::protocol;
use super::registry::CoreMask;
use crate::conn::SharedDeflate;
use crate::inbox::{CoreHandle, Target};

/// `{"type":"message","channel":…,"data":…}` as one frame, for every
/// subscriber of `channel` on every core.
pub fn publish_frame(channel: &str, data: &RawValue) -> Bytes {
    protocol::message_frame(Some(channel), data)
}

/// `{"type":"message","data":…}` as one frame, for every connection of a
/// user or one connection.
pub fn direct_frame(data: &RawValue) -> Bytes {
    protocol::message_frame(None, data)
}

/// The cell a publish on `channel` to `cores` cores carries for
/// compressing it once for all of them, when compression is on
/// (`shared_bits`: the server's window) and it goes to more than one core
/// (on one, that core's own per-fan-out cache already compresses it once).
pub fn shared_deflate(
    shared_bits: Option<u8>,
    channel: &Arc<str>,
    cores: u32,
) -> Option<SharedDeflate> {
    match shared_bits {
        Some(bits) if cores > 1 => Some(SharedDeflate::new(bits, channel.clone())),
        _ => None,
    }
}

/// The delivery target of a channel publish: with its compression cell
/// if it has one.
pub fn channel_target(name: Arc<str>, deflated: Option<&SharedDeflate>) -> Target {
    match deflated {
        Some(d) => Target::ChannelDeflate(d.clone()),
        None => Target::Channel(name),
    }
}

/// The core indexes set in `mask`, lowest first.
pub fn mask_cores(mut mask: CoreMask) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let i = mask.trailing_zeros() as usize;
        mask &= mask - 1;
        Some(i)
    })
}

/// Hands `frame` for `target` to every core in `mask` (the caller leaves
/// its own core out), in core order; each inbox gets the same `Bytes`
/// (and, with [`Target::ChannelDeflate`], the same compression cell).
/// A core whose inbox is full misses it (dropped and counted there).
/// Returns how many cores it was queued for.
///
/// Order: one origin's calls reach one core in call order (its inbox is
/// FIFO per sender), so a publisher's messages to a channel arrive in
/// publish order.
pub fn to_cores(
    cores: &[CoreHandle],
    mut mask: CoreMask,
    target: Target,
    frame: &Bytes,
    at: Instant,
) -> u32 {
    mask &= CoreMask::MAX >> (64 - cores.len().clamp(1, 64));
    let mut queued = 0;
    let mut cores_left = mask_cores(mask).peekable();
    while let Some(core) = cores_left.next() {
        // The last one takes the target itself: one name clone fewer.
        let target = match cores_left.peek() {
            Some(_) => target.clone(),
            None => return queued + u32::from(cores[core].deliver(target, frame.clone(), at)),
        };
        queued += u32::from(cores[core].deliver(target, frame.clone(), at));
    }
    queued
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_cores_lists_set_bits_in_order() {
        assert_eq!(mask_cores(0).count(), 0);
        assert_eq!(mask_cores(0b1011).collect::<Vec<_>>(), vec![0, 1, 3]);
        assert_eq!(mask_cores(1 << 63).collect::<Vec<_>>(), vec![63]);
    }
}
