//! One WebSocket connection as a sans-IO state machine, shaped like
//! quinn-proto's `Connection`.
//!
//! Owns: the life of one connection — upgrade, awaiting the decision on it,
//! open, closing, closed — its partial input, message assembly (fragments,
//! interleaved control frames, streaming UTF-8), the close handshake,
//! liveness (ping, pong, idle), its rate limits and its outbound queue.
//! Bytes and `now` go in; events, bytes to write and the next deadline come
//! out.
//! Must not touch: sockets, the clock, other connections, the timing wheel
//! (the driver asks [`Conn::poll_timeout`] and schedules it), routes and
//! admission (it reports the upgrade request; the server decides).
//!
//! # Call order for the driver
//!
//! 1. Input: [`Conn::handle_read`] with bytes read (all of them are taken),
//!    [`Conn::handle_eof`] / [`Conn::handle_io_error`] when the socket says
//!    so, [`Conn::handle_timeout`] when the wheel fires, [`Conn::accept`] /
//!    [`Conn::refuse`] when the upgrade is decided (at once or later);
//!    the application's own calls ([`Conn::send_message`],
//!    [`Conn::push_frame`], [`Conn::close`]) at any time.
//! 2. Events: [`Conn::poll_event`] until it returns `None`, acting on each
//!    before taking the next (an [`Event::Upgrade`] is answered with
//!    `accept`/`refuse` or left pending; a message is routed). Input is
//!    parsed here, one message at a time, so whatever the application
//!    queues in answer to a message (an echo) is written before anything
//!    later in the stream takes effect: a protocol error's close frame
//!    never overtakes the echo of the message before it, and a ping's pong
//!    follows the answers to earlier messages. Parsing stops early (the
//!    rest stays buffered) while the out queue is over `write_budget`,
//!    while a rate-limit pause lasts, and before the upgrade is decided;
//!    then `poll_event` returns `None` and [`Conn::wants_read`] is false.
//! 3. Output: [`Conn::poll_transmit`] gathers queued bytes for one
//!    vectored write and [`Conn::handle_written`] consumes what the socket
//!    took, until nothing is left or the socket would block. If it was
//!    over `write_budget` and input is buffered, go back to 2.
//! 4. Drop the connection when [`Conn::is_dead`] (after one last write
//!    attempt); otherwise schedule [`Conn::poll_timeout`].
//!
//! One driver outside the engine, `conn::testing`, does the same over
//! virtual time for the unit tests, the `connection` fuzz target and the
//! allocation bench.

pub mod compress;
pub mod outbound;
pub mod reason;
#[cfg(any(test, fuzzing, feature = "testing"))]
pub mod testing;

use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::{Config, ConnConfig, RatePolicy};
use crate::error::{ProtocolError, Rejection};
use crate::limits::TokenBucket;
use crate::protocol::close::{code, parse_close_payload};
use crate::protocol::deflate_offer::{self, Agreed};
use crate::protocol::encoder::FrameEncoder;
use crate::protocol::handshake::{self, UpgradeRequest};
use crate::protocol::utf8::Utf8Validator;
use crate::protocol::{Frame, FrameDecoder, OpCode, Role};

use compress::Deflate;
pub use compress::{Codecs, SharedDeflate, SharedFrame};
pub use outbound::OutQueue;
pub use reason::EndReason;

/// Something the application layer must act on, taken with
/// [`Conn::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete, RFC-valid upgrade request arrived ([`Conn::request`]):
    /// answer it with [`Conn::accept`] or [`Conn::refuse`], now or later
    /// (the handshake deadline keeps running meanwhile).
    Upgrade,
    /// The upgrade completed (after [`Conn::accept`]).
    Opened,
    /// A complete, validated data message.
    Message { text: bool, payload: Bytes },
    /// The upgrade was refused (by the request's own defects, its
    /// deadline, or [`Conn::refuse`]); the answer is queued.
    Refused(Rejection),
    /// The connection stopped being open (delivered once, last).
    Ended(EndReason),
}

/// Counts a connection reports to its core (plain integers: the core owns
/// them and publishes them to its atomics once per loop turn).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub frames_in: u64,
    pub frames_out: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub pings_sent: u64,
    /// Times reading paused because the message bucket was empty.
    pub throttled_msgs: u64,
    /// Times reading paused because the byte bucket was empty.
    pub throttled_bytes: u64,
}

/// Everything a call into a connection may use besides the connection:
/// the time, and what its core lends every connection (the settings, the
/// frame encoder's arena, the counters it folds in once per loop turn).
pub struct Ctx<'a> {
    pub now: Instant,
    /// Tick 0 of the connection's deadlines (the core's start): the same
    /// for every call into one connection. See [`Tick`].
    pub epoch: Instant,
    /// The server's settings (the connection reads `conn`, `rate_limit`
    /// and what the handshake needs).
    pub cfg: &'a Config,
    pub enc: &'a mut FrameEncoder,
    /// The core's shared compressors and inflaters (permessage-deflate
    /// without context takeover) and their scratch buffer.
    pub codecs: &'a mut Codecs,
    pub tally: &'a mut Tally,
}

/// A deadline as whole milliseconds since [`Ctx::epoch`], in 32 bits (4
/// bytes where an `Instant` takes 16). It wraps after ≈49.7 days, so ticks
/// are compared by their wrapping difference (`reached`), which is right
/// while every deadline is less than 2^31 ms (≈24.8 days) from now: the
/// settings keep every connection timeout at most [`MAX_TIMEOUT`].
///
/// A deadline `now + d` is stored rounded *up* to its tick and is due once
/// the current tick (rounded down) reaches it: it never fires early, and at
/// most 1 ms late — the core's timing wheel rounds the same way.
pub type Tick = u32;

