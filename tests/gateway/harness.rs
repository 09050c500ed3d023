//! What the gateway-mode end-to-end tests (tests/gateway_boto3.rs,
//! tests/gateway_django.rs) share: the Python to run, `wsedge serve` in
//! gateway mode, child processes killed by PID on drop, their output read
//! with a deadline, a WebSocket client that sends the headers a browser
//! would, and a tiny recording HTTP backend.
//!
//! Included with `#[path = "gateway/harness.rs"] mod harness;` next to
//! `mod common;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{skip_unless_required, ServerProcess};

pub const REQUIRE_VAR: &str = "WSEDGE_REQUIRE_INTEROP";

/// The access key pair wsedge verifies and the clients sign with.
pub const ACCESS_KEY_ID: &str = "AKIDWSEDGEGATEWAYTEST";
pub const SECRET_ACCESS_KEY: &str = "wsedge-gateway-test-secret-0123456789";

/// The Python of the tests: `WSEDGE_PYTHON` (set by scripts/test), else
/// the venv scripts/test makes (target/test-venv), else `python3`.
pub fn python() -> String {
    if let Ok(p) = std::env::var("WSEDGE_PYTHON") {
        return p;
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-venv/bin/python");
    if venv.exists() {
        return venv.display().to_string();
    }
    "python3".into()
}

/// The Python if it can import every one of `modules`; otherwise `None`
/// after [`skip_unless_required`] (which fails the test under
/// `WSEDGE_REQUIRE_INTEROP=1`).
pub fn python_with(test: &str, modules: &[&str]) -> Option<String> {
    let python = python();
    let imports = format!("import {}", modules.join(", "));
    let ok = Command::new(&python)
        .args(["-c", &imports])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Some(python)
    } else {
        skip_unless_required(REQUIRE_VAR, test, &format!("`{python}` cannot `{imports}`"));
        None
    }
}

/// A file under tests/gateway/.
pub fn gateway_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/gateway")
        .join(rel)
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "wsedge-{tag}-{}-{n}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port that was free a moment ago (for a child process that
/// takes its port as an argument).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The lines a child writes, collected by a thread: the ones not yet
/// taken arrive through [`Lines::next_line`], and all of them stay in
/// [`Lines::all`] for failure messages.
pub struct Lines {
    rx: Receiver<String>,
    all: Arc<Mutex<Vec<String>>>,
}

impl Lines {
    pub fn spawn(readers: Vec<Box<dyn Read + Send>>) -> Lines {
        let (tx, rx) = mpsc::channel();
        let all = Arc::new(Mutex::new(Vec::new()));
        for r in readers {
            let (tx, all) = (tx.clone(), all.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    all.lock().unwrap().push(line.clone());
                    let _ = tx.send(line);
                }
            });
        }
        Lines { rx, all }
    }

    /// The next line, or `None` when `limit` passed or the writer is gone.
    pub fn next_line(&self, limit: Duration) -> Option<String> {
        self.rx.recv_timeout(limit).ok()
    }

    /// The first line (from now on) that `pick` maps to `Some`, within
    /// `limit`.
    pub fn find<T>(&self, limit: Duration, mut pick: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let start = Instant::now();
        while let Some(left) = limit.checked_sub(start.elapsed()) {
            let line = self.next_line(left)?;
            if let Some(t) = pick(&line) {
                return Some(t);
            }
        }
        None
    }

    /// The last `n` lines written so far.
    pub fn tail(&self, n: usize) -> String {
        let all = self.all.lock().unwrap();
        all[all.len().saturating_sub(n)..].join("\n")
    }
}

/// A child process, killed (SIGKILL, by its PID) and reaped on drop.
pub struct Proc {
    pub child: Child,
    pub out: Lines,
}

