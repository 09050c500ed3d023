//! A private Redis for the cluster tests: `redis-server` on a free
//! loopback port, no persistence, killed (by its PID) on drop; and the
//! one-line skip when it is not installed.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{skip_unless_required, wait_until};

/// True if `redis-server` runs here; otherwise skips `test` (one line) or,
/// with `WSEDGE_REQUIRE_BROKERS=1`, fails it.
pub fn have_redis(test: &str) -> bool {
    let ok = runs("redis-server");
    if !ok {
        skip_unless_required(
            "WSEDGE_REQUIRE_BROKERS",
            test,
            "redis-server is not installed",
        );
    }
    ok
}

/// True if `binary --version` runs and succeeds.
fn runs(binary: &str) -> bool {
    Command::new(binary)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A broker process of a test: started, signalled and killed by its PID;
/// on drop continued (if stopped) and killed.
#[derive(Default)]
struct Daemon(Option<Child>);

impl Daemon {
    /// Runs `cmd` (output discarded); true once `ready` says so (within
    /// 5 s), else it is killed again.
    fn start(&mut self, mut cmd: Command, ready: impl Fn() -> bool) -> bool {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the broker starts");
        self.0 = Some(child);
        let up = wait_until(Duration::from_secs(5), ready);
        if !up {
            self.kill();
        }
        up
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.0 {
            let _ = Command::new("kill")
                .args([sig, &c.id().to_string()])
                .status();
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
    }
}

/// A private redis-server on a loopback port, killed (by its PID) on drop.
pub struct Redis {
    pub port: u16,
    process: Daemon,
}

impl Redis {
    pub fn start() -> Redis {
        for _ in 0..20 {
            let mut r = Redis {
                port: free_port(),
                process: Daemon::default(),
            };
            if r.spawn() {
                return r;
            }
        }
        panic!("no redis-server could start on a free port");
    }

    /// Starts it on its port; true once it answers PING.
    pub fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()]).args([
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        let port = self.port;
        self.process.start(cmd, || {
            cmd_at(port, &["PING"]).is_some_and(|r| r.contains("PONG"))
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn signal(&self, sig: &str) {
        self.process.signal(sig);
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// One command, its raw RESP reply (`None`: no answer within 2 s).
    pub fn cmd(&self, args: &[&str]) -> Option<String> {
        cmd_at(self.port, args)
    }

    /// How many connections subscribe to `subject`.
    pub fn numsub(&self, subject: &str) -> Option<u64> {
        let r = self.cmd(&["PUBSUB", "NUMSUB", subject])?;
        r.rsplit(':').next()?.trim().parse().ok()
    }
}

/// The nats-server binary, if installed (Debian puts it in /usr/sbin).
pub fn nats_binary(test: &str) -> Option<String> {
    let found = ["nats-server", "/usr/sbin/nats-server"]
        .into_iter()
        .find(|b| runs(b))
        .map(String::from);
    if found.is_none() {
        skip_unless_required(
            "WSEDGE_REQUIRE_BROKERS",
            test,
            "nats-server is not installed",
        );
    }
    found
}

/// A private nats-server on a loopback port with its monitoring port,
/// killed (by its PID) on drop.
pub struct Nats {
    pub port: u16,
    pub monitor: u16,
    binary: String,
    process: Daemon,
}

impl Nats {
    pub fn start(binary: &str) -> Nats {
        for _ in 0..20 {
            let mut n = Nats {
                port: free_port(),
                monitor: free_port(),
                binary: binary.into(),
                process: Daemon::default(),
            };
            if n.spawn() {
                return n;
            }
        }
        panic!("no nats-server could start on a free port");
    }

    /// Starts it on its ports; true once its monitor answers.
    pub fn spawn(&mut self) -> bool {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-m", &self.monitor.to_string()]);
        let monitor = self.monitor;
        self.process
            .start(cmd, || subscriptions_at(monitor).is_some())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn signal(&self, sig: &str) {
        self.process.signal(sig);
    }

    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Subscriptions the server holds (its /subsz), `None` if it does
    /// not answer.
    pub fn subscriptions(&self) -> Option<u64> {
        subscriptions_at(self.monitor)
    }
}

/// One Redis command to the server on `port`, its raw RESP reply (`None`:
/// no answer within 2 s).
fn cmd_at(port: u16, args: &[&str]) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).ok()?;
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// The nats-server with monitor port `monitor`: its subscriptions
/// (/subsz), `None` if it does not answer.
fn subscriptions_at(monitor: u16) -> Option<u64> {
    let mut s = TcpStream::connect(("127.0.0.1", monitor)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /subsz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let body = text.split_once("\r\n\r\n")?.1;
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v["num_subscriptions"].as_u64()
}

/// Runs `f` with the URL of a private redis-server, or skips `test` (one
/// line; a failure under `WSEDGE_REQUIRE_BROKERS=1`) when there is none.
pub fn on_redis(test: &str, f: impl FnOnce(&str)) {
    if have_redis(test) {
        let redis = Redis::start();
        f(&redis.url());
    }
}

/// [`on_redis`] with a private nats-server.
pub fn on_nats(test: &str, f: impl FnOnce(&str)) {
    if let Some(bin) = nats_binary(test) {
        let nats = Nats::start(&bin);
        f(&nats.url());
    }
}
