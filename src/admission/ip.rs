//! Per-source-IP connection attempts per window, shared by all cores.
//!
//! Owns: fixed-window attempt counters, in sharded maps whose stale windows are swept as they are touched (no
//! cleanup task; memory is bounded by the IPs seen in one window). Must
//! not touch: deciding which IP is the client's (see `Admission`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::sharded::Sharded;

#[derive(Default)]
struct Shard {
    /// ip → (window start, attempts in it)
    attempts: HashMap<IpAddr, (u64, u32)>,
    sweeps: u32,
}

/// Shared per-IP state.
#[derive(Default)]
pub struct IpLimits {
    shards: Sharded<IpAddr, Mutex<Shard>>,
}

impl IpLimits {
    /// Counts an attempt at `now` (seconds); `Err(retry_after)` if `ip`
    /// already made `max` attempts in the current `window`-second window.
    pub fn attempt(&self, ip: IpAddr, now: u64, window: u64, max: u32) -> Result<(), u64> {
        let window = window.max(1);
        let start = now - now % window;
        let mut s = self.shards.lock(&ip);
        s.sweeps += 1;
        if s.sweeps >= 1024 {
            s.sweeps = 0;
            s.attempts.retain(|_, (w, _)| *w == start);
        }
        let e = s.attempts.entry(ip).or_insert((start, 0));
        if e.0 != start {
            *e = (start, 0);
        }
        if e.1 >= max {
            return Err((start + window - now).max(1));
        }
        e.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_per_window_with_retry_after() {
        let l = IpLimits::default();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        for _ in 0..3 {
            assert!(l.attempt(ip, 125, 60, 3).is_ok());
        }
        assert_eq!(l.attempt(ip, 130, 60, 3), Err(50));
        assert!(l.attempt("10.9.9.9".parse().unwrap(), 130, 60, 3).is_ok());
        assert!(l.attempt(ip, 180, 60, 3).is_ok(), "new window");
    }
}
