//! `GET /metrics`: every counter, gauge and latency histogram in the
//! Prometheus text exposition format (version 0.0.4).
//!
//! Owns: the metric names, their help texts and labels, and a small
//! writer for the format. A hand-written writer rather than the
//! `prometheus` or `prometheus-client` crates: those want to own the
//! counters (their own atomics and registries), while wsedge's counters
//! are single-writer cells of each core, read here once per scrape; the
//! format itself is a few lines (tested below).
//! Must not touch: the counters' cells or the cores (it reads snapshots
//! handed to it).

use std::fmt::Write;

use hdrhistogram::Histogram;

use crate::admission::Refusal;
use crate::conn::EndReason;
use crate::error::Rejection;
use crate::stats::{LatencyHistograms, Stats};

/// Everything one scrape reports, gathered by the admin plane.
pub struct Scrape<'a> {
    /// Per core, in core order.
    pub cores: &'a [Stats],
    pub latency: &'a [LatencyHistograms],
    /// Bytes queued for writing per core, when the cores answered.
    pub outbound_bytes: &'a [Option<u64>],
    pub channels: u64,
    pub users_online: u64,
    pub api_publishes: u64,
    pub api_sends: u64,
    /// Panics caught in the admin plane.
    pub admin_panics: u64,
    /// Admin answers by status, and connections turned away at the cap.
    pub admin_responses: &'a [(String, u64)],
    pub admin_connections_refused: u64,
    /// Admin connections whose TLS handshake failed or timed out.
    pub admin_tls_errors: u64,
    pub uptime_secs: f64,
    pub draining: bool,
    /// Gateway mode: the gateway's counters.
    pub gateway: Option<&'a crate::gateway::stats::Snapshot>,
    /// Clustered: the broker link's counters.
    pub cluster: Option<&'a crate::cluster::LinkStats>,
}

