//! All settings of a wsedge server in one structure, each with its default
//! and the reason for it.
//!
//! Owns: the values. Must not touch: parsing command lines or files (the
//! binary does that) or anything at run time.

use std::net::SocketAddr;
use std::time::Duration;

use crate::admission::demo::DemoKey;
use crate::conn::SlowConsumerPolicy;
use crate::protocol::handshake::HandshakeConfig;

/// What happens to a client over its rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RatePolicy {
    /// Stop reading its socket until the bucket refills (TCP
    /// back-pressure; nothing is lost). Default.
    #[default]
    Backpressure,
    /// Close it with 1008.
    Close,
}

/// Token buckets for what one client sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Data messages (and pings) per second, and the burst.
    pub msgs_per_sec: f64,
    pub msgs_burst: f64,
    /// Payload bytes per second, and the burst.
    pub bytes_per_sec: f64,
    pub bytes_burst: f64,
    pub policy: RatePolicy,
}

/// Per-connection limits and deadlines, shared read-only by every
/// connection of a core.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// The HTTP upgrade: request size, header count, subprotocols.
    pub handshake: HandshakeConfig,
    /// Largest frame payload accepted (close 1009 beyond it). Default
    /// 16 MiB: Autobahn 9.* sends single 16 MiB frames.
    pub max_frame_size: usize,
    /// Largest assembled message (close 1009 beyond it). Default 16 MiB.
    pub max_message_size: usize,
    /// Bytes queued for a connection beyond which the server stops reading
    /// from it until the queue drains (TCP back-pressure). Default 1 MiB.
    pub write_budget: usize,
    /// Bytes of pushed (hub) messages a connection may have queued; beyond
    /// it the slow-consumer policy applies. Default 4 MiB.
    pub max_pending_bytes: usize,
    /// What to do with a connection over `max_pending_bytes`. Default:
    /// close with 1008.
    pub slow_consumer: SlowConsumerPolicy,
    /// Per-connection rate limits on what a client sends. Default off.
    pub rate_limit: Option<RateLimit>,
    /// Time allowed from accept to a complete upgrade request (slowloris
    /// guard, answered 408) and to the decision on it (answered 504 when
    /// admission left it pending). Default 10 s.
    pub handshake_timeout: Duration,
    /// The server pings every open connection this often. Default 25 s.
    pub ping_interval: Duration,
    /// After a ping, the peer must send something (a pong will do) within
    /// this long or it is dropped. Default 10 s.
    pub pong_timeout: Duration,
    /// Close (1001) a connection that sent no data message for this long;
    /// `None` disables it. Default off: liveness is the ping's job, and
    /// push-only clients never send.
    pub idle_timeout: Option<Duration>,
    /// How long to wait for the peer's answer to our close frame, and for
    /// its FIN after ours, before dropping the socket. Default 5 s.
    pub close_timeout: Duration,
}

impl Default for ConnConfig {
    fn default() -> Self {
        Self {
            handshake: HandshakeConfig::default(),
            max_frame_size: 16 << 20,
            max_message_size: 16 << 20,
            write_budget: 1 << 20,
            max_pending_bytes: 4 << 20,
            slow_consumer: SlowConsumerPolicy::Close,
            rate_limit: None,
            handshake_timeout: Duration::from_secs(10),
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            idle_timeout: None,
            close_timeout: Duration::from_secs(5),
        }
    }
}

/// Settings of the hub (`/ws`).
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// INSECURE, for development: take the user id from this query
    /// parameter (e.g. `user` for `/ws?user=alice`). Default off.
    pub dev_user_param: Option<String>,
    /// INSECURE, for development: let clients publish to any channel.
    /// Default off (clients may only subscribe; the application publishes
    /// through the admin API).
    pub dev_client_publish: bool,
    /// Most channels one connection may subscribe to. Default 100.
    pub max_subscriptions: usize,
    /// Longest channel name a client may use, in bytes. Default 200.
    pub max_channel_len: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            dev_user_param: None,
            dev_client_publish: false,
            max_subscriptions: 100,
            max_channel_len: crate::hub::protocol::MAX_CHANNEL_LEN,
        }
    }
}

