//! Per-core counters, written without locks and read from any thread.
//!
//! Owns: the counter cells of one core and plain snapshots of them.
//! Must not touch: deciding what to count (the core's engine and hub do)
//! or formatting beyond a one-line summary.
//!
//! Each core is the only writer of its own `CoreCounters` (a [`Counter`]),
//! so an increment is a relaxed load plus store (no locked
//! read-modify-write on the hot path); readers (stats log, admin plane)
//! see relaxed, eventually consistent values. The one exception is a
//! [`SharedCounter`], which other threads add to (drops at a full inbox,
//! counted by the sender). The struct is cache-line aligned so cores do
//! not share lines.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::conn::EndReason;
use crate::error::Rejection;

/// One single-writer counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning core may call this (single writer).
    #[inline]
    pub fn add(&self, n: u64) {
        if n != 0 {
            let v = self.0.load(Ordering::Relaxed);
            self.0.store(v.wrapping_add(n), Ordering::Relaxed);
        }
    }

    /// Subtracts `n` (for gauges). Single writer, like [`Counter::add`].
    #[inline]
    pub fn sub(&self, n: u64) {
        let v = self.0.load(Ordering::Relaxed);
        self.0.store(v.wrapping_sub(n), Ordering::Relaxed);
    }

    /// Current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A counter any thread may add to (a locked add: for rare events only).
#[derive(Debug, Default)]
pub struct SharedCounter(AtomicU64);

impl SharedCounter {
    /// Adds `n`, from any thread.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Current value.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

const N_END: usize = EndReason::ALL.len();
const N_HS: usize = Rejection::ALL.len();

/// The counters of one core.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct CoreCounters {
    /// Sockets currently held (gauge).
    pub open: Counter,
    /// Connections accepted from the listener.
    pub accepted: Counter,
    /// Upgrades completed.
    pub upgraded: Counter,
    /// Connections ended, by reason.
    pub ended: [Counter; N_END],
    /// Upgrade refusals, by reason.
    pub handshake_failures: [Counter; N_HS],
    /// `accept` failures (e.g. out of file descriptors).
    pub accept_errors: Counter,
    pub frames_in: Counter,
    pub frames_out: Counter,
    pub messages_in: Counter,
    pub messages_out: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub pings_sent: Counter,
    /// Hub: publishes handled by this core (client or API).
    pub publishes: Counter,
    /// Hub: frames queued to connections by fan-out or direct sends (not
    /// replies such as acks).
    pub deliveries: Counter,
    /// Hub: deliveries dropped or refused by the slow-consumer policy.
    pub dropped_slow_consumer: Counter,
    /// Hub: deliveries to connections that were no longer open.
    pub dropped_not_open: Counter,
    /// Hub: deliveries for this core dropped because its inbox was full
    /// (counted by the sender).
    pub dropped_inbox_full: SharedCounter,
    /// Hub: subscriptions held (gauge).
    pub subscriptions: Counter,
    /// Hub: client requests answered with an error frame.
    pub request_errors: Counter,
    /// Rate limit: reading paused (or closed) on the message bucket.
    pub throttled_msgs: Counter,
    /// Rate limit: reading paused (or closed) on the byte bucket.
    pub throttled_bytes: Counter,
    /// Panics caught on this core (a connection closed with 1011, or a
    /// command or accept dropped).
    pub panics: Counter,
    /// Upgrades from a trusted proxy whose client-IP header could not be
    /// read to an untrusted address (the proxy was taken as the client).
    pub forwarded_malformed: Counter,
    /// TLS handshakes completed on the WebSocket listener.
    pub tls_handshakes: Counter,
    /// TLS connections closed for bad TLS input (not TLS, a refused or
    /// truncated handshake, a record that fails to decrypt).
    pub tls_errors: Counter,
    /// permessage-deflate: messages this core compressed (a published
    /// message shared by many connections counts once).
    pub compressed: Counter,
}

/// A plain copy of counters (one core's, or summed over cores).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub open: u64,
    pub accepted: u64,
    pub upgraded: u64,
    pub ended: [u64; N_END],
    pub handshake_failures: [u64; N_HS],
    pub accept_errors: u64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub pings_sent: u64,
    pub publishes: u64,
    pub deliveries: u64,
    pub dropped_slow_consumer: u64,
    pub dropped_not_open: u64,
    pub dropped_inbox_full: u64,
    pub subscriptions: u64,
    pub request_errors: u64,
    pub throttled_msgs: u64,
    pub throttled_bytes: u64,
    pub panics: u64,
    pub forwarded_malformed: u64,
    pub tls_handshakes: u64,
    pub tls_errors: u64,
    pub compressed: u64,
}

