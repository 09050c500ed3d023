//! `wsedge-bench`, the load client bundled with wsedge.
//!
//! Owns: driving load against a WebSocket server over loopback and
//! reporting percentiles (one `hdrhistogram` per measured quantity). Must
//! not touch: the server's internals — it speaks only the wire protocol and
//! the admin HTTP API, so it can be pointed at any server with the same
//! contract.
//!
//! Modes: `echo-latency`, `echo-throughput`, `connect-rate`, `idle` and
//! `fanout` (N subscribers on /ws, publishes through the admin API or over
//! a WebSocket at a fixed rate). Every run is bounded in count and time and
//! stops by itself. The result goes to stdout (a human summary, or one JSON
//! object with `--json`); progress goes to stderr about every 2 s in every
//! mode, with or without `--json`. With `--server-pid` every mode also
//! reads the server's CPU time (utime + stime from /proc/PID/stat) at the
//! start and end of the measured interval and reports it, and per
//! server-CPU-second rates for the throughput modes.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use wsedge::protocol::frame::encode_masked_frame;
use wsedge::protocol::{FrameDecoder, OpCode, Role};

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
    EchoLatency(EchoArgs),
    /// Echo throughput: C connections, P messages in flight each.
    EchoThroughput(EchoArgs),
    /// Handshakes per second with bounded concurrency; failures by kind.
    ConnectRate(ConnectArgs),
    /// Hold N idle connections and report the server's RSS per connection.
    Idle(IdleArgs),
    /// N subscribers on one channel; publishes via the admin API or a
    /// WebSocket at a fixed rate (open loop, latency from the intended send
    /// time).
    Fanout(FanoutArgs),
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PublishVia {
    Admin,
    Ws,
}

#[derive(Args, Clone)]
struct FanoutArgs {
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
}

#[derive(Args, Clone)]
struct EchoArgs {
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
    /// Payload bytes (at least 8).
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// How long to send.
    #[arg(long, default_value = "5s", value_parser = |s: &str| humantime::parse_duration(s))]
    duration: Duration,
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
}

#[derive(Args, Clone)]
struct ConnectArgs {
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
}

#[derive(Args, Clone)]
struct IdleArgs {
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
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.mode {
        Mode::Fanout(a) => fanout(&a),
        Mode::EchoLatency(a) => echo(&a, false),
        Mode::EchoThroughput(a) => echo(&a, true),
        Mode::ConnectRate(a) => connect_rate(&a),
        Mode::Idle(a) => idle(&a),
    };
    if let Err(e) = res {
        eprintln!("wsedge-bench: {e}");
        std::process::exit(1);
    }
}

/// One subscriber socket and what has arrived on it.
struct Sub {
    stream: TcpStream,
    buf: BytesMut,
    upgraded: bool,
    subscribed: bool,
    decoder: FrameDecoder,
}

fn connect_from(src: u8, addr: SocketAddr) -> io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::from(([127, 0, 0, src], 0)).into())?;
    sock.set_nonblocking(true)?;
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(115) || e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    sock.set_tcp_nodelay(true)?;
    Ok(TcpStream::from_std(sock.into()))
}

/// Clock ticks per second of /proc/PID/stat's times (`USER_HZ`, part of
/// the Linux ABI: 100).
const USER_HZ: f64 = 100.0;

/// CPU time (user + system, all threads) a process has used, in seconds.
fn cpu_secs(pid: &str) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold spaces: count from its ')'.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14, 15.
    let tick = |i: usize| -> io::Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat"))
    };
    Ok((tick(11)? + tick(12)?) as f64 / USER_HZ)
}

/// Server and client CPU time over the measured interval.
struct CpuMeter {
    server_pid: Option<u32>,
    server_start: f64,
    client_start: f64,
    wall_start: Instant,
}

/// What a [`CpuMeter`] measured.
struct CpuUse {
    wall_secs: f64,
    /// `None` without `--server-pid`.
    server_secs: Option<f64>,
    client_secs: f64,
}

