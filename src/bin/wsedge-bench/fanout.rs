//! `fanout`: N subscribers on one channel of /ws while a publisher thread
//! publishes at a fixed rate; delivery latency from each publish's
//! intended send time.
//!
//! Owns: the fanout flags, the subscriber connections (upgrade, subscribe,
//! deliveries), the delivery tallies and the fanout report. Must not
//! touch: how publishes are sent or paced (`fanout/publish`), or other
//! modes.

mod publish;

use std::collections::HashMap;
use std::io::{self, Write};
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
use crate::report::{self, P50, P99};
use crate::Common;

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PublishVia {
    Admin,
    Ws,
}

#[derive(Args, Clone)]
pub struct FanoutArgs {
    /// WebSocket address of the server (host:port); the path is /ws.
    #[arg(long, default_value = "127.0.0.1:8080")]
    server: SocketAddr,
    /// Admin API address.
    #[arg(long, default_value = "127.0.0.1:9090")]
    admin: SocketAddr,
    /// Bearer key for the admin API.
    #[arg(long, env = "WSEDGE_ADMIN_KEY", hide_env_values = true)]
    admin_key: Option<String>,
    /// How to publish: `admin` (POST /api/channels/{c}/publish on the admin
    /// API) or `ws` (one publisher connection on /ws sending `publish`
    /// messages; the server must allow client publish, e.g. wsedge
    /// `--dev-client-publish`).
    #[arg(long, value_enum, default_value_t = PublishVia::Admin)]
    publish_via: PublishVia,
    /// Subscribers.
    #[arg(long, default_value_t = 1000)]
    subscribers: usize,
    /// Publishes per second.
    #[arg(long, default_value_t = 100)]
    rate: u64,
    /// How long to publish.
    #[arg(long, default_value = "5s", value_parser = |s: &str| humantime::parse_duration(s))]
    duration: Duration,
    /// Channel name.
    #[arg(long, default_value = "bench")]
    channel: String,
    /// Connections per 127.0.0.x source address (beyond the ephemeral
    /// port range, later addresses are used).
    #[arg(long, default_value_t = 20_000)]
    per_source: usize,
    /// What each publish carries besides its sequence number and send
    /// time: `bytes` (nothing) or `json` (a ≈ 1.5 KiB price-book update,
    /// the message `benches/compression.rs` measures).
    #[arg(long, value_enum, default_value_t = crate::echo::Payload::Bytes)]
    payload: crate::echo::Payload,
    /// Offer permessage-deflate (no context takeover either way) on every
    /// subscriber and on the `ws` publisher, compress what they send and
    /// inflate what they receive; the run fails if the server does not
    /// agree.
    #[arg(long)]
    compression: bool,
    #[command(flatten)]
    common: Common,
}

/// One subscriber connection.
struct Sub {
    ws: WsConn,
    subscribed: bool,
}

/// Finds `"key":` in a JSON text and parses the unsigned integer after it.
/// (Hand-written: it runs once per delivery, where a JSON parse would make
/// the client the bottleneck.)
fn json_u64(text: &[u8], key: &str) -> Option<u64> {
    let pat = format!("\"{key}\":");
    let at = text.windows(pat.len()).position(|w| w == pat.as_bytes())? + pat.len();
    let digits = text[at..].iter().take_while(|b| b.is_ascii_digit());
    let mut v: u64 = 0;
    let mut any = false;
    for d in digits {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        any = true;
    }
    any.then_some(v)
}