/// The longest connection timeout the settings accept (see [`Tick`]);
/// declared by the settings, which check it.
pub use crate::config::MAX_CONN_TIMEOUT as MAX_TIMEOUT;

/// `t` as a tick, rounded down (a deadline at or before it is due).
fn tick_floor(epoch: Instant, t: Instant) -> Tick {
    // Truncation to 32 bits is the wrap.
    t.saturating_duration_since(epoch).as_millis() as Tick
}

/// `t` as a tick, rounded up (a deadline there is never early).
fn tick_ceil(epoch: Instant, t: Instant) -> Tick {
    ceil_ms(t.saturating_duration_since(epoch))
}

/// Whether deadline `at` is due at tick `now` (wrapping comparison).
fn reached(now: Tick, at: Tick) -> bool {
    now.wrapping_sub(at) as i32 >= 0
}

/// `d` in whole milliseconds, rounded up (wrapping to 32 bits).
fn ceil_ms(d: Duration) -> Tick {
    let up = u128::from(d.subsec_nanos() % 1_000_000 != 0);
    (d.as_millis() + up) as Tick
}

impl Ctx<'_> {
    /// The current tick, rounded down.
    fn tick(&self) -> Tick {
        tick_floor(self.epoch, self.now)
    }

    /// The tick of `now + d`, rounded up.
    fn deadline(&self, d: Duration) -> Tick {
        tick_ceil(self.epoch, self.now + d)
    }
}

/// Where a connection is in its life. It only moves down this list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the complete upgrade request.
    Handshake,
    /// The request is parsed ([`Event::Upgrade`]); waiting for
    /// [`Conn::accept`] or [`Conn::refuse`], with the handshake deadline
    /// still armed (`504` when it passes). The socket is not read
    /// meanwhile (a client may not send before the `101`).
    Deciding,
    /// Exchanging messages.
    Open,
    /// We sent a close frame and wait for the peer's.
    Closing,
    /// Nothing more will be sent after the queue: flush it, then drop.
    Closed,
    /// Drop the socket now.
    Dead,
}

/// What became of a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// Over the budget; dropped for this connection (policy `drop`).
    Dropped,
    /// Over the budget; the connection is being closed (policy `close`).
    Closed,
    /// The connection is not open (closing or not upgraded).
    NotOpen,
}

/// The slow-consumer policy is a setting; re-exported where it acts.
pub use crate::config::SlowConsumerPolicy;

/// A fragmented message being assembled.
#[derive(Debug)]
struct Assembly {
    text: bool,
    /// The first frame had RSV1: `buf` is compressed, inflated (and
    /// UTF-8-checked) once the last frame is in.
    compressed: bool,
    buf: BytesMut,
}

/// Events waiting for [`Conn::poll_event`] besides messages (which are
/// parsed on demand), as bits of [`Conn::report`].
const REPORT_UPGRADE: u8 = 1;
const REPORT_OPENED: u8 = 2;
const REPORT_ENDED: u8 = 4;

/// One connection's state. Small on purpose: an idle open connection holds
/// no buffers (see PERF.md for the measured bytes per connection).
#[derive(Debug)]
pub struct Conn {
    phase: Phase,
    /// Events to report (`REPORT_*` bits); a refusal waits in
    /// `Cold::refused`.
    report: u8,
    /// Unconsumed input: only non-empty while a request head or a frame is
    /// partly received, or while parsing is paused (see the module doc).
    rx: BytesMut,
    /// `rx` is a slice of the core's shared receive block.
    rx_borrowed: bool,
    utf8: Utf8Validator,
    out: OutQueue,
    /// Deadline of the current phase: handshake (and decision), close
    /// answer, or final flush.
    phase_deadline: Tick,
    next_ping: Tick,
    /// Meaningful while `awaiting_pong`.
    pong_deadline: Tick,
    /// A ping is out and nothing came back since.
    awaiting_pong: bool,
    /// The application asked to stop parsing (and reading) for now
    /// ([`Conn::hold`]): its consumer of this connection's messages is
    /// behind (the gateway's backend).
    held: bool,
    /// Rounded up, so the idle deadline from it is never early.
    last_message: Tick,
    end: Option<EndReason>,
    /// What is needed only now and then; `None` when all of it is empty.
    cold: Option<Box<Cold>>,
    /// permessage-deflate, only on connections that agreed it.
    deflate: Option<Box<Deflate>>,
}

/// The rarely used part of a connection, in one box allocated on first
/// use and freed (at the end of [`Conn::poll_event`]) once all of it is
/// empty again: an idle open connection without rate limits has none.
#[derive(Debug)]
struct Cold {
    /// Holds the header of a frame whose payload is still arriving.
    decoder: FrameDecoder,
    /// A fragmented message being assembled.
    assembly: Option<Assembly>,
    /// The parsed upgrade request, until it is answered.
    upgrade: Option<Box<UpgradeRequest>>,
    /// A refusal not yet reported.
    refused: Option<Rejection>,
    /// Rate limiter, only when limits are configured (so for the
    /// connection's whole life).
    limiter: Option<Limiter>,
}

impl Default for Cold {
    fn default() -> Self {
        Self {
            decoder: FrameDecoder::new(Role::Server),
            assembly: None,
            upgrade: None,
            refused: None,
            limiter: None,
        }
    }
}

