//! The `wsedge` binary: command line, logging, signals. Nothing else —
//! the server itself is the library.
//!
//! Owns: turning flags into a [`wsedge::Config`], starting the
//! [`wsedge::Server`], the periodic counts log line, and graceful shutdown
//! on SIGINT/SIGTERM. Must not touch: sockets or connections.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use wsedge::conn::SlowConsumerPolicy;
use wsedge::{Config, Server};

#[derive(Parser, Debug)]
#[command(
    name = "wsedge",
    version,
    about = "A thread-per-core WebSocket edge server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
    /// Mint a one-time connection token (prints it on stdout).
    Token(TokenArgs),
}

#[derive(clap::Args, Debug)]
struct TokenArgs {
    /// The user id.
    #[arg(long)]
    user: String,
    /// A channel (or `prefix*` pattern) the user may subscribe to; repeat.
    #[arg(long)]
    subscribe: Vec<String>,
    /// A channel (or `prefix*` pattern) the user may publish to; repeat.
    #[arg(long)]
    publish: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 300)]
    ttl: u64,
    /// Signing key.
    #[arg(long, env = "WSEDGE_TOKEN_KEY", hide_env_values = true)]
    key: String,
}

fn mint(a: TokenArgs) -> ExitCode {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let claims = wsedge::admission::token::Claims {
        sub: a.user,
        exp: now + a.ttl,
        jti: wsedge::admission::token::new_jti(),
        subscribe: a.subscribe,
        publish: a.publish,
    };
    println!(
        "{}",
        wsedge::admission::token::mint(a.key.as_bytes(), &claims)
    );
    ExitCode::SUCCESS
}

