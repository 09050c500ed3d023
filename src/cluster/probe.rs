//! The broker liveness probe's bookkeeping: when a node publishes a probe
//! to its own subject, and when a probe that has not come back means the
//! broker is not delivering (up but wedged: `SIGSTOP`, a stuck proxy) —
//! the failure a connection error never shows.
//!
//! Owns: [`Probe`], free of IO and clock (`now` comes in). Must not
//! touch: the broker (the link publishes the probe and reports its
//! return).
//!
//! A probe goes out when nothing arrived from the broker for one
//! `interval` (any message received proves delivery) and none is
//! outstanding; it fails when it has not come back one `interval` after
//! it left. So a broker that stops delivering is caught within two
//! intervals (plus the caller's tick).

use std::time::{Duration, Instant};

/// A probe that did not come back in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failed;

/// The probe of one connection to the broker.
#[derive(Debug)]
pub struct Probe {
    interval: Duration,
    seq: u64,
    outstanding: Option<(u64, Instant)>,
    last_traffic: Instant,
}

impl Probe {
    /// A probe for a connection made at `now`.
    pub fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            seq: 0,
            outstanding: None,
            last_traffic: now,
        }
    }

    /// Something arrived from the broker at `now`.
    pub fn traffic(&mut self, now: Instant) {
        self.last_traffic = now;
    }

    /// The probe numbered `seq` came back at `now`.
    pub fn returned(&mut self, seq: u64, now: Instant) {
        if self.outstanding.is_some_and(|(s, _)| s == seq) {
            self.outstanding = None;
        }
        self.traffic(now);
    }

    /// At `now`: `Err(Failed)` if the outstanding probe is overdue;
    /// otherwise the number of a probe to publish now, if one is due.
    pub fn poll(&mut self, now: Instant) -> Result<Option<u64>, Failed> {
        match self.outstanding {
            Some((_, sent)) if now.saturating_duration_since(sent) >= self.interval => Err(Failed),
            Some(_) => Ok(None),
            None if now.saturating_duration_since(self.last_traffic) >= self.interval => {
                self.seq += 1;
                self.outstanding = Some((self.seq, now));
                Ok(Some(self.seq))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_goes_out_when_idle_and_fails_one_interval_later() {
        let t0 = Instant::now();
        let i = Duration::from_secs(1);
        let mut p = Probe::new(i, t0);
        assert_eq!(p.poll(t0), Ok(None), "not idle yet");
        p.traffic(t0 + i / 2);
        assert_eq!(p.poll(t0 + i), Ok(None), "traffic proves delivery");
        let seq = p.poll(t0 + i * 2).unwrap().unwrap();
        assert_eq!(p.poll(t0 + i * 2 + i / 2), Ok(None), "outstanding");
        p.returned(seq, t0 + i * 2 + i / 2);
        assert_eq!(p.poll(t0 + i * 3), Ok(None));
        let seq2 = p.poll(t0 + i * 4).unwrap().unwrap();
        assert_ne!(seq, seq2);
        p.returned(seq, t0 + i * 4); // an old one: not this probe
        assert_eq!(p.poll(t0 + i * 5), Err(Failed));
    }
}
