//! The thread-per-core engine: starts one [`core`] thread per configured
//! core, each with its own SO_REUSEPORT listener, and hands out a
//! [`Server`] to stop them and read their counters.
//!
//! Owns: thread start-up and shutdown, the per-core handles (inbox sender
//! and `mio::Waker`). Must not touch: connections (each core owns its own).

pub mod command;
pub mod core;
pub mod counters;
mod fanout;
pub mod latency;
pub mod listener;
pub mod routes;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::Sender;
use mio::{Poll, Waker};

use self::core::{Core, WAKER};
use crate::admission::demo::DemoKey;
use crate::hub::registry::MAX_CORES;
use crate::hub::Registry;
pub use command::{ChannelInfo, Command, Target};
pub use counters::{CoreCounters, Stats};
pub(crate) use fanout::mask_cores;
pub use latency::LatencyHistograms;
pub use routes::{Route, Routes};

/// A `Send` handle to one core: its inbox and the waker that rouses it.
#[derive(Clone)]
pub struct CoreHandle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    /// True while a wake-up is pending: senders skip the syscall then.
    notified: Arc<AtomicBool>,
    counters: Arc<CoreCounters>,
    latency: Arc<Mutex<LatencyHistograms>>,
}

impl CoreHandle {
    /// Puts a command in the core's inbox, waking the core only if no
    /// wake-up is already pending (coalesced wake-ups).
    pub fn send(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() && !self.notified.swap(true, Ordering::AcqRel) {
            let _ = self.waker.wake();
        }
    }

    /// This core's counters.
    pub fn counters(&self) -> &CoreCounters {
        &self.counters
    }

    /// A copy of this core's latency histograms (merged once a second).
    pub fn latency(&self) -> LatencyHistograms {
        self.latency.lock().map(|h| h.clone()).unwrap_or_default()
    }
}

