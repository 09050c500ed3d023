//! `wsedge-bench`, the load client bundled with wsedge.
//!
//! Owns: the command line (the modes, and the flags every mode shares) and
//! dispatch to the mode that runs. Must not touch: how a mode drives its
//! load or reports it (each mode's own file), nor the server's internals —
//! the client speaks only the wire protocol and the admin HTTP API, so it
//! can be pointed at any server with the same contract.
//!
//! Modes, a file each: `echo` (`echo-latency`, `echo-throughput`),
//! `connect_rate` (`connect-rate`), `idle` and `fanout` (N subscribers on
//! /ws; its publisher thread, through the admin API or over a WebSocket at
//! a fixed rate, is `fanout/publish`). Shared by the modes: `conn`
//! (sockets, source addresses, the upgrade), `frame` (wsedge's frame codec
//! on the client side), `cpu` (`--server-pid`), `report` (histograms,
//! percentiles) and `progress` (the stderr pacing).
//!
//! Every run is bounded in count and time and stops by itself. The result
//! goes to stdout (a human summary, or one JSON object with `--json`);
//! progress goes to stderr about every 2 s in every mode, with or without
//! `--json`. With `--server-pid` every mode also reads the server's CPU
//! time (utime + stime from /proc/PID/stat) at the start and end of the
//! measured interval and reports it, and per server-CPU-second rates for
//! the throughput modes.

mod conn;
mod connect_rate;
mod cpu;
mod deflate;
mod echo;
mod fanout;
mod frame;
mod idle;
mod json;
mod progress;
mod report;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "wsedge-bench",
    version,
    about = "Load client for WebSocket servers"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Echo latency: open loop at a fixed total rate over C connections
    /// (coordinated omission corrected: latency from the intended send
    /// time).
    EchoLatency(echo::EchoArgs),
    /// Echo throughput: C connections, P messages in flight each.
    EchoThroughput(echo::EchoArgs),
    /// Handshakes per second with bounded concurrency; failures by kind.
    ConnectRate(connect_rate::ConnectArgs),
    /// Hold N idle connections and report the server's RSS per connection.
    Idle(idle::IdleArgs),
    /// N subscribers on one channel; publishes via the admin API or a
    /// WebSocket at a fixed rate (open loop, latency from the intended send
    /// time).
    Fanout(fanout::FanoutArgs),
}

// The flags every mode takes, flattened last into each mode's own (so
// `--help` lists them last). No doc comment here: clap would take it for
// the mode's description.
#[derive(Args, Clone)]
struct Common {
    /// First 127.0.0.x source address.
    #[arg(long, default_value_t = 2)]
    first_source: u8,
    /// The server's PID: report its CPU time over the measured interval
    /// (utime + stime from /proc/PID/stat) and rates per server-CPU-second.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object instead of the human summary (progress still
    /// goes to stderr).
    #[arg(long)]
    json: bool,
    /// Speak TLS (wss://) to the server, trusting only this PEM CA
    /// certificate (server name `localhost`); every connection makes a
    /// full handshake (no session resumption). For the echo, idle and
    /// connect-rate modes.
    #[arg(long)]
    tls_ca: Option<std::path::PathBuf>,
    /// With --tls-ca: verify the server's certificate chain and handshake
    /// signature on the first connection only, then trust the same
    /// certificate bytes unchecked (benchmark shortcut so the client's
    /// ECDSA verifies do not cap a handshake-rate run; never against a
    /// network you do not own).
    #[arg(long, requires = "tls_ca")]
    tls_verify_once: bool,
}

impl Common {
    /// The TLS client configuration, with --tls-ca.
    fn tls(&self) -> std::io::Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
        self.tls_ca
            .as_deref()
            .map(|ca| conn::client_tls(ca, self.tls_verify_once))
            .transpose()
    }
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.mode {
        Mode::Fanout(a) => fanout::run(&a),
        Mode::EchoLatency(a) => echo::run(&a, false),
        Mode::EchoThroughput(a) => echo::run(&a, true),
        Mode::ConnectRate(a) => connect_rate::run(&a),
        Mode::Idle(a) => idle::run(&a),
    };
    if let Err(e) = res {
        eprintln!("wsedge-bench: {e}");
        std::process::exit(1);
    }
}