impl Cold {
    fn is_empty(&self) -> bool {
        self.decoder.pending_header().is_none()
            && self.assembly.is_none()
            && self.upgrade.is_none()
            && self.refused.is_none()
            && self.limiter.is_none()
    }
}

/// A connection's two buckets and its back-pressure pause.
#[derive(Debug)]
struct Limiter {
    msgs: TokenBucket,
    bytes: TokenBucket,
    /// Reading is paused until then (back-pressure policy).
    paused_until: Option<Instant>,
    policy: RatePolicy,
}

/// An upper bound on the size of a frame of `plain_len` bytes once its
/// payload is compressed: deflate adds at most 5 bytes per 16 KiB stored
/// block, plus a few for the block headers and the frame header's growth.
fn deflate_bound(plain_len: usize) -> usize {
    plain_len + plain_len / 16_384 * 5 + 64
}

impl Conn {
    /// A freshly accepted connection, waiting for its upgrade request.
    /// `epoch` is tick 0 of its deadlines (see [`Tick`]).
    pub fn new(now: Instant, epoch: Instant, config: &Config) -> Self {
        let cfg = &config.conn;
        Self {
            phase: Phase::Handshake,
            report: 0,
            rx: BytesMut::new(),
            rx_borrowed: false,
            utf8: Utf8Validator::new(),
            out: OutQueue::default(),
            phase_deadline: tick_ceil(epoch, now + cfg.handshake_timeout),
            next_ping: 0,
            pong_deadline: 0,
            awaiting_pong: false,
            held: false,
            last_message: 0,
            end: None,
            deflate: None,
            cold: config.rate_limit.buckets().map(|r| {
                Box::new(Cold {
                    limiter: Some(Limiter {
                        msgs: TokenBucket::new(r.msgs_per_sec, r.msgs_burst, now),
                        bytes: TokenBucket::new(r.bytes_per_sec, r.bytes_burst, now),
                        paused_until: None,
                        policy: r.policy,
                    }),
                    ..Cold::default()
                })
            }),
        }
    }

    /// The cold part, allocated if need be.
    fn cold(&mut self) -> &mut Cold {
        self.cold.get_or_insert_with(Default::default)
    }

    /// Frees the cold part if nothing is left in it.
    fn shrink_cold(&mut self) {
        if self.cold.as_ref().is_some_and(|c| c.is_empty()) {
            self.cold = None;
        }
    }

    fn assembly(&self) -> Option<&Assembly> {
        self.cold.as_ref()?.assembly.as_ref()
    }

    fn drop_assembly(&mut self) {
        if let Some(c) = self.cold.as_mut() {
            c.assembly = None;
        }
    }

    fn drop_upgrade(&mut self) {
        if let Some(c) = self.cold.as_mut() {
            c.upgrade = None;
        }
    }

    fn limiter(&self) -> Option<&Limiter> {
        self.cold.as_ref()?.limiter.as_ref()
    }