fn duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Parser, Debug)]
#[command(name = "serve")]
struct ServeArgs {
    /// Address every core listens on (SO_REUSEPORT).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Core threads [default: available parallelism].
    #[arg(long)]
    cores: Option<usize>,
    /// Server ping period.
    #[arg(long, default_value = "25s", value_parser = duration)]
    ping_interval: Duration,
    /// Time the peer has to send anything after a ping.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pong_timeout: Duration,
    /// Close connections with no data message for this long ("0s" = off).
    #[arg(long, default_value = "0s", value_parser = duration)]
    idle_timeout: Duration,
    /// Time from accept to a complete upgrade request.
    #[arg(long, default_value = "10s", value_parser = duration)]
    handshake_timeout: Duration,
    /// Time to wait for the peer's close answer and FIN.
    #[arg(long, default_value = "5s", value_parser = duration)]
    close_timeout: Duration,
    /// On SIGINT/SIGTERM, time allowed for connections to close.
    #[arg(long, default_value = "5s", value_parser = duration)]
    drain_timeout: Duration,
    /// Largest frame payload in bytes (close 1009 beyond).
    #[arg(long, default_value_t = 16 << 20)]
    max_frame_size: usize,
    /// Largest message in bytes (close 1009 beyond).
    #[arg(long, default_value_t = 16 << 20)]
    max_message_size: usize,
    /// Queued outbound bytes per connection before reading pauses.
    #[arg(long, default_value_t = 1 << 20)]
    write_budget: usize,
    /// Largest upgrade request head in bytes (431 beyond).
    #[arg(long, default_value_t = 8192)]
    max_request_bytes: usize,
    /// Most upgrade request headers (431 beyond).
    #[arg(long, default_value_t = 32)]
    max_headers: usize,
    /// A subprotocol the server accepts; repeat in order of preference.
    #[arg(long = "subprotocol")]
    subprotocols: Vec<String>,
    /// Queued pushed bytes per connection before the slow-consumer policy.
    #[arg(long, default_value_t = 4 << 20)]
    max_pending_bytes: usize,
    /// Slow-consumer policy: `close` (1008) or `drop` (count and skip).
    #[arg(long, default_value = "close", value_parser = ["close", "drop"])]
    slow_consumer: String,
    /// Most channels one connection may subscribe to.
    #[arg(long, default_value_t = 100)]
    max_subscriptions: usize,
    /// Longest channel name a client may use, in bytes.
    #[arg(long, default_value_t = 200)]
    max_channel_len: usize,
    /// INSECURE, development only: take the user id from this query
    /// parameter of /ws (e.g. `user` for /ws?user=alice).
    #[arg(long)]
    dev_user_param: Option<String>,
    /// INSECURE, development only: let clients publish to any channel.
    #[arg(long)]
    dev_client_publish: bool,
    /// Address of the admin HTTP API ("off" to disable).
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin: String,
    /// Bearer key required by the admin API (required off loopback).
    #[arg(long, env = "WSEDGE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// Messages (and pings) per second a client may send (0 = no limit).
    #[arg(long, default_value_t = 0.0)]
    rate_msgs: f64,
    /// Burst of the message bucket.
    #[arg(long, default_value_t = 0.0)]
    rate_msgs_burst: f64,
    /// Payload bytes per second a client may send (0 = no limit).
    #[arg(long, default_value_t = 0.0)]
    rate_bytes: f64,
    /// Burst of the byte bucket.
    #[arg(long, default_value_t = 0.0)]
    rate_bytes_burst: f64,
    /// Over the limit: `backpressure` (stop reading until refilled) or
    /// `close` (1008).
    #[arg(long, default_value = "backpressure", value_parser = ["backpressure", "close"])]
    rate_policy: String,
    /// HMAC key for connection tokens (`?ws_token=`); with one, /ws
    /// requires a token.
    #[arg(long, env = "WSEDGE_TOKEN_KEY", hide_env_values = true)]
    token_key: Option<String>,
    /// Let /ws accept connections without a token even when a key is set
    /// (tokens, when given, still set the user and grants).
    #[arg(long)]
    token_optional: bool,
    /// The previous token key, still accepted during a rotation.
    #[arg(long, env = "WSEDGE_TOKEN_KEY_PREVIOUS", hide_env_values = true)]
    token_key_previous: Option<String>,
    /// Allowed Origin (exact, or https://*.example.com); repeat. None = all.
    #[arg(long = "origin")]
    origins: Vec<String>,
    /// Connection attempts per source IP per window (0 = unlimited).
    #[arg(long, default_value_t = 20)]
    max_attempts_per_ip: u32,
    /// The attempt window.
    #[arg(long, default_value = "60s", value_parser = duration)]
    attempt_window: Duration,
    /// A proxy whose client-IP header is believed; repeat.
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// The client-IP header trusted proxies set.
    #[arg(long, default_value = "x-forwarded-for")]
    client_ip_header: String,
    /// Open connections in total (503 beyond).
    #[arg(long, default_value_t = 500_000)]
    max_connections: u32,
    /// Open connections per source IP (429 beyond).
    #[arg(long, default_value_t = 10_000)]
    max_connections_per_ip: u32,
    /// Open connections per token user (429 beyond).
    #[arg(long, default_value_t = 100)]
    max_connections_per_user: u32,
    /// Period of the counts log line.
    #[arg(long, default_value = "60s", value_parser = duration)]
    stats_interval: Duration,
}