impl CoreCounters {
    /// Reads every counter.
    pub fn snapshot(&self) -> Stats {
        Stats {
            open: self.open.get(),
            accepted: self.accepted.get(),
            upgraded: self.upgraded.get(),
            ended: std::array::from_fn(|i| self.ended[i].get()),
            handshake_failures: std::array::from_fn(|i| self.handshake_failures[i].get()),
            accept_errors: self.accept_errors.get(),
            frames_in: self.frames_in.get(),
            frames_out: self.frames_out.get(),
            messages_in: self.messages_in.get(),
            messages_out: self.messages_out.get(),
            bytes_in: self.bytes_in.get(),
            bytes_out: self.bytes_out.get(),
            pings_sent: self.pings_sent.get(),
            publishes: self.publishes.get(),
            deliveries: self.deliveries.get(),
            dropped_slow_consumer: self.dropped_slow_consumer.get(),
            dropped_not_open: self.dropped_not_open.get(),
            dropped_inbox_full: self.dropped_inbox_full.get(),
            subscriptions: self.subscriptions.get(),
            request_errors: self.request_errors.get(),
            throttled_msgs: self.throttled_msgs.get(),
            throttled_bytes: self.throttled_bytes.get(),
            panics: self.panics.get(),
            forwarded_malformed: self.forwarded_malformed.get(),
            tls_handshakes: self.tls_handshakes.get(),
            tls_errors: self.tls_errors.get(),
            compressed: self.compressed.get(),
        }
    }
}

impl Stats {
    /// Connections ended for `reason`.
    pub fn ended(&self, reason: EndReason) -> u64 {
        self.ended[reason.index()]
    }

    /// Upgrades refused for `rejection` (a [`Rejection`], or what converts
    /// into one: a `HandshakeError`, an admission `Refusal`).
    pub fn handshake_failures(&self, rejection: impl Into<Rejection>) -> u64 {
        self.handshake_failures[rejection.into().index()]
    }

    /// Adds another snapshot into this one.
    pub fn merge(&mut self, o: &Stats) {
        self.open += o.open;
        self.accepted += o.accepted;
        self.upgraded += o.upgraded;
        for i in 0..N_END {
            self.ended[i] += o.ended[i];
        }
        for i in 0..N_HS {
            self.handshake_failures[i] += o.handshake_failures[i];
        }
        self.accept_errors += o.accept_errors;
        self.frames_in += o.frames_in;
        self.frames_out += o.frames_out;
        self.messages_in += o.messages_in;
        self.messages_out += o.messages_out;
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.pings_sent += o.pings_sent;
        self.publishes += o.publishes;
        self.deliveries += o.deliveries;
        self.dropped_slow_consumer += o.dropped_slow_consumer;
        self.dropped_not_open += o.dropped_not_open;
        self.dropped_inbox_full += o.dropped_inbox_full;
        self.subscriptions += o.subscriptions;
        self.request_errors += o.request_errors;
        self.throttled_msgs += o.throttled_msgs;
        self.throttled_bytes += o.throttled_bytes;
        self.panics += o.panics;
        self.forwarded_malformed += o.forwarded_malformed;
        self.tls_handshakes += o.tls_handshakes;
        self.tls_errors += o.tls_errors;
        self.compressed += o.compressed;
    }
}

/// One log line: counts only, never contents; zero reasons are left out.
impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "open={} accepted={} upgraded={} frames_in={} frames_out={} msgs_in={} msgs_out={} \
             bytes_in={} bytes_out={} pings_sent={} accept_errors={}",
            self.open,
            self.accepted,
            self.upgraded,
            self.frames_in,
            self.frames_out,
            self.messages_in,
            self.messages_out,
            self.bytes_in,
            self.bytes_out,
            self.pings_sent,
            self.accept_errors
        )?;
        write!(
            f,
            " publishes={} deliveries={} dropped.slow_consumer={} dropped.not_open={} \
             dropped.inbox_full={} subscriptions={} request_errors={} throttled.msgs={} \
             throttled.bytes={} panics={} forwarded_malformed={} tls_handshakes={} tls_errors={} \
             compressed={}",
            self.publishes,
            self.deliveries,
            self.dropped_slow_consumer,
            self.dropped_not_open,
            self.dropped_inbox_full,
            self.subscriptions,
            self.request_errors,
            self.throttled_msgs,
            self.throttled_bytes,
            self.panics,
            self.forwarded_malformed,
            self.tls_handshakes,
            self.tls_errors,
            self.compressed
        )?;
        for r in EndReason::ALL {
            let n = self.ended(r);
            if n > 0 {
                write!(f, " ended.{}={n}", r.name())?;
            }
        }
        for e in Rejection::ALL {
            let n = self.handshake_failures(e);
            if n > 0 {
                write!(f, " refused.{}={n}", e.name())?;
            }
        }
        Ok(())
    }
}