/// Who may connect, checked before the upgrade completes.
#[derive(Debug, Clone)]
pub struct AdmissionConfig {
    /// HMAC keys for connection tokens: the current key first, then the
    /// previous one while clients holding its tokens drain (rotation).
    /// From `--token-key`/`WSEDGE_TOKEN_KEY` and
    /// `--token-key-previous`/`WSEDGE_TOKEN_KEY_PREVIOUS`. None: no tokens.
    pub token_keys: Vec<String>,
    /// Require a token on `/ws` when a key is configured. Default true.
    pub require_token_on_ws: bool,
    /// The chat demo's ephemeral key (see [`crate::admission::demo`]):
    /// without token keys, `/ws` checks a presented token against it, and
    /// the admin plane's `POST /api/demo/tokens` mints with it (grants on
    /// `demo:*` only). Ignored while `token_keys` is not empty. Generated
    /// at start by the settings (`admin.demo`, on by default) when there is
    /// no token key and the admin plane runs; `None` here by default.
    /// Never printed.
    pub demo_key: Option<DemoKey>,
    /// Most token ids remembered for replay protection. Default 1 000 000.
    pub max_used_tokens: usize,
    /// Allowed `Origin`s (exact, or `https://*.example.com`); empty allows
    /// all. Default empty.
    pub origins: Vec<String>,
    /// Connection attempts per source IP per window (`429` with
    /// `Retry-After` beyond). Default 20 per 60 s; 0 disables.
    pub max_attempts_per_ip: u32,
    /// The attempt window. Default 60 s.
    pub attempt_window: Duration,
    /// Peers whose client-IP header is believed. Default none.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// The client-IP header a trusted proxy sets (first entry used; lower
    /// case). Default `x-forwarded-for`.
    pub client_ip_header: String,
    /// Open connections in total (`503` beyond). Default 500 000.
    pub max_connections: u32,
    /// Open connections per source IP (`429` beyond). Default 10 000.
    pub max_connections_per_ip: u32,
    /// Open connections per user (`429` beyond). Default 100.
    pub max_connections_per_user: u32,
    /// Test seam (feature `testing`, never in the product): may leave an
    /// admitted upgrade pending, to be answered through the core's inbox.
    /// Default none.
    #[cfg(any(test, feature = "testing"))]
    pub defer: Option<crate::admission::DeferHook>,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            token_keys: Vec::new(),
            require_token_on_ws: true,
            demo_key: None,
            max_used_tokens: 1_000_000,
            origins: Vec::new(),
            max_attempts_per_ip: 20,
            attempt_window: Duration::from_secs(60),
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".into(),
            max_connections: 500_000,
            max_connections_per_ip: 10_000,
            max_connections_per_user: 100,
            #[cfg(any(test, feature = "testing"))]
            defer: None,
        }
    }
}

/// The admin plane (HTTP push API).
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Where it listens. Default 127.0.0.1:9090.
    pub listen: SocketAddr,
    /// Bearer key required on every request. Without one the API is open,
    /// which is only allowed on a loopback address.
    pub key: Option<String>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            key: None,
        }
    }
}

/// The whole server.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address every core listens on (SO_REUSEPORT). Default
    /// 127.0.0.1:8080; port 0 picks a free port shared by all cores.
    pub listen: SocketAddr,
    /// Number of core threads. Default: available parallelism.
    pub cores: usize,
    /// Per-connection settings.
    pub conn: ConnConfig,
    /// The hub.
    pub hub: HubConfig,
    /// Tokens, origins, attempt limits and quotas.
    pub admission: AdmissionConfig,
    /// The admin plane; `None` runs without it.
    pub admin: Option<AdminConfig>,
    /// On shutdown, the 1001 closes are spread evenly over this window, so
    /// that clients do not all reconnect (to the other instances) in the
    /// same instant. Default 10 s (a core with one connection closes it at
    /// once; with n, one every window/n).
    pub drain_window: Duration,
    /// On shutdown, how long to wait, after the last 1001 close was sent,
    /// for connections to finish their close handshake. Default 5 s.
    pub drain_timeout: Duration,
    /// How often the counters are logged. Default 60 s.
    pub stats_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            conn: ConnConfig::default(),
            hub: HubConfig::default(),
            admission: AdmissionConfig::default(),
            admin: None,
            drain_window: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(5),
            stats_interval: Duration::from_secs(60),
        }
    }
}