/// Bucket bounds of the latency histograms, in seconds.
const BUCKETS: [f64; 16] = [
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

/// Appends Prometheus text to a string.
pub struct PromWriter {
    out: String,
}

impl Default for PromWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PromWriter {
    pub fn new() -> Self {
        Self {
            out: String::with_capacity(16 * 1024),
        }
    }

    /// Starts a metric family: its `# HELP` and `# TYPE` lines.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample line.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                for c in v.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        if value.is_finite() && value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = writeln!(self.out, " {}", value as i64);
        } else {
            let _ = writeln!(self.out, " {value}");
        }
    }

    /// One family with one sample per core.
    fn per_core(
        &mut self,
        name: &str,
        kind: &str,
        help: &str,
        cores: &[Stats],
        f: fn(&Stats) -> u64,
    ) {
        self.family(name, kind, help);
        for (i, s) in cores.iter().enumerate() {
            self.sample(name, &[("core", &i.to_string())], f(s) as f64);
        }
    }

    /// One family with one sample per value of `label`.
    fn labelled<'a>(
        &mut self,
        name: &str,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.family(name, "counter", help);
        for (value, n) in samples {
            self.sample(name, &[(label, value)], n as f64);
        }
    }

    /// One family with a single unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The `_bucket`, `_sum` and `_count` lines of a histogram recorded in
    /// nanoseconds, reported in seconds.
    pub fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Histogram<u64>) {
        let bucket = format!("{name}_bucket");
        for le in BUCKETS {
            let ns = (le * 1e9) as u64;
            let n = if h.is_empty() {
                0
            } else {
                h.count_between(0, ns)
            };
            let le_text = le.to_string();
            let mut l = labels.to_vec();
            l.push(("le", &le_text));
            self.sample(&bucket, &l, n as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.sample(&bucket, &l, h.len() as f64);
        // hdrhistogram keeps no exact sum: the mean times the count is
        // exact to the histogram's 2 significant digits.
        let sum = h.mean() * h.len() as f64 / 1e9;
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, h.len() as f64);
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// The broker link's families (clustered only).
fn cluster(w: &mut PromWriter, c: &crate::cluster::LinkStats) {
    use std::sync::atomic::Ordering::Relaxed;
    w.single(
        "wsedge_cluster_link_up",
        "gauge",
        "1 while the broker link is connected, subscribed and answering probes, else 0 (degraded: only this node's connections are reached).",
        if c.is_up() { 1.0 } else { 0.0 },
    );
    w.single(
        "wsedge_cluster_forwarded_total",
        "counter",
        "Messages handed to the broker for other nodes.",
        c.forwarded.load(Relaxed) as f64,
    );
    w.labelled(
        "wsedge_cluster_not_forwarded_total",
        "Messages for other nodes dropped: the link was down, or its queue (cluster.queue_capacity) full.",
        "reason",
        [
            ("link_down", c.not_forwarded_down.load(Relaxed)),
            ("queue_full", c.not_forwarded_full.load(Relaxed)),
        ],
    );
    w.single(
        "wsedge_cluster_received_total",
        "counter",
        "Messages from other nodes delivered to this node's cores.",
        c.received.load(Relaxed) as f64,
    );
    w.single(
        "wsedge_cluster_reconnects_total",
        "counter",
        "Broker connections made again after a loss.",
        c.reconnects.load(Relaxed) as f64,
    );
    w.single(
        "wsedge_cluster_probe_failures_total",
        "counter",
        "Liveness probes that did not come back within cluster.probe_interval (each one drops and remakes the link).",
        c.probe_failures.load(Relaxed) as f64,
    );
    w.single(
        "wsedge_cluster_subscriptions",
        "gauge",
        "Broker subjects this node subscribes to (channels and users with local members, lingering ones).",
        c.subscriptions.load(Relaxed) as f64,
    );
    w.labelled(
        "wsedge_cluster_requests_total",
        "Operations on another node's connection (@connections, admin send and disconnect), by what became of them: sent; of those answered or timed_out (cluster.request_timeout); unavailable: not sent (link down, queue or pending table full); late: a reply that came after its asker gave up (dropped).",
        "outcome",
        [
            ("sent", c.requests_sent.load(Relaxed)),
            ("answered", c.requests_answered.load(Relaxed)),
            ("timed_out", c.requests_timed_out.load(Relaxed)),
            ("unavailable", c.requests_unavailable.load(Relaxed)),
            ("late", c.requests_late.load(Relaxed)),
        ],
    );
    w.labelled(
        "wsedge_cluster_requests_served_total",
        "Other nodes' requests on this node's connections: served (performed here) or refused (answered busy, too many at once).",
        "outcome",
        [
            ("served", c.requests_served.load(Relaxed)),
            ("refused", c.requests_refused.load(Relaxed)),
        ],
    );
}

/// The gateway's families (gateway mode only).
fn gateway(w: &mut PromWriter, g: &crate::gateway::stats::Snapshot) {
    let name = "wsedge_gateway_calls_total";
    w.family(
        name,
        "counter",
        "Backend calls, by route key and outcome (the HTTP status, timeout or unreachable).",
    );
    for (route, outcome, n) in &g.calls {
        w.sample(name, &[("route", route), ("outcome", outcome)], *n as f64);
    }
    w.family(
        "wsedge_gateway_call_seconds",
        "histogram",
        "Backend call latency, from sending the request to the last byte of the answer.",
    );
    w.histogram("wsedge_gateway_call_seconds", &[], &g.latency);
    w.single(
        "wsedge_gateway_connections",
        "gauge",
        "Gateway connections the backend accepted and that are still open (reachable through @connections).",
        g.connections as f64,
    );
    w.labelled(
        "wsedge_gateway_connects_total",
        "$connect outcomes: accepted (2xx) or refused (any other answer, a timeout, an unreachable backend).",
        "outcome",
        [("accepted", g.connects_accepted), ("refused", g.connects_refused)],
    );
    w.labelled(
        "wsedge_gateway_disconnects_total",
        "$disconnect outcomes: sent (answered), retried (each retry) and given up after gateway.disconnect_retry.",
        "outcome",
        [
            ("sent", g.disconnects_sent),
            ("retried", g.disconnect_retries),
            ("given_up", g.disconnects_given_up),
        ],
    );
    w.labelled(
        "wsedge_gateway_queue_full_total",
        "Events that found the gateway's queue (gateway.queue_capacity) full: connects refused 503, messages whose connection closed 1013, disconnects delayed on their core.",
        "event",
        [
            ("connect", g.connects_refused_full),
            ("message", g.messages_refused_full),
            ("disconnect", g.disconnects_delayed),
        ],
    );
    w.labelled(
        "wsedge_gateway_client_frames_total",
        "Frames the gateway sent clients: backend answers on two-way routes, Forbidden for a message no route takes.",
        "kind",
        [("reply", g.replies), ("forbidden", g.forbidden)],
    );
}

/// Renders one scrape.
pub fn render(s: &Scrape<'_>) -> String {
    let mut w = PromWriter::new();
    let mut total = Stats::default();
    for c in s.cores {
        total.merge(c);
    }
    w.per_core(
        "wsedge_connections_open",
        "gauge",
        "Sockets currently held, per core (handshaking, open or closing).",
        s.cores,
        |c| c.open,
    );
    w.per_core(
        "wsedge_connections_accepted_total",
        "counter",
        "TCP connections accepted, per core.",
        s.cores,
        |c| c.accepted,
    );
    w.per_core(
        "wsedge_connections_upgraded_total",
        "counter",
        "WebSocket upgrades completed, per core.",
        s.cores,
        |c| c.upgraded,
    );
    w.labelled(
        "wsedge_connections_closed_total",
        "Connections ended, by reason.",
        "reason",
        EndReason::ALL.iter().map(|&r| (r.name(), total.ended(r))),
    );
    w.single(
        "wsedge_ping_timeouts_total",
        "counter",
        "Connections dropped because the peer did not answer a ping in time.",
        total.ended(EndReason::PingTimeout) as f64,
    );
    w.single(
        "wsedge_idle_closes_total",
        "counter",
        "Connections closed (1001) for sending no data message within the idle timeout.",
        total.ended(EndReason::IdleTimeout) as f64,
    );
    w.labelled(
        "wsedge_handshake_refusals_total",
        "Upgrade requests refused, by reason (the HTTP status follows from it).",
        "reason",
        Rejection::ALL
            .iter()
            .map(|&e| (e.name(), total.handshake_failures(e))),
    );
    let refused = |r: Refusal| total.handshake_failures(r);
    w.labelled(
        "wsedge_token_failures_total",
        "Connection tokens refused, by kind.",
        "kind",
        [
            ("missing", refused(Refusal::TokenMissing)),
            ("malformed", refused(Refusal::TokenMalformed)),
            ("bad_signature", refused(Refusal::TokenBadSignature)),
            ("expired", refused(Refusal::TokenExpired)),
            ("replayed", refused(Refusal::TokenReplayed)),
            ("lifetime_too_long", refused(Refusal::TokenLifetimeTooLong)),
        ],
    );
    w.labelled(
        "wsedge_limit_refusals_total",
        "Connection attempts and clients stopped by a limit or quota, by kind.",
        "kind",
        [
            (
                "attempts_per_ip",
                refused(Refusal::TooManyAttempts { retry_after: 0 }),
            ),
            ("connections_per_ip", refused(Refusal::IpQuota)),
            ("connections_per_user", refused(Refusal::UserQuota)),
            ("connections_total", refused(Refusal::ServerFull)),
            ("rate_messages", total.throttled_msgs),
            ("rate_bytes", total.throttled_bytes),
        ],
    );
    w.single(
        "wsedge_forwarded_malformed_total",
        "counter",
        "Upgrades from a trusted proxy whose client-IP header could not be read; the proxy was taken as the client.",
        total.forwarded_malformed as f64,
    );
    w.single(
        "wsedge_compression_compressed_total",
        "counter",
        "Messages compressed for permessage-deflate (a published message sent compressed to many connections counts once when they share its parameters).",
        total.compressed as f64,
    );
    w.single(
        "wsedge_tls_handshakes_total",
        "counter",
        "TLS handshakes completed on the WebSocket listener.",
        total.tls_handshakes as f64,
    );
    w.single(
        "wsedge_tls_errors_total",
        "counter",
        "TLS connections closed for bad TLS input (not TLS, a refused or truncated handshake, a record that fails to decrypt).",
        total.tls_errors as f64,
    );
    w.single(
        "wsedge_accept_errors_total",
        "counter",
        "accept() failures (e.g. out of file descriptors).",
        total.accept_errors as f64,
    );
    w.per_core(
        "wsedge_messages_in_total",
        "counter",
        "Data messages received, per core.",
        s.cores,
        |c| c.messages_in,
    );
    w.per_core(
        "wsedge_messages_out_total",
        "counter",
        "Data messages queued for sending (echo, replies and deliveries), per core.",
        s.cores,
        |c| c.messages_out,
    );
    w.per_core(
        "wsedge_bytes_in_total",
        "counter",
        "Bytes read from sockets, per core.",
        s.cores,
        |c| c.bytes_in,
    );
    w.per_core(
        "wsedge_bytes_out_total",
        "counter",
        "Bytes written to sockets, per core.",
        s.cores,
        |c| c.bytes_out,
    );
    w.per_core(
        "wsedge_pings_sent_total",
        "counter",
        "Liveness pings sent, per core.",
        s.cores,
        |c| c.pings_sent,
    );
    w.family(
        "wsedge_publishes_total",
        "counter",
        "Publishes accepted, by source (client messages on /ws, or the admin API).",
    );
    w.sample("wsedge_publishes_total", &[("source", "client")], {
        // Cores count every publish they originate; API publishes reach
        // cores as deliveries, not publishes.
        total.publishes as f64
    });
    w.sample(
        "wsedge_publishes_total",
        &[("source", "api")],
        s.api_publishes as f64,
    );
    w.single(
        "wsedge_api_sends_total",
        "counter",
        "Direct sends to a user or a connection through the admin API.",
        s.api_sends as f64,
    );
    w.per_core(
        "wsedge_deliveries_total",
        "counter",
        "Frames queued to connections by fan-out or direct sends, per core.",
        s.cores,
        |c| c.deliveries,
    );
    w.labelled(
        "wsedge_dropped_total",
        "Deliveries not made, by reason (slow_consumer: over the pending-bytes limit; \
         not_open: the connection was gone; inbox_full: the core's inbox was full).",
        "reason",
        [
            ("slow_consumer", total.dropped_slow_consumer),
            ("not_open", total.dropped_not_open),
            ("inbox_full", total.dropped_inbox_full),
        ],
    );
    w.single(
        "wsedge_request_errors_total",
        "counter",
        "Client requests on /ws answered with an error frame.",
        total.request_errors as f64,
    );
    w.single(
        "wsedge_panics_total",
        "counter",
        "Panics caught: each closed one connection with 1011 (or dropped one inbox command \
         or accept on a core, or answered one admin request with 500); the rest kept being \
         served.",
        (total.panics + s.admin_panics) as f64,
    );
    w.labelled(
        "wsedge_admin_responses_total",
        "Admin plane answers by HTTP status (refusals included: 401 key, 403 Host/Origin, \
         408/413 body, 415 content type, 429/503 limits).",
        "status",
        s.admin_responses.iter().map(|(l, n)| (l.as_str(), *n)),
    );
    w.single(
        "wsedge_admin_connections_refused_total",
        "counter",
        "Admin connections answered 503 and closed at admin.max_connections.",
        s.admin_connections_refused as f64,
    );
    w.single(
        "wsedge_admin_tls_errors_total",
        "counter",
        "Admin connections closed because their TLS handshake failed or timed out (admin.tls).",
        s.admin_tls_errors as f64,
    );
    w.single(
        "wsedge_channels",
        "gauge",
        "Channels with at least one subscriber.",
        s.channels as f64,
    );
    w.single(
        "wsedge_users_online",
        "gauge",
        "Distinct users with at least one open connection.",
        s.users_online as f64,
    );
    w.single(
        "wsedge_subscriptions",
        "gauge",
        "Subscriptions held (connection × channel).",
        total.subscriptions as f64,
    );
    w.family(
        "wsedge_outbound_queue_bytes",
        "gauge",
        "Bytes queued for writing to sockets, per core.",
    );
    for (i, b) in s.outbound_bytes.iter().enumerate() {
        if let Some(b) = b {
            w.sample(
                "wsedge_outbound_queue_bytes",
                &[("core", &i.to_string())],
                *b as f64,
            );
        }
    }
    w.family(
        "wsedge_loop_iteration_seconds",
        "histogram",
        "Busy time of one event-loop iteration, per core.",
    );
    for (i, h) in s.latency.iter().enumerate() {
        w.histogram(
            "wsedge_loop_iteration_seconds",
            &[("core", &i.to_string())],
            &h.loop_iteration,
        );
    }
    let mut all = LatencyHistograms::default();
    for h in s.latency {
        all.merge(h);
    }
    w.family(
        "wsedge_publish_to_write_seconds",
        "histogram",
        "From a publish entering the server to the end of the loop iteration that wrote its \
         frames, per delivering core, all cores merged.",
    );
    w.histogram(
        "wsedge_publish_to_write_seconds",
        &[],
        &all.publish_to_write,
    );
    w.single(
        "wsedge_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        s.uptime_secs.floor(),
    );
    w.single(
        "wsedge_draining",
        "gauge",
        "1 while shutting down (readiness is false), else 0.",
        if s.draining { 1.0 } else { 0.0 },
    );
    if let Some(g) = s.gateway {
        gateway(&mut w, g);
    }
    if let Some(c) = s.cluster {
        cluster(&mut w, c);
    }
    w.family("wsedge_build_info", "gauge", "The running version.");
    w.sample(
        "wsedge_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_label_values_and_print_integers_plainly() {
        let mut w = PromWriter::new();
        w.family("x_total", "counter", "a \\ b\nc");
        w.sample("x_total", &[("a", "q\"\\\n"), ("b", "2")], 3.0);
        w.sample("y", &[], 0.25);
        assert_eq!(
            w.finish(),
            "# HELP x_total a \\\\ b\\nc\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"\\\\\\n\",b=\"2\"} 3\ny 0.25\n"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let mut h = Histogram::<u64>::new_with_max(60_000_000_000, 2).unwrap();
        h.record(3_000).unwrap(); // 3 µs
        h.record(40_000).unwrap(); // 40 µs
        h.record(2_000_000_000).unwrap(); // 2 s: only in +Inf
        let mut w = PromWriter::new();
        w.histogram("lat_seconds", &[("core", "0")], &h);
        let text = w.finish();
        let line = |le: &str| {
            let prefix = format!("lat_seconds_bucket{{core=\"0\",le=\"{le}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .unwrap_or_else(|| panic!("no bucket {le} in\n{text}"))
                .to_string()
        };
        assert_eq!(line("0.000005"), "1");
        assert_eq!(line("0.00001"), "1");
        assert_eq!(line("0.00005"), "2");
        assert_eq!(line("1"), "2");
        assert_eq!(line("+Inf"), "3");
        assert!(text.contains("lat_seconds_count{core=\"0\"} 3\n"), "{text}");
        let sum: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("lat_seconds_sum{core=\"0\"} "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 2.000043).abs() < 0.02, "{sum}");
    }

    #[test]
    fn render_sums_reasons_over_cores_and_keeps_per_core_gauges() {
        let mut a = Stats {
            open: 2,
            messages_in: 5,
            ..Stats::default()
        };
        a.ended[EndReason::PingTimeout.index()] = 1;
        let mut b = Stats {
            open: 1,
            panics: 2,
            ..Stats::default()
        };
        b.ended[EndReason::PingTimeout.index()] = 2;
        b.handshake_failures[Rejection::from(Refusal::TokenExpired).index()] = 4;
        a.handshake_failures[Rejection::from(Refusal::TokenLifetimeTooLong).index()] = 6;
        let lat = [LatencyHistograms::default(), LatencyHistograms::default()];
        let text = render(&Scrape {
            cores: &[a, b],
            latency: &lat,
            outbound_bytes: &[Some(10), None],
            channels: 3,
            users_online: 1,
            api_publishes: 7,
            api_sends: 0,
            admin_panics: 1,
            admin_responses: &[("403".to_string(), 2), ("200".to_string(), 5)],
            admin_connections_refused: 4,
            admin_tls_errors: 0,
            uptime_secs: 1.5,
            draining: false,
            gateway: None,
            cluster: None,
        });
        for want in [
            "wsedge_connections_open{core=\"0\"} 2\n",
            "wsedge_connections_open{core=\"1\"} 1\n",
            "wsedge_connections_closed_total{reason=\"ping_timeout\"} 3\n",
            "wsedge_ping_timeouts_total 3\n",
            "wsedge_token_failures_total{kind=\"expired\"} 4\n",
            "wsedge_token_failures_total{kind=\"lifetime_too_long\"} 6\n",
            "wsedge_handshake_refusals_total{reason=\"token_expired\"} 4\n",
            "wsedge_publishes_total{source=\"api\"} 7\n",
            "wsedge_outbound_queue_bytes{core=\"0\"} 10\n",
            "wsedge_channels 3\n",
            "wsedge_admin_responses_total{status=\"403\"} 2\n",
            "wsedge_admin_connections_refused_total 4\n",
            "wsedge_panics_total 3\n",
            "wsedge_messages_in_total{core=\"0\"} 5\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert!(!text.contains("wsedge_outbound_queue_bytes{core=\"1\"}"));
        // Every sample line belongs to a declared family.
        let families: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap())
            .collect();
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap();
            let base = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_sum"))
                .or_else(|| name.strip_suffix("_count"))
                .filter(|b| families.contains(b))
                .unwrap_or(name);
            assert!(families.contains(&base), "{name} has no # TYPE");
        }
    }
}
