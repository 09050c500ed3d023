//! Server and client CPU time over a mode's measured interval
//! (`--server-pid`), and the report fields it adds.
//!
//! Owns: reading utime + stime from /proc/PID/stat (the server's and the
//! client's own), and the CPU fields of the JSON report and the summary
//! line. Must not touch: when the interval starts and ends (the mode
//! decides) or anything else in the report.

use std::io;
use std::time::Instant;

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
pub struct CpuMeter {
    server_pid: Option<u32>,
    server_start: f64,
    client_start: f64,
    wall_start: Instant,
}

/// What a [`CpuMeter`] measured.
pub struct CpuUse {
    pub wall_secs: f64,
    /// `None` without `--server-pid`.
    pub server_secs: Option<f64>,
    client_secs: f64,
}

impl CpuMeter {
    pub fn start(server_pid: Option<u32>) -> io::Result<CpuMeter> {
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

    pub fn finish(&self) -> io::Result<CpuUse> {
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
    pub fn line(&self, what: &str, count: u64) -> String {
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
pub fn with_cpu(
    mut j: serde_json::Value,
    cpu: &CpuUse,
    what: &str,
    count: u64,
) -> serde_json::Value {
    if let Some(obj) = j.as_object_mut() {
        obj.extend(cpu.json(what, count));
    }
    j
}