pub fn run(a: &FanoutArgs) -> io::Result<()> {
    let n = a.subscribers;
    let total_msgs = (a.rate as f64 * a.duration.as_secs_f64()).round() as u64;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let hello = conn::upgrade_request_offering("/ws", a.server, a.compression);
    let mut deflate = a.compression.then(ClientDeflate::new);
    // The subscribe goes out after the 101 (RFC 6455 4.1: a client waits
    // for the server's response before sending further data; some servers
    // drop a frame that arrives with the upgrade request).
    let mut subscribe = BytesMut::new();
    let sub_json = serde_json::json!({"type":"subscribe","channel":a.channel,"id":1}).to_string();
    match deflate.as_mut() {
        Some(d) => d.push_masked(
            &mut subscribe,
            OpCode::Text,
            [1, 2, 3, 4],
            sub_json.as_bytes(),
        ),
        None => frame::push_masked(
            &mut subscribe,
            OpCode::Text,
            [1, 2, 3, 4],
            sub_json.as_bytes(),
        ),
    }

    let setup_start = Instant::now();
    let mut subs: Vec<Sub> =
        conn::open_all(&poll, a.server, n, a.common.first_source, a.per_source)?
            .into_iter()
            .map(|stream| {
                Ok(Sub {
                    // Fanout speaks plain ws:// (no `--tls-ca` here).
                    ws: WsConn::new(stream, None)?.with_compression(a.compression),
                    subscribed: false,
                })
            })
            .collect::<io::Result<_>>()?;
    let mut sent_hello = vec![false; n];
    let mut subscribed = 0usize;
    let start = Instant::now();
    let mut hist_delivery = report::histogram();
    let mut hist_last = report::histogram();
    let mut per_msg: HashMap<u64, usize> = HashMap::new();
    let mut delivered: u64 = 0;
    let mut first_delivery: Option<Instant> = None;
    let mut last_delivery = Instant::now();
    let mut publisher: Option<std::thread::JoinHandle<io::Result<u64>>> = None;
    let mut publish_started = Instant::now();
    let deadline_setup = Instant::now() + Duration::from_secs(120);
    let mut read_buf = vec![0u8; 64 * 1024];
    let expected = total_msgs * n as u64;
    let mut progress = Progress::new();
    let mut cpu: Option<CpuMeter> = None;

    loop {
        let now = Instant::now();
        if publisher.is_none() && now > deadline_setup {
            return Err(io::Error::other(format!(
                "only {subscribed} of {n} subscribed after 120 s"
            )));
        }
        if publisher.is_some()
            && (delivered >= expected
                || now > publish_started + a.duration + Duration::from_secs(15))
        {
            break;
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let sub = &mut subs[i];
            if ev.is_writable() && !sent_hello[i] {
                match sub.ws.stream.write(&hello) {
                    Ok(w) if w == hello.len() => sent_hello[i] = true,
                    Ok(_) => return Err(io::Error::other("short write of the upgrade request")),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => {}
                    Err(e) => return Err(e),
                }
            }
            if !ev.is_readable() {
                continue;
            }
            if !sub.ws.read_available(&mut read_buf)? {
                return Err(io::Error::other(format!("subscriber {i} closed")));
            }
            if !sub.ws.upgraded {
                if !sub.ws.finish_upgrade()? {
                    continue;
                }
                // A few dozen bytes into an empty socket buffer.
                match sub.ws.stream.write(&subscribe) {
                    Ok(w) if w == subscribe.len() => {}
                    Ok(_) => return Err(io::Error::other("short write of the subscribe")),
                    Err(e) => return Err(e),
                }
            }
            while let Some(f) = sub.ws.next_frame()? {
                let opcode = f.opcode;
                let payload = match (opcode, deflate.as_mut()) {
                    (OpCode::Text, Some(d)) => d.message(&f)?,
                    _ => f.payload,
                };
                match opcode {
                    OpCode::Text if !sub.subscribed => {
                        sub.subscribed = true;
                        subscribed += 1;
                    }
                    OpCode::Text => {
                        let at = Instant::now();
                        let (Some(seq), Some(t)) =
                            (json_u64(&payload, "s"), json_u64(&payload, "t"))
                        else {
                            continue;
                        };
                        let now_ns = at.duration_since(start).as_nanos() as u64;
                        let lat = now_ns.saturating_sub(t);
                        hist_delivery.saturating_record(lat);
                        delivered += 1;
                        first_delivery.get_or_insert(at);
                        last_delivery = at;
                        let c = per_msg.entry(seq).or_insert(0);
                        *c += 1;
                        if *c == n {
                            hist_last.saturating_record(lat);
                            per_msg.remove(&seq);
                        }
                    }
                    // Server pings: answering is not needed within a run
                    // shorter than the pong timeout.
                    _ => {}
                }
            }
        }
        if publisher.is_none() && subscribed == n {
            eprintln!(
                "{n} subscribers ready in {:.2?}; publishing {total_msgs} messages at {}/s",
                setup_start.elapsed(),
                a.rate
            );
            let args = a.clone();
            publish_started = Instant::now();
            cpu = Some(CpuMeter::start(a.common.server_pid)?);
            publisher = Some(std::thread::spawn(move || match args.publish_via {
                PublishVia::Admin => publish::via_admin(&args, start, total_msgs),
                PublishVia::Ws => publish::via_ws(&args, start, total_msgs),
            }));
        }
        if progress.due() {
            if publisher.is_some() {
                eprintln!(
                    "  {:.0} s: delivered {delivered} of {expected}",
                    publish_started.elapsed().as_secs_f64()
                );
            } else {
                eprintln!("  {subscribed} of {n} subscribed");
            }
        }
    }
    let cpu = cpu.expect("publishing started").finish()?;
    let published = publisher
        .expect("publisher started")
        .join()
        .map_err(|_| io::Error::other("publisher panicked"))??;
    let span = first_delivery.map_or(Duration::ZERO, |f| last_delivery.duration_since(f));
    let rate = delivered as f64 / span.as_secs_f64().max(1e-9);
    let quantiles = [P50, P99];
    // What the subscribers read, upgrades and subscriptions included, per
    // delivery.
    let wire_in: u64 = subs.iter().map(|s| s.ws.wire_in).sum();
    let wire_per_delivery = wire_in as f64 / delivered.max(1) as f64;
    if a.common.json {
        let j = serde_json::json!({
            "mode": "fanout",
            "subscribers": n,
            "publish_via": match a.publish_via { PublishVia::Admin => "admin", PublishVia::Ws => "ws" },
            "published": published,
            "delivered": delivered,
            "expected": expected,
            "deliveries_per_sec": rate,
            "compression": a.compression,
            "wire_bytes_per_delivery": wire_per_delivery,
            "delivery_us": report::percentiles_json(&hist_delivery, &quantiles),
            "last_delivery_us": report::percentiles_json(&hist_last, &quantiles),
        });
        println!("{}", with_cpu(j, &cpu, "deliveries", delivered));
    } else {
        println!(
            "fanout: {n} subscribers, {published} publishes at {}/s",
            a.rate
        );
        println!("  delivered {delivered} of {expected} ({rate:.0} deliveries/s)");
        println!(
            "  delivery latency        {}",
            report::percentiles_text(&hist_delivery, &quantiles)
        );
        println!(
            "  publish → last delivery {}",
            report::percentiles_text(&hist_last, &quantiles)
        );
        println!(
            "  {wire_per_delivery:.0} bytes read per delivery{}",
            if a.compression { " (compressed)" } else { "" }
        );
        print!("{}", cpu.line("deliveries", delivered));
    }
    if delivered < expected {
        return Err(io::Error::other(format!(
            "{} deliveries missing",
            expected - delivered
        )));
    }
    Ok(())
}