    fn limiter_mut(&mut self) -> Option<&mut Limiter> {
        self.cold.as_mut()?.limiter.as_mut()
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The upgrade request awaiting its answer (from [`Event::Upgrade`]
    /// until [`Conn::accept`] or [`Conn::refuse`]; an open connection
    /// keeps nothing of it).
    pub fn request(&self) -> Option<&UpgradeRequest> {
        self.cold.as_ref()?.upgrade.as_deref()
    }

    /// Why the connection ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end
    }

    /// The permessage-deflate parameters agreed in the upgrade, if any.
    pub fn compression(&self) -> Option<&Agreed> {
        self.deflate.as_deref().map(Deflate::agreed)
    }

    /// Whether the connection keeps a compressor or inflater of its own
    /// (context takeover, after its first compressed message).
    pub fn holds_codecs(&self) -> bool {
        self.deflate.as_ref().is_some_and(|d| d.holds_coders())
    }

    /// Bytes waiting in the outbound queue.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// True once the socket should be dropped.
    pub fn is_dead(&self) -> bool {
        self.phase == Phase::Dead
    }

    /// True while a rate-limit pause lasts.
    fn throttled(&self) -> bool {
        self.limiter().is_some_and(|l| l.paused_until.is_some())
    }

    /// Whether the driver should read from the socket now. False while the
    /// outbound queue is over its budget (back-pressure on the peer), while
    /// a rate-limit pause lasts and while the upgrade awaits its decision.
    pub fn wants_read(&self, cfg: &ConnConfig) -> bool {
        match self.phase {
            Phase::Dead | Phase::Deciding => false,
            Phase::Closed => true,
            Phase::Handshake | Phase::Open | Phase::Closing => {
                self.out.len() <= cfg.write_budget && !self.throttled() && !self.held
            }
        }
    }

    /// Whether frames may be parsed now (see the module doc).
    fn may_parse(&self, cfg: &ConnConfig) -> bool {
        matches!(self.phase, Phase::Open | Phase::Closing)
            && self.out.len() <= cfg.write_budget
            && !self.throttled()
            && !self.held
    }

    /// Charges one message (or ping) of `len` payload bytes to the rate
    /// limiter and applies the policy when a bucket runs dry.
    fn charge(&mut self, msgs: f64, len: usize, ctx: &mut Ctx<'_>) {
        let Some(l) = self.limiter_mut() else {
            return;
        };
        let now = ctx.now;
        let wait_m = if msgs > 0.0 {
            l.msgs.spend(msgs, now)
        } else {
            None
        };
        let wait_b = l.bytes.spend(len as f64, now);
        if wait_m.is_none() && wait_b.is_none() {
            return;
        }
        if wait_m.is_some() {
            ctx.tally.throttled_msgs += 1;
        }
        if wait_b.is_some() {
            ctx.tally.throttled_bytes += 1;
        }
        match l.policy {
            RatePolicy::Backpressure => {
                let wait = wait_m.unwrap_or_default().max(wait_b.unwrap_or_default());
                let until = now + wait;
                l.paused_until = Some(l.paused_until.map_or(until, |u| u.max(until)));
            }
            RatePolicy::Close => {
                self.close(
                    code::POLICY_VIOLATION,
                    "rate limit",
                    EndReason::RateLimited,
                    ctx,
                );
            }
        }
    }

    /// The next instant at which [`Conn::handle_timeout`] has work to do
    /// (a whole millisecond after `epoch`, but for a rate-limit pause: see
    /// [`Tick`]), seen at `now` with deadlines counted from `epoch` (as in
    /// [`Ctx`]).
    pub fn poll_timeout(&self, cfg: &ConnConfig, epoch: Instant, now: Instant) -> Option<Instant> {
        // Ticks back to instants, by their (wrapping) distance from now.
        let since = now.saturating_duration_since(epoch).as_millis() as i128;
        let now_tick = since as Tick;
        let at = |t: Tick| {
            let ms = since + i128::from(t.wrapping_sub(now_tick) as i32);
            epoch + Duration::from_millis(ms.max(0) as u64)
        };
        match self.phase {
            Phase::Handshake | Phase::Deciding | Phase::Closing | Phase::Closed => {
                Some(at(self.phase_deadline))
            }
            Phase::Open => {
                let mut t = at(self.next_ping);
                if let Some(p) = self.limiter().and_then(|l| l.paused_until) {
                    t = t.min(p);
                }
                if self.awaiting_pong {
                    t = t.min(at(self.pong_deadline));
                }
                if let Some(idle) = cfg.idle_timeout {
                    t = t.min(at(self.last_message.wrapping_add(ceil_ms(idle))));
                }
                Some(t)
            }
            Phase::Dead => None,
        }
    }

    /// Records the end reason once; reported by the next `poll_event`.
    fn end(&mut self, reason: EndReason) {
        if self.end.is_none() {
            self.end = Some(reason);
            self.report |= REPORT_ENDED;
        }
    }

    /// Nothing more will be sent after the queue; the deadline bounds the
    /// flush to a peer that does not read. Dead at once if nothing waits.
    fn enter_closed(&mut self, ctx: &mut Ctx<'_>) {
        self.phase = Phase::Closed;
        self.phase_deadline = ctx.deadline(ctx.cfg.conn.close_timeout);
        self.drop_assembly();
        self.rx = BytesMut::new();
        self.rx_borrowed = false;
        if self.out.is_empty() {
            self.phase = Phase::Dead;
        }
    }

    fn die(&mut self, reason: EndReason) {
        self.end(reason);
        self.phase = Phase::Dead;
        self.rx = BytesMut::new();
        self.rx_borrowed = false;
        self.drop_assembly();
        self.drop_upgrade();
    }

    /// Starts a server-side close: sends `code`, waits for the answer.
    /// Before the upgrade was answered the socket is just dropped.
    pub fn close(&mut self, close_code: u16, reason: &str, why: EndReason, ctx: &mut Ctx<'_>) {
        match self.phase {
            Phase::Open => {
                self.out.push(ctx.enc.close(close_code, reason));
                ctx.tally.frames_out += 1;
                self.end(why);
                self.phase = Phase::Closing;
                self.phase_deadline = ctx.deadline(ctx.cfg.conn.close_timeout);
                self.drop_assembly();
            }
            Phase::Handshake | Phase::Deciding => self.die(why),
            Phase::Closing | Phase::Closed | Phase::Dead => {}
        }
    }

    /// The server failed while handling this connection (a panic its core
    /// caught): if open, queue a 1011 close; record
    /// [`EndReason::InternalError`] unless it had already ended; then
    /// flush what is queued and drop, without waiting for the peer's
    /// answer. Nothing of this state machine is trusted after a panic but
    /// its out-queue (whole frames, so the close cannot split one): buffered
    /// input is dropped unparsed, and of the events not yet taken only an
    /// end (and a refusal, for its count) is still reported.
    pub fn abort(&mut self, ctx: &mut Ctx<'_>) {
        self.report &= REPORT_ENDED;
        self.rx = BytesMut::new();
        self.rx_borrowed = false;
        self.drop_upgrade();
        match self.phase {
            Phase::Open => {
                self.out
                    .push(ctx.enc.close(code::INTERNAL_ERROR, "internal error"));
                ctx.tally.frames_out += 1;
                self.end(EndReason::InternalError);
                self.enter_closed(ctx);
            }
            Phase::Closing => {
                self.end(EndReason::InternalError);
                self.enter_closed(ctx);
            }
            Phase::Closed => self.end(EndReason::InternalError),
            Phase::Handshake | Phase::Deciding | Phase::Dead => self.die(EndReason::InternalError),
        }
    }

    /// Stops (`true`) or resumes (`false`) parsing and reading: while held,
    /// [`Conn::poll_event`] delivers no further message and
    /// [`Conn::wants_read`] is false (TCP back-pressure on the peer), as
    /// when the queue is over its budget; input already buffered waits.
    /// Deadlines keep running. After resuming, the driver polls events and
    /// reads again.
    pub fn hold(&mut self, held: bool) {
        self.held = held;
    }

    /// True while [`Conn::hold`] holds it.
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// Queues a frame encoded elsewhere only if it fits under
    /// `max_pending_bytes`, whatever the slow-consumer policy: over it, the
    /// frame is not queued ([`Push::Dropped`]) and the connection stays
    /// open — the caller answers "queue full" (a retry is safe).
    pub fn offer_frame(&mut self, frame: Bytes, ctx: &mut Ctx<'_>) -> Push {
        if self.phase != Phase::Open {
            return Push::NotOpen;
        }
        if self.out.len() + frame.len() > ctx.cfg.conn.max_pending_bytes {
            return Push::Dropped;
        }
        self.out.push(frame);
        ctx.tally.frames_out += 1;
        ctx.tally.messages_out += 1;
        Push::Queued
    }

    /// Queues a data message (text or binary) as one frame.
    pub fn send_message(&mut self, text: bool, payload: Bytes, ctx: &mut Ctx<'_>) -> bool {
        if self.phase != Phase::Open {
            return false;
        }
        let op = if text { OpCode::Text } else { OpCode::Binary };
        match self.deflate.as_mut() {
            Some(d) if payload.len() >= ctx.cfg.compression.min_size => {
                let level = ctx.cfg.compression.level;
                self.out
                    .push(d.encode(op, &payload, level, ctx.codecs, ctx.enc));
            }
            _ => self.out.push_frame(ctx.enc.frame(op, payload)),
        }
        ctx.tally.frames_out += 1;
        ctx.tally.messages_out += 1;
        true
    }

    /// Queues a published frame shared by many connections, as
    /// [`Conn::push_frame`] does, compressed when this connection agreed
    /// permessage-deflate and the message is at least
    /// `compression.min_size`: without server context takeover the frame
    /// compressed once for this window (`shared` caches it for the next
    /// connection), with it compressed by this connection's own context.
    pub fn push_shared(&mut self, shared: &mut SharedFrame, ctx: &mut Ctx<'_>) -> Push {
        let Some(d) = self.deflate.as_mut() else {
            return self.push_frame(shared.plain().clone(), ctx);
        };
        if self.phase != Phase::Open {
            return Push::NotOpen;
        }
        let c = &ctx.cfg.compression;
        let room = ctx
            .cfg
            .conn
            .max_pending_bytes
            .saturating_sub(self.out.len());
        let frame = match shared.message() {
            Some((op, payload)) if payload.len() >= c.min_size => match d.shared_window() {
                Some(bits) => shared.compressed(bits, c.level, ctx.codecs, ctx.enc),
                // With context takeover a message once compressed is in
                // the peer's window: compress only what is sure to be
                // queued (else the plain frame meets the slow-consumer
                // policy, and may still be queued: plain is always valid).
                None if deflate_bound(shared.plain().len()) <= room => {
                    Some(d.encode(op, &payload, c.level, ctx.codecs, ctx.enc))
                }
                None => None,
            },
            _ => None,
        };
        let frame = frame.unwrap_or_else(|| shared.plain().clone());
        self.push_frame(frame, ctx)
    }

    /// Queues a frame encoded elsewhere (a fan-out shared by many
    /// connections), applying the slow-consumer policy when the queue is
    /// over `max_pending_bytes`.
    pub fn push_frame(&mut self, frame: Bytes, ctx: &mut Ctx<'_>) -> Push {
        if self.phase != Phase::Open {
            return Push::NotOpen;
        }
        if self.out.len() + frame.len() > ctx.cfg.conn.max_pending_bytes {
            return match ctx.cfg.conn.slow_consumer {
                SlowConsumerPolicy::Drop => Push::Dropped,
                SlowConsumerPolicy::Close => {
                    self.close(
                        code::POLICY_VIOLATION,
                        "slow consumer",
                        EndReason::SlowConsumer,
                        ctx,
                    );
                    Push::Closed
                }
            };
        }
        self.out.push(frame);
        ctx.tally.frames_out += 1;
        ctx.tally.messages_out += 1;
        Push::Queued
    }

    /// The peer closed its write side.
    pub fn handle_eof(&mut self) {
        let reason = match self.phase {
            Phase::Open | Phase::Handshake | Phase::Deciding => EndReason::PeerGone,
            _ => EndReason::PeerClose,
        };
        self.die(reason);
    }

    /// The socket failed. What is queued stays for the driver's last write
    /// attempt before it drops the connection (as for any dead one).
    pub fn handle_io_error(&mut self) {
        self.die(EndReason::IoError);
    }

    /// Deadlines that may have passed at `ctx.now`. A rate-limit pause
    /// that ends here lets buffered input be parsed: poll events after it.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        let tick = ctx.tick();
        match self.phase {
            Phase::Handshake if reached(tick, self.phase_deadline) => {
                self.refuse(Rejection::Timeout, ctx);
            }
            Phase::Deciding if reached(tick, self.phase_deadline) => {
                self.refuse(Rejection::DecisionTimeout, ctx);
            }
            Phase::Open => {
                if let Some(l) = self.limiter_mut() {
                    if l.paused_until.is_some_and(|u| now >= u) {
                        l.paused_until = None;
                    }
                }
                if self.awaiting_pong && reached(tick, self.pong_deadline) {
                    // Best effort: the driver tries one write before dropping.
                    self.out
                        .push(ctx.enc.close(code::GOING_AWAY, "pong timeout"));
                    self.die(EndReason::PingTimeout);
                    return;
                }
                if let Some(idle) = ctx.cfg.conn.idle_timeout {
                    if reached(tick, self.last_message.wrapping_add(ceil_ms(idle))) {
                        self.close(
                            code::GOING_AWAY,
                            "idle timeout",
                            EndReason::IdleTimeout,
                            ctx,
                        );
                        return;
                    }
                }
                if reached(tick, self.next_ping) {
                    // Quiet since the last tick: give back the out-queue's
                    // ring (the ping itself needs none).
                    self.out.release_idle();
                    self.out.push(ctx.enc.control(OpCode::Ping, b""));
                    ctx.tally.frames_out += 1;
                    ctx.tally.pings_sent += 1;
                    self.next_ping = ctx.deadline(ctx.cfg.conn.ping_interval);
                    if !self.awaiting_pong {
                        self.awaiting_pong = true;
                        self.pong_deadline = ctx.deadline(ctx.cfg.conn.pong_timeout);
                    }
                }
            }
            Phase::Closing if reached(tick, self.phase_deadline) => {
                self.end(EndReason::CloseTimeout);
                self.enter_closed(ctx);
            }
            Phase::Closed if reached(tick, self.phase_deadline) => {
                self.die(EndReason::CloseTimeout);
            }
            _ => {}
        }
    }

