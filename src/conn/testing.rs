//! The one driver of a [`Conn`] outside the engine: the call order of the
//! module doc (`handle_*`, `poll_event` until `None`, `poll_transmit` /
//! `handle_written`, `poll_timeout`) over virtual time and an in-memory
//! "socket", shared by the unit tests (`conn/tests.rs`), the `connection`
//! fuzz target and `benches/allocs.rs`.
//!
//! Owns: the loop and the virtual clock; what the server does with events
//! is an [`App`] ([`Echo`] is the `/echo` route with a chosen admission
//! answer). Must not touch: the wall clock after the origin it starts
//! from, sockets, the engine.
//!
//! Compiled for tests, under `cfg(fuzzing)` and with the `testing`
//! feature (which `fuzzing` implies and the crate's own tests and benches
//! turn on through the dev-dependency on itself); never in the product.

use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::outbound::MAX_IOVECS;
use super::{Codecs, Conn, Ctx, Event, Tally};
use crate::config::{Config, ConnConfig};
use crate::error::Rejection;
use crate::protocol::encoder::FrameEncoder;

/// What the server does with one connection's events.
pub trait App {
    /// One event, taken with `poll_event`; answer through `conn` as the
    /// server would (accept or refuse an upgrade, send a reply).
    fn on_event(&mut self, conn: &mut Conn, ctx: &mut Ctx<'_>, event: Event);
}

/// How [`Echo`] answers an upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// `101` at once.
    Accept,
    /// This refusal at once.
    Refuse(Rejection),
    /// Neither: the upgrade waits for [`Driver::accept`] /
    /// [`Driver::refuse`] (or its deadline).
    Defer,
}

/// The `/echo` route: answers the upgrade as told, sends every message
/// back as it came, and records the events if asked (not in the bench:
/// recording allocates).
#[derive(Debug)]
pub struct Echo {
    pub admit: Admit,
    /// Every event in order, when recording.
    pub events: Option<Vec<Event>>,
}

impl Echo {
    /// Accepts every upgrade, echoes, records nothing.
    pub fn new() -> Self {
        Self {
            admit: Admit::Accept,
            events: None,
        }
    }

    /// Answers upgrades with `admit`, echoes, records every event.
    pub fn recording(admit: Admit) -> Self {
        Self {
            admit,
            events: Some(Vec::new()),
        }
    }

    /// The events recorded since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        self.events.as_mut().map(std::mem::take).unwrap_or_default()
    }
}

impl Default for Echo {
    fn default() -> Self {
        Self::new()
    }
}

impl App for Echo {
    fn on_event(&mut self, conn: &mut Conn, ctx: &mut Ctx<'_>, event: Event) {
        match &event {
            Event::Upgrade => match self.admit {
                Admit::Accept => conn.accept(None, ctx),
                Admit::Refuse(r) => conn.refuse(r, ctx),
                Admit::Defer => {}
            },
            Event::Message { text, payload } => {
                conn.send_message(*text, payload.clone(), ctx);
            }
            Event::Opened | Event::Refused(_) | Event::Ended(_) => {}
        }
        if let Some(log) = &mut self.events {
            log.push(event);
        }
    }
}

/// One connection, everything a core lends it, and a virtual clock.
pub struct Driver {
    pub conn: Conn,
    /// The server's settings: the defaults around the connection's own.
    pub cfg: Config,
    pub enc: FrameEncoder,
    /// The "core's" shared compressors (permessage-deflate).
    pub codecs: Codecs,
    pub tally: Tally,
    /// Virtual time: starts at the wall clock's `now`, then moves only
    /// when told.
    pub now: Instant,
    /// Tick 0 of the connection's deadlines: the virtual origin, so whole
    /// milliseconds of virtual time are whole ticks.
    pub epoch: Instant,
}

impl Driver {
    /// A fresh connection (waiting for its upgrade request) at a virtual
    /// origin, with these connection settings and every other default.
    pub fn new(conn: ConnConfig) -> Self {
        Self::with_config(Config {
            conn,
            ..Config::default()
        })
    }

