//! Helpers shared by the integration tests: an in-process server on a free
//! loopback port with short deadlines, raw TCP helpers, and a tungstenite
//! client.
#![allow(dead_code)]

pub mod broker;
pub mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use wsedge::{Config, Server};

/// A config on 127.0.0.1:0 with `cores` cores and default deadlines.
pub fn config(cores: usize) -> Config {
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        cores,
        ..Config::default()
    };
    cfg.shutdown.drain_window = Duration::ZERO;
    cfg.shutdown.drain_timeout = Duration::from_secs(2);
    // Tests open many connections from 127.0.0.1 in a burst.
    cfg.admission.max_attempts_per_ip = 0;
    // Many servers run at once: no admin plane unless a test asks.
    cfg.admin.listen = None;
    cfg
}

pub fn start(cfg: Config) -> Server {
    Server::start(cfg).expect("server starts")
}

pub fn ws_url(server: &Server, path: &str) -> String {
    format!("ws://{}{}", server.local_addr(), path)
}

pub type Client = tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>;

/// A tungstenite client connected to `path`, with a read timeout so a
/// broken server fails the test instead of hanging it.
pub fn connect(server: &Server, path: &str) -> Client {
    let (ws, resp) = tungstenite::connect(ws_url(server, path)).expect("upgrade succeeds");
    assert_eq!(resp.status(), 101);
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    }
    ws
}

/// Sends raw bytes and reads until the server closes the connection or
/// `limit` passes; returns what was read.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(request).unwrap();
    read_to_close(&mut s, limit)
}

/// Reads until EOF (or an error such as a reset) or `limit`.
pub fn read_to_close(s: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let start = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while start.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    out
}

/// The status code of a raw HTTP response.
pub fn status_of(resp: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(resp);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

pub const UPGRADE: &str = "GET /echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
    Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A raw TCP socket that completed the upgrade to /echo (101 read).
pub fn raw_upgraded(addr: SocketAddr) -> TcpStream {
    raw_upgraded_to(addr, "/echo")
}

/// A raw TCP socket that completed the upgrade to `path` (101 read).
pub fn raw_upgraded_to(addr: SocketAddr, path: &str) -> TcpStream {
    raw_upgraded_with(addr, path, None).0
}

/// A raw socket upgraded to `path`, with the header line `extra`
/// (CRLF-terminated) added to the request if any; returns it and the
/// 101's head.
pub fn raw_upgraded_with(addr: SocketAddr, path: &str, extra: Option<&str>) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = UPGRADE.replace("/echo", path);
    if let Some(extra) = extra {
        req = req.replacen("\r\n\r\n", &format!("\r\n{extra}\r\n"), 1);
    }
    s.write_all(req.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert_eq!(status_of(&head), 101);
    (s, String::from_utf8(head).unwrap())
}

/// Polls `cond` every 10 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// A masked client frame.
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A minimal HTTP/1.1 client for the admin API: one request per
/// connection, returns (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    http_with(addr, method, path, body, &[])
}

