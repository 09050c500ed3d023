//! The composition of a running server: the data plane (the engine's
//! cores, each with its hub) and the control plane (the admin HTTP plane
//! today; backend callbacks and the broker link next), wired together
//! with bounded channels and nothing else.
//!
//! Owns: building the pieces in order — the cores' listeners and inboxes,
//! the shared hub registry, one [`Hub`] per core and the control plane's
//! [`HubHandle`], admission, then the admin plane given only the handles it
//! needs — and the [`Server`] handle that stops them. Must not touch: what
//! any piece does. This is the one module that knows both planes; neither
//! imports the other.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crate::admin::{Admin, AdminHandle, Parts};
use crate::admission::demo::DemoKey;
use crate::admission::Admission;
use crate::config::Config;
use crate::engine::Cores;
use crate::hub::{Hub, HubHandle, Registry};
use crate::inbox::CoreHandle;
use crate::stats::{Stats, StatsView};

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    admin: Option<AdminHandle>,
    cores: Arc<[CoreHandle]>,
    hub: HubHandle,
    stats: StatsView,
    draining: Arc<AtomicBool>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Server {
    /// Checks the configuration ([`Config::validate`], refused as
    /// `InvalidInput`), binds every core's listener (and the admin plane,
    /// if configured) and starts the threads.
    pub fn start(config: Config) -> io::Result<Server> {
        Self::start_with(config, |a| a)
    }

    /// [`Server::start`] with admission's test seam: `hook` may leave
    /// upgrades pending, to be answered through the cores' inboxes
    /// ([`Command::AdmissionDecision`](crate::inbox::Command::AdmissionDecision)).
    /// Feature `testing` only.
    #[cfg(any(test, feature = "testing"))]
    pub fn start_deferring(
        config: Config,
        hook: crate::admission::DeferHook,
    ) -> io::Result<Server> {
        Self::start_with(config, |a| a.with_defer(hook))
    }

    fn start_with(
        config: Config,
        admission: impl FnOnce(Admission) -> Admission,
    ) -> io::Result<Server> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let cfg = Arc::new(config);
        let cores = Cores::bind(&cfg)?;
        let local_addr = cores.local_addr();
        let handles = cores.handles().clone();
        let registry = Arc::new(Registry::default());
        let hub = HubHandle::new(registry.clone(), handles.clone(), &cfg);
        let hubs = (0..handles.len())
            .map(|i| Hub::new(i, cfg.hub.clone(), registry.clone(), handles.clone()))
            .collect();
        // Made here, at start: never a setting, so never printed.
        let demo_key = cfg.wants_demo_key().then(DemoKey::generate);
        let admission = Arc::new(admission(Admission::new(&cfg, demo_key.clone())));
        let stats = StatsView::new(handles.clone());
        let draining = Arc::new(AtomicBool::new(false));
        let admin = match cfg.admin.listen {
            Some(listen) => Some(Admin::bind(
                listen,
                &cfg.admin,
                Parts {
                    hub: hub.clone(),
                    stats: stats.clone(),
                    draining: draining.clone(),
                    ws_addr: local_addr,
                    config: cfg.clone(),
                    demo_key,
                    started: Instant::now(),
                },
            )?),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|a| a.local_addr());
        let threads = cores.start(cfg, hubs, admission)?;
        let admin = admin.map(|a| a.spawn()).transpose()?;
        Ok(Server {
            local_addr,
            admin_addr,
            admin,
            cores: handles,
            hub,
            stats,
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

    /// The hub, as the control plane reaches it.
    pub fn hub(&self) -> &HubHandle {
        &self.hub
    }

    /// The address the cores listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Handles to the cores.
    pub fn cores(&self) -> &[CoreHandle] {
        &self.cores
    }

    /// The read-only view of every core's counters and histograms.
    pub fn stats_view(&self) -> &StatsView {
        &self.stats
    }

    /// Counters of each core.
    pub fn core_stats(&self) -> Vec<Stats> {
        self.stats.per_core()
    }

    /// Counters summed over all cores.
    pub fn stats(&self) -> Stats {
        self.stats.total()
    }

    /// Starts a graceful shutdown: every core stops accepting, sends 1001
    /// to its connections spread over the drain window, and exits once
    /// they are gone or the drain timeout passed after the last close.
    /// The admin plane keeps answering (`/readyz` says 503) until
    /// [`Server::join`] returns. Returns at once; [`Server::join`] waits.
    /// Never lost, even with every inbox full.
    pub fn shutdown(&self) {
        self.draining.store(true, Ordering::Release);
        for c in self.cores.iter() {
            c.shutdown();
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
