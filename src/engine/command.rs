//! What crosses from one thread to a core: commands through its inbox.
//!
//! Owns: the command and reply types. Must not touch: their handling (the
//! core's) or how they are sent (`CoreHandle`'s).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use crossbeam_channel::Sender;

use crate::admission::Verdict;
use crate::hub::ConnId;

/// Who receives a delivered frame on the target core.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every local subscriber of the channel.
    Channel(Arc<str>),
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

/// Messages another thread sends to a core.
#[derive(Debug)]
pub enum Command {
    /// Stop accepting, close every connection with 1001, drain, exit.
    Shutdown,
    /// Queue a ready frame for the target's local connections. `at` is
    /// when it was published (for the publish-to-write histogram).
    Deliver {
        target: Target,
        frame: Bytes,
        at: Instant,
    },
    /// Close one connection with `code`.
    Disconnect { key: u32, gen: u32, code: u16 },
    /// The decision on an upgrade admission left pending (its
    /// [`Ticket`](crate::admission::Ticket)): write the `101` or the
    /// refusal. Dropped if that connection is gone or no longer waiting
    /// (its handshake deadline answered `504` first).
    AdmissionDecision {
        key: u32,
        gen: u32,
        verdict: Verdict,
    },
    /// Report local subscribers of a channel.
    QueryChannel {
        channel: String,
        reply: Sender<ChannelInfo>,
    },
    /// Report the `n` local channels with the most subscribers.
    TopChannels {
        n: usize,
        reply: Sender<Vec<(Arc<str>, usize)>>,
    },
    /// Report the bytes queued for writing on this core.
    QueryOutbound { reply: Sender<u64> },
    /// Report local connections of a user.
    QueryUser {
        user: String,
        reply: Sender<Vec<ConnId>>,
    },
}