    /// Bytes read from the socket: all of `input` is taken (left empty);
    /// [`Conn::poll_event`] parses it. Anything from the peer counts as a
    /// sign of life (it clears the pong deadline).
    pub fn handle_read(&mut self, input: &mut BytesMut) {
        if input.is_empty() {
            return;
        }
        if matches!(self.phase, Phase::Closed | Phase::Dead) {
            // Only our queue matters now; what the peer sends is dropped.
            input.clear();
            return;
        }
        self.awaiting_pong = false;
        if self.rx.is_empty() {
            // Parsed straight from the core's block; copied only if a tail
            // must be kept (see `keep_partial`).
            self.rx = std::mem::take(input);
            self.rx_borrowed = true;
        } else {
            if self.rx_borrowed {
                let mut own = BytesMut::with_capacity(self.rx.len() + input.len());
                own.extend_from_slice(&self.rx);
                self.rx = own;
                self.rx_borrowed = false;
            }
            self.rx.extend_from_slice(input);
            input.clear();
        }
    }

    /// The next event, parsing buffered input as far as the next message.
    /// `None` when nothing is left to report and parsing cannot go on (the
    /// input is used up, or paused: see the module doc). Events come in
    /// this order: `Upgrade`; then `Opened` or `Refused`; messages;
    /// `Ended` as soon as the connection stops being open, and last.
    pub fn poll_event(&mut self, ctx: &mut Ctx<'_>) -> Option<Event> {
        loop {
            if self.report & REPORT_UPGRADE != 0 {
                self.report &= !REPORT_UPGRADE;
                return Some(Event::Upgrade);
            }
            if self.report & REPORT_OPENED != 0 {
                self.report &= !REPORT_OPENED;
                return Some(Event::Opened);
            }
            if let Some(r) = self.cold.as_mut().and_then(|c| c.refused.take()) {
                return Some(Event::Refused(r));
            }
            if self.report & REPORT_ENDED != 0 {
                self.report &= !REPORT_ENDED;
                if let Some(reason) = self.end {
                    return Some(Event::Ended(reason));
                }
            }
            if self.rx.is_empty() {
                self.shrink_cold();
                return None;
            }
            if let Some(ev) = self.parse(ctx) {
                return Some(ev);
            }
            if self.report == 0 && self.cold.as_ref().map_or(true, |c| c.refused.is_none()) {
                self.shrink_cold();
                return None;
            }
        }
    }

