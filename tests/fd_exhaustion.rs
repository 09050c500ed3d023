//! Out of file descriptors: the server keeps running, counts the failed
//! accepts, and serves the waiting connections as soon as descriptors free
//! up (the listener is edge-triggered, so this needs an explicit retry).
//!
//! Event-based: every step waits (with a generous bound) for something the
//! server reports or sends — its stats log line, a `101` — and then
//! asserts on counts. Nothing is decided by how long a socket stayed quiet.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use common::*;

/// More connections than the server has descriptors for (`ulimit -n 48`).
const CONNECTIONS: usize = 60;

/// The bound on every wait: nothing here takes more than a few seconds on
/// a working server, so reaching it means the awaited event never came.
const BOUND: Duration = Duration::from_secs(20);

/// The server process; killed if the test fails before terminating it.
struct Server(std::process::Child);

impl Server {
    /// SIGTERM, then waits (bounded) for the exit.
    fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        assert!(
            wait_until(BOUND, || matches!(self.0.try_wait(), Ok(Some(_)))),
            "the server did not exit on SIGTERM"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The counts of one `stats` log line.
#[derive(Debug)]
struct StatsLine {
    open: u64,
    accepted: u64,
    upgraded: u64,
    accept_errors: u64,
}

fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|t| t.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
}

impl StatsLine {
    fn parse(line: &str) -> Option<StatsLine> {
        if !line.contains(" stats ") {
            return None;
        }
        Some(StatsLine {
            open: field(line, "open")?,
            accepted: field(line, "accepted")?,
            upgraded: field(line, "upgraded")?,
            accept_errors: field(line, "accept_errors")?,
        })
    }
}

/// The next stats line of the log, or a panic at `deadline`.
fn next_stats(log: &Receiver<String>, deadline: Instant, waiting_for: &str) -> StatsLine {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) => {
                if let Some(s) = StatsLine::parse(&line) {
                    return s;
                }
            }
            Err(RecvTimeoutError::Timeout) => panic!("no stats line showed {waiting_for}"),
            Err(RecvTimeoutError::Disconnected) => {
                panic!("server exited while waiting for {waiting_for}")
            }
        }
    }
}

/// A socket that sent the upgrade request, and what it has read so far.
struct Pending {
    s: TcpStream,
    head: Vec<u8>,
}

impl Pending {
    fn start(port: u16) -> Pending {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(UPGRADE.as_bytes()).unwrap();
        Pending {
            s,
            head: Vec::new(),
        }
    }

    fn has_head(&self) -> bool {
        self.head.windows(4).any(|w| w == b"\r\n\r\n")
    }

    /// Reads what is there without waiting (the socket is non-blocking);
    /// true once the whole response head has arrived.
    fn poll_head(&mut self) -> bool {
        let mut buf = [0u8; 512];
        while !self.has_head() {
            match self.s.read(&mut buf) {
                Ok(0) => panic!("the server closed a connection it should hold"),
                Ok(n) => self.head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        true
    }

    /// Blocks until the whole response head has arrived or `deadline`.
    fn wait_head(&mut self, deadline: Instant) -> bool {
        self.s.set_nonblocking(false).unwrap();
        let mut buf = [0u8; 512];
        while !self.has_head() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.s.set_read_timeout(Some(left)).unwrap();
            match self.s.read(&mut buf) {
                Ok(0) => return false,
                Ok(n) => self.head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    fn is_101(&self) -> bool {
        self.has_head() && self.head.starts_with(b"HTTP/1.1 101")
    }
}

#[test]
fn waiting_connections_are_served_once_descriptors_free_up() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bin = env!("CARGO_BIN_EXE_wsedge");
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 48 && exec {bin} serve --listen 127.0.0.1:{port} --cores 1 --admin off --max-attempts-per-ip 0 --stats-interval 1s"
        ))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The log, line by line, read in the background so the server never
    // blocks on a full pipe; the reader ends when the server exits.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let server = Server(child);
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + BOUND;
    loop {
        match log.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains("listening") => break,
            Ok(_) => {}
            Err(e) => panic!("no listening line: {e}"),
        }
    }

    let mut socks: Vec<Pending> = (0..CONNECTIONS).map(|_| Pending::start(port)).collect();

    // How many connections the server holds once it is out of
    // descriptors, from its own counts. A stats line with accept_errors > 0
    // says accept() has failed: every descriptor is in use, and from then
    // on no connection can be accepted until one of the server's closes —
    // none of ours closes, and the server closes none of them (no deadline
    // is near). So the first later line that shows every accepted
    // connection upgraded gives the final number of connections served.
    // (A later line rather than the same one: the counters are read one
    // by one while the core writes them, so the line that first shows the
    // error may have read `accepted` just before the last accept.)
    let deadline = Instant::now() + BOUND;
    let mut out_of_descriptors = false;
    let held = loop {
        let s = next_stats(
            &log,
            deadline,
            "the server out of descriptors with its connections upgraded",
        );
        if out_of_descriptors && s.accepted == s.upgraded && s.open == s.accepted {
            break s.accepted as usize;
        }
        out_of_descriptors |= s.accept_errors > 0;
    };
    assert!(
        held > 0 && held < CONNECTIONS,
        "the server holds some but not all connections: {held} of {CONNECTIONS}"
    );

    // Exactly that many sockets get their 101; wait (bounded) for all of
    // them. Which ones they are is up to the kernel's accept queue.
    for p in &socks {
        p.s.set_nonblocking(true).unwrap();
    }
    let mut served = 0;
    assert!(
        wait_until(BOUND, || {
            served = socks
                .iter_mut()
                .map(|p| p.poll_head())
                .filter(|&done| done)
                .count();
            served >= held
        }),
        "only {served} of the {held} connections the server holds got a response"
    );
    assert_eq!(served, held, "responses beyond the connections held");
    assert!(
        socks.iter().filter(|p| p.has_head()).all(Pending::is_101),
        "a held connection got something other than a 101"
    );

    // Free descriptors by closing the served ones; the rest must now be
    // accepted and upgraded without any new connection arriving.
    let mut waiting: Vec<Pending> = socks.into_iter().filter(|p| !p.has_head()).collect();
    assert_eq!(waiting.len(), CONNECTIONS - held);
    let deadline = Instant::now() + BOUND;
    let later = waiting
        .iter_mut()
        .map(|p| p.wait_head(deadline) && p.is_101())
        .filter(|&ok| ok)
        .count();
    assert_eq!(
        later,
        waiting.len(),
        "every waiting connection served once descriptors freed up"
    );

    // Close everything first so the shutdown has nothing to drain.
    drop(waiting);
    server.terminate();
}
