//! `connect-rate`: handshakes per second with bounded concurrency; connect
//! → 101 latency, failures by kind.
//!
//! Owns: the connect-rate flags, the handshakes in flight (a slab keyed by
//! poll token), classifying failures and the connect-rate report. Must not
//! touch: other modes, or the socket setup itself (`conn`).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use mio::{Events, Poll};

use crate::conn::{self, WsConn};
use crate::cpu::{with_cpu, CpuMeter};
use crate::progress::Progress;
use crate::report::{self, P50, P99};
use crate::Common;

#[derive(Args, Clone)]
pub struct ConnectArgs {
    /// WebSocket address of the server (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: SocketAddr,
    /// Path to upgrade to.
    #[arg(long, default_value = "/echo")]
    path: String,
    /// Handshakes in total.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Handshakes per 127.0.0.x source address before moving to the next
    /// (closed client ports linger in TIME_WAIT).
    #[arg(long, default_value_t = 10_000)]
    per_source: usize,
    #[command(flatten)]
    common: Common,
}

/// A handshake in progress: the connection (TLS session and all) and
/// what of the upgrade request is still to be written.
struct Pending {
    conn: WsConn,
    started: Instant,
    tx: Vec<u8>,
}

/// How a failed handshake is counted: the refusal's status line, an I/O
/// error's kind, or (TLS) rustls's description.
fn failure(what: &str, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::Other => format!("{what}: {e}"),
        kind => format!("{what}: {kind}"),
    }
}

pub fn run(a: &ConnectArgs) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let request = conn::upgrade_request(&a.path, a.server);
    let tls = a.common.tls()?;
    let mut slab: slab::Slab<Pending> = slab::Slab::new();
    let mut hist = report::histogram();
    let mut started = 0usize;
    let mut ok = 0usize;
    let mut failures: BTreeMap<String, usize> = Default::default();
    // What the first completed TLS handshake negotiated.
    let mut negotiated: Option<String> = None;
    let cpu = CpuMeter::start(a.common.server_pid)?;
    let mut progress = Progress::new();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(300);
    let mut buf = vec![0u8; 16 * 1024];
    while ok + failures.values().sum::<usize>() < a.count {
        if progress.due() {
            let failed: usize = failures.values().sum();
            eprintln!(
                "  {:.0} s: {ok} of {} handshakes done, {failed} failed",
                t0.elapsed().as_secs_f64(),
                a.count
            );
        }
        if Instant::now() > deadline {
            return Err(io::Error::other("connect-rate did not finish in 300 s"));
        }
        while started < a.count && slab.len() < a.concurrency.max(1) {
            let src = conn::source_addr(a.common.first_source, started, a.per_source)?;
            started += 1;
            match conn::connect_from(src, a.server) {
                Ok(mut stream) => {
                    let entry = slab.vacant_entry();
                    conn::register(&poll, &mut stream, entry.key())?;
                    entry.insert(Pending {
                        conn: WsConn::new(stream, tls.as_ref())?,
                        started: Instant::now(),
                        tx: request.clone(),
                    });
                }
                Err(e) => {
                    *failures
                        .entry(format!("connect: {}", e.kind()))
                        .or_default() += 1
                }
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let key = ev.token().0;
            let Some(p) = slab.get_mut(key) else { continue };
            let mut done: Option<Result<(), String>> = None;
            if ev.is_writable() {
                // The request (through TLS: the handshake first, the
                // request once it is done); a connect still in progress
                // is retried at the next writable event.
                if let Err(e) = p.conn.write_from(&mut p.tx) {
                    done = Some(Err(failure("write", &e)));
                }
            }
            if done.is_none() && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                done = match p.conn.read_available(&mut buf) {
                    Ok(true) => match p.conn.finish_upgrade() {
                        Ok(true) => Some(Ok(())),
                        Ok(false) => None,
                        Err(e) => Some(Err(e.to_string())),
                    },
                    Ok(false) => Some(Err("closed before 101".into())),
                    Err(e) => Some(Err(failure("read", &e))),
                };
            }
            if let Some(res) = done {
                // Dropped here: the socket closes (no WebSocket close
                // frame, no TLS close_notify).
                let mut p = slab.remove(key);
                let _ = poll.registry().deregister(&mut p.conn.stream);
                match res {
                    Ok(()) => {
                        hist.saturating_record(p.started.elapsed().as_nanos() as u64);
                        ok += 1;
                        if negotiated.is_none() {
                            negotiated = p.conn.tls_summary();
                        }
                    }
                    Err(kind) => *failures.entry(kind).or_default() += 1,
                }
            }
        }
    }
    let cpu = cpu.finish()?;
    let secs = t0.elapsed().as_secs_f64();
    let rate = ok as f64 / secs;
    let quantiles = [P50, P99];
    if a.common.json {
        let j = serde_json::json!({"mode": "connect-rate", "ok": ok, "failures": failures,
            "handshakes_per_sec": rate, "tls": negotiated,
            "latency_us": report::percentiles_json(&hist, &quantiles)});
        println!("{}", with_cpu(j, &cpu, "handshakes", ok as u64));
    } else {
        println!(
            "connect-rate: {ok} handshakes in {secs:.2} s: {rate:.0}/s (concurrency {})",
            a.concurrency
        );
        if let Some(tls) = &negotiated {
            println!("  TLS: {tls}, a full handshake per connection (no resumption)");
        }
        println!(
            "  connect→101 {}",
            report::percentiles_text(&hist, &quantiles)
        );
        for (kind, n) in &failures {
            println!("  failed: {kind}: {n}");
        }
        print!("{}", cpu.line("handshakes", ok as u64));
    }
    Ok(())
}