    /// Parses buffered input until a message is delivered (returned), the
    /// input is used up, or parsing must wait; then keeps what is left.
    fn parse(&mut self, ctx: &mut Ctx<'_>) -> Option<Event> {
        let mut buf = std::mem::take(&mut self.rx);
        let borrowed = std::mem::replace(&mut self.rx_borrowed, false);
        let ev = match self.phase {
            Phase::Handshake => {
                self.read_handshake(&mut buf, ctx);
                None
            }
            Phase::Open | Phase::Closing => self.read_frames(&mut buf, ctx),
            Phase::Deciding => None,
            Phase::Closed | Phase::Dead => return None,
        };
        if buf.is_empty() || matches!(self.phase, Phase::Closed | Phase::Dead) {
            return ev;
        }
        if ev.is_some() {
            // More to parse at the next call: keep the slice as it is.
            self.rx = buf;
            self.rx_borrowed = borrowed;
        } else {
            self.keep_partial(buf, !borrowed, ctx.cfg.conn.buffer_growth_step);
        }
        ev
    }

    /// Keeps the unconsumed tail. A tail of the core's receive block is
    /// copied into a buffer of the connection's own, so an idle connection
    /// never pins a shared block; a buffer already ours is kept as it is.
    fn keep_partial(&mut self, buf: BytesMut, ours: bool, growth_step: usize) {
        self.rx = if ours {
            buf
        } else {
            let mut own = BytesMut::with_capacity(buf.len());
            own.extend_from_slice(&buf);
            own
        };
        if let Some(total) = self
            .cold
            .as_ref()
            .and_then(|c| c.decoder.pending_frame_len())
        {
            // Grow toward the announced frame size in steps of at most
            // `connection.buffer_growth_step`, so a header that lies costs
            // little memory.
            let missing = total.saturating_sub(self.rx.len());
            self.rx.reserve(missing.min(growth_step));
        }
    }

