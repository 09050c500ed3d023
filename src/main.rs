//! The `wsedge` binary: command line, logging, signals. Nothing else —
//! the server itself is the library.
//!
//! Owns: the command line (flags handed to [`wsedge::settings`] as
//! overrides of the file and environment), logging set-up, starting the
//! [`wsedge::Server`], the periodic counts log line, and graceful shutdown
//! on SIGINT/SIGTERM. Must not touch: sockets or connections.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use toml::Value;
use wsedge::settings::{self, layers::Loaded};
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
    /// Validate a configuration file and print the effective configuration
    /// (file and environment applied, secrets masked); exit 2 if invalid.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
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
    let claims = wsedge::admission::token::claims_for(a.user, a.ttl, a.subscribe, a.publish);
    println!(
        "{}",
        wsedge::admission::token::mint(a.key.as_bytes(), &claims)
    );
    ExitCode::SUCCESS
}

/// `wsedge serve`: every flag is optional and, when given, overrides the
/// file and the environment (see `wsedge.example.toml` for every key).
#[derive(Parser, Debug, Default)]
#[command(name = "serve")]
struct ServeArgs {
    /// A TOML configuration file (every key optional; defaults embedded).
    #[arg(long, env = "WSEDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (file < environment < flags,
    /// secrets masked) and exit without serving.
    #[arg(long)]
    dry_run: bool,
    /// Address every core listens on (SO_REUSEPORT) [listen].
    #[arg(long)]
    listen: Option<String>,
    /// Core threads, 0 = one per CPU [cores].
    #[arg(long)]
    cores: Option<i64>,
    /// Server ping period, e.g. 25s [connection.ping_interval].
    #[arg(long)]
    ping_interval: Option<String>,
    /// Time the peer has to send anything after a ping [connection.pong_timeout].
    #[arg(long)]
    pong_timeout: Option<String>,
    /// Close connections with no data message for this long, 0s = off
    /// [connection.idle_timeout].
    #[arg(long)]
    idle_timeout: Option<String>,
    /// Time from accept to a complete upgrade request [connection.handshake_timeout].
    #[arg(long)]
    handshake_timeout: Option<String>,
    /// Time to wait for the peer's close answer and FIN [connection.close_timeout].
    #[arg(long)]
    close_timeout: Option<String>,
    /// Largest frame payload in bytes [connection.max_frame_size].
    #[arg(long)]
    max_frame_size: Option<i64>,
    /// Largest message in bytes [connection.max_message_size].
    #[arg(long)]
    max_message_size: Option<i64>,
    /// Queued outbound bytes per connection before reading pauses
    /// [connection.write_budget].
    #[arg(long)]
    write_budget: Option<i64>,
    /// Largest upgrade request head in bytes [connection.max_request_bytes].
    #[arg(long)]
    max_request_bytes: Option<i64>,
    /// Most upgrade request headers [connection.max_headers].
    #[arg(long)]
    max_headers: Option<i64>,
    /// A subprotocol the server accepts; repeat in order of preference
    /// [connection.subprotocols].
    #[arg(long = "subprotocol")]
    subprotocols: Vec<String>,
    /// Queued pushed bytes per connection before the slow-consumer policy
    /// [connection.max_pending_bytes].
    #[arg(long)]
    max_pending_bytes: Option<i64>,
    /// Slow-consumer policy: close (1008) or drop [connection.slow_consumer].
    #[arg(long)]
    slow_consumer: Option<String>,
    /// Most channels one connection may subscribe to [hub.max_subscriptions].
    #[arg(long)]
    max_subscriptions: Option<i64>,
    /// Longest channel name in bytes [hub.max_channel_len].
    #[arg(long)]
    max_channel_len: Option<i64>,
    /// INSECURE, development only: take the user id from this query
    /// parameter of /ws [hub.dev_user_param].
    #[arg(long)]
    dev_user_param: Option<String>,
    /// INSECURE, development only: let clients publish to any channel
    /// [hub.dev_client_publish].
    #[arg(long)]
    dev_client_publish: bool,
    /// Address of the admin HTTP listener, or "off" [admin.listen].
    #[arg(long)]
    admin: Option<String>,
    /// Bearer key of the admin API [admin.key].
    #[arg(long)]
    admin_key: Option<String>,
    /// Without a token key, do not make the chat demo's ephemeral key (the
    /// demo then cannot publish) [admin.demo = false].
    #[arg(long)]
    no_demo: bool,
    /// Messages (and pings) per second a client may send, 0 = no limit
    /// [rate_limit.messages_per_sec].
    #[arg(long)]
    rate_msgs: Option<f64>,
    /// Burst of the message bucket [rate_limit.messages_burst].
    #[arg(long)]
    rate_msgs_burst: Option<f64>,
    /// Payload bytes per second a client may send, 0 = no limit
    /// [rate_limit.bytes_per_sec].
    #[arg(long)]
    rate_bytes: Option<f64>,
    /// Burst of the byte bucket [rate_limit.bytes_burst].
    #[arg(long)]
    rate_bytes_burst: Option<f64>,
    /// Over the limit: backpressure or close [rate_limit.policy].
    #[arg(long)]
    rate_policy: Option<String>,
    /// HMAC key for connection tokens [token.key].
    #[arg(long)]
    token_key: Option<String>,
    /// The previous token key, accepted during a rotation [token.key_previous].
    #[arg(long)]
    token_key_previous: Option<String>,
    /// Let /ws accept connections without a token [token.optional].
    #[arg(long)]
    token_optional: bool,
    /// Allowed Origin (exact, or https://*.example.com); repeat
    /// [admission.origins].
    #[arg(long = "origin")]
    origins: Vec<String>,
    /// Connection attempts per source IP per window, 0 = unlimited
    /// [admission.max_attempts_per_ip].
    #[arg(long)]
    max_attempts_per_ip: Option<i64>,
    /// The attempt window [admission.attempt_window].
    #[arg(long)]
    attempt_window: Option<String>,
    /// A proxy whose client-IP header is believed; repeat
    /// [admission.trusted_proxies].
    #[arg(long = "trusted-proxy")]
    trusted_proxies: Vec<String>,
    /// The client-IP header trusted proxies set [admission.client_ip_header].
    #[arg(long)]
    client_ip_header: Option<String>,
    /// Open connections in total [admission.max_connections].
    #[arg(long)]
    max_connections: Option<i64>,
    /// Open connections per source IP [admission.max_connections_per_ip].
    #[arg(long)]
    max_connections_per_ip: Option<i64>,
    /// Open connections per token user [admission.max_connections_per_user].
    #[arg(long)]
    max_connections_per_user: Option<i64>,
    /// On SIGINT/SIGTERM, the window the 1001 closes are spread over
    /// [shutdown.drain_window].
    #[arg(long)]
    drain_window: Option<String>,
    /// Then the time allowed for close handshakes [shutdown.drain_timeout].
    #[arg(long)]
    drain_timeout: Option<String>,
    /// Log filter, e.g. info or wsedge=debug [log.level].
    #[arg(long)]
    log_level: Option<String>,
    /// Log format: text or json [log.format].
    #[arg(long)]
    log_format: Option<String>,
    /// Period of the counts log line [log.stats_interval].
    #[arg(long)]
    stats_interval: Option<String>,
}

