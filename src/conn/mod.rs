//! One WebSocket connection as a sans-IO state machine.
//!
//! Owns: the life of one connection — upgrade, open, closing, closed — its
//! partial input, message assembly (fragments, interleaved control frames,
//! streaming UTF-8), the close handshake, liveness (ping, pong, idle) and
//! its outbound queue. Bytes and `now` go in; events, bytes to write and
//! the next deadline come out.
//! Must not touch: sockets, the clock, other connections, the timing wheel
//! (the driver asks [`Conn::poll_timeout`] and schedules it).
//!
//! Call order for the driver (quinn-style):
//! 1. [`Conn::handle_read`] with bytes read, [`Conn::handle_eof`] /
//!    [`Conn::handle_io_error`] when the socket says so,
//!    [`Conn::handle_timeout`] when the wheel fires;
//! 2. take events from the `events` vector it passed in;
//! 3. write [`Conn::out`] (vectored) and [`OutQueue::advance`] it; when it
//!    is empty, call [`Conn::handle_drained`];
//! 4. drop the connection when [`Conn::is_dead`]; otherwise schedule
//!    [`Conn::poll_timeout`].

pub mod outbound;
pub mod reason;

use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::config::{Config, ConnConfig, RatePolicy};
use crate::error::{HandshakeError, ProtocolError};
use crate::limits::TokenBucket;
use crate::protocol::close::{code, parse_close_payload};
use crate::protocol::encoder::FrameEncoder;
use crate::protocol::handshake::{self, UpgradeRequest};
use crate::protocol::utf8::Utf8Validator;
use crate::protocol::{Frame, FrameDecoder, OpCode, Role};

pub use outbound::OutQueue;
pub use reason::EndReason;

/// What a connection serves, chosen by the request path at the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `/echo`: every message is sent back as it came.
    Echo,
    /// `/ws`: the hub's JSON protocol (channels, users).
    Hub,
}

impl Route {
    /// The route for a request path, if any.
    pub fn from_path(path: &str) -> Option<Self> {
        match path {
            "/echo" => Some(Self::Echo),
            "/ws" => Some(Self::Hub),
            _ => None,
        }
    }
}

/// Something the application layer must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A valid upgrade request arrived: decide with
    /// [`Conn::accept_upgrade`] or [`Conn::refuse_upgrade`].
    Upgrade { route: Route },
    /// The upgrade completed.
    Opened { route: Route },
    /// A complete, validated data message.
    Message { text: bool, payload: Bytes },
    /// The upgrade request was refused with this error's HTTP status.
    Refused(HandshakeError),
    /// The connection stopped being open (delivered once).
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

/// Everything a call into a connection may use besides the connection.
pub struct Ctx<'a> {
    pub now: Instant,
    /// The server's settings (the connection reads `conn`, `rate_limit`
    /// and what the handshake needs).
    pub cfg: &'a Config,
    pub enc: &'a mut FrameEncoder,
    pub events: &'a mut Vec<Event>,
    pub tally: &'a mut Tally,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the complete upgrade request.
    Handshake,
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
    buf: BytesMut,
}

/// One connection's state. Small on purpose: an idle open connection holds
/// no buffers (see PERF.md for the measured bytes per connection).
#[derive(Debug)]
pub struct Conn {
    phase: Phase,
    /// Unconsumed input: only non-empty while a request head or a frame is
    /// partly received.
    rx: BytesMut,
    /// `rx` is a slice of the core's shared receive block.
    rx_borrowed: bool,
    decoder: FrameDecoder,
    assembly: Option<Box<Assembly>>,
    utf8: Utf8Validator,
    out: OutQueue,
    request: Option<Box<UpgradeRequest>>,
    /// A parsed request awaiting the admission decision.
    pending: Option<Box<handshake::Parsed>>,
    route: Option<Route>,
    /// Deadline of the current phase: handshake, close answer, or final flush.
    phase_deadline: Instant,
    next_ping: Instant,
    pong_deadline: Option<Instant>,
    last_message: Instant,
    end: Option<EndReason>,
    /// Rate limiter, only when limits are configured.
    limiter: Option<Box<Limiter>>,
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

impl Conn {
    /// A freshly accepted connection, waiting for its upgrade request.
    pub fn new(now: Instant, config: &Config) -> Self {
        let cfg = &config.conn;
        Self {
            phase: Phase::Handshake,
            rx: BytesMut::new(),
            rx_borrowed: false,
            decoder: FrameDecoder::new(Role::Server, cfg.max_frame_size as u64),
            assembly: None,
            utf8: Utf8Validator::new(),
            out: OutQueue::default(),
            request: None,
            pending: None,
            route: None,
            phase_deadline: now + cfg.handshake_timeout,
            next_ping: now,
            pong_deadline: None,
            last_message: now,
            end: None,
            limiter: config.rate_limit.buckets().map(|r| {
                Box::new(Limiter {
                    msgs: TokenBucket::new(r.msgs_per_sec, r.msgs_burst, now),
                    bytes: TokenBucket::new(r.bytes_per_sec, r.bytes_burst, now),
                    paused_until: None,
                    policy: r.policy,
                })
            }),
        }
    }