    /// Answers the upgrade: `101` (with the configured subprotocol the
    /// client offered, else `protocol` if given), then open. Frames the
    /// client sent early are parsed by the next [`Conn::poll_event`]s.
    /// Only while [`Phase::Deciding`]; otherwise nothing happens.
    pub fn accept(&mut self, protocol: Option<&str>, ctx: &mut Ctx<'_>) {
        if self.phase != Phase::Deciding {
            return;
        }
        let Some(req) = self.cold.as_mut().and_then(|c| c.upgrade.take()) else {
            return;
        };
        let comp = &ctx.cfg.compression;
        let agreed = comp
            .enabled()
            .then(|| deflate_offer::negotiate(req.extension_offers(), &comp.policy()))
            .flatten();
        let answer = agreed.map(|a| a.to_string());
        let mut resp = BytesMut::new();
        handshake::write_accept_ext(
            &mut resp,
            &req,
            &ctx.cfg.handshake(),
            protocol,
            answer.as_deref(),
        );
        self.out.push(resp.freeze());
        self.deflate = agreed.map(|a| Box::new(Deflate::new(a)));
        self.phase = Phase::Open;
        self.report |= REPORT_OPENED;
        self.next_ping = ctx.deadline(ctx.cfg.conn.ping_interval);
        self.last_message = tick_ceil(ctx.epoch, ctx.now);
    }

    /// Refuses the upgrade: answers the rejection's status with a short
    /// text body (see [`Rejection::answer`]), then closes. Only before the
    /// upgrade was answered; otherwise nothing happens.
    pub fn refuse(&mut self, rejection: Rejection, ctx: &mut Ctx<'_>) {
        if !matches!(self.phase, Phase::Handshake | Phase::Deciding) {
            return;
        }
        self.drop_upgrade();
        let mut resp = BytesMut::new();
        handshake::write_error(&mut resp, rejection.answer(), &rejection.to_string());
        self.out.push(resp.freeze());
        self.cold().refused = Some(rejection);
        self.end(rejection.into());
        self.enter_closed(ctx);
    }

