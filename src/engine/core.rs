//! One core: a thread that owns a `mio::Poll`, its listener, a `Slab` of
//! connections, a timing wheel with every connection's next deadline, a
//! receive block shared by all its connections, and an inbox.
//!
//! Owns: every socket call and every clock read of the data plane, turning
//! readiness and timer expiry into calls on the sans-IO [`Conn`] (in the
//! call order of its module doc), routing its events — an upgrade through
//! the route table and admission (answered at once, or later by a
//! `Command::AdmissionDecision`), a message to its route — writing its
//! queue, and removing it — from the slab, the poll registry and the wheel
//! — the moment it is dead. A `wss://` connection's reads and writes go
//! through its rustls session (`engine::tls`); the `Conn` never knows.
//! Must not touch: protocol rules (that is `protocol`/`conn`), admission
//! policy (`admission`), what a hub message means (the core's [`Hub`]
//! decides; this driver hands it the connection's events and queues the
//! frames it returns), other cores' state (only their inboxes, through
//! handles).
//!
//! Fault isolation: the handling of one connection — a readiness event,
//! a timer expiry, an end-of-turn flush, a shutdown close, a delivery to
//! it, a disconnect, an admission decision — runs under `Core::guarded`; a
//! panic there closes that connection with 1011 (`Core::contain`) and the
//! loop goes on. Work that belongs to no one connection (an accept, an
//! inbox command as a whole) runs under `Core::contained`: a panic drops
//! that piece of work. Anything else that panics (the loop's own
//! bookkeeping) ends the thread; `Server` logs it and the other cores go
//! on.

use std::any::Any;
use std::io::{self, IoSlice, Read, Write};
use std::net::IpAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::routes::{Route, Routes};
use crate::admission::{self, Admission, Admitted, ClientIp, Decision, Ticket, Verdict};
use crate::config::Config;
use crate::conn::outbound::MAX_IOVECS;
use crate::conn::{Codecs, Conn, Ctx, EndReason, Event, Phase, Tally};
use crate::error::Rejection;
use crate::hub::{ConnId, Hub};
use crate::inbox::{CoreHandle, Inbox};
use crate::protocol::close::code;
use crate::protocol::encoder::FrameEncoder;
use crate::stats::counters::CoreCounters;
use crate::stats::latency::LatencyRecorder;
use crate::timer::{TimerKey, TimingWheel};

/// The per-call context of a connection, borrowed field by field from the
/// core (a macro, not a method, so the borrow of `self.conns` stays
/// disjoint).
macro_rules! ctx {
    ($core:expr, $now:expr) => {
        Ctx {
            now: $now,
            epoch: $core.start,
            cfg: &$core.cfg,
            enc: &mut $core.enc,
            codecs: &mut $core.codecs,
            tally: &mut $core.tally,
        }
    };
}
pub(super) use ctx;

pub(crate) const LISTENER: Token = Token(0);
pub(crate) const WAKER: Token = Token(1);
const FIRST_CONN: usize = 2;

/// Size of the per-core receive block every read goes into.
pub(super) const RX_BLOCK: usize = 64 * 1024;
/// Pause before retrying `accept` after it failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// A new block is started when less than this is left in the current one.
pub(super) const RX_MIN_READ: usize = 4 * 1024;

/// What the core keeps per connection besides the sans-IO state.
pub(super) struct Slot {
    pub(super) stream: TcpStream,
    pub(super) conn: Conn,
    /// Generation of this slab entry, so a timer for a removed connection
    /// can never reach a new one that reuses the key.
    pub(super) gen: u32,
    /// The wheel entry (the wheel keeps the tick it fires at).
    timer: Option<TimerKey>,
    /// Reading stopped for back-pressure; resume when the queue drains.
    pub(super) read_paused: bool,
    /// Queued output waits in the core's dirty list for the end of the turn.
    dirty: bool,
    /// The peer's IP (the client's, once admission saw a trusted proxy).
    pub(super) ip: IpAddr,
    /// Admission took quota slots for it (given back on removal).
    admitted: bool,
    /// What it serves, from the route table at its upgrade.
    route: Option<Route>,
}

/// A shutdown in progress: connections get their 1001 close spread
/// evenly over the drain window (so clients do not all reconnect in the
/// same instant), then have `drain_timeout` to finish the close handshake.
struct Drain {
    began: Instant,
    window: Duration,
    /// Connections to close, as (key, generation), in order.
    order: Vec<(usize, u32)>,
    /// How many of `order` were closed so far.
    next: usize,
    /// Set once every close was sent: drop whatever is left then.
    deadline: Option<Instant>,
}