impl CpuMeter {
    fn start(server_pid: Option<u32>) -> io::Result<CpuMeter> {
        let server_start = match server_pid {
            Some(pid) => cpu_secs(&pid.to_string())?,
            None => 0.0,
        };
        Ok(CpuMeter {
            server_pid,
            server_start,
            client_start: cpu_secs("self").unwrap_or(0.0),
            wall_start: Instant::now(),
        })
    }

    fn finish(&self) -> io::Result<CpuUse> {
        let server_secs = match self.server_pid {
            Some(pid) => Some(cpu_secs(&pid.to_string())? - self.server_start),
            None => None,
        };
        Ok(CpuUse {
            wall_secs: self.wall_start.elapsed().as_secs_f64(),
            server_secs,
            client_secs: cpu_secs("self").unwrap_or(0.0) - self.client_start,
        })
    }
}

impl CpuUse {
    /// `count` per server-CPU-second (`None` without a server PID or
    /// without measurable CPU time).
    fn per_server_sec(&self, count: u64) -> Option<f64> {
        self.server_secs
            .filter(|&s| s > 0.0)
            .map(|s| count as f64 / s)
    }

    /// JSON fields: `server_cpu_secs`, `server_cpu_util` (of one core over
    /// the interval), `client_cpu_util`, and `{what}_per_server_cpu_sec`.
    fn json(&self, what: &str, count: u64) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("server_cpu_secs".into(), self.server_secs.into());
        m.insert(
            "server_cpu_util".into(),
            self.server_secs.map(|s| s / self.wall_secs).into(),
        );
        m.insert(
            "client_cpu_util".into(),
            (self.client_secs / self.wall_secs).into(),
        );
        m.insert(
            format!("{what}_per_server_cpu_sec"),
            self.per_server_sec(count).into(),
        );
        m
    }

    /// One summary line (empty without a server PID).
    fn line(&self, what: &str, count: u64) -> String {
        let Some(s) = self.server_secs else {
            return String::new();
        };
        let per = self
            .per_server_sec(count)
            .map_or("—".to_string(), |r| format!("{r:.0}"));
        format!(
            "  server CPU {s:.2} s over {:.2} s ({:.0} % of a core): {per} {what} per server-CPU-second; client CPU {:.0} %\n",
            self.wall_secs,
            100.0 * s / self.wall_secs,
            100.0 * self.client_secs / self.wall_secs
        )
    }
}

/// Merges CPU fields into a JSON result object.
fn with_cpu(mut j: serde_json::Value, cpu: &CpuUse, what: &str, count: u64) -> serde_json::Value {
    if let Some(obj) = j.as_object_mut() {
        obj.extend(cpu.json(what, count));
    }
    j
}

/// Says when a progress line is due (about every 2 s).
struct Progress {
    last: Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            last: Instant::now(),
        }
    }

    /// True at most once per 2 s; the caller then prints to stderr.
    fn due(&mut self) -> bool {
        if self.last.elapsed() >= Duration::from_secs(2) {
            self.last = Instant::now();
            true
        } else {
            false
        }
    }
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

fn http_post(
    conn: &mut StdTcpStream,
    path: &str,
    key: Option<&str>,
    body: &str,
) -> io::Result<u16> {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\n{auth}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(req.as_bytes())?;
    // Read the head, then Content-Length bytes of body.
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte)? == 0 {
            return Err(io::Error::other("admin API closed the connection"));
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body)?;
    Ok(status)
}