    /// Current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The accepted upgrade request (path, query, subprotocol), once open.
    pub fn request(&self) -> Option<&UpgradeRequest> {
        self.request.as_deref()
    }

    /// Takes the accepted upgrade request away (the driver drops it once it
    /// has read what it needs at `Opened`, so an open connection keeps
    /// nothing of its request).
    pub fn take_request(&mut self) -> Option<Box<UpgradeRequest>> {
        self.request.take()
    }

    /// The route chosen at the upgrade.
    pub fn route(&self) -> Option<Route> {
        self.route
    }

    /// Why the connection ended, once it has.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end
    }

    /// The outbound queue (the driver writes from it and advances it).
    pub fn out(&mut self) -> &mut OutQueue {
        &mut self.out
    }

    /// Bytes waiting in the outbound queue.
    pub fn queued_bytes(&self) -> usize {
        self.out.len()
    }

    /// True once the socket should be dropped.
    pub fn is_dead(&self) -> bool {
        self.phase == Phase::Dead
    }

    /// Whether the driver should read from the socket now. False while the
    /// outbound queue is over its budget (back-pressure on the peer).
    pub fn wants_read(&self, cfg: &ConnConfig) -> bool {
        match self.phase {
            Phase::Dead => false,
            Phase::Closed => true,
            _ => {
                self.out.len() <= cfg.write_budget
                    && !self
                        .limiter
                        .as_ref()
                        .is_some_and(|l| l.paused_until.is_some())
            }
        }
    }