impl Drain {
    /// When the connection at `order[i]` is due for its close.
    fn due(&self, i: usize) -> Instant {
        let n = self.order.len().max(1) as u32;
        self.began + self.window * i as u32 / n
    }
}

/// Upgrade refusals are logged as one warning per core per
/// [`RefusalLog::EVERY`] with counts by reason (never one line per refusal:
/// a flood must not become a log flood). Counts since the last line are
/// carried to the next one; `/metrics` has them all at once.
#[derive(Default)]
struct RefusalLog {
    last: Option<Instant>,
    counts: [u32; Rejection::ALL.len()],
}

impl RefusalLog {
    const EVERY: Duration = Duration::from_secs(10);

    fn note(&mut self, err: Rejection, now: Instant) {
        let c = &mut self.counts[err.index()];
        *c = c.saturating_add(1);
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Self::EVERY)
        {
            return;
        }
        self.last = Some(now);
        let mut line = String::new();
        for (e, n) in Rejection::ALL.iter().zip(&mut self.counts) {
            if *n > 0 {
                line.push_str(&format!(" {}={n}", e.name()));
                *n = 0;
            }
        }
        tracing::warn!("upgrades refused:{line}");
    }
}

pub(crate) struct Core {
    pub(super) id: usize,
    pub(super) cfg: Arc<Config>,
    poll: Poll,
    listener: Option<TcpListener>,
    inbox: Inbox,
    /// This core's hub: what its connections are to channels and users.
    pub(super) hub: Hub,
    admission: Arc<Admission>,
    /// Which paths are served, and how.
    routes: Routes,
    pub(super) conns: Slab<Slot>,
    /// A `wss://` listener's certificate and its connections' rustls
    /// sessions, beside the slab (`engine::tls`); `None` on a plain
    /// `ws://` listener, whose connections pay nothing for TLS but one
    /// branch per read and flush.
    pub(super) tls: Option<super::tls::TlsPlane>,
    /// Connections with output queued this turn, as (key, generation).
    pub(super) dirty: Vec<(usize, u32)>,
    wheel: TimingWheel<(u32, u32)>,
    /// Tick 0 of the wheel and of every connection's deadlines.
    pub(super) start: Instant,
    next_gen: u32,
    pub(super) rx: BytesMut,
    pub(super) enc: FrameEncoder,
    /// Compressors and inflaters shared by the core's connections
    /// (permessage-deflate without context takeover).
    pub(super) codecs: Codecs,
    pub(super) tally: Tally,
    pub(super) counters: Arc<CoreCounters>,
    /// Set once shutdown began.
    drain: Option<Drain>,
    pub(super) latency: LatencyRecorder,
    /// When each publish delivered this iteration was published; recorded
    /// as publish-to-write once the iteration's writes are done.
    pub(super) publish_stamps: Vec<Instant>,
    refusal_log: RefusalLog,
    /// Set after an `accept` error (e.g. out of file descriptors).
    accept_retry_at: Option<Instant>,
    /// Connections, as (key, generation), closing with 1011 after a panic:
    /// a second panic removes them without another call into them. Kept
    /// here rather than as a flag in `Slot` (8 bytes more per connection).
    panicked: Vec<(usize, u32)>,
    /// Gateway mode: the link to the gateway and this core's gateway
    /// connections (`engine::gateway`).
    pub(super) gw: super::gateway_state::GwState,
    /// Test-only faults armed by connections (feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    pub(super) faults: crate::panics::fault::Armed,
}