fn fanout(a: &FanoutArgs) -> io::Result<()> {
    let n = a.subscribers;
    let total_msgs = (a.rate as f64 * a.duration.as_secs_f64()).round() as u64;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let mut subs: Vec<Sub> = Vec::with_capacity(n);
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        a.server
    );
    let mut subscribe = BytesMut::new();
    let sub_json = serde_json::json!({"type":"subscribe","channel":a.channel,"id":1}).to_string();
    encode_masked_frame(
        &mut subscribe,
        true,
        OpCode::Text,
        [1, 2, 3, 4],
        sub_json.as_bytes(),
    );
    // The subscribe goes out after the 101 (RFC 6455 4.1: a client waits
    // for the server's response before sending further data; some servers
    // drop a frame that arrives with the upgrade request).
    let hello = request.into_bytes();

    let setup_start = Instant::now();
    for i in 0..n {
        let src = a.first_source as usize + i / a.per_source.max(1);
        let src = u8::try_from(src).map_err(|_| io::Error::other("too many source addresses"))?;
        let mut stream = connect_from(src, a.server)?;
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        subs.push(Sub {
            stream,
            buf: BytesMut::new(),
            upgraded: false,
            subscribed: false,
            decoder: FrameDecoder::new(Role::Client, 1 << 24),
        });
    }
    let mut sent_hello = vec![false; n];
    let mut subscribed = 0usize;
    let start = Instant::now();
    let mut hist_delivery =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    let mut hist_last =
        Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
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
                match sub.stream.write(&hello) {
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
            loop {
                match sub.stream.read(&mut read_buf) {
                    Ok(0) => return Err(io::Error::other(format!("subscriber {i} closed"))),
                    Ok(k) => sub.buf.extend_from_slice(&read_buf[..k]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if !sub.upgraded {
                let Some(p) = sub.buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                if !sub.buf.starts_with(b"HTTP/1.1 101") {
                    return Err(io::Error::other("upgrade refused"));
                }
                let _ = sub.buf.split_to(p + 4);
                sub.upgraded = true;
                // A few dozen bytes into an empty socket buffer.
                match sub.stream.write(&subscribe) {
                    Ok(w) if w == subscribe.len() => {}
                    Ok(_) => return Err(io::Error::other("short write of the subscribe")),
                    Err(e) => return Err(e),
                }
            }
            while let Some(frame) = sub
                .decoder
                .decode(&mut sub.buf)
                .map_err(|e| io::Error::other(e.to_string()))?
            {
                match frame.opcode {
                    OpCode::Text if !sub.subscribed => {
                        sub.subscribed = true;
                        subscribed += 1;
                    }
                    OpCode::Text => {
                        let at = Instant::now();
                        let (Some(seq), Some(t)) =
                            (json_u64(&frame.payload, "s"), json_u64(&frame.payload, "t"))
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
            cpu = Some(CpuMeter::start(a.server_pid)?);
            publisher = Some(std::thread::spawn(move || match args.publish_via {
                PublishVia::Admin => publish_loop(&args, start, total_msgs),
                PublishVia::Ws => publish_ws_loop(&args, start, total_msgs),
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
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    if a.json {
        let j = serde_json::json!({
            "mode": "fanout",
            "subscribers": n,
            "publish_via": match a.publish_via { PublishVia::Admin => "admin", PublishVia::Ws => "ws" },
            "published": published,
            "delivered": delivered,
            "expected": expected,
            "deliveries_per_sec": rate,
            "delivery_us": {"p50": us(&hist_delivery, 0.5), "p99": us(&hist_delivery, 0.99),
                            "max": hist_delivery.max() as f64 / 1000.0},
            "last_delivery_us": {"p50": us(&hist_last, 0.5), "p99": us(&hist_last, 0.99),
                                 "max": hist_last.max() as f64 / 1000.0},
        });
        println!("{}", with_cpu(j, &cpu, "deliveries", delivered));
    } else {
        println!(
            "fanout: {n} subscribers, {published} publishes at {}/s",
            a.rate
        );
        println!("  delivered {delivered} of {expected} ({rate:.0} deliveries/s)");
        println!(
            "  delivery latency        p50 {:.0} µs  p99 {:.0} µs  max {:.0} µs",
            us(&hist_delivery, 0.5),
            us(&hist_delivery, 0.99),
            hist_delivery.max() as f64 / 1000.0
        );
        println!(
            "  publish → last delivery p50 {:.0} µs  p99 {:.0} µs  max {:.0} µs",
            us(&hist_last, 0.5),
            us(&hist_last, 0.99),
            hist_last.max() as f64 / 1000.0
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

/// Publishes `total` messages at the configured rate; each carries its
/// sequence number and its *intended* send time (coordinated-omission
/// correction: a stall in the server or the API delays the actual send,
/// not the clock the latency is measured from).
fn publish_loop(a: &FanoutArgs, start: Instant, total: u64) -> io::Result<u64> {
    let mut conn = StdTcpStream::connect(a.admin)?;
    conn.set_nodelay(true)?;
    let path = format!("/api/channels/{}/publish", a.channel);
    let t0 = Instant::now();
    for i in 0..total {
        let t = wait_for_slot(t0, i, a.rate, start);
        let body = format!(r#"{{"s":{i},"t":{t}}}"#);
        let status = http_post(&mut conn, &path, a.admin_key.as_deref(), &body)?;
        if status != 200 {
            return Err(io::Error::other(format!("publish answered {status}")));
        }
    }
    Ok(total)
}

/// Sleeps until the `i`th publish is due (`rate` per second from `t0`)
/// and returns its intended time in nanoseconds since `start`: the
/// timestamp the message carries, so latency counts from the schedule,
/// not from when the publisher got round to it.
fn wait_for_slot(t0: Instant, i: u64, rate: u64, start: Instant) -> u64 {
    let intended = t0 + Duration::from_secs_f64(i as f64 / rate as f64);
    if let Some(wait) = intended.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
    intended.duration_since(start).as_nanos() as u64
}

/// Like [`publish_loop`], over one WebSocket connection to /ws: each
/// publish is a `publish` message without an id (no ack traffic), except
/// the last, whose ack confirms that the server accepted them (an `error`
/// reply fails the run).
fn publish_ws_loop(a: &FanoutArgs, start: Instant, total: u64) -> io::Result<u64> {
    let mut conn = StdTcpStream::connect(a.server)?;
    conn.set_nodelay(true)?;
    conn.set_read_timeout(Some(Duration::from_secs(20)))?;
    conn.write_all(&upgrade_request("/ws", a.server))?;
    let mut rx = BytesMut::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(p) = rx.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        let k = conn.read(&mut buf)?;
        if k == 0 {
            return Err(io::Error::other("publisher: closed during the upgrade"));
        }
        rx.extend_from_slice(&buf[..k]);
    };
    if !rx.starts_with(b"HTTP/1.1 101") {
        return Err(io::Error::other("publisher: upgrade refused"));
    }
    let _ = rx.split_to(head_end);
    let channel = serde_json::to_string(&a.channel).map_err(io::Error::other)?;
    let mut frame = BytesMut::new();
    let t0 = Instant::now();
    for i in 0..total {
        let t = wait_for_slot(t0, i, a.rate, start);
        let id = if i + 1 == total { r#","id":1"# } else { "" };
        let text =
            format!(r#"{{"type":"publish","channel":{channel},"data":{{"s":{i},"t":{t}}}{id}}}"#);
        frame.clear();
        encode_masked_frame(
            &mut frame,
            true,
            OpCode::Text,
            [5, 6, 7, 8],
            text.as_bytes(),
        );
        conn.write_all(&frame)?;
    }
    // Wait for the last publish's ack.
    let mut decoder = FrameDecoder::new(Role::Client, 1 << 24);
    loop {
        while let Some(f) = decoder
            .decode(&mut rx)
            .map_err(|e| io::Error::other(e.to_string()))?
        {
            if f.opcode != OpCode::Text {
                continue;
            }
            let text = String::from_utf8_lossy(&f.payload);
            if text.contains(r#""ack""#) {
                return Ok(total);
            }
            if text.contains(r#""error""#) {
                return Err(io::Error::other(format!("publisher: server said {text}")));
            }
        }
        let k = conn.read(&mut buf)?;
        if k == 0 {
            return Err(io::Error::other("publisher: connection closed"));
        }
        rx.extend_from_slice(&buf[..k]);
    }
}

/// One echo client connection.
struct EchoConn {
    stream: TcpStream,
    rx: BytesMut,
    tx: Vec<u8>,
    upgraded: bool,
    decoder: FrameDecoder,
}

impl EchoConn {
    /// Writes what is buffered; keeps the rest for the next writable event.
    fn flush(&mut self) -> io::Result<()> {
        while !self.tx.is_empty() {
            match self.stream.write(&self.tx) {
                Ok(n) => {
                    self.tx.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Queues one masked frame (written by the next [`EchoConn::flush`]).
    fn queue(&mut self, payload: &[u8], key: [u8; 4]) {
        let mut frame = BytesMut::with_capacity(payload.len() + 14);
        encode_masked_frame(&mut frame, true, OpCode::Binary, key, payload);
        self.tx.extend_from_slice(&frame);
    }

    fn send(&mut self, payload: &[u8], key: [u8; 4]) -> io::Result<()> {
        self.queue(payload, key);
        self.flush()
    }
}

fn echo(a: &EchoArgs, throughput: bool) -> io::Result<()> {
    let n = a.connections.max(1);
    let size = a.size.max(8);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        a.path, a.server
    );
    let mut conns = Vec::with_capacity(n);
    for i in 0..n {
        let src = a.first_source as usize + i / 20_000;
        let src = u8::try_from(src).map_err(|_| io::Error::other("too many source addresses"))?;
        let mut stream = connect_from(src, a.server)?;
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(EchoConn {
            stream,
            rx: BytesMut::new(),
            tx: request.clone().into_bytes(),
            upgraded: false,
            decoder: FrameDecoder::new(Role::Client, 1 << 24),
        });
    }
    let start = Instant::now();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    let mut upgraded = 0;
    let mut read_buf = vec![0u8; 256 * 1024];
    let mut payload = vec![0x42u8; size];
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
                    let t = next_send.duration_since(start).as_nanos() as u64;
                    payload[..8].copy_from_slice(&t.to_le_bytes());
                    conns[next_conn].send(&payload, [7, 7, 7, 7])?;
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
            loop {
                match c.stream.read(&mut read_buf) {
                    Ok(0) => return Err(io::Error::other(format!("connection {i} closed"))),
                    Ok(k) => c.rx.extend_from_slice(&read_buf[..k]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if !c.upgraded {
                let Some(p) = c.rx.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                if !c.rx.starts_with(b"HTTP/1.1 101") {
                    return Err(io::Error::other("upgrade refused"));
                }
                let _ = c.rx.split_to(p + 4);
                c.upgraded = true;
                upgraded += 1;
            }
            let mut echoed = 0;
            while let Some(f) = c
                .decoder
                .decode(&mut c.rx)
                .map_err(|e| io::Error::other(e.to_string()))?
            {
                if f.opcode != OpCode::Binary || f.payload.len() < 8 {
                    continue;
                }
                let at = Instant::now().duration_since(start).as_nanos() as u64;
                let t = u64::from_le_bytes(f.payload[..8].try_into().expect("8 bytes"));
                hist.saturating_record(at.saturating_sub(t));
                received += 1;
                echoed += 1;
            }
            if throughput {
                if let Some(since) = sending_since {
                    if Instant::now() < since + a.duration {
                        // One write for all the replacements of this read.
                        for _ in 0..echoed {
                            let t = Instant::now().duration_since(start).as_nanos() as u64;
                            payload[..8].copy_from_slice(&t.to_le_bytes());
                            c.queue(&payload, [9, 9, 9, 9]);
                            sent += 1;
                        }
                        c.flush()?;
                    }
                }
            }
        }
        if sending_since.is_none() && upgraded == n {
            cpu = Some(CpuMeter::start(a.server_pid)?);
            let now = Instant::now();
            sending_since = Some(now);
            next_send = now;
            if throughput {
                for c in conns.iter_mut() {
                    for _ in 0..a.in_flight.max(1) {
                        let t = now.duration_since(start).as_nanos() as u64;
                        payload[..8].copy_from_slice(&t.to_le_bytes());
                        c.queue(&payload, [9, 9, 9, 9]);
                        sent += 1;
                    }
                    c.flush()?;
                }
            }
        }
    }
    let cpu = cpu.expect("sending started").finish()?;
    let secs = a.duration.as_secs_f64();
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let mode = if throughput {
        "echo-throughput"
    } else {
        "echo-latency"
    };
    let rate = received as f64 / secs;
    if a.json {
        let j = serde_json::json!({
            "mode": mode, "connections": n, "size": size, "sent": sent, "received": received,
            "msgs_per_sec": rate, "mb_per_sec": rate * size as f64 / 1e6,
            "latency_us": {"p50": us(0.5), "p90": us(0.9), "p99": us(0.99), "p999": us(0.999),
                           "max": hist.max() as f64 / 1000.0},
        });
        println!("{}", with_cpu(j, &cpu, "msgs", received));
    } else {
        println!("{mode}: {n} connections, {size} B payload, {secs:.1} s");
        println!(
            "  {received} of {sent} echoed: {rate:.0} msgs/s, {:.1} MB/s",
            rate * size as f64 / 1e6
        );
        println!(
            "  latency p50 {:.0} µs  p90 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs  max {:.0} µs",
            us(0.5),
            us(0.9),
            us(0.99),
            us(0.999),
            hist.max() as f64 / 1000.0
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

fn upgrade_request(path: &str, server: SocketAddr) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    .into_bytes()
}

/// A handshake in progress.
struct Pending {
    stream: TcpStream,
    started: Instant,
    sent: bool,
    head: Vec<u8>,
}

fn connect_rate(a: &ConnectArgs) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let request = upgrade_request(&a.path, a.server);
    let mut slab: slab::Slab<Pending> = slab::Slab::new();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds");
    let mut started = 0usize;
    let mut ok = 0usize;
    let mut failures: std::collections::BTreeMap<String, usize> = Default::default();
    let cpu = CpuMeter::start(a.server_pid)?;
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
            let src = a.first_source as usize + started / a.per_source.max(1);
            let src =
                u8::try_from(src).map_err(|_| io::Error::other("too many source addresses"))?;
            started += 1;
            match connect_from(src, a.server) {
                Ok(mut stream) => {
                    let entry = slab.vacant_entry();
                    poll.registry().register(
                        &mut stream,
                        Token(entry.key()),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
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
                if done.is_none() && p.head.windows(4).any(|w| w == b"\r\n\r\n") {
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
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    if a.json {
        let j = serde_json::json!({"mode": "connect-rate", "ok": ok, "failures": failures,
            "handshakes_per_sec": rate,
            "latency_us": {"p50": us(0.5), "p99": us(0.99), "max": hist.max() as f64 / 1000.0}});
        println!("{}", with_cpu(j, &cpu, "handshakes", ok as u64));
    } else {
        println!(
            "connect-rate: {ok} handshakes in {secs:.2} s: {rate:.0}/s (concurrency {})",
            a.concurrency
        );
        println!(
            "  connect→101 p50 {:.0} µs  p99 {:.0} µs  max {:.0} µs",
            us(0.5),
            us(0.99),
            hist.max() as f64 / 1000.0
        );
        for (kind, n) in &failures {
            println!("  failed: {kind}: {n}");
        }
        print!("{}", cpu.line("handshakes", ok as u64));
    }
    Ok(())
}

fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS"))
}

fn idle(a: &IdleArgs) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(4096);
    let request = upgrade_request(&a.path, a.server);
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(a.pid)?;
    let cpu = CpuMeter::start(a.server_pid)?;
    let mut progress = Progress::new();
    let mut conns: Vec<(TcpStream, bool, Vec<u8>)> = Vec::with_capacity(a.connections);
    for i in 0..a.connections {
        let src = a.first_source as usize + i / a.per_source.max(1);
        let src = u8::try_from(src).map_err(|_| io::Error::other("too many source addresses"))?;
        let mut s = connect_from(src, a.server)?;
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push((s, false, Vec::new()));
    }
    let mut upgraded = 0;
    let mut buf = [0u8; 4096];
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
            let (s, sent, head) = &mut conns[ev.token().0];
            if ev.is_writable() && !*sent {
                if let Ok(n) = s.write(&request) {
                    *sent = n == request.len();
                }
            }
            if ev.is_readable() {
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return Err(io::Error::other("server closed an idle connection"));
                    }
                    let was = head.windows(4).any(|w| w == b"\r\n\r\n");
                    head.extend_from_slice(&buf[..n]);
                    if !was && head.windows(4).any(|w| w == b"\r\n\r\n") {
                        if !head.starts_with(b"HTTP/1.1 101") {
                            let status =
                                String::from_utf8_lossy(&head[..head.len().min(40)]).into_owned();
                            return Err(io::Error::other(format!("upgrade refused: {status}")));
                        }
                        upgraded += 1;
                    }
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
    if a.json {
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