/// Like [`http`], with extra header lines ("Name: value").
pub fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[&str],
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.unwrap_or("");
    // A loopback Host and, with a body, a JSON Content-Type: what the
    // admin plane asks of every caller (README "Admin API").
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty()
        && !headers
            .iter()
            .any(|h| h.to_ascii_lowercase().starts_with("content-type:"))
    {
        req.push_str("Content-Type: application/json\r\n");
    }
    for h in headers {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = status_of(&resp);
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// A config with the hub in dev mode (user from `?user=`, client publish
/// allowed) and the admin API on a free loopback port.
pub fn hub_config(cores: usize) -> Config {
    let mut cfg = config(cores);
    cfg.hub.dev_user_param = Some("user".into());
    cfg.hub.dev_client_publish = true;
    cfg.admin.listen = Some("127.0.0.1:0".parse().unwrap());
    cfg
}

/// Reads the next text message as JSON, answering pings on the way.
pub fn next_json(ws: &mut Client) -> serde_json::Value {
    loop {
        match ws.read().expect("message") {
            tungstenite::Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Sends a JSON request.
pub fn send_json(ws: &mut Client, v: serde_json::Value) {
    ws.send(tungstenite::Message::text(v.to_string())).unwrap();
}

/// Subscribes and waits for the ack.
pub fn subscribe(ws: &mut Client, channel: &str) {
    send_json(
        ws,
        serde_json::json!({"type":"subscribe","channel":channel,"id":1}),
    );
    assert_eq!(next_json(ws), serde_json::json!({"type":"ack","id":1}));
}

/// A `wsedge serve` process of the built binary.
pub struct ServerProcess {
    pub child: std::process::Child,
    /// Its "listening" log line (addresses as `addr=` and `admin=`).
    pub line: String,
    /// The rest of its log (until [`ServerProcess::drain_log`]).
    pub stderr: Option<std::io::BufReader<std::process::ChildStderr>>,
}

impl ServerProcess {
    /// Starts `wsedge serve ARGS` and waits for its "listening" line.
    pub fn start(args: &[&str]) -> ServerProcess {
        Self::start_with_env(args, &[])
    }

    /// Like [`ServerProcess::start`], with extra environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wsedge"))
            .arg("serve")
            .args(args)
            .envs(env.iter().copied())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("binary starts");
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening") {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "server exited early"
            );
        }
        ServerProcess {
            child,
            line,
            stderr: Some(stderr),
        }
    }

    /// An address from the listening line (`addr` or `admin`).
    pub fn addr(&self, field: &str) -> SocketAddr {
        let start = self
            .line
            .find(&format!("{field}="))
            .expect("field in log line")
            + field.len()
            + 1;
        let rest = &self.line[start..];
        rest.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// Keeps reading its log in the background so it never blocks on a
    /// full pipe.
    pub fn drain_log(&mut self) {
        use std::io::BufRead;
        if let Some(stderr) = self.stderr.take() {
            std::thread::spawn(move || for _ in stderr.lines() {});
        }
    }

    /// SIGTERM, then waits; returns the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

/// Connections on every core, `per_core` of them each, made
/// deterministic: SO_REUSEPORT hashes each new connection to a core, so
/// this opens them one at a time, reads from the per-core `upgraded`
/// counters which core took it, keeps it if that core still needs one and
/// closes it otherwise. Bounded: panics after `per_core * cores * 64`
/// attempts (the odds of that with a working hash are nil). `path(i)` is
/// the path of the `i`-th attempt (for distinct `?user=` values).
///
/// Returns the connections grouped by core index. When it returns, the
/// extra connections it closed are gone from the server's counters.
pub fn connect_on_every_core(
    server: &Server,
    per_core: usize,
    mut path: impl FnMut(usize) -> String,
) -> Vec<Vec<Client>> {
    place_on_every_core(server, per_core, |i| connect(server, &path(i)))
}

/// [`connect_on_every_core`] for any kind of connection: `open(i)` makes
/// the `i`-th attempt's connection, complete (upgraded) when it returns;
/// dropping it closes it.
pub fn place_on_every_core<T>(
    server: &Server,
    per_core: usize,
    mut open: impl FnMut(usize) -> T,
) -> Vec<Vec<T>> {
    let cores = server.cores().len();
    let upgraded =
        |server: &Server| -> Vec<u64> { server.core_stats().iter().map(|s| s.upgraded).collect() };
    let open_before = server.stats().open;
    let mut kept: Vec<Vec<T>> = (0..cores).map(|_| Vec::new()).collect();
    let mut closed = 0u64;
    let bound = per_core * cores * 64;
    for attempt in 0..bound {
        if kept.iter().all(|k| k.len() >= per_core) {
            break;
        }
        let before = upgraded(server);
        let ws = open(attempt);
        let mut core = None;
        assert!(
            wait_until(Duration::from_secs(10), || {
                let after = upgraded(server);
                core = (0..cores).find(|&c| after[c] > before[c]);
                core.is_some()
            }),
            "the upgrade of attempt {attempt} never showed in the per-core counters"
        );
        let core = core.unwrap();
        if kept[core].len() < per_core {
            kept[core].push(ws);
        } else {
            drop(ws);
            closed += 1;
        }
    }
    assert!(
        kept.iter().all(|k| k.len() >= per_core),
        "SO_REUSEPORT put none of {bound} connections on some core: {:?}",
        kept.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let want = open_before + (per_core * cores) as u64;
    assert!(
        wait_until(Duration::from_secs(10), || server.stats().open == want),
        "the {closed} extra connections were not closed"
    );
    kept
}

/// For a test that needs something outside Rust (a browser, a Python
/// package) that is not there: fails when `require_var=1` (the README's
/// test command and CI set it, so there a missing tool is a failure),
/// else prints one line saying the test was skipped and why, and returns.
/// The line goes straight to stderr, past the test harness's capture, so
/// it shows in a plain `cargo test`.
pub fn skip_unless_required(require_var: &str, test: &str, missing: &str) {
    if std::env::var(require_var).as_deref() == Ok("1") {
        panic!("{test}: {missing}, and {require_var}=1 requires it (scripts/test installs it)");
    }
    // Once per test binary, however many of its tests skip for it.
    static SAID: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let line = format!(
        "skipped: {test}: {missing} (scripts/test installs it; {require_var}=1 makes this a failure)"
    );
    let mut said = SAID.lock().unwrap_or_else(|e| e.into_inner());
    if !said.contains(&line) {
        let _ = writeln!(std::io::stderr(), "{line}");
        said.push(line);
    }
}
