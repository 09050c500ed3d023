//! `echo-latency` and `echo-throughput`: C connections to an echo route,
//! each message carrying its send time in its first 8 bytes, round trips
//! into one histogram.
//!
//! Owns: the echo flags, the echo connections and their write buffers,
//! both send disciplines (open loop at a fixed total rate; P in flight per
//! connection, refilled as echoes return) and the echo report. Must not
//! touch: other modes, or how a socket is opened and upgraded (`conn`).

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::Args;
use mio::{Events, Poll};
use wsedge::protocol::OpCode;

use crate::conn::{self, WsConn};
use crate::cpu::{with_cpu, CpuMeter};
use crate::deflate::ClientDeflate;
use crate::frame;
use crate::progress::Progress;
use crate::report::{self, P50, P90, P99, P999};
use crate::Common;

#[derive(Args, Clone)]
pub struct EchoArgs {
    /// WebSocket address of the server (host:port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: SocketAddr,
    /// Path of the echo route.
    #[arg(long, default_value = "/echo")]
    path: String,
    /// Connections.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Total messages per second (echo-latency).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Messages in flight per connection (echo-throughput).
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// Payload bytes (at least 8), for `--payload bytes`.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// What each message carries after its 8-byte send time: `bytes`
    /// (`--size` bytes of 0x42) or `json` (a ≈ 1.5 KiB price-book update,
    /// the message `benches/compression.rs` measures, its numbers varying).
    #[arg(long, value_enum, default_value_t = Payload::Bytes)]
    payload: Payload,
    /// Offer permessage-deflate (no context takeover either way), compress
    /// what is sent and inflate what comes back; the run fails if the
    /// server does not agree.
    #[arg(long)]
    compression: bool,
    /// How long to send.
    #[arg(long, default_value = "5s", value_parser = |s: &str| humantime::parse_duration(s))]
    duration: Duration,
    #[command(flatten)]
    common: Common,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    Bytes,
    Json,
}

/// Distinct JSON messages `--payload json` cycles through.
const JSON_VARIANTS: usize = 64;

/// Connections per 127.0.0.x source address (echo has no flag for it).
const PER_SOURCE: usize = 20_000;

/// One echo client connection and what is waiting to be written on it.
struct EchoConn {
    ws: WsConn,
    tx: Vec<u8>,
}

impl EchoConn {
    /// Writes what is buffered; keeps the rest for the next writable event.
    fn flush(&mut self) -> io::Result<()> {
        self.ws.write_from(&mut self.tx)
    }

    /// Queues one masked frame (written by the next [`EchoConn::flush`]),
    /// compressed with `deflate` if given.
    fn queue(&mut self, payload: &[u8], key: [u8; 4], deflate: &mut Option<ClientDeflate>) {
        let mut out = BytesMut::with_capacity(payload.len() + 14);
        match deflate {
            Some(d) => d.push_masked(&mut out, OpCode::Binary, key, payload),
            None => frame::push_masked(&mut out, OpCode::Binary, key, payload),
        }
        self.tx.extend_from_slice(&out);
    }

    fn send(
        &mut self,
        payload: &[u8],
        key: [u8; 4],
        deflate: &mut Option<ClientDeflate>,
    ) -> io::Result<()> {
        self.queue(payload, key, deflate);
        self.flush()
    }
}

/// Nanoseconds from `start` to `at`.
fn nanos_since(start: Instant, at: Instant) -> u64 {
    at.duration_since(start).as_nanos() as u64
}

/// Writes the send time `at` (nanoseconds since `start`) into the first 8
/// bytes of `payload`, where the echo brings it back.
fn stamp(payload: &mut [u8], start: Instant, at: Instant) {
    payload[..8].copy_from_slice(&nanos_since(start, at).to_le_bytes());
}

