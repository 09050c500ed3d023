//! The thread-per-core engine: starts one [`core`] thread per configured
//! core, each with its own SO_REUSEPORT listener, and hands out a
//! [`Server`] to stop them and read their counters.
//!
//! Owns: thread start-up and shutdown, the per-core handles (inbox sender
//! and `mio::Waker`). Must not touch: connections (each core owns its own).

pub mod core;
pub mod counters;
pub mod listener;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use mio::{Poll, Waker};

use self::core::{Command, Core, WAKER};
pub use counters::{CoreCounters, Stats};

/// A `Send` handle to one core: its inbox and the waker that rouses it.
#[derive(Clone)]
pub struct CoreHandle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    counters: Arc<CoreCounters>,
}

impl CoreHandle {
    fn send(&self, cmd: Command) {
        if self.tx.send(cmd).is_ok() {
            let _ = self.waker.wake();
        }
    }

    /// This core's counters.
    pub fn counters(&self) -> &CoreCounters {
        &self.counters
    }
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    cores: Vec<CoreHandle>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Binds every core's listener and starts the core threads.
    pub fn start(config: crate::Config) -> io::Result<Server> {
        let cfg = Arc::new(config);
        let n = cfg.cores.max(1);
        let first = listener::bind_reuseport(cfg.listen)?;
        // With port 0 the first bind picks the port all cores then share.
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..n {
            listeners.push(listener::bind_reuseport(local_addr)?);
        }
        let mut cores = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for (i, l) in listeners.into_iter().enumerate() {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = crossbeam_channel::unbounded();
            let counters = Arc::new(CoreCounters::default());
            let core = Core::new(cfg.clone(), poll, l, rx, counters.clone())?;
            let thread = std::thread::Builder::new()
                .name(format!("wsedge-core-{i}"))
                .spawn(move || {
                    let res = core.run();
                    if let Err(e) = &res {
                        tracing::error!(core = i, error = %e, "core stopped");
                    }
                    res
                })?;
            cores.push(CoreHandle {
                tx,
                waker,
                counters,
            });
            threads.push(thread);
        }
        Ok(Server {
            local_addr,
            cores,
            threads,
        })
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
    /// to its connections and exits once they are gone or the drain
    /// timeout passed. Returns at once; [`Server::join`] waits.
    pub fn shutdown(&self) {
        for c in &self.cores {
            c.send(Command::Shutdown);
        }
    }

    /// Waits for every core thread to exit.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("core thread panicked")),
            }
        }
        result
    }
}