/// What the admin plane sees of a running server.
#[derive(Clone)]
pub struct ServerView {
    pub cores: Arc<[CoreHandle]>,
    pub registry: Arc<Registry>,
    /// Set once shutdown began (readiness turns false).
    pub draining: Arc<AtomicBool>,
    /// The address the cores listen on.
    pub ws_addr: SocketAddr,
    pub config: Arc<crate::Config>,
    /// The chat demo's ephemeral key, made at start when
    /// [`Config::wants_demo_key`](crate::Config::wants_demo_key).
    pub demo_key: Option<DemoKey>,
    pub started: Instant,
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    admin: Option<crate::admin::AdminHandle>,
    cores: Arc<[CoreHandle]>,
    registry: Arc<Registry>,
    draining: Arc<AtomicBool>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Checks the configuration ([`Config::validate`](crate::Config::validate),
    /// refused as `InvalidInput`), binds every core's listener (and the
    /// admin plane, if configured) and starts the threads.
    pub fn start(config: crate::Config) -> io::Result<Server> {
        Self::start_with(config, |a| a)
    }

    /// [`Server::start`] with admission's test seam: `hook` may leave
    /// upgrades pending, to be answered through the cores' inboxes
    /// ([`Command::AdmissionDecision`]). Feature `testing` only.
    #[cfg(any(test, feature = "testing"))]
    pub fn start_deferring(
        config: crate::Config,
        hook: crate::admission::DeferHook,
    ) -> io::Result<Server> {
        Self::start_with(config, |a| a.with_defer(hook))
    }

    fn start_with(
        config: crate::Config,
        admission: impl FnOnce(crate::admission::Admission) -> crate::admission::Admission,
    ) -> io::Result<Server> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let cfg = Arc::new(config);
        let n = cfg.core_count().clamp(1, MAX_CORES);
        let first = listener::bind_reuseport(cfg.listen)?;
        // With port 0 the first bind picks the port all cores then share.
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..n {
            listeners.push(listener::bind_reuseport(local_addr)?);
        }
        // Every handle exists before any core starts, so cores can reach
        // each other from their first event on.
        let mut polls = Vec::with_capacity(n);
        let mut inboxes = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = crossbeam_channel::unbounded();
            handles.push(CoreHandle {
                tx,
                waker,
                notified: Arc::new(AtomicBool::new(false)),
                counters: Arc::new(CoreCounters::default()),
                latency: Arc::default(),
            });
            polls.push(poll);
            inboxes.push(rx);
        }
        let cores: Arc<[CoreHandle]> = handles.into();
        let registry = Arc::new(Registry::default());
        // Made here, at start: never a setting, so never printed.
        let demo_key = cfg.wants_demo_key().then(DemoKey::generate);
        let admission = Arc::new(admission(crate::admission::Admission::new(
            &cfg,
            demo_key.clone(),
        )));
        let draining = Arc::new(AtomicBool::new(false));
        let view = ServerView {
            cores: cores.clone(),
            registry: registry.clone(),
            draining: draining.clone(),
            ws_addr: local_addr,
            config: cfg.clone(),
            demo_key,
            started: Instant::now(),
        };
        let admin = match cfg.admin.listen {
            Some(listen) => Some(crate::admin::Admin::bind(listen, &cfg.admin, view)?),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|a| a.local_addr());
        let mut threads = Vec::with_capacity(n + 1);
        let parts = polls.into_iter().zip(inboxes).zip(listeners).enumerate();
        for (i, ((poll, inbox), l)) in parts {
            let core = Core::new(
                i,
                cfg.clone(),
                poll,
                l,
                inbox,
                cores.clone(),
                registry.clone(),
                admission.clone(),
            )?;
            let counters = cores[i].counters.clone();
            let thread = std::thread::Builder::new()
                .name(format!("wsedge-core-{i}"))
                .spawn(move || {
                    crate::panics::own_thread();
                    // Panics in a connection's handling are contained
                    // inside `run`; one here (the loop's own bookkeeping)
                    // ends this core: its sockets close, the others go on.
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.run())) {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => {
                            tracing::error!(core = i, error = %e, "core stopped");
                            Err(e)
                        }
                        Err(payload) => {
                            counters.panics.add(1);
                            let note = crate::panics::take_note(&*payload);
                            tracing::error!(
                                core = i,
                                at = %note.location,
                                panic = %note.message,
                                backtrace = note.backtrace.as_deref(),
                                "core stopped by a panic outside any connection; the other cores go on"
                            );
                            Err(io::Error::other("core thread panicked"))
                        }
                    }
                })?;
            threads.push(thread);
        }
        let admin = admin.map(|a| a.spawn()).transpose()?;
        Ok(Server {
            local_addr,
            admin_addr,
            admin,
            cores,
            registry,
            draining,
            threads,
        })
    }

    /// True once shutdown began.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// The admin plane's address, if it runs.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The shared hub registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The address the cores listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Handles to the cores.
    pub fn cores(&self) -> &[CoreHandle] {
        &self.cores
    }

    /// Counters of each core.
    pub fn core_stats(&self) -> Vec<Stats> {
        self.cores.iter().map(|c| c.counters.snapshot()).collect()
    }

    /// Counters summed over all cores.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in self.core_stats() {
            total.merge(&s);
        }
        total
    }

    /// Starts a graceful shutdown: every core stops accepting, sends 1001
    /// to its connections spread over the drain window, and exits once
    /// they are gone or the drain timeout passed after the last close.
    /// The admin plane keeps answering (`/readyz` says 503) until
    /// [`Server::join`] returns. Returns at once; [`Server::join`] waits.
    pub fn shutdown(&self) {
        self.draining.store(true, Ordering::Release);
        for c in self.cores.iter() {
            c.send(Command::Shutdown);
        }
    }

    /// Waits for every core thread to exit, then stops the admin plane.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("core thread panicked")),
            }
        }
        if let Some(admin) = &self.admin {
            admin.stop();
        }
        result
    }
}