pub fn run(a: &EchoArgs, throughput: bool) -> io::Result<()> {
    let n = a.connections.max(1);
    let size = a.size.max(8);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let request = conn::upgrade_request_offering(&a.path, a.server, a.compression);
    let mut deflate = a.compression.then(ClientDeflate::new);
    let tls = a.common.tls()?;
    let mut conns: Vec<EchoConn> =
        conn::open_all(&poll, a.server, n, a.common.first_source, PER_SOURCE)?
            .into_iter()
            .map(|stream| {
                Ok(EchoConn {
                    ws: WsConn::new(stream, tls.as_ref())?.with_compression(a.compression),
                    tx: request.clone(),
                })
            })
            .collect::<io::Result<_>>()?;
    let start = Instant::now();
    let mut hist = report::histogram();
    let mut upgraded = 0;
    let mut read_buf = vec![0u8; 256 * 1024];
    // The messages sent, in turn; each gets its send time stamped into its
    // first 8 bytes as it goes.
    let mut payloads: Vec<Vec<u8>> = match a.payload {
        Payload::Bytes => vec![vec![0x42u8; size]],
        Payload::Json => (0..JSON_VARIANTS as u32)
            .map(|i| {
                let mut p = vec![0u8; 8];
                p.extend_from_slice(&crate::json::json_message(i));
                p
            })
            .collect(),
    };
    let size = payloads.iter().map(Vec::len).sum::<usize>() / payloads.len();
    let mut turn = 0usize;
    // The next payload to send, stamped with `at`.
    let mut next_payload = |at: Instant| -> Vec<u8> {
        turn = (turn + 1) % payloads.len();
        let p = &mut payloads[turn];
        stamp(p, start, at);
        p.clone()
    };
    let mut sending_since: Option<Instant> = None;
    let mut sent: u64 = 0;
    let mut received: u64 = 0;
    let mut next_conn = 0usize;
    let interval = Duration::from_secs_f64(1.0 / a.rate.max(1) as f64);
    let mut next_send = Instant::now();
    let setup_deadline = Instant::now() + Duration::from_secs(60);
    let mut progress = Progress::new();
    let mut cpu: Option<CpuMeter> = None;
    let mut received_at_progress = 0u64;
    loop {
        let now = Instant::now();
        if progress.due() {
            match sending_since {
                Some(since) => {
                    eprintln!(
                        "  {:.0} s: sent {sent}, received {received} ({:.0} msgs/s over the last 2 s)",
                        since.elapsed().as_secs_f64(),
                        (received - received_at_progress) as f64 / 2.0
                    );
                    received_at_progress = received;
                }
                None => eprintln!("  {upgraded} of {n} upgraded"),
            }
        }
        if let Some(since) = sending_since {
            let done_sending = now >= since + a.duration;
            if done_sending
                && (received >= sent || now >= since + a.duration + Duration::from_secs(5))
            {
                break;
            }
            if !throughput && !done_sending {
                // Open loop: send everything whose intended time has come.
                while next_send <= now && next_send < since + a.duration {
                    let payload = next_payload(next_send);
                    conns[next_conn].send(&payload, [7, 7, 7, 7], &mut deflate)?;
                    next_conn = (next_conn + 1) % n;
                    sent += 1;
                    next_send += interval;
                }
            }
        } else if now > setup_deadline {
            return Err(io::Error::other(format!(
                "only {upgraded} of {n} upgraded after 60 s"
            )));
        }
        let timeout = if throughput || sending_since.is_none() {
            Duration::from_millis(50)
        } else {
            // epoll's timeout has millisecond resolution: sleep until a
            // millisecond before the next intended send, then spin (the
            // client owns its core), so send times are not late by up to
            // a millisecond — which would count as server latency.
            let left = next_send.saturating_duration_since(Instant::now());
            left.saturating_sub(Duration::from_millis(2))
                .min(Duration::from_millis(50))
        };
        poll.poll(&mut events, Some(timeout))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            if ev.is_writable() {
                c.flush()?;
            }
            if !ev.is_readable() {
                continue;
            }
            if !c.ws.read_available(&mut read_buf)? {
                return Err(io::Error::other(format!("connection {i} closed")));
            }
            if !c.ws.upgraded {
                if !c.ws.finish_upgrade()? {
                    continue;
                }
                upgraded += 1;
            }
            let mut echoed = 0;
            while let Some(f) = c.ws.next_frame()? {
                if f.opcode != OpCode::Binary {
                    continue;
                }
                let msg = match deflate.as_mut() {
                    Some(d) => d.message(&f)?,
                    None => f.payload,
                };
                if msg.len() < 8 {
                    continue;
                }
                let at = nanos_since(start, Instant::now());
                let t = u64::from_le_bytes(msg[..8].try_into().expect("8 bytes"));
                hist.saturating_record(at.saturating_sub(t));
                received += 1;
                echoed += 1;
            }
            if throughput {
                if let Some(since) = sending_since {
                    if Instant::now() < since + a.duration {
                        // One write for all the replacements of this read.
                        for _ in 0..echoed {
                            let payload = next_payload(Instant::now());
                            c.queue(&payload, [9, 9, 9, 9], &mut deflate);
                            sent += 1;
                        }
                        c.flush()?;
                    }
                }
            }
        }
        if sending_since.is_none() && upgraded == n {
            cpu = Some(CpuMeter::start(a.common.server_pid)?);
            let now = Instant::now();
            sending_since = Some(now);
            next_send = now;
            if throughput {
                for c in conns.iter_mut() {
                    for _ in 0..a.in_flight.max(1) {
                        let payload = next_payload(now);
                        c.queue(&payload, [9, 9, 9, 9], &mut deflate);
                        sent += 1;
                    }
                    c.flush()?;
                }
            }
        }
    }
    let cpu = cpu.expect("sending started").finish()?;
    let secs = a.duration.as_secs_f64();
    let mode = if throughput {
        "echo-throughput"
    } else {
        "echo-latency"
    };
    let rate = received as f64 / secs;
    let quantiles = [P50, P90, P99, P999];
    // Both directions, handshakes included, per echoed message.
    let wire: u64 = conns.iter().map(|c| c.ws.wire_in + c.ws.wire_out).sum();
    let wire_per_msg = wire as f64 / received.max(1) as f64;
    if a.common.json {
        let j = serde_json::json!({
            "mode": mode, "connections": n, "size": size, "sent": sent, "received": received,
            "compression": a.compression,
            "msgs_per_sec": rate, "mb_per_sec": rate * size as f64 / 1e6,
            "wire_bytes_per_msg": wire_per_msg,
            "latency_us": report::percentiles_json(&hist, &quantiles),
        });
        println!("{}", with_cpu(j, &cpu, "msgs", received));
    } else {
        println!("{mode}: {n} connections, {size} B payload, {secs:.1} s");
        println!(
            "  {received} of {sent} echoed: {rate:.0} msgs/s, {:.1} MB/s",
            rate * size as f64 / 1e6
        );
        println!("  latency {}", report::percentiles_text(&hist, &quantiles));
        println!(
            "  {wire_per_msg:.0} bytes on the wire per echo (both ways{})",
            if a.compression { ", compressed" } else { "" }
        );
        print!("{}", cpu.line("msgs", received));
    }
    if received < sent {
        return Err(io::Error::other(format!(
            "{} echoes missing",
            sent - received
        )));
    }
    Ok(())
}