impl ServeArgs {
    /// The flags that were given, as (key, value, flag name).
    fn overrides(&self) -> Vec<(String, Value, String)> {
        let mut out = Vec::new();
        let mut put = |key: &str, flag: &str, v: Value| {
            out.push((key.to_string(), v, format!("--{flag}")));
        };
        macro_rules! opt {
            ($($field:ident => $key:literal, $flag:literal, $conv:expr;)*) => {$(
                if let Some(v) = &self.$field {
                    put($key, $flag, $conv(v.clone()));
                }
            )*};
        }
        let s = Value::String;
        let i = Value::Integer;
        let f = Value::Float;
        opt! {
            listen => "listen", "listen", s;
            cores => "cores", "cores", i;
            ping_interval => "connection.ping_interval", "ping-interval", s;
            pong_timeout => "connection.pong_timeout", "pong-timeout", s;
            idle_timeout => "connection.idle_timeout", "idle-timeout", s;
            handshake_timeout => "connection.handshake_timeout", "handshake-timeout", s;
            close_timeout => "connection.close_timeout", "close-timeout", s;
            max_frame_size => "connection.max_frame_size", "max-frame-size", i;
            max_message_size => "connection.max_message_size", "max-message-size", i;
            write_budget => "connection.write_budget", "write-budget", i;
            max_request_bytes => "connection.max_request_bytes", "max-request-bytes", i;
            max_headers => "connection.max_headers", "max-headers", i;
            max_pending_bytes => "connection.max_pending_bytes", "max-pending-bytes", i;
            slow_consumer => "connection.slow_consumer", "slow-consumer", s;
            max_subscriptions => "hub.max_subscriptions", "max-subscriptions", i;
            max_channel_len => "hub.max_channel_len", "max-channel-len", i;
            dev_user_param => "hub.dev_user_param", "dev-user-param", s;
            admin => "admin.listen", "admin", s;
            admin_key => "admin.key", "admin-key", s;
            rate_msgs => "rate_limit.messages_per_sec", "rate-msgs", f;
            rate_msgs_burst => "rate_limit.messages_burst", "rate-msgs-burst", f;
            rate_bytes => "rate_limit.bytes_per_sec", "rate-bytes", f;
            rate_bytes_burst => "rate_limit.bytes_burst", "rate-bytes-burst", f;
            rate_policy => "rate_limit.policy", "rate-policy", s;
            token_key => "token.key", "token-key", s;
            token_key_previous => "token.key_previous", "token-key-previous", s;
            max_attempts_per_ip => "admission.max_attempts_per_ip", "max-attempts-per-ip", i;
            attempt_window => "admission.attempt_window", "attempt-window", s;
            client_ip_header => "admission.client_ip_header", "client-ip-header", s;
            max_connections => "admission.max_connections", "max-connections", i;
            max_connections_per_ip => "admission.max_connections_per_ip", "max-connections-per-ip", i;
            max_connections_per_user => "admission.max_connections_per_user", "max-connections-per-user", i;
            drain_window => "shutdown.drain_window", "drain-window", s;
            drain_timeout => "shutdown.drain_timeout", "drain-timeout", s;
            log_level => "log.level", "log-level", s;
            log_format => "log.format", "log-format", s;
            stats_interval => "log.stats_interval", "stats-interval", s;
        }
        let list = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        if !self.subprotocols.is_empty() {
            put(
                "connection.subprotocols",
                "subprotocol",
                list(&self.subprotocols),
            );
        }
        if !self.origins.is_empty() {
            put("admission.origins", "origin", list(&self.origins));
        }
        if !self.trusted_proxies.is_empty() {
            put(
                "admission.trusted_proxies",
                "trusted-proxy",
                list(&self.trusted_proxies),
            );
        }
        if self.dev_client_publish {
            put(
                "hub.dev_client_publish",
                "dev-client-publish",
                Value::Boolean(true),
            );
        }
        if self.no_demo {
            put("admin.demo", "no-demo", Value::Boolean(false));
        }
        if self.token_optional {
            put("token.optional", "token-optional", Value::Boolean(true));
        }
        out
    }
}