impl ServeArgs {
    fn into_config(self) -> Result<Config, String> {
        let admin = match self.admin.as_str() {
            "off" => None,
            addr => Some(wsedge::config::AdminConfig {
                listen: addr.parse().map_err(|e| format!("--admin {addr}: {e}"))?,
                key: self.admin_key,
            }),
        };
        let mut cfg = Config {
            admin,
            listen: self.listen,
            drain_timeout: self.drain_timeout,
            stats_interval: self.stats_interval,
            ..Config::default()
        };
        if let Some(n) = self.cores {
            cfg.cores = n.max(1);
        }
        let c = &mut cfg.conn;
        c.ping_interval = self.ping_interval;
        c.pong_timeout = self.pong_timeout;
        c.idle_timeout = (!self.idle_timeout.is_zero()).then_some(self.idle_timeout);
        c.handshake_timeout = self.handshake_timeout;
        c.close_timeout = self.close_timeout;
        c.max_frame_size = self.max_frame_size;
        c.max_message_size = self.max_message_size;
        c.write_budget = self.write_budget;
        c.handshake.max_request_bytes = self.max_request_bytes;
        c.handshake.max_headers = self.max_headers;
        c.handshake.subprotocols = self.subprotocols;
        c.max_pending_bytes = self.max_pending_bytes;
        c.slow_consumer = match self.slow_consumer.as_str() {
            "drop" => SlowConsumerPolicy::Drop,
            _ => SlowConsumerPolicy::Close,
        };
        c.handshake.client_ip_header =
            (!self.trusted_proxies.is_empty()).then(|| self.client_ip_header.to_ascii_lowercase());
        if self.rate_msgs > 0.0 || self.rate_bytes > 0.0 {
            let unlimited = |rate: f64| if rate > 0.0 { rate } else { f64::MAX / 4.0 };
            let burst = |b: f64, rate: f64| if b > 0.0 { b } else { unlimited(rate) };
            c.rate_limit = Some(wsedge::config::RateLimit {
                msgs_per_sec: unlimited(self.rate_msgs),
                msgs_burst: burst(self.rate_msgs_burst, self.rate_msgs),
                bytes_per_sec: unlimited(self.rate_bytes),
                bytes_burst: burst(self.rate_bytes_burst, self.rate_bytes),
                policy: match self.rate_policy.as_str() {
                    "close" => wsedge::config::RatePolicy::Close,
                    _ => wsedge::config::RatePolicy::Backpressure,
                },
            });
        }
        let a = &mut cfg.admission;
        a.token_keys = self
            .token_key
            .into_iter()
            .chain(self.token_key_previous)
            .filter(|k| !k.is_empty())
            .collect();
        a.require_token_on_ws = !self.token_optional;
        a.origins = self.origins;
        a.max_attempts_per_ip = self.max_attempts_per_ip;
        a.attempt_window = self.attempt_window;
        a.trusted_proxies = self.trusted_proxies;
        a.client_ip_header = self.client_ip_header;
        a.max_connections = self.max_connections;
        a.max_connections_per_ip = self.max_connections_per_ip;
        a.max_connections_per_user = self.max_connections_per_user;
        let h = &mut cfg.hub;
        h.max_subscriptions = self.max_subscriptions;
        h.max_channel_len = self.max_channel_len;
        h.dev_user_param = self.dev_user_param;
        h.dev_client_publish = self.dev_client_publish;
        Ok(cfg)
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => *a,
        Some(Command::Token(t)) => return mint(t),
        None => ServeArgs::parse_from(["serve"]),
    };
    let cfg = match args.into_config() {
        Ok(cfg) => cfg,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    match serve(cfg) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "wsedge failed");
            ExitCode::FAILURE
        }
    }
}

fn serve(cfg: Config) -> std::io::Result<()> {
    let (sig_tx, sig_rx) = crossbeam_channel::bounded(4);
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ])?;
    let stats_interval = cfg.stats_interval;
    let cores = cfg.cores;
    let server = Server::start(cfg)?;
    tracing::info!(
        addr = %server.local_addr(),
        cores,
        admin = %server.admin_addr().map_or("off".to_string(), |a| a.to_string()),
        "wsedge listening; routes /echo and /ws"
    );
    std::thread::Builder::new()
        .name("wsedge-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig_tx.send(sig).is_err() {
                    break;
                }
            }
        })?;
    loop {
        match sig_rx.recv_timeout(stats_interval) {
            Ok(sig) => {
                tracing::info!(signal = sig, "shutting down: closing connections with 1001");
                break;
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                let reg = server.registry();
                tracing::info!(
                    "stats {} channels={} users_online={}",
                    server.stats(),
                    reg.channel_count(),
                    reg.users_online()
                );
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
    server.shutdown();
    let stats_at_exit = {
        // Wait for the drain, then report the final counts.
        let cores = server.cores().to_vec();
        server.join()?;
        let mut total = wsedge::Stats::default();
        for c in &cores {
            total.merge(&c.counters().snapshot());
        }
        total
    };
    tracing::info!("stopped; stats {}", stats_at_exit);
    Ok(())
}
