//! A core's inbox: the one way into a core from any other thread (another
//! core, or the control plane), and what travels through it.
//!
//! Owns: the [`Command`]s, the bounded queue that carries them, the
//! coalesced `mio::Waker` wake-up, the shutdown flag, and the overflow
//! policy; and [`CoreHandle`], the `Send + Clone` end others hold (with the
//! core's published counters and latency histograms beside it). Must not
//! touch: what a core does with a command (the engine and the hub decide)
//! or who is sent what (the hub's routing, the admin plane).
//!
//! Overflow policy — the queue holds [`Config::inbox_capacity`] commands
//! (default 16 384) and nothing ever waits on it:
//! - a [`HubCommand::Deliver`] to a full inbox is dropped and counted on the
//!   receiving core (`dropped_inbox_full`, `wsedge_dropped_total{reason=
//!   "inbox_full"}`). A core sending to another never blocks, so two cores
//!   full of each other's deliveries cannot deadlock, and a slow core
//!   costs its own subscribers messages, not the others their latency;
//! - every other command is [`CoreHandle::try_send`]: the caller learns the
//!   inbox is full and says so (the admin plane answers 503);
//! - shutdown is not a command: a flag and a wake-up, so a full inbox can
//!   never lose it.
//!
//! [`Config::inbox_capacity`]: crate::config::Config::inbox_capacity

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;

use crate::admission::Verdict;
use crate::conn::SharedDeflate;
use crate::stats::counters::CoreCounters;
use crate::stats::latency::LatencyHistograms;

/// Who receives a delivered frame on the target core.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every local subscriber of the channel.
    Channel(Arc<str>),
    /// Every local subscriber of the cell's channel, with the publish's
    /// compression cell shared by all its cores (compression on, several
    /// cores: see [`SharedDeflate`]). The channel rides inside the cell so
    /// that a [`Command`] stays one pointer larger than nothing, ≤ 72 B.
    ChannelDeflate(SharedDeflate),
    /// Every local connection of the user.
    User(Arc<str>),
    /// One connection (if it still exists with this generation).
    Conn { key: u32, gen: u32 },
}

/// A core's local view of a channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelInfo {
    pub subscribers: usize,
    /// Distinct user ids among the local subscribers (anonymous ones are
    /// only counted).
    pub users: Vec<String>,
}

/// What the hub of a core is asked.
#[derive(Debug)]
pub enum HubCommand {
    /// Queue a ready frame for the target's local connections. `at` is
    /// when it was published (for the publish-to-write histogram).
    Deliver {
        target: Target,
        frame: Bytes,
        at: Instant,
    },
    /// Report local subscribers of a channel.
    QueryChannel {
        channel: Box<str>,
        reply: Sender<ChannelInfo>,
    },
    /// Report local connections of a user, as (slab key, generation).
    QueryUser {
        user: Box<str>,
        reply: Sender<Vec<(u32, u32)>>,
    },
    /// Report the `n` local channels with the most subscribers.
    TopChannels {
        n: usize,
        reply: Sender<Vec<(Arc<str>, usize)>>,
    },
    /// Put one connection (if it still exists with this generation) into
    /// a channel, as if it had subscribed.
    Join {
        key: u32,
        gen: u32,
        channel: Box<str>,
        reply: Sender<Membership>,
    },
    /// Take one connection out of a channel.
    Leave {
        key: u32,
        gen: u32,
        channel: Box<str>,
        reply: Sender<Membership>,
    },
    /// Clustered: the broker link confirmed subscriptions (or went down):
    /// send the subscribe acks that were waiting for them.
    Subscribed,
}

/// The answer to [`HubCommand::Join`] and [`HubCommand::Leave`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Membership {
    /// Done (also when it already was, or was not, a member).
    Done,
    /// No such connection (any more), or it is no longer open.
    Gone,
    /// Not a channel name clients may use.
    InvalidChannel,
    /// Over `hub.max_subscriptions`.
    TooManyChannels,
}

