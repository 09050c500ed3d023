//! The composition of a running server: the data plane (the engine's
//! cores, each with its hub) and the control plane (one tokio runtime:
//! the admin HTTP plane and, in gateway mode, the gateway's backend
//! calls; the broker link next), wired together with bounded channels
//! and nothing else.
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
use std::time::{Duration, Instant};

use crate::admin::{Admin, AdminHandle, Parts};
use crate::admission::demo::DemoKey;
use crate::admission::Admission;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::engine::Cores;
use crate::gateway::events::Link;
use crate::gateway::Gateway;
use crate::hub::{Hub, HubHandle, Registry};
use crate::inbox::CoreHandle;
use crate::stats::{Stats, StatsView};
use crate::tls::{Certs, TlsError};

/// The control plane's runtime, driven by a thread of its own until
/// [`Control::stop`].
struct Control {
    handle: tokio::runtime::Handle,
    stop: Arc<tokio::sync::Notify>,
}

impl Control {
    fn start(cfg: &Config) -> io::Result<Control> {
        let runtime = crate::admin::server::runtime(&cfg.admin)?;
        let handle = runtime.handle().clone();
        let stop = Arc::new(tokio::sync::Notify::new());
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("wsedge-control-main".into())
            .spawn(move || {
                crate::panics::own_thread();
                runtime.block_on(stopped.notified());
                // Open connections, streams and calls end with the runtime.
                runtime.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Control { handle, stop })
    }

    fn stop(&self) {
        self.stop.notify_one();
    }
}

/// A running server.
pub struct Server {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    admin: Option<AdminHandle>,
    control: Option<Control>,
    gateway: Option<Arc<Gateway>>,
    cores: Arc<[CoreHandle]>,
    hub: HubHandle,
    stats: StatsView,
    draining: Arc<AtomicBool>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    /// `gateway.shutdown_timeout`.
    shutdown_timeout: Duration,
    /// The WebSocket listener's certificate, when it speaks TLS.
    ws_tls: Option<Arc<Certs>>,
    /// The admin listener's, when it speaks TLS (the same `Arc` when it
    /// reuses the [tls] files).
    admin_tls: Option<Arc<Certs>>,
}

/// A listener's certificate, when it speaks TLS.
type MaybeCerts = Option<Arc<Certs>>;

/// Loads the certificates the configuration names (WebSocket listener,
/// admin listener); the admin listener shares the WebSocket listener's
/// when it names the same files.
fn load_certs(cfg: &Config) -> io::Result<(MaybeCerts, MaybeCerts)> {
    let load = |(cert, key): (&str, &str)| {
        Certs::load(cert, key)
            .map(Arc::new)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
    };
    let ws = cfg.ws_tls().map(load).transpose()?;
    let admin = match cfg.admin_tls() {
        None => None,
        Some(files) if Some(files) == cfg.ws_tls() => ws.clone(),
        Some(files) => Some(load(files)?),
    };
    Ok((ws, admin))
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
        let cfg_gateway_timeout = cfg.gateway.shutdown_timeout;
        let (ws_tls, admin_tls) = load_certs(&cfg)?;
        let cores = Cores::bind(&cfg)?;
        let local_addr = cores.local_addr();
        let handles = cores.handles().clone();
        let registry = Arc::new(Registry::default());
        // This process's instance: gateway ids carry it, and clustered it
        // is the node id (unless cluster.node_id names one).
        let instance = crate::gateway::conn_id::random_instance().max(1);
        let control =
            if cfg.admin.listen.is_some() || cfg.gateway.enabled() || cfg.cluster.enabled() {
                Some(Control::start(&cfg)?)
            } else {
                None
            };
        let mut cluster = match (cfg.cluster.enabled(), &control) {
            (true, Some(control)) => {
                // A node id a live node has is refused; a random one that
                // collides is drawn again.
                let mut first = Some(instance);
                let node = control
                    .handle
                    .block_on(crate::cluster::claim::claim(&cfg.cluster, || {
                        first
                            .take()
                            .unwrap_or_else(|| crate::gateway::conn_id::random_instance().max(1))
                    }))
                    .map_err(|e| io::Error::new(io::ErrorKind::AddrInUse, e))?;
                Some(
                    Cluster::new(&cfg.cluster, node, &registry)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?,
                )
            }
            _ => None,
        };
        let instance = cluster.as_ref().map_or(instance, |c| c.node);
        let uplink = cluster.as_ref().map(|c| c.uplink.clone());
        let mut hub = HubHandle::new(registry.clone(), handles.clone(), &cfg);
        if let Some(up) = &uplink {
            hub = hub.with_uplink(up.clone());
        }
        let hubs = (0..handles.len())
            .map(|i| {
                Hub::new(i, cfg.hub.clone(), registry.clone(), handles.clone())
                    .with_uplink(uplink.clone())
                    .with_compression(&cfg.compression)
            })
            .collect();
        // Made here, at start: never a setting, so never printed.
        let demo_key = cfg.wants_demo_key().then(DemoKey::generate);
        let admission = Arc::new(admission(Admission::new(&cfg, demo_key.clone())));
        let stats = StatsView::new(handles.clone());
        let draining = Arc::new(AtomicBool::new(false));
        // Gateway mode: the cores' link and the gateway on the control
        // plane's runtime.
        let (link, gateway) = match (&control, cfg.gateway.enabled()) {
            (Some(control), true) => {
                let (link, events) = Link::new(
                    cfg.gateway.queue_capacity,
                    instance,
                    cfg.gateway.max_in_flight,
                );
                let gateway = {
                    let _entered = control.handle.enter();
                    Arc::new(Gateway::new(
                        &cfg,
                        hub.clone(),
                        handles.clone(),
                        link.counters.clone(),
                        instance,
                        local_addr,
                    ))
                };
                gateway.spawn(&control.handle, events);
                if cfg.admin.listen.is_none() {
                    tracing::warn!("gateway mode without the admin listener: no @connections API");
                }
                (Some(link), Some(gateway))
            }
            _ => (None, None),
        };
        // Clustered: the broker link and presence on the control plane.
        if let (Some(c), Some(control)) = (&mut cluster, &control) {
            c.uplink
                .requests()
                .set_responder(Arc::new(crate::cluster::owner::Owner {
                    hub: hub.clone(),
                    gateway: gateway.clone(),
                }));
            c.spawn(&control.handle, hub.clone(), registry.clone());
        }
        let cluster = cluster.map(Arc::new);
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
                    gateway: gateway.clone(),
                    tls: admin_tls.clone(),
                    cluster: cluster.clone(),
                },
            )?),
            None => None,
        };
        let admin_addr = admin.as_ref().map(|a| a.local_addr());
        let threads = cores.start(cfg, hubs, admission, link, ws_tls.clone())?;
        let admin = match (admin, &control) {
            (Some(a), Some(c)) => Some(a.spawn(&c.handle)?),
            _ => None,
        };
        Ok(Server {
            local_addr,
            admin_addr,
            admin,
            control,
            gateway,
            cores: handles,
            hub,
            stats,
            draining,
            threads,
            shutdown_timeout: cfg_gateway_timeout,
            ws_tls,
            admin_tls,
        })
    }

    /// Reads every listener's certificate and key files again (SIGHUP):
    /// new handshakes use what loaded; a listener whose files fail keeps its
    /// certificate. Open connections are never touched. Returns the errors,
    /// each with the cert file it concerns; each outcome is also logged
    /// (paths only, never key material).
    pub fn reload_tls(&self) -> Vec<(String, TlsError)> {
        let mut errors = Vec::new();
        let shared =
            matches!((&self.ws_tls, &self.admin_tls), (Some(w), Some(a)) if Arc::ptr_eq(w, a));
        let listeners = if shared {
            [("websocket and admin", &self.ws_tls), ("admin", &None)]
        } else {
            [("websocket", &self.ws_tls), ("admin", &self.admin_tls)]
        };
        for (listener, certs) in listeners {
            let Some(certs) = certs else { continue };
            let path = certs.cert_path().display().to_string();
            match certs.reload() {
                Ok(()) => tracing::info!(listener, cert = %path, "TLS certificate reloaded"),
                Err(e) => {
                    tracing::error!(listener, error = %e, "TLS reload failed; keeping the previous certificate");
                    errors.push((path, e));
                }
            }
        }
        errors
    }

    /// Whether the WebSocket listener speaks TLS (`wss://`).
    pub fn is_tls(&self) -> bool {
        self.ws_tls.is_some()
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

    /// The gateway, in gateway mode.
    pub fn gateway(&self) -> Option<&Arc<Gateway>> {
        self.gateway.as_ref()
    }

    /// Waits for every core thread to exit, then (gateway mode) for the
    /// drained connections' `$disconnect`s, up to
    /// `gateway.shutdown_timeout`, then stops the admin plane and the
    /// control plane's runtime.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for t in self.threads {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(_) => result = Err(io::Error::other("core thread panicked")),
            }
        }
        if let Some(gw) = &self.gateway {
            gw.finish(self.shutdown_timeout);
        }
        if let Some(admin) = &self.admin {
            admin.stop();
        }
        if let Some(control) = &self.control {
            control.stop();
        }
        result
    }
}