    /// [`Driver::new`] with the whole configuration given (rate limits,
    /// subprotocols).
    pub fn with_config(cfg: Config) -> Self {
        let now = Instant::now();
        Self {
            conn: Conn::new(now, now, &cfg),
            cfg,
            enc: FrameEncoder::new(),
            codecs: Codecs::new(),
            tally: Tally::default(),
            now,
            epoch: now,
        }
    }

    /// Calls `f` with the connection and a context at the virtual `now`.
    pub fn with<R>(&mut self, f: impl FnOnce(&mut Conn, &mut Ctx<'_>) -> R) -> R {
        let mut ctx = Ctx {
            now: self.now,
            epoch: self.epoch,
            cfg: &self.cfg,
            enc: &mut self.enc,
            codecs: &mut self.codecs,
            tally: &mut self.tally,
        };
        f(&mut self.conn, &mut ctx)
    }

    /// Takes events until `poll_event` says `None`, handing each to `app`.
    pub fn dispatch(&mut self, app: &mut impl App) {
        self.with(|conn, ctx| {
            while let Some(ev) = conn.poll_event(ctx) {
                app.on_event(conn, ctx, ev);
            }
        });
    }

    /// Bytes read from the "socket" (all taken), then their events.
    pub fn read(&mut self, input: &mut BytesMut, app: &mut impl App) {
        self.conn.handle_read(input);
        debug_assert!(input.is_empty(), "handle_read takes all its input");
        self.dispatch(app);
    }

    /// [`Driver::read`] of a copy of `bytes`.
    pub fn feed(&mut self, bytes: &[u8], app: &mut impl App) {
        self.read(&mut BytesMut::from(bytes), app);
    }

    /// The peer's end of stream, then its events.
    pub fn eof(&mut self, app: &mut impl App) {
        self.conn.handle_eof();
        self.dispatch(app);
    }

    /// A socket error, then its events.
    pub fn io_error(&mut self, app: &mut impl App) {
        self.conn.handle_io_error();
        self.dispatch(app);
    }

    /// Moves virtual time to `at` (never back), fires the connection's
    /// deadlines, then takes the events.
    pub fn advance_to(&mut self, at: Instant, app: &mut impl App) {
        self.now = self.now.max(at);
        self.with(|c, ctx| c.handle_timeout(ctx));
        self.dispatch(app);
    }

    /// [`Driver::advance_to`] `d` later.
    pub fn advance(&mut self, d: Duration, app: &mut impl App) {
        self.advance_to(self.now + d, app);
    }

    /// The connection's next deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.conn.poll_timeout(&self.cfg.conn, self.epoch, self.now)
    }

    /// Answers a deferred upgrade `101`, then takes the events.
    pub fn accept(&mut self, app: &mut impl App) {
        self.with(|c, ctx| c.accept(None, ctx));
        self.dispatch(app);
    }

    /// Refuses a deferred upgrade, then takes the events.
    pub fn refuse(&mut self, rejection: Rejection, app: &mut impl App) {
        self.with(|c, ctx| c.refuse(rejection, ctx));
        self.dispatch(app);
    }

    /// The "socket" takes up to `max` queued bytes, handed to `sink` in
    /// order as they go out; returns how many. Call [`Driver::dispatch`]
    /// after it when the queue was over the write budget (parsing resumes).
    pub fn transmit(&mut self, max: usize, mut sink: impl FnMut(&[u8])) -> usize {
        let mut total = 0;
        while total < max {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let n = self.conn.poll_transmit(&mut slices);
            if n == 0 {
                break;
            }
            let mut written = 0;
            for s in &slices[..n] {
                let take = s.len().min(max - total - written);
                sink(&s[..take]);
                written += take;
                if take < s.len() {
                    break;
                }
            }
            self.conn.handle_written(written);
            total += written;
        }
        total
    }

    /// Everything queued, as if the socket took it all.
    pub fn take_out(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.transmit(usize::MAX, |b| out.extend_from_slice(b));
        out
    }
}
