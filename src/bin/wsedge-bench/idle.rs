//! `idle`: holds N upgraded, silent connections and reports the server's
//! RSS per connection.
//!
//! Owns: the idle flags, reading the server's RSS from /proc/PID/status,
//! opening and holding the connections and the idle report. Must not
//! touch: other modes, or the socket setup itself (`conn`).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use mio::{Events, Poll};

use crate::conn::{self, WsConn};
use crate::cpu::{with_cpu, CpuMeter};
use crate::progress::Progress;
use crate::Common;

#[derive(Args, Clone)]
pub struct IdleArgs {
    /// WebSocket address of the server (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: SocketAddr,
    /// Path to upgrade to.
    #[arg(long, default_value = "/echo")]
    path: String,
    /// Connections to hold.
    #[arg(long, default_value_t = 10_000)]
    connections: usize,
    /// The server's PID, to read its RSS from /proc.
    #[arg(long)]
    pid: u32,
    /// How long to hold them after all are open.
    #[arg(long, default_value = "2s", value_parser = |s: &str| humantime::parse_duration(s))]
    hold: Duration,
    /// Connections per 127.0.0.x source address (below the server's
    /// per-IP quota, 10 000 by default).
    #[arg(long, default_value_t = 5_000)]
    per_source: usize,
    #[command(flatten)]
    common: Common,
}

/// The resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

pub fn run(a: &IdleArgs) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let request = conn::upgrade_request(&a.path, a.server);
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(a.pid)?;
    let cpu = CpuMeter::start(a.common.server_pid)?;
    let mut progress = Progress::new();
    let tls = a.common.tls()?;
    // Each connection, and what of its request is still to be written.
    let mut conns: Vec<(WsConn, Vec<u8>)> = conn::open_all(
        &poll,
        a.server,
        a.connections,
        a.common.first_source,
        a.per_source,
    )?
    .into_iter()
    .map(|s| Ok((WsConn::new(s, tls.as_ref())?, request.clone())))
    .collect::<io::Result<_>>()?;
    let mut upgraded = 0;
    let mut buf = [0u8; 16 * 1024];
    let deadline = Instant::now() + Duration::from_secs(120);
    while upgraded < a.connections {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "only {upgraded} upgraded in 120 s"
            )));
        }
        if progress.due() {
            eprintln!("  {upgraded} of {} upgraded", a.connections);
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let (ws, tx) = &mut conns[ev.token().0];
            if ev.is_writable() {
                ws.write_from(tx)?;
            }
            if ev.is_readable() {
                if !ws.read_available(&mut buf)? {
                    return Err(io::Error::other("server closed an idle connection"));
                }
                // With TLS the request goes out once the handshake is done.
                ws.write_from(tx)?;
                if !ws.upgraded && ws.finish_upgrade()? {
                    upgraded += 1;
                }
            }
        }
    }
    eprintln!(
        "  all {} upgraded; holding them for {:.1?}",
        a.connections, a.hold
    );
    let hold_end = Instant::now() + a.hold;
    while let Some(left) = hold_end.checked_duration_since(Instant::now()) {
        if progress.due() {
            eprintln!("  holding, {:.0} s left", left.as_secs_f64());
        }
        std::thread::sleep(left.min(Duration::from_millis(500)));
    }
    let after = rss_kib(a.pid)?;
    let cpu = cpu.finish()?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / a.connections as f64;
    if a.common.json {
        let j = serde_json::json!({"mode": "idle", "connections": a.connections,
            "rss_before_kib": before, "rss_after_kib": after, "bytes_per_connection": per});
        println!("{}", with_cpu(j, &cpu, "connections", a.connections as u64));
    } else {
        println!(
            "idle: {} connections, server RSS {before} KiB → {after} KiB: {per:.0} bytes per connection",
            a.connections
        );
        if let Some(s) = cpu.server_secs {
            println!(
                "  server CPU {s:.2} s while opening and holding them ({:.2} s)",
                cpu.wall_secs
            );
        }
    }
    Ok(())
}
