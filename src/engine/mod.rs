//! The data plane: one [`core`] thread per configured core, each with its
//! own SO_REUSEPORT listener, `mio::Poll`, inbox and hub.
//!
//! Owns: binding the listeners, making each core's poll, waker and
//! bounded inbox ([`Cores::bind`]), and starting the threads
//! ([`Cores::start`]). Must not touch: connections (each core owns its
//! own), the control plane (the server composes the two; the cores only
//! hand out [`CoreHandle`]s), or building the hubs (the server gives each
//! core its [`Hub`]).

pub mod core;
mod fanout;
mod gateway;
mod gateway_state;
pub mod listener;
pub mod routes;
mod tls;
mod tls_io;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use mio::net::TcpListener;
use mio::{Poll, Waker};

use self::core::{Core, WAKER};
use crate::admission::Admission;
use crate::config::Config;
use crate::hub::registry::MAX_CORES;
use crate::hub::Hub;
use crate::inbox::{self, CoreHandle, Inbox};
pub use routes::{Route, Routes};

/// One core, bound and reachable, not yet running.
struct Seat {
    poll: Poll,
    listener: TcpListener,
    inbox: Inbox,
}

/// The cores of a server between binding and starting: every handle
/// exists before any core runs, so cores (and the control plane) can reach
/// each other from their first event on.
pub struct Cores {
    local_addr: SocketAddr,
    handles: Arc<[CoreHandle]>,
    seats: Vec<Seat>,
}

impl Cores {
    /// Binds one listener per core (`cfg.core_count()`, clamped to
    /// 1..=64) on one address and makes each core's poll, waker and inbox
    /// of `cfg.inbox_capacity`.
    pub fn bind(cfg: &Config) -> io::Result<Cores> {
        let n = cfg.core_count().clamp(1, MAX_CORES);
        let first = listener::bind_reuseport(cfg.listen)?;
        // With port 0 the first bind picks the port all cores then share.
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..n {
            listeners.push(listener::bind_reuseport(local_addr)?);
        }
        let mut handles = Vec::with_capacity(n);
        let mut seats = Vec::with_capacity(n);
        for listener in listeners {
            let poll = Poll::new()?;
            let waker = Waker::new(poll.registry(), WAKER)?;
            let (handle, inbox) = inbox::inbox(cfg.inbox_capacity, waker);
            handles.push(handle);
            seats.push(Seat {
                poll,
                listener,
                inbox,
            });
        }
        Ok(Cores {
            local_addr,
            handles: handles.into(),
            seats,
        })
    }

    /// The address every core listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The cores' handles, in core order.
    pub fn handles(&self) -> &Arc<[CoreHandle]> {
        &self.handles
    }

    /// Starts one thread per core, core `i` with `hubs[i]`. Each thread
    /// returns once its core drained after a shutdown. Panics in a
    /// connection's handling are contained inside the core; one outside
    /// any connection ends that core's thread (logged and counted), and
    /// the other cores go on.
    pub fn start(
        self,
        cfg: Arc<Config>,
        hubs: Vec<Hub>,
        admission: Arc<Admission>,
        gateway: Option<crate::gateway::events::Link>,
        tls: Option<Arc<crate::tls::Certs>>,
    ) -> io::Result<Vec<JoinHandle<io::Result<()>>>> {
        assert_eq!(hubs.len(), self.seats.len(), "one hub per core");
        let mut threads = Vec::with_capacity(self.seats.len());
        // The CPUs this process may run on, read once before any core
        // thread exists (each core then narrows only its own thread).
        let cpus = if cfg.pin_cores {
            let cpus = core_affinity::get_core_ids().unwrap_or_default();
            if cpus.is_empty() {
                tracing::warn!("pin_cores: could not read the allowed CPUs; cores run unpinned");
            }
            cpus
        } else {
            Vec::new()
        };
        for (i, (seat, hub)) in self.seats.into_iter().zip(hubs).enumerate() {
            let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
            let core = Core::new(
                i,
                cfg.clone(),
                seat.poll,
                seat.listener,
                &self.handles[i],
                seat.inbox,
                hub,
                admission.clone(),
                gateway.clone(),
                tls.clone(),
            )?;
            let counters = self.handles[i].counters_arc();
            let thread = std::thread::Builder::new()
                .name(format!("wsedge-core-{i}"))
                .spawn(move || {
                    crate::panics::own_thread();
                    if let Some(cpu) = cpu {
                        pin(i, cpu);
                    }
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
        Ok(threads)
    }
}

/// Pins the calling core thread to `cpu`, logging the outcome; a failure
/// leaves the thread unpinned and the core runs on.
fn pin(core: usize, cpu: core_affinity::CoreId) {
    if core_affinity::set_for_current(cpu) {
        tracing::info!(core, cpu = cpu.id, "core pinned");
    } else {
        tracing::warn!(
            core,
            cpu = cpu.id,
            "pin_cores: could not pin this core; it runs unpinned"
        );
    }
}