    /// Charges one message (or ping) of `len` payload bytes to the rate
    /// limiter and applies the policy when a bucket runs dry.
    fn charge(&mut self, msgs: f64, len: usize, ctx: &mut Ctx<'_>) {
        let Some(l) = self.limiter.as_mut() else {
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

    /// The driver found the outbound queue empty. In the closed phase the
    /// connection is then dead: the socket is dropped (closing it sends our
    /// FIN after the bytes already written).
    pub fn handle_drained(&mut self) {
        if self.phase == Phase::Closed && self.out.is_empty() {
            self.phase = Phase::Dead;
        }
    }

    /// The next instant at which [`Conn::handle_timeout`] has work to do.
    pub fn poll_timeout(&self, cfg: &ConnConfig) -> Option<Instant> {
        match self.phase {
            Phase::Handshake | Phase::Closing | Phase::Closed => Some(self.phase_deadline),
            Phase::Open => {
                let mut t = self.next_ping;
                if let Some(p) = self.limiter.as_ref().and_then(|l| l.paused_until) {
                    t = t.min(p);
                }
                if let Some(p) = self.pong_deadline {
                    t = t.min(p);
                }
                if let Some(idle) = cfg.idle_timeout {
                    t = t.min(self.last_message + idle);
                }
                Some(t)
            }
            Phase::Dead => None,
        }
    }

    /// Records the end reason once and tells the application.
    fn end(&mut self, reason: EndReason, ctx: &mut Ctx<'_>) {
        if self.end.is_none() {
            self.end = Some(reason);
            ctx.events.push(Event::Ended(reason));
        }
    }

    /// Nothing more will be sent after the queue; the deadline bounds the
    /// flush to a peer that does not read.
    fn enter_closed(&mut self, ctx: &mut Ctx<'_>) {
        self.phase = Phase::Closed;
        self.phase_deadline = ctx.now + ctx.cfg.conn.close_timeout;
        self.assembly = None;
        self.rx = BytesMut::new();
    }

    fn die(&mut self, reason: EndReason, ctx: &mut Ctx<'_>) {
        self.end(reason, ctx);
        self.phase = Phase::Dead;
        self.rx = BytesMut::new();
        self.assembly = None;
    }

    /// Starts a server-side close: sends `code`, waits for the answer.
    pub fn close(&mut self, close_code: u16, reason: &str, why: EndReason, ctx: &mut Ctx<'_>) {
        match self.phase {
            Phase::Open => {
                self.out.push(ctx.enc.close(close_code, reason));
                ctx.tally.frames_out += 1;
                self.end(why, ctx);
                self.phase = Phase::Closing;
                self.phase_deadline = ctx.now + ctx.cfg.conn.close_timeout;
                self.assembly = None;
            }
            Phase::Handshake => self.die(why, ctx),
            Phase::Closing | Phase::Closed | Phase::Dead => {}
        }
    }

    /// The server failed while handling this connection (a panic its core
    /// caught): if open, queue a 1011 close; record
    /// [`EndReason::InternalError`] unless it had already ended; then
    /// flush what is queued and drop, without waiting for the peer's
    /// answer. Nothing of this state machine is trusted after a panic but
    /// its out-queue (whole frames, so the close cannot split one).
    pub fn abort(&mut self, ctx: &mut Ctx<'_>) {
        match self.phase {
            Phase::Open => {
                self.out
                    .push(ctx.enc.close(code::INTERNAL_ERROR, "internal error"));
                ctx.tally.frames_out += 1;
                self.end(EndReason::InternalError, ctx);
                self.enter_closed(ctx);
            }
            Phase::Closing => {
                self.end(EndReason::InternalError, ctx);
                self.enter_closed(ctx);
            }
            Phase::Closed => self.end(EndReason::InternalError, ctx),
            Phase::Handshake | Phase::Dead => self.die(EndReason::InternalError, ctx),
        }
    }

    /// Queues a data message (text or binary) as one frame.
    pub fn send_message(&mut self, text: bool, payload: Bytes, ctx: &mut Ctx<'_>) -> bool {
        if self.phase != Phase::Open {
            return false;
        }
        let op = if text { OpCode::Text } else { OpCode::Binary };
        self.out.push_frame(ctx.enc.frame(op, payload));
        ctx.tally.frames_out += 1;
        ctx.tally.messages_out += 1;
        true
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
    pub fn handle_eof(&mut self, ctx: &mut Ctx<'_>) {
        let reason = match self.phase {
            Phase::Open | Phase::Handshake => EndReason::PeerGone,
            _ => EndReason::PeerClose,
        };
        self.die(reason, ctx);
    }

    /// The socket failed.
    pub fn handle_io_error(&mut self, ctx: &mut Ctx<'_>) {
        self.die(EndReason::IoError, ctx);
    }

    /// Deadlines that may have passed at `ctx.now`.
    pub fn handle_timeout(&mut self, ctx: &mut Ctx<'_>) {
        let now = ctx.now;
        match self.phase {
            Phase::Handshake if now >= self.phase_deadline => {
                self.refuse(HandshakeError::Timeout, ctx);
            }
            Phase::Open => {
                if let Some(l) = self.limiter.as_mut() {
                    if l.paused_until.is_some_and(|u| now >= u) {
                        l.paused_until = None;
                    }
                }
                if self.pong_deadline.is_some_and(|d| now >= d) {
                    // Best effort: the driver tries one write before dropping.
                    self.out
                        .push(ctx.enc.close(code::GOING_AWAY, "pong timeout"));
                    self.die(EndReason::PingTimeout, ctx);
                    return;
                }
                if let Some(idle) = ctx.cfg.conn.idle_timeout {
                    if now >= self.last_message + idle {
                        self.close(
                            code::GOING_AWAY,
                            "idle timeout",
                            EndReason::IdleTimeout,
                            ctx,
                        );
                        return;
                    }
                }
                if now >= self.next_ping {
                    // Quiet since the last tick: give back the out-queue's
                    // ring (the ping itself needs none).
                    self.out.release_idle();
                    self.out.push(ctx.enc.control(OpCode::Ping, b""));
                    ctx.tally.frames_out += 1;
                    ctx.tally.pings_sent += 1;
                    self.next_ping = now + ctx.cfg.conn.ping_interval;
                    if self.pong_deadline.is_none() {
                        self.pong_deadline = Some(now + ctx.cfg.conn.pong_timeout);
                    }
                }
            }
            Phase::Closing if now >= self.phase_deadline => {
                self.end(EndReason::CloseTimeout, ctx);
                self.enter_closed(ctx);
            }
            Phase::Closed if now >= self.phase_deadline => {
                self.die(EndReason::CloseTimeout, ctx);
            }
            _ => {}
        }
    }

    /// Bytes read from the socket. `input` is taken over (left empty).
    ///
    /// Parsing stops after each delivered message, so the application can
    /// answer it before anything later in the stream takes effect (a
    /// protocol error's close frame must not overtake the echo of the
    /// message before it). Returns true if it stopped there: route the
    /// events, then call [`Conn::process`] until it returns false.
    pub fn handle_read(&mut self, input: &mut BytesMut, ctx: &mut Ctx<'_>) -> bool {
        if input.is_empty() {
            return false;
        }
        match self.phase {
            Phase::Dead => return false,
            Phase::Closed => {
                // Only our queue matters now; what the peer sends is dropped.
                input.clear();
                return false;
            }
            _ => {}
        }
        self.pong_deadline = None;
        if self.rx.is_empty() {
            // Parse straight from the core's block; copied only if a tail
            // must be kept (see `keep_partial`).
            self.rx = std::mem::take(input);
            self.rx_borrowed = true;
        } else {
            self.rx.extend_from_slice(input);
            input.clear();
        }
        self.process(ctx)
    }

    /// Parses buffered input until a message is delivered (returns true:
    /// call again after routing it) or the input is used up or must wait
    /// for a rate-limit pause to end (false). Call it again after
    /// [`Conn::handle_timeout`] ends a pause.
    pub fn process(&mut self, ctx: &mut Ctx<'_>) -> bool {
        let mut buf = std::mem::take(&mut self.rx);
        let borrowed = std::mem::replace(&mut self.rx_borrowed, false);
        let mut delivered = false;
        if self.phase == Phase::Handshake && self.pending.is_none() && !buf.is_empty() {
            self.read_handshake(&mut buf, ctx);
        }
        // While rate-limited, buffered input waits too: back-pressure works
        // message by message, not only at the socket.
        let throttled = self
            .limiter
            .as_ref()
            .is_some_and(|l| l.paused_until.is_some());
        if matches!(self.phase, Phase::Open | Phase::Closing) && !throttled {
            delivered = self.read_frames(&mut buf, ctx);
        }
        if !buf.is_empty() && !matches!(self.phase, Phase::Closed | Phase::Dead) {
            if delivered {
                self.rx = buf;
                self.rx_borrowed = borrowed;
            } else {
                self.keep_partial(buf, !borrowed, ctx.cfg.conn.buffer_growth_step);
            }
        }
        delivered
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
        if let Some(total) = self.decoder.pending_frame_len() {
            // Grow toward the announced frame size in steps of at most
            // `connection.buffer_growth_step`, so a header that lies costs
            // little memory.
            let missing = total.saturating_sub(self.rx.len());
            self.rx.reserve(missing.min(growth_step));
        }
    }

    fn refuse(&mut self, err: HandshakeError, ctx: &mut Ctx<'_>) {
        self.refuse_upgrade(err, None, ctx);
    }

    /// The upgrade request waiting for the admission decision (after
    /// [`Event::Upgrade`]); admission may take its token out.
    pub fn upgrade_request_mut(&mut self) -> Option<&mut UpgradeRequest> {
        self.pending.as_mut().map(|p| &mut p.request)
    }

    /// Admission said yes: answer `101` and open. Frames the client sent
    /// early are parsed by the next [`Conn::process`] calls.
    pub fn accept_upgrade(&mut self, ctx: &mut Ctx<'_>) {
        let Some(parsed) = self.pending.take() else {
            return;
        };
        let Some(route) = self.route else {
            return;
        };
        let mut resp = BytesMut::new();
        handshake::write_accept(&mut resp, &parsed, &ctx.cfg.handshake());
        self.out.push(resp.freeze());
        self.request = Some(Box::new(parsed.request));
        self.phase = Phase::Open;
        self.next_ping = ctx.now + ctx.cfg.conn.ping_interval;
        self.last_message = ctx.now;
        ctx.events.push(Event::Opened { route });
    }

    /// Admission (or the request itself) said no: answer `err`'s status
    /// with a short text body (and `Retry-After` if given), then close.
    pub fn refuse_upgrade(
        &mut self,
        err: HandshakeError,
        retry_after: Option<u64>,
        ctx: &mut Ctx<'_>,
    ) {
        if self.phase != Phase::Handshake {
            return;
        }
        self.pending = None;
        let mut resp = BytesMut::new();
        handshake::write_error(&mut resp, err, retry_after);
        self.out.push(resp.freeze());
        ctx.events.push(Event::Refused(err));
        self.end(err.into(), ctx);
        self.enter_closed(ctx);
    }

    fn read_handshake(&mut self, buf: &mut BytesMut, ctx: &mut Ctx<'_>) {
        let parsed = match handshake::parse_request(buf, &ctx.cfg.handshake()) {
            Ok(Some(ok)) => ok,
            Ok(None) => return,
            Err(e) => return self.refuse(e, ctx),
        };
        let Some(route) = Route::from_path(parsed.request.path()) else {
            return self.refuse(HandshakeError::NotFound, ctx);
        };
        let _ = buf.split_to(parsed.head_len);
        self.route = Some(route);
        self.pending = Some(Box::new(parsed));
        ctx.events.push(Event::Upgrade { route });
    }

    /// Returns true if it stopped right after delivering a message.
    fn read_frames(&mut self, buf: &mut BytesMut, ctx: &mut Ctx<'_>) -> bool {
        loop {
            match self.decoder.decode(buf) {
                Ok(Some(frame)) => {
                    ctx.tally.frames_in += 1;
                    match self.on_frame(frame, ctx) {
                        Ok(true) if !buf.is_empty() => return true,
                        Ok(_) => {}
                        Err(e) => self.fail(e, ctx),
                    }
                }
                Ok(None) => {
                    if let Err(e) = self.stream_partial(buf) {
                        self.fail(e, ctx);
                    }
                    return false;
                }
                Err(e) => {
                    self.fail(e, ctx);
                    // The stream can no longer be framed.
                    if self.phase != Phase::Dead {
                        self.enter_closed(ctx);
                    }
                    buf.clear();
                    return false;
                }
            }
            if !matches!(self.phase, Phase::Open | Phase::Closing) {
                buf.clear();
                return false;
            }
        }
    }

    /// UTF-8-checks the arrived part of an incomplete text frame (fail fast).
    fn stream_partial(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        if self.phase != Phase::Open {
            return Ok(());
        }
        let text = match self.decoder.pending_header().map(|h| h.opcode) {
            Some(OpCode::Text) => self.assembly.is_none(),
            Some(OpCode::Continuation) => self.assembly.as_ref().is_some_and(|a| a.text),
            _ => false,
        };
        if !text {
            return Ok(());
        }
        if let Some((_, piece)) = self.decoder.unmask_partial(buf) {
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

    /// Ok(true) if a message was delivered.
    fn on_frame(&mut self, frame: Frame, ctx: &mut Ctx<'_>) -> Result<bool, ProtocolError> {
        let Frame {
            fin,
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
            return Ok(false);
        }
        let max = ctx.cfg.conn.max_message_size;
        match opcode {
            OpCode::Text | OpCode::Binary => {
                if self.assembly.is_some() {
                    return Err(ProtocolError::ExpectedContinuation);
                }
                if payload.len() > max {
                    return Err(ProtocolError::MessageTooLarge { max });
                }
                let text = opcode == OpCode::Text;
                if text {
                    self.utf8
                        .feed(&payload[streamed..])
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                if fin {
                    if text {
                        self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                    self.deliver(text, payload, ctx);
                    return Ok(true);
                } else {
                    let mut buf = BytesMut::with_capacity(payload.len().max(1024));
                    buf.extend_from_slice(&payload);
                    self.assembly = Some(Box::new(Assembly { text, buf }));
                }
            }
            OpCode::Continuation => {
                let Some(asm) = self.assembly.as_mut() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                if asm.buf.len() + payload.len() > max {
                    return Err(ProtocolError::MessageTooLarge { max });
                }
                if asm.text {
                    self.utf8
                        .feed(&payload[streamed..])
                        .map_err(|_| ProtocolError::InvalidUtf8)?;
                }
                asm.buf.extend_from_slice(&payload);
                if fin {
                    let asm = self.assembly.take().expect("checked above");
                    if asm.text {
                        self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                    self.deliver(asm.text, asm.buf.freeze(), ctx);
                    return Ok(true);
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
                self.end(reason, ctx);
                self.enter_closed(ctx);
            }
        }
        Ok(false)
    }

    #[inline]
    fn deliver(&mut self, text: bool, payload: Bytes, ctx: &mut Ctx<'_>) {
        ctx.tally.messages_in += 1;
        self.charge(1.0, payload.len(), ctx);
        self.last_message = ctx.now;
        ctx.events.push(Event::Message { text, payload });
    }
}

#[cfg(test)]
mod tests;