impl Core {
    /// Core `id`: `me` is its own handle (its counters and histograms
    /// live there), `inbox` the other end of it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: usize,
        cfg: Arc<Config>,
        poll: Poll,
        mut listener: TcpListener,
        me: &CoreHandle,
        inbox: Inbox,
        hub: Hub,
        admission: Arc<Admission>,
        gateway: Option<crate::gateway::events::Link>,
        tls: Option<Arc<crate::tls::Certs>>,
    ) -> io::Result<Self> {
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let counters = me.counters_arc();
        let latency = LatencyRecorder::new(me.latency_arc(), Instant::now());
        let routes = Routes::from_config(&cfg);
        Ok(Self {
            id,
            cfg,
            poll,
            listener: Some(listener),
            inbox,
            hub,
            admission,
            routes,
            conns: Slab::new(),
            tls: tls.map(super::tls::TlsPlane::new),
            dirty: Vec::new(),
            wheel: TimingWheel::new(),
            start: Instant::now(),
            next_gen: 0,
            rx: BytesMut::new(),
            enc: FrameEncoder::new(),
            codecs: Codecs::new(),
            tally: Tally::default(),
            counters,
            drain: None,
            latency,
            publish_stamps: Vec::new(),
            accept_retry_at: None,
            refusal_log: RefusalLog::default(),
            panicked: Vec::new(),
            gw: super::gateway_state::GwState::new(gateway),
            #[cfg(feature = "fault-injection")]
            faults: Default::default(),
        })
    }

    /// The public id of the connection at `key`.
    pub(super) fn conn_id(&self, key: usize) -> ConnId {
        ConnId {
            core: self.id as u16,
            key: key as u32,
            gen: self.conns.get(key).map_or(0, |s| s.gen),
        }
    }

    fn tick_floor(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.start).as_millis() as u64
    }

    fn tick_ceil(&self, t: Instant) -> u64 {
        let d = t.saturating_duration_since(self.start);
        let ms = d.as_millis() as u64;
        if d > Duration::from_millis(ms) {
            ms + 1
        } else {
            ms
        }
    }

    /// Runs until shutdown has drained every connection.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let now = Instant::now();
            if self.drain.is_some() {
                self.drain_step(now);
                let d = self.drain.as_ref().expect("checked");
                if self.conns.is_empty() {
                    self.latency.maybe_merge(now, true);
                    self.gw
                        .flush_backlog_before_exit(self.cfg.gateway.shutdown_timeout);
                    return Ok(());
                }
                if d.deadline.is_some_and(|t| now >= t) {
                    self.drop_all();
                    self.latency.maybe_merge(now, true);
                    self.gw
                        .flush_backlog_before_exit(self.cfg.gateway.shutdown_timeout);
                    return Ok(());
                }
            }
            let timeout = self.poll_timeout(now);
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    LISTENER => self.contained("accept", |core| core.accept(now)),
                    WAKER => self.drain_inbox(now),
                    Token(t) => {
                        let key = t - FIRST_CONN;
                        if !self.conns.contains(key) {
                            continue;
                        }
                        let readable = ev.is_readable() || ev.is_read_closed() || ev.is_error();
                        self.guarded(key, |core| core.service(key, readable, now));
                    }
                }
            }
            let woke = now;
            let now = Instant::now();
            self.fire_timers(now);
            if self.hub.has_held_acks() {
                self.release_acks(now);
            }
            self.flush_dirty(now);
            if self.accept_retry_at.is_some_and(|t| now >= t) {
                self.accept_retry_at = None;
                self.contained("accept", |core| core.accept(now));
            }
            if self.gw.has_backlog() {
                self.gw.flush_backlog();
            }
            self.publish_tally();
            let done = Instant::now();
            self.latency.loop_iteration(done - woke);
            for at in self.publish_stamps.drain(..) {
                self.latency
                    .publish_to_write(done.saturating_duration_since(at));
            }
            self.latency.maybe_merge(done, false);
        }
    }

    /// Clustered: queues the subscribe acks the hub no longer holds (the
    /// link confirmed their channel's broker subscription, went down, or
    /// they waited long enough).
    fn release_acks(&mut self, now: Instant) {
        let mut out = Vec::new();
        self.hub.release_acks(now, &mut out);
        for (key, frame) in out {
            let key = key as usize;
            self.guarded(key, |core| core.push_to(key, frame, now));
        }
    }

    /// During shutdown: sends the closes that are due.
    fn drain_step(&mut self, now: Instant) {
        let Some(mut d) = self.drain.take() else {
            return;
        };
        while d.next < d.order.len() && d.due(d.next) <= now {
            let (key, gen) = d.order[d.next];
            d.next += 1;
            if self.conns.get(key).is_some_and(|s| s.gen == gen) {
                self.guarded(key, |core| {
                    let slot = &mut core.conns[key];
                    let mut ctx = ctx!(core, now);
                    slot.conn.close(
                        code::GOING_AWAY,
                        "server shutting down",
                        EndReason::Shutdown,
                        &mut ctx,
                    );
                    core.after(key, now);
                });
            }
        }
        if d.next == d.order.len() && d.deadline.is_none() {
            d.deadline = Some(now + self.cfg.shutdown.drain_timeout);
        }
        self.drain = Some(d);
        self.flush_dirty(now);
    }

    fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        let mut timeout = self.wheel.next_deadline().map(|tick| {
            let at = self.start + Duration::from_millis(tick);
            at.saturating_duration_since(now)
        });
        let drain = self.drain.as_ref().and_then(|d| {
            d.deadline
                .or_else(|| (d.next < d.order.len()).then(|| d.due(d.next)))
        });
        // Unmerged latency counts reach readers within a second even when
        // the core then sleeps.
        let merge = self.latency.pending_merge();
        // Disconnects waiting for room in the gateway's queue: look again
        // soon.
        let backlog = self
            .gw
            .has_backlog()
            .then(|| now + Duration::from_millis(2));
        // Subscribe acks held for the broker are sent by then anyway.
        let held = self.hub.held_deadline();
        for d in [drain, self.accept_retry_at, merge, backlog, held]
            .into_iter()
            .flatten()
        {
            let left = d.saturating_duration_since(now);
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        timeout
    }

    fn publish_tally(&mut self) {
        let t = std::mem::take(&mut self.tally);
        let c = &self.counters;
        c.frames_in.add(t.frames_in);
        c.frames_out.add(t.frames_out);
        c.messages_in.add(t.messages_in);
        c.messages_out.add(t.messages_out);
        c.pings_sent.add(t.pings_sent);
        c.throttled_msgs.add(t.throttled_msgs);
        c.throttled_bytes.add(t.throttled_bytes);
        c.compressed.add(self.codecs.take_compressed());
    }

    fn accept(&mut self, now: Instant) {
        loop {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    self.counters.accepted.add(1);
                    let _ = stream.set_nodelay(true);
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    if let Err(e) = self.poll.registry().register(
                        &mut stream,
                        Token(key + FIRST_CONN),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!(error = %e, "register failed");
                        self.counters.accept_errors.add(1);
                        continue;
                    }
                    if let Some(plane) = self.tls.as_mut() {
                        if let Err(e) = plane.open(key) {
                            tracing::warn!(error = %e, "TLS session failed");
                            self.counters.accept_errors.add(1);
                            let _ = self.poll.registry().deregister(&mut stream);
                            continue;
                        }
                    }
                    self.next_gen = self.next_gen.wrapping_add(1);
                    entry.insert(Slot {
                        stream,
                        conn: Conn::new(now, self.start, &self.cfg),
                        gen: self.next_gen,
                        timer: None,
                        read_paused: false,
                        dirty: false,
                        ip: peer.ip(),
                        admitted: false,
                        route: None,
                    });
                    self.counters.open.add(1);
                    self.schedule(key, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends. The pending connections stay in
                    // the kernel's queue and, the listener being
                    // edge-triggered, raise no new event: retry after a
                    // pause, or as soon as a connection of ours goes away.
                    self.counters.accept_errors.add(1);
                    if self.accept_retry_at.is_none() {
                        tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
                    }
                    self.accept_retry_at = Some(now + ACCEPT_RETRY);
                    return;
                }
            }
        }
    }

    fn drain_inbox(&mut self, now: Instant) {
        // Clear first: a command sent after this point wakes us again.
        self.inbox.woken();
        if self.inbox.shutdown_requested() {
            self.contained("shutdown", |core| core.begin_shutdown(now));
        }
        while let Some(cmd) = self.inbox.next() {
            // Per command: a panic drops the rest of this command (a query
            // goes unanswered: the admin plane's wait is bounded; a
            // delivery's part for each connection is guarded on its own,
            // so one connection's panic does not stop it).
            self.contained("command", |core| core.handle_command(cmd, now));
        }
    }

    fn begin_shutdown(&mut self, now: Instant) {
        if self.drain.is_some() {
            return;
        }
        if let Some(mut l) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut l);
        }
        self.drain = Some(Drain {
            began: now,
            window: self.cfg.shutdown.drain_window,
            order: self.conns.iter().map(|(k, s)| (k, s.gen)).collect(),
            next: 0,
            deadline: None,
        });
        tracing::debug!(core = self.id, connections = self.conns.len(), "draining");
        self.drain_step(now);
    }

    fn drop_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.remove(key);
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        let tick = self.tick_floor(now);
        while let Some((_, (key, gen))) = self.wheel.poll(tick) {
            let key = key as usize;
            let Some(slot) = self.conns.get_mut(key) else {
                continue;
            };
            if slot.gen != gen {
                continue;
            }
            slot.timer = None;
            self.guarded(key, |core| {
                #[cfg(feature = "fault-injection")]
                core.faults
                    .fire(key, gen, crate::panics::fault::Trigger::Timer);
                let slot = &mut core.conns[key];
                let mut ctx = ctx!(core, now);
                slot.conn.handle_timeout(&mut ctx);
                core.after(key, now);
            });
        }
    }

    /// Reads (if `readable`), takes the events, writes, and reads again
    /// while a pause (back-pressure, rate limit, pending upgrade) has just
    /// ended; then settles the connection.
    fn service(&mut self, key: usize, readable: bool, now: Instant) {
        let mut read = readable;
        loop {
            if read {
                self.read(key, now);
            }
            // Events of a non-I/O input, or input buffered while parsing
            // was paused (it is parsed before anything read after it).
            self.route_events(key, now);
            self.flush(key);
            let Some(slot) = self.conns.get_mut(key) else {
                return;
            };
            if slot.read_paused && slot.conn.wants_read(&self.cfg.conn) {
                slot.read_paused = false;
                read = true;
                continue;
            }
            break;
        }
        self.settle(key, now);
    }

    /// After a non-I/O input (a timer, a command, a shutdown close):
    /// events, writes, a read that may resume, settle.
    pub(super) fn after(&mut self, key: usize, now: Instant) {
        self.service(key, false, now);
    }

    fn read(&mut self, key: usize, now: Instant) {
        if self.tls.is_some() {
            return self.read_tls(key, now);
        }
        loop {
            let slot = &mut self.conns[key];
            if !slot.conn.wants_read(&self.cfg.conn) {
                slot.read_paused = !slot.conn.is_dead();
                return;
            }
            if self.rx.len() < RX_MIN_READ {
                // Zeroed once per block so reads need no `unsafe`; the cost
                // is one memset per 64 KiB received.
                self.rx = BytesMut::zeroed(RX_BLOCK);
            }
            let want = self.rx.len();
            match slot.stream.read(&mut self.rx[..]) {
                Ok(0) => {
                    slot.conn.handle_eof();
                    return;
                }
                Ok(n) => {
                    self.counters.bytes_in.add(n as u64);
                    let mut chunk = self.rx.split_to(n);
                    slot.conn.handle_read(&mut chunk);
                    self.route_events(key, now);
                    if n < want {
                        // A short read drained the socket; the next byte to
                        // arrive raises a new edge.
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    slot.conn.handle_io_error();
                    return;
                }
            }
        }
    }

    /// Takes the connection's events until it has none, acting on each
    /// before the next is parsed. If parsing then waits (back-pressure, a
    /// rate-limit pause, a pending upgrade), reading is marked paused so it
    /// resumes, buffered input first, when the connection wants to read.
    pub(super) fn route_events(&mut self, key: usize, now: Instant) {
        while let Some(slot) = self.conns.get_mut(key) {
            let mut ctx = ctx!(self, now);
            let Some(ev) = slot.conn.poll_event(&mut ctx) else {
                if !slot.conn.wants_read(&self.cfg.conn) && !slot.conn.is_dead() {
                    slot.read_paused = true;
                }
                return;
            };
            match ev {
                Event::Upgrade => self.admit(key, now),
                Event::Opened => {
                    self.counters.upgraded.add(1);
                    let route = self.conns[key].route;
                    if route == Some(Route::Hub) {
                        self.hub.opened(key);
                    }
                    tracing::debug!(
                        conn = %self.conn_id(key),
                        ?route,
                        user = self.hub.user(key).map(|u| &**u),
                        "opened"
                    );
                }
                Event::Ended(reason) => {
                    self.counters.ended[reason.index()].add(1);
                    tracing::debug!(conn = %self.conn_id(key), reason = reason.name(), "ended");
                    // Out of every index the moment it stops being open.
                    self.hub.leave_all(key);
                    self.gateway_ended(key, reason);
                }
                Event::Refused(rejection) => {
                    self.counters.handshake_failures[rejection.index()].add(1);
                    self.refusal_log.note(rejection, now);
                }
                Event::Message { text, payload } => {
                    #[cfg(feature = "fault-injection")]
                    self.faults.on_message(key, self.conns[key].gen, &payload);
                    let slot = &mut self.conns[key];
                    match slot.route {
                        Some(Route::Echo) => {
                            let mut ctx = ctx!(self, now);
                            slot.conn.send_message(text, payload, &mut ctx);
                        }
                        Some(Route::Hub) => {
                            let out = self.hub.request(key, text, &payload, now);
                            self.push_output(key, out, now);
                        }
                        Some(Route::Gateway) => self.gateway_message(key, text, payload, now),
                        None => {}
                    }
                }
            }
        }
    }

    /// An upgrade request arrived: its route from the table (`404` for an
    /// unknown path), then admission's decision — answered now, or left
    /// pending (its handshake deadline still armed, its socket not read)
    /// until a [`Command::AdmissionDecision`](crate::inbox::Command::AdmissionDecision) comes.
    fn admit(&mut self, key: usize, now: Instant) {
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let slot = &mut self.conns[key];
        let Some(req) = slot.conn.request() else {
            return;
        };
        let Some(route) = self.routes.get(req.path()) else {
            let mut ctx = ctx!(self, now);
            return slot.conn.refuse(Rejection::NotFound, &mut ctx);
        };
        slot.route = Some(route);
        let ticket = Ticket {
            core: self.id,
            key: key as u32,
            gen: slot.gen,
        };
        let client = self.admission.client(req, slot.ip);
        if matches!(client, ClientIp::Malformed(_)) {
            self.counters.forwarded_malformed.add(1);
        }
        match self.admission.decide(req, route, client.ip(), unix, ticket) {
            Decision::Accept(a) => {
                self.hold(key, a);
                self.open(key, now, None);
            }
            Decision::Pending(a) => {
                self.hold(key, a);
                if route == Route::Gateway {
                    self.gateway_connect(key, now);
                }
            }
            Decision::Refuse(r) => {
                let mut ctx = ctx!(self, now);
                slot.conn.refuse(r.into(), &mut ctx);
            }
        }
    }

    /// Keeps what admission granted (and took: quota slots, given back on
    /// removal) on the slot.
    fn hold(&mut self, key: usize, a: Admitted) {
        let slot = &mut self.conns[key];
        slot.admitted = true;
        slot.ip = a.ip;
        self.hub.admitted(key, a.user, a.grants.map(|g| *g));
    }

    /// Answers an admitted upgrade `101`, with the subprotocol `chosen`
    /// by whoever decided (the gateway's backend) or else the one
    /// admission answers for a token; in dev mode a hub connection without
    /// a token user takes its user from the query first (the request goes
    /// with the answer).
    fn open(&mut self, key: usize, now: Instant, chosen: Option<Box<str>>) {
        let slot = &mut self.conns[key];
        let Some(req) = slot.conn.request() else {
            return;
        };
        let protocol = chosen
            .as_deref()
            .or_else(|| admission::request::answer_protocol(req));
        if slot.route == Some(Route::Hub) {
            self.hub.upgrading(key, req.query());
        }
        let mut ctx = ctx!(self, now);
        slot.conn.accept(protocol, &mut ctx);
    }

    /// The decision on an upgrade left pending, from the inbox. Nothing
    /// happens if the connection is gone or no longer waits (its deadline
    /// answered first).
    pub(super) fn decided(&mut self, key: usize, gen: u32, verdict: Verdict, now: Instant) {
        let Some(slot) = self.conns.get_mut(key).filter(|s| s.gen == gen) else {
            return;
        };
        if slot.conn.phase() != Phase::Deciding {
            return;
        }
        match verdict {
            Verdict::Accept(chosen) => self.open(key, now, chosen),
            Verdict::Refuse(r) => {
                let mut ctx = ctx!(self, now);
                slot.conn.refuse(r.into(), &mut ctx);
            }
        }
        self.after(key, now);
    }

    /// Flushes and settles every connection that got output this turn
    /// (resuming its reading if the flush ended a back-pressure pause).
    pub(super) fn flush_dirty(&mut self, now: Instant) {
        while let Some((key, gen)) = self.dirty.pop() {
            match self.conns.get_mut(key) {
                Some(slot) if slot.gen == gen => slot.dirty = false,
                _ => continue,
            }
            self.guarded(key, |core| {
                #[cfg(feature = "fault-injection")]
                core.faults
                    .fire(key, gen, crate::panics::fault::Trigger::Flush);
                core.flush(key);
                let slot = &core.conns[key];
                if slot.read_paused && slot.conn.wants_read(&core.cfg.conn) {
                    // The flush ended a back-pressure pause: read again.
                    core.service(key, false, now);
                } else {
                    core.settle(key, now);
                }
            });
        }
    }

    /// Notes that `key` has output to flush at the end of the turn.
    pub(super) fn mark_dirty(&mut self, key: usize) {
        let slot = &mut self.conns[key];
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push((key, slot.gen));
        }
    }

    /// Writes as much of the queue as the socket takes.
    pub(super) fn flush(&mut self, key: usize) {
        if self.tls.is_some() {
            return self.flush_tls(key);
        }
        let Some(slot) = self.conns.get_mut(key) else {
            return;
        };
        loop {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = slot.conn.poll_transmit(&mut slices);
            if n == 0 {
                break;
            }
            let res = if n == 1 {
                slot.stream.write(&slices[0])
            } else {
                slot.stream.write_vectored(&slices[..n])
            };
            match res {
                Ok(w) if w > 0 => {
                    self.counters.bytes_out.add(w as u64);
                    slot.conn.handle_written(w);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A socket that takes nothing of a non-empty write is gone.
                Ok(_) | Err(_) => {
                    slot.conn.handle_io_error();
                    break;
                }
            }
        }
    }

    /// After any input: count an end the flush itself caused (a write
    /// error), remove the dead, schedule the living.
    pub(super) fn settle(&mut self, key: usize, now: Instant) {
        self.route_events(key, now);
        let Some(slot) = self.conns.get(key) else {
            return;
        };
        if slot.conn.is_dead() {
            self.remove(key);
        } else {
            self.schedule(key, now);
        }
    }

    fn remove(&mut self, key: usize) {
        // Dropped without having ended: the drain timeout.
        self.take_out(key, EndReason::Shutdown);
    }

    /// `finally`: whatever path led here, no index keeps `key`. A
    /// connection that never reported its end is counted as `unended`.
    fn take_out(&mut self, key: usize, unended: EndReason) {
        let why = self.conns[key].conn.end_reason().unwrap_or(unended);
        self.gateway_ended(key, why);
        let member = self.hub.remove(key);
        let mut slot = self.conns.remove(key);
        if slot.admitted {
            // Only token users were counted against the per-user quota.
            let user = member.as_ref().and_then(|m| m.token_user());
            self.admission.release(slot.ip, user);
        }
        if let Some(tk) = slot.timer.take() {
            self.wheel.cancel(tk);
        }
        if let Some(plane) = self.tls.as_mut() {
            let w = plane.close(key, &mut slot.stream);
            self.counters.bytes_out.add(w as u64);
        }
        let _ = self.poll.registry().deregister(&mut slot.stream);
        if !self.panicked.is_empty() {
            self.panicked.retain(|&(k, _)| k != key);
        }
        if slot.conn.end_reason().is_none() {
            self.counters.ended[unended.index()].add(1);
        }
        self.counters.open.sub(1);
        if self.accept_retry_at.is_some() {
            // A descriptor was freed: take a waiting connection now.
            self.accept_retry_at = None;
            self.accept(Instant::now());
        }
    }

    /// Runs `f`, the handling of connection `key`, and contains a panic in
    /// it to that connection: [`Core::contain`] closes it with 1011 and
    /// removes it from every index; the caller and every other connection
    /// go on. `None` if it panicked.
    ///
    /// `AssertUnwindSafe`: what `f` may leave half-changed is either
    /// discarded or safe to keep —
    /// - the connection's own state (`Conn`, its hub lists): no longer
    ///   trusted; it is only asked to queue its close and flush it
    ///   ([`Conn::abort`]), its key is swept out of the hub index
    ///   ([`Hub::forget`]), and a
    ///   second panic removes it without another call into it;
    /// - its events not yet taken: held by the `Conn`, which
    ///   [`Conn::abort`] reduces to its end;
    /// - the encoder arena: bytes not yet split off are dropped
    ///   ([`FrameEncoder::discard_partial`]);
    /// - the receive block: a read is split off it before it is parsed;
    /// - the wheel and the dirty list: entries carry the generation, so a
    ///   stale one finds nothing; the hub's key list: taken while in use,
    ///   at worst replaced by an empty one;
    /// - counters, tally, latency stamps: plain numbers, at worst one count
    ///   off;
    /// - shared state (registry, admission): behind locks that ignore
    ///   poisoning, each change one map operation.
    #[inline]
    pub(super) fn guarded<R>(&mut self, key: usize, f: impl FnOnce(&mut Self) -> R) -> Option<R> {
        let gen = self.conns.get(key).map(|s| s.gen);
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(r) => Some(r),
            Err(payload) => {
                self.contain(key, gen, &*payload);
                None
            }
        }
    }

    /// Runs `what`, work that belongs to no one connection (an accept, an
    /// inbox command), and contains a panic in it: counted, logged, the
    /// rest of that work dropped, the loop goes on. The same reasoning as
    /// for [`Core::guarded`] applies to the state it touches.
    fn contained(&mut self, what: &'static str, f: impl FnOnce(&mut Self)) {
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(self))) {
            self.counters.panics.add(1);
            self.enc.discard_partial();
            let note = crate::panics::take_note(&*payload);
            tracing::error!(
                core = self.id,
                what,
                at = %note.location,
                panic = %note.message,
                backtrace = note.backtrace.as_deref(),
                "panic; dropped that {what}, the core goes on"
            );
        }
    }

    /// After a panic in the handling of connection `key` (`gen` when it
    /// began): count and log it once, then close the
    /// connection with 1011 and take it out of every index, exactly as a
    /// normal end does (counted as `internal_error`, hub indexes, then at
    /// the end of the turn the wheel, admission quota and slab).
    #[cold]
    #[inline(never)]
    fn contain(&mut self, key: usize, gen: Option<u32>, payload: &(dyn Any + Send)) {
        self.counters.panics.add(1);
        self.enc.discard_partial();
        let note = crate::panics::take_note(payload);
        let live = gen.filter(|&g| self.conns.get(key).is_some_and(|s| s.gen == g));
        let Some(gen) = live else {
            tracing::error!(
                core = self.id,
                at = %note.location,
                panic = %note.message,
                backtrace = note.backtrace.as_deref(),
                "panic while handling a connection that is gone"
            );
            return;
        };
        let id = ConnId {
            core: self.id as u16,
            key: key as u32,
            gen,
        };
        let again = self.panicked.contains(&(key, gen));
        if !again {
            self.panicked.push((key, gen));
        }
        tracing::error!(
            conn = %id,
            at = %note.location,
            panic = %note.message,
            backtrace = note.backtrace.as_deref(),
            "{}",
            if again {
                "panic again while closing a connection after a panic; dropped it"
            } else {
                "panic while handling a connection; closed it with 1011"
            }
        );
        if again {
            return self.remove_after_panics(key);
        }
        // Itself guarded: if closing panics too, the second branch above
        // drops the connection.
        self.guarded(key, |core| {
            let now = Instant::now();
            let slot = &mut core.conns[key];
            let mut ctx = ctx!(core, now);
            slot.conn.abort(&mut ctx);
            core.hub.forget(key);
            // Its `Ended(InternalError)`, unless it had ended before: counted
            // and detached as any end.
            core.route_events(key, now);
            // Flushed (the close) and removed at the end of the turn.
            core.mark_dirty(key);
        });
    }

    /// A connection that panicked twice: out of every index and the slab
    /// without another call into its state machine.
    fn remove_after_panics(&mut self, key: usize) {
        // Its own lists may be half-updated: sweep every index for it.
        self.hub.forget(key);
        self.take_out(key, EndReason::InternalError);
    }

    /// Makes sure the wheel holds an entry no later than the connection's
    /// next deadline. An entry that is earlier is kept: it fires, finds
    /// nothing due, and is rescheduled (cheaper than a cancel per message).
    fn schedule(&mut self, key: usize, now: Instant) {
        let Some(at) = self.conns[key]
            .conn
            .poll_timeout(&self.cfg.conn, self.start, now)
        else {
            return;
        };
        let tick = self.tick_ceil(at);
        let slot = &mut self.conns[key];
        if let Some(tk) = slot.timer {
            match self.wheel.when(tk) {
                Some(t) if t <= tick => return,
                _ => {
                    self.wheel.cancel(tk);
                }
            }
        }
        slot.timer = Some(self.wheel.insert(tick, (key as u32, slot.gen)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What an idle connection costs is mostly these sizes (PERF.md,
    /// "Memory per idle connection"): they must not grow unnoticed.
    #[cfg(target_pointer_width = "64")]
    #[test]
    fn per_connection_sizes_stay_small() {
        use std::mem::size_of;
        let sizes = [
            ("Conn", size_of::<Conn>()),
            ("Slot", size_of::<Slot>()),
            ("FrameDecoder", size_of::<crate::protocol::FrameDecoder>()),
            ("OutQueue", size_of::<crate::conn::OutQueue>()),
        ];
        eprintln!("{sizes:?}");
        // Slot: 168 B in a release build (mio's `TcpStream` carries a
        // selector id with debug assertions: 16 B more): the Conn inside
        // it is 120 B and 8 more for the permessage-deflate box (issue 16;
        // `None` unless the connection agreed compression). TLS sessions
        // live beside the slab (`engine::tls::TlsPlane`), not in it.
        for (name, size, max) in [
            ("Conn", size_of::<Conn>(), 128),
            ("Slot", size_of::<Slot>(), 184),
            ("FrameDecoder", sizes[2].1, 32),
            ("OutQueue", sizes[3].1, 48),
        ] {
            assert!(
                size <= max,
                "{name} is {size} B, more than {max}: {sizes:?}"
            );
        }
    }
}
