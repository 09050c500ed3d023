//! `connect-rate`: handshakes per second with bounded concurrency; connect
//! → 101 latency, failures by kind.
//!
//! Owns: the connect-rate flags, the handshakes in flight (a slab keyed by
//! poll token), classifying failures and the connect-rate report. Must not
//! touch: other modes, or the socket setup itself (`conn`).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use clap::Args;
use mio::net::TcpStream;
use mio::{Events, Poll};

use crate::conn;
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

/// A handshake in progress.
struct Pending {
    stream: TcpStream,
    started: Instant,
    sent: bool,
    head: Vec<u8>,
}

pub fn run(a: &ConnectArgs) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let request = conn::upgrade_request(&a.path, a.server);
    let mut slab: slab::Slab<Pending> = slab::Slab::new();
    let mut hist = report::histogram();
    let mut started = 0usize;
    let mut ok = 0usize;
    let mut failures: BTreeMap<String, usize> = Default::default();
    let cpu = CpuMeter::start(a.common.server_pid)?;
    let mut progress = Progress::new();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(300);
    let mut buf = [0u8; 4096];
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
                        stream,
                        started: Instant::now(),
                        sent: false,
                        head: Vec::new(),
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
            if ev.is_writable() && !p.sent {
                match p.stream.write(&request) {
                    Ok(n) if n == request.len() => p.sent = true,
                    Ok(_) => done = Some(Err("short write".into())),
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::NotConnected => {}
                    Err(e) => done = Some(Err(format!("write: {}", e.kind()))),
                }
            }
            if done.is_none() && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                loop {
                    match p.stream.read(&mut buf) {
                        Ok(0) => {
                            done = Some(Err("closed before 101".into()));
                            break;
                        }
                        Ok(n) => p.head.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            done = Some(Err(format!("read: {}", e.kind())));
                            break;
                        }
                    }
                }
                if done.is_none() && conn::head_end(&p.head).is_some() {
                    done = Some(if p.head.starts_with(b"HTTP/1.1 101") {
                        Ok(())
                    } else {
                        let status =
                            String::from_utf8_lossy(&p.head[..p.head.len().min(12)]).into_owned();
                        Err(format!("refused: {}", status.trim()))
                    });
                }
            }
            if let Some(res) = done {
                let mut p = slab.remove(key);
                let _ = poll.registry().deregister(&mut p.stream);
                match res {
                    Ok(()) => {
                        hist.saturating_record(p.started.elapsed().as_nanos() as u64);
                        ok += 1;
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
            "handshakes_per_sec": rate,
            "latency_us": report::percentiles_json(&hist, &quantiles)});
        println!("{}", with_cpu(j, &cpu, "handshakes", ok as u64));
    } else {
        println!(
            "connect-rate: {ok} handshakes in {secs:.2} s: {rate:.0}/s (concurrency {})",
            a.concurrency
        );
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