impl Proc {
    /// Spawns `cmd` with stdout and stderr piped into one [`Lines`] (and
    /// no stdin).
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null());
        Self::spawn_as_is(cmd)
    }

    /// Like [`Proc::spawn`], with stdin a pipe, returned.
    pub fn spawn_with_stdin(mut cmd: Command) -> (Proc, std::process::ChildStdin) {
        cmd.stdin(Stdio::piped());
        let mut p = Self::spawn_as_is(cmd);
        let stdin = p.child.stdin.take().unwrap();
        (p, stdin)
    }

    fn spawn_as_is(mut cmd: Command) -> Proc {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let out = Lines::spawn(vec![
            Box::new(child.stdout.take().unwrap()),
            Box::new(child.stderr.take().unwrap()),
        ]);
        Proc { child, out }
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `wsedge serve` in gateway mode on free loopback ports (one core unless
/// `extra` says `--cores`, the admin listener on), with the test key pair in its environment; killed
/// on drop. Its log is kept for failure messages.
pub struct Wsedge {
    pub server: ServerProcess,
    pub log: Lines,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
}

impl Wsedge {
    pub fn start(extra: &[&str]) -> Wsedge {
        let mut args = vec![
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--max-attempts-per-ip",
            "0",
        ];
        if !extra.contains(&"--cores") {
            args.extend(["--cores", "1"]);
        }
        args.extend_from_slice(extra);
        let env = [
            ("WSEDGE_GATEWAY_ACCESS_KEY_ID", ACCESS_KEY_ID),
            ("WSEDGE_GATEWAY_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY),
        ];
        // A configuration the binary refuses fails here with its message
        // (ServerProcess would only say that it exited early).
        let dry = Command::new(env!("CARGO_BIN_EXE_wsedge"))
            .arg("serve")
            .args(&args)
            .arg("--dry-run")
            .envs(env)
            .output()
            .expect("the wsedge binary runs");
        assert!(
            dry.status.success(),
            "wsedge serve {} refuses its configuration:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&dry.stderr)
        );
        let mut server = ServerProcess::start_with_env(&args, &env);
        let log = Lines::spawn(vec![Box::new(server.stderr.take().unwrap())]);
        let addr = server.addr("addr");
        let admin = server.addr("admin");
        Wsedge {
            server,
            log,
            addr,
            admin,
        }
    }
}

impl Drop for Wsedge {
    fn drop(&mut self) {
        let _ = self.server.child.kill();
        let _ = self.server.child.wait();
    }
}

pub type Client = crate::common::Client;

/// Opens a WebSocket to `url` with extra request headers. Returns the
/// client, or the status and body of the refusal.
pub fn ws_connect(url: &str, headers: &[(&str, &str)]) -> Result<Client, (u16, String)> {
    use tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    let host = req.uri().authority().unwrap().as_str().to_string();
    let stream = TcpStream::connect(&host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(40)))
        .unwrap();
    match tungstenite::client(req, tungstenite::stream::MaybeTlsStream::Plain(stream)) {
        Ok((ws, resp)) => {
            assert_eq!(resp.status(), 101);
            Ok(ws)
        }
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => panic!("the upgrade to {url} failed: {e}"),
    }
}

/// Sets the client's read timeout.
pub fn set_timeout(ws: &Client, limit: Duration) {
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        s.set_read_timeout(Some(limit)).unwrap();
    }
}

/// What a client read next within `limit`.
#[derive(Debug, PartialEq)]
pub enum Got {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame (code), or the connection ended.
    Closed(Option<u16>),
    Nothing,
}

pub fn next_message(ws: &mut Client, limit: Duration) -> Got {
    use tungstenite::Message;
    let start = Instant::now();
    loop {
        let Some(left) = limit.checked_sub(start.elapsed()) else {
            return Got::Nothing;
        };
        set_timeout(ws, left.max(Duration::from_millis(1)));
        match ws.read() {
            Ok(Message::Text(t)) => return Got::Text(t.to_string()),
            Ok(Message::Binary(b)) => return Got::Binary(b.to_vec()),
            Ok(Message::Close(frame)) => return Got::Closed(frame.map(|f| f.code.into())),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Got::Nothing;
            }
            Err(_) => return Got::Closed(None),
        }
    }
}

/// Ends the client's TCP connection without a close frame.
pub fn vanish(ws: Client) {
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = ws.get_ref() {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    drop(ws);
}

/// One request the backend received.
#[derive(Clone, Debug)]
pub struct BackendRequest {
    pub method: String,
    /// Path and query as sent.
    pub target: String,
    /// Header names lower-cased; a repeated header keeps its last value.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl BackendRequest {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    pub fn connection_id(&self) -> &str {
        self.header("connectionid").unwrap_or("")
    }
}

/// A tiny HTTP/1.1 backend on a free loopback port: records every request
/// and answers `200 {}` (keep-alive) to all of them. Its accept thread
/// stops when it is dropped.
pub struct Backend {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<BackendRequest>>>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn start() -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (rec, stopped) = (requests.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let rec = rec.clone();
                        std::thread::spawn(move || serve_backend_conn(stream, rec));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Backend {
            addr,
            requests,
            stop,
        }
    }

    /// `http://ADDR/ws/`, the layout of the Django package.
    pub fn base_url(&self) -> String {
        format!("http://{}/ws/", self.addr)
    }

    pub fn requests(&self) -> Vec<BackendRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The requests to `path` for connection `id`.
    pub fn calls(&self, path: &str, id: &str) -> Vec<BackendRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.path() == path && r.connection_id() == id)
            .collect()
    }
}

fn serve_backend_conn(stream: TcpStream, rec: Arc<Mutex<Vec<BackendRequest>>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, target) = (method.to_string(), target.to_string());
        let mut headers = BTreeMap::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let close = headers
            .get("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        rec.lock().unwrap().push(BackendRequest {
            method,
            target,
            headers,
            body,
        });
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n{}\r\n{{}}",
            if close { "Connection: close\r\n" } else { "" }
        );
        if w.write_all(resp.as_bytes()).is_err() || close {
            return;
        }
    }
}

/// Whether `s` is an ISO 8601 UTC time with milliseconds and `Z`, as API
/// Gateway writes them (`2026-11-30T19:51:53.123Z`).
pub fn is_iso8601_millis_z(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b[i].is_ascii_digit());
    b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
}

/// Whether `id` looks like an API Gateway connection id: 16 URL-safe
/// base64 characters (`R0oXAdfD0kwCH6w=`).
pub fn is_connection_id(id: &str) -> bool {
    id.len() == 16
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'='))
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