/// The answer to [`Command::Post`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    /// Queued for writing.
    Queued,
    /// Over `connection.max_pending_bytes`: not queued.
    Full,
    /// No such connection (any more), or it is not open.
    Gone,
}

/// Messages another thread sends to a core.
#[derive(Debug)]
pub enum Command {
    /// For the core's hub.
    Hub(HubCommand),
    /// Close one connection with `code`; `reply`, if any, is told
    /// whether it was open (false: gone, or already closing).
    Disconnect {
        key: u32,
        gen: u32,
        code: u16,
        reply: Option<Sender<bool>>,
    },
    /// The decision on an upgrade admission left pending (its
    /// [`Ticket`](crate::admission::Ticket)): write the `101` or the
    /// refusal. Dropped if that connection is gone or no longer waiting
    /// (its handshake deadline answered `504` first).
    AdmissionDecision {
        key: u32,
        gen: u32,
        verdict: Verdict,
    },
    /// Report the bytes queued for writing on this core.
    QueryQueued { reply: Sender<u64> },
    /// Queue one ready frame on one connection only if it fits under
    /// `connection.max_pending_bytes` (no slow-consumer policy: a full
    /// queue is answered, nothing queued), and say what happened.
    Post {
        key: u32,
        gen: u32,
        frame: Bytes,
        reply: Sender<Posted>,
    },
    /// Gateway mode: the gateway finished `done` messages of this
    /// connection so far (a running total, so a repeat or a merge is
    /// harmless); a connection held for back-pressure may read again.
    GatewayDone { key: u32, gen: u32, done: u32 },
}

/// The inbox was full; the command was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A `Send` handle to one core: its inbox, the waker that rouses it, and
/// what it publishes (counters, latency histograms).
#[derive(Clone)]
pub struct CoreHandle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    /// True while a wake-up is pending: senders skip the syscall then.
    notified: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
    counters: Arc<CoreCounters>,
    latency: Arc<Mutex<LatencyHistograms>>,
}

/// The core's own end of its inbox.
pub struct Inbox {
    rx: Receiver<Command>,
    notified: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
}

/// A new inbox of `capacity` commands (at least 1) for the core whose poll
/// `waker` belongs to, and the handle others send through.
pub fn inbox(capacity: usize, waker: Waker) -> (CoreHandle, Inbox) {
    let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
    let notified = Arc::new(AtomicBool::new(false));
    let shutdown = Arc::new(AtomicBool::new(false));
    let handle = CoreHandle {
        tx,
        waker: Arc::new(waker),
        notified: notified.clone(),
        shutdown: shutdown.clone(),
        counters: Arc::default(),
        latency: Arc::default(),
    };
    let inbox = Inbox {
        rx,
        notified,
        shutdown,
    };
    (handle, inbox)
}

impl CoreHandle {
    /// Queues `cmd`, waking the core only if no wake-up is already pending
    /// (coalesced wake-ups). Never waits: a full inbox is `Err(Full)`.
    pub fn try_send(&self, cmd: Command) -> Result<(), Full> {
        match self.tx.try_send(cmd) {
            Ok(()) => {
                // Pairs with the fence in `Inbox::drain`: either the core
                // sees this command, or this swap sees its `false`.
                fence(Ordering::SeqCst);
                if !self.notified.swap(true, Ordering::AcqRel) {
                    let _ = self.waker.wake();
                }
                Ok(())
            }
            Err(TrySendError::Full(_)) => Err(Full),
            // The core has exited (shutdown): nobody is left to tell.
            Err(TrySendError::Disconnected(_)) => Ok(()),
        }
    }

    /// Hands a frame to the core for its local `target`; a full inbox
    /// drops it and counts the drop on this core. True if queued.
    pub fn deliver(&self, target: Target, frame: Bytes, at: Instant) -> bool {
        let cmd = Command::Hub(HubCommand::Deliver { target, frame, at });
        let queued = self.try_send(cmd).is_ok();
        if !queued {
            self.counters.dropped_inbox_full.add(1);
        }
        queued
    }