    /// Queued bytes as slices for one vectored write, from the front;
    /// returns how many of `slices` were filled (0: nothing to write).
    pub fn poll_transmit<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        self.out.io_slices(slices)
    }

    /// The socket took the first `n` bytes of what [`Conn::poll_transmit`]
    /// offered. In the closed phase, once the queue is empty the
    /// connection is dead (dropping the socket sends our FIN after it).
    pub fn handle_written(&mut self, n: usize) {
        self.out.advance(n);
        if self.phase == Phase::Closed && self.out.is_empty() {
            self.phase = Phase::Dead;
        }
    }

    fn read_handshake(&mut self, buf: &mut BytesMut, ctx: &mut Ctx<'_>) {
        match handshake::parse_request(buf, &ctx.cfg.handshake()) {
            Ok(Some(req)) => {
                let _ = buf.split_to(req.head_len());
                self.cold().upgrade = Some(Box::new(req));
                self.phase = Phase::Deciding;
                self.report |= REPORT_UPGRADE;
            }
            Ok(None) => {}
            Err(e) => self.refuse(e.into(), ctx),
        }
    }

    /// Parses frames until a message is delivered (returned), the input is
    /// used up, or parsing must wait. The decoder is taken out of the cold
    /// part for it (a fresh one if there is none) and put back only while
    /// it holds a partial frame.
    fn read_frames(&mut self, buf: &mut BytesMut, ctx: &mut Ctx<'_>) -> Option<Event> {
        let fresh = || FrameDecoder::new(Role::Server).with_rsv1(self.deflate.is_some());
        let mut dec = match self.cold.as_mut() {
            Some(c) => std::mem::replace(&mut c.decoder, FrameDecoder::new(Role::Server)),
            None => fresh(),
        };
        if dec.pending_header().is_none() {
            dec = fresh();
        }
        let ev = self.read_frames_with(&mut dec, buf, ctx);
        if dec.pending_header().is_some() {
            self.cold().decoder = dec;
        }
        ev
    }

    fn read_frames_with(
        &mut self,
        dec: &mut FrameDecoder,
        buf: &mut BytesMut,
        ctx: &mut Ctx<'_>,
    ) -> Option<Event> {
        while self.may_parse(&ctx.cfg.conn) {
            match dec.decode(buf, ctx.cfg.conn.max_frame_size as u64) {
                Ok(Some(frame)) => {
                    ctx.tally.frames_in += 1;
                    match self.on_frame(frame, ctx) {
                        Ok(Some(ev)) => return Some(ev),
                        Ok(None) => {}
                        Err(e) => self.fail(e, ctx),
                    }
                }
                Ok(None) => {
                    if let Err(e) = self.stream_partial(dec, buf) {
                        self.fail(e, ctx);
                    }
                    return None;
                }
                Err(e) => {
                    self.fail(e, ctx);
                    // The stream can no longer be framed.
                    if self.phase != Phase::Dead {
                        self.enter_closed(ctx);
                    }
                    buf.clear();
                    return None;
                }
            }
            if !matches!(self.phase, Phase::Open | Phase::Closing) {
                buf.clear();
                return None;
            }
        }
        None
    }

    /// UTF-8-checks the arrived part of an incomplete text frame (fail fast).
    fn stream_partial(
        &mut self,
        dec: &mut FrameDecoder,
        buf: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        if self.phase != Phase::Open {
            return Ok(());
        }
        // A compressed message is checked once inflated.
        let text = match dec.pending_header() {
            Some(h) if h.opcode == OpCode::Text => self.assembly().is_none() && !h.rsv1,
            Some(h) if h.opcode == OpCode::Continuation => {
                self.assembly().is_some_and(|a| a.text && !a.compressed)
            }
            _ => false,
        };
        if !text {
            return Ok(());
        }
        if let Some((_, piece)) = dec.unmask_partial(buf) {
            self.utf8
                .feed(piece)
                .map_err(|_| ProtocolError::InvalidUtf8)?;
        }
        Ok(())
    }

    /// Fails the connection: close frame with the error's code.
    fn fail(&mut self, e: ProtocolError, ctx: &mut Ctx<'_>) {
        match self.phase {
            Phase::Open => {
                self.utf8 = Utf8Validator::new();
                self.close(e.close_code(), "", EndReason::from(e.kind()), ctx);
            }
            // Garbage while waiting for the close answer: stop waiting.
            Phase::Closing => self.enter_closed(ctx),
            _ => {}
        }
    }

    /// `Ok(Some(message))` if the frame completed a message to deliver.
    fn on_frame(
        &mut self,
        frame: Frame,
        ctx: &mut Ctx<'_>,
    ) -> Result<Option<Event>, ProtocolError> {
        let Frame {
            fin,
            rsv1,
            opcode,
            payload,
            streamed,
        } = frame;
        if self.phase == Phase::Closing {
            // Only the close answer matters now.
            if opcode == OpCode::Close {
                // Valid or not, the peer's close ends the wait.
                self.enter_closed(ctx);
            }
            return Ok(None);
        }
        let max = ctx.cfg.conn.max_message_size;
        match opcode {
            OpCode::Text | OpCode::Binary => {
                if self.assembly().is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                if payload.len() > max {
                    return Err(ProtocolError::MessageTooLarge { max });
                }
                let text = opcode == OpCode::Text;
                if rsv1 {
                    // The decoder lets RSV1 through only when compression
                    // was agreed.
                    if fin {
                        let payload = self.inflate(text, &payload, ctx)?;
                        return Ok(self.deliver(text, payload, ctx));
                    }
                    let mut buf = BytesMut::with_capacity(payload.len().max(1024));
                    buf.extend_from_slice(&payload);
                    self.cold().assembly = Some(Assembly {
                        text,
                        compressed: true,
                        buf,
                    });
                    return Ok(None);
                }
                if text {
                    self.utf8
                        .feed(&payload[streamed..])
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                if fin {
                    if text {
                        self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                    return Ok(self.deliver(text, payload, ctx));
                } else {
                    let mut buf = BytesMut::with_capacity(payload.len().max(1024));
                    buf.extend_from_slice(&payload);
                    self.cold().assembly = Some(Assembly {
                        text,
                        compressed: false,
                        buf,
                    });
                }
            }
            OpCode::Continuation => {
                let Some(asm) = self.cold.as_mut().and_then(|c| c.assembly.as_mut()) else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                if asm.buf.len() + payload.len() > max {
                    return Err(ProtocolError::MessageTooLarge { max });
                }
                if asm.text && !asm.compressed {
                    self.utf8
                        .feed(&payload[streamed..])
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                asm.buf.extend_from_slice(&payload);
                if fin {
                    let asm = self
                        .cold
                        .as_mut()
                        .and_then(|c| c.assembly.take())
                        .expect("checked above");
                    if asm.compressed {
                        let payload = self.inflate(asm.text, &asm.buf, ctx)?;
                        return Ok(self.deliver(asm.text, payload, ctx));
                    }
                    if asm.text {
                        self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                    return Ok(self.deliver(asm.text, asm.buf.freeze(), ctx));
                }
            }
            OpCode::Ping => {
                self.out.push(ctx.enc.control(OpCode::Pong, &payload));
                ctx.tally.frames_out += 1;
                self.charge(1.0, payload.len(), ctx);
            }
            OpCode::Pong => {}
            OpCode::Close => {
                // The peer has sent its close, so ours completes the
                // handshake either way: echo its code (RFC 6455 §5.5.1), or
                // answer an invalid close with the error's code; then
                // close TCP without waiting.
                let (code, reason) = match parse_close_payload(&payload) {
                    Ok(close) => (close.code, EndReason::PeerClose),
                    Err(e) => (e.close_code(), EndReason::from(e.kind())),
                };
                self.out.push(ctx.enc.close(code, ""));
                ctx.tally.frames_out += 1;
                self.end(reason);
                self.enter_closed(ctx);
            }
        }
        Ok(None)
    }

    /// Inflates a whole compressed message (bounded by
    /// `max_message_size`) and checks a text message's UTF-8.
    fn inflate(
        &mut self,
        text: bool,
        compressed: &[u8],
        ctx: &mut Ctx<'_>,
    ) -> Result<Bytes, ProtocolError> {
        let max = ctx.cfg.conn.max_message_size;
        let d = self
            .deflate
            .as_mut()
            .expect("RSV1 is only let through when compression was agreed");
        let payload = d.inflate(compressed, max, ctx.codecs)?;
        if text && std::str::from_utf8(&payload).is_err() {
            return Err(ProtocolError::InvalidUtf8);
        }
        Ok(payload)
    }

    /// A complete message: counted and charged to the rate limiter, then
    /// delivered unless that closed the connection.
    #[inline]
    fn deliver(&mut self, text: bool, payload: Bytes, ctx: &mut Ctx<'_>) -> Option<Event> {
        ctx.tally.messages_in += 1;
        self.charge(1.0, payload.len(), ctx);
        self.last_message = tick_ceil(ctx.epoch, ctx.now);
        (self.phase == Phase::Open).then_some(Event::Message { text, payload })
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_compress;
