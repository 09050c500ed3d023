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
pub mod listener;

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
    /// Binds `cfg.cores` listeners (clamped to 1..=64) on one address and
    /// makes each core's poll, waker and inbox of `cfg.inbox_capacity`.
    pub fn bind(cfg: &Config) -> io::Result<Cores> {
        let n = cfg.cores.clamp(1, MAX_CORES);
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
    /// returns once its core drained after a shutdown.
    pub fn start(
        self,
        cfg: Arc<Config>,
        hubs: Vec<Hub>,
        admission: Arc<Admission>,
    ) -> io::Result<Vec<JoinHandle<io::Result<()>>>> {
        assert_eq!(hubs.len(), self.seats.len(), "one hub per core");
        let mut threads = Vec::with_capacity(self.seats.len());
        for (i, (seat, hub)) in self.seats.into_iter().zip(hubs).enumerate() {
            let core = Core::new(
                i,
                cfg.clone(),
                seat.poll,
                seat.listener,
                &self.handles[i],
                seat.inbox,
                hub,
                admission.clone(),
            )?;
            let thread = std::thread::Builder::new()
                .name(format!("wsedge-core-{i}"))
                .spawn(move || {
                    let res = core.run();
                    if let Err(e) = &res {
                        tracing::error!(core = i, error = %e, "core stopped");
                    }
                    res
                })?;
            threads.push(thread);
        }
        Ok(threads)
    }
}