    /// Asks the core to shut down. Never lost, whatever the inbox holds.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }

    /// This core's counters.
    pub fn counters(&self) -> &CoreCounters {
        &self.counters
    }

    /// The shared cell of this core's counters (the core writes it).
    pub(crate) fn counters_arc(&self) -> Arc<CoreCounters> {
        self.counters.clone()
    }

    /// The shared copy of this core's latency histograms (the core folds
    /// its own into it once a second).
    pub(crate) fn latency_arc(&self) -> Arc<Mutex<LatencyHistograms>> {
        self.latency.clone()
    }

    /// A copy of this core's latency histograms (merged once a second).
    pub fn latency(&self) -> LatencyHistograms {
        self.latency.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

impl Inbox {
    /// True once [`CoreHandle::shutdown`] was called.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    /// Clears the pending wake-up; call it when woken, then take the
    /// commands with [`Inbox::next`] until `None`. A command sent after the
    /// clear wakes the core again.
    pub fn woken(&self) {
        self.notified.store(false, Ordering::Release);
        // Pairs with the fence in `CoreHandle::try_send`.
        fence(Ordering::SeqCst);
    }

    /// The next queued command, in order.
    pub fn next(&self) -> Option<Command> {
        self.rx.try_recv().ok()
    }

    /// [`Inbox::woken`], then every queued command to `f`, in order.
    pub fn drain(&self, mut f: impl FnMut(Command)) {
        self.woken();
        while let Some(cmd) = self.next() {
            f(cmd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll, Token};
    use std::time::Duration;

    fn deliver_cmd() -> (Target, Bytes, Instant) {
        (
            Target::Channel("c".into()),
            Bytes::from_static(b"x"),
            Instant::now(),
        )
    }

    #[test]
    fn a_full_inbox_drops_deliveries_counted_and_refuses_other_commands() {
        let poll = Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), Token(1)).unwrap();
        let (handle, inbox) = inbox(2, waker);
        for _ in 0..2 {
            let (t, f, at) = deliver_cmd();
            assert!(handle.deliver(t, f, at));
        }
        let (t, f, at) = deliver_cmd();
        assert!(!handle.deliver(t, f, at), "third one dropped");
        assert_eq!(handle.counters().dropped_inbox_full.get(), 1);
        let (tx, _rx) = crossbeam_channel::bounded(1);
        assert_eq!(
            handle.try_send(Command::QueryQueued { reply: tx }),
            Err(Full)
        );
        // Shutdown is a flag: a full inbox does not lose it.
        handle.shutdown();
        assert!(inbox.shutdown_requested());
        let mut n = 0;
        inbox.drain(|_| n += 1);
        assert_eq!(n, 2);
        let (t, f, at) = deliver_cmd();
        assert!(handle.deliver(t, f, at), "room again once drained");
    }

    #[test]
    fn a_queued_command_stays_small() {
        // The inbox allocates `inbox_capacity` slots of this (plus an
        // 8-byte stamp each) up front: see `Config::inbox_capacity`.
        assert!(
            std::mem::size_of::<Command>() <= 72,
            "{}",
            std::mem::size_of::<Command>()
        );
    }

    #[test]
    fn wake_ups_are_coalesced_until_the_core_drains() {
        let mut poll = Poll::new().unwrap();
        let waker = Waker::new(poll.registry(), Token(1)).unwrap();
        let (handle, inbox) = inbox(8, waker);
        for _ in 0..3 {
            let (t, f, at) = deliver_cmd();
            handle.deliver(t, f, at);
        }
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(events.iter().count(), 1);
        let mut n = 0;
        inbox.drain(|_| n += 1);
        assert_eq!(n, 3);
        // Drained: the next command wakes the core again.
        let (t, f, at) = deliver_cmd();
        handle.deliver(t, f, at);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(events.iter().count(), 1);
    }
}