/// Variables the binary reads itself (not configuration keys).
const OWN_ENV: [&str; 2] = ["WSEDGE_CONFIG", "WSEDGE_LOG"];

fn load(file: Option<&Path>, flags: &[(String, Value, String)]) -> Result<Loaded, ExitCode> {
    let env: Vec<(String, String)> = std::env::vars().collect();
    match settings::load(file, &env, flags) {
        Ok(l) => {
            for var in settings::layers::unknown_env(&env, &OWN_ENV) {
                eprintln!("wsedge: warning: environment variable {var} names no setting (ignored)");
            }
            Ok(l)
        }
        Err(e) => {
            eprintln!("wsedge: configuration error: {e}");
            Err(ExitCode::from(2))
        }
    }
}

fn init_logging(log: &settings::LogSettings) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WSEDGE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if log.format == "json" {
        builder.json().flatten_event(true).init();
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(a)) => *a,
        Some(Command::Token(t)) => return mint(t),
        Some(Command::CheckConfig { file }) => {
            return match load(Some(&file), &[]) {
                Ok(l) => {
                    println!(
                        "# {}: valid. Effective configuration (file < environment):",
                        file.display()
                    );
                    print!("{}", l.render());
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            };
        }
        None => ServeArgs::parse_from(["serve"]),
    };
    let loaded = match load(args.config.as_deref(), &args.overrides()) {
        Ok(l) => l,
        Err(code) => return code,
    };
    if args.dry_run {
        print!("{}", loaded.render());
        return ExitCode::SUCCESS;
    }
    init_logging(&loaded.settings.log);
    // Only in a binary built by `cargo test` or `cargo bench` (the
    // test-only feature), and even then off unless asked for.
    #[cfg(feature = "fault-injection")]
    if std::env::var_os("WSEDGE_FAULT_INJECTION").is_some_and(|v| v == "1") {
        wsedge::panics::fault::enable();
        tracing::warn!("test-only fault injection is on (WSEDGE_FAULT_INJECTION=1)");
    }
    match serve(loaded.config) {
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
