#!/usr/bin/env bash
# Side-by-side performance of wsedge and peer servers (PERF.md).
#
# Builds everything in release, then runs every scenario against wsedge and
# each peer alternately for ROUNDS rounds (the echo-latency scenario for
# LAT_ROUNDS rounds): server pinned to core 0 with one worker thread, the
# bundled client (wsedge-bench) pinned to core 1, same client for everyone.
# The client reads the server's CPU time from /proc/PID/stat
# (--server-pid), so rates are also reported per server-CPU-second.
# Writes medians and wsedge/peer ratios to target/perf/results.md, raw JSON
# lines to target/perf/raw.jsonl and a chart to target/perf/chart.svg.
# Bounded: every run has a duration or a count and a timeout; only
# processes this script started are stopped, by PID.
#
# Usage: scripts/perf.sh            (ROUNDS=3 LAT_ROUNDS=5 DURATION=3s by default)
#        ROUNDS=5 DURATION=10s scripts/perf.sh
#        UWS_ECHO=/path/EchoServer UWS_HUB=/path/HubLite scripts/perf.sh
#
# uWebSockets is included only when UWS_ECHO (its examples/EchoServer, port
# from the PORT environment variable) and/or UWS_HUB (a hub-lite server on
# /ws, for the fanout rows) point at binaries built by hand; PERF.md says
# how. Nothing here builds or fetches it.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
LAT_ROUNDS=${LAT_ROUNDS:-5}
DURATION=${DURATION:-3s}
FANOUT_SUBS=${FANOUT_SUBS:-1000}
FANOUT_RATE=${FANOUT_RATE:-200}
OUT=target/perf
mkdir -p "$OUT"
: > "$OUT/raw.jsonl"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

cargo build --release --bins
(cd benches/peers && cargo build --release)

BENCH=target/release/wsedge-bench
PEERS=benches/peers/target/release
PORT=9300
SRC=20
SERVERS=(wsedge tokio-tungstenite fastwebsockets)
if [ -n "${UWS_ECHO:-}${UWS_HUB:-}" ]; then SERVERS+=(uWebSockets); fi

start_server() { # name kind(echo|hub) -> sets SERVER_PID, or returns 2 if not available
    local name=$1 kind=$2
    PORT=$((PORT + 1))
    case $name in
        wsedge) taskset -c 0 target/release/wsedge serve --listen 127.0.0.1:$PORT --cores 1 \
                    --admin off --max-attempts-per-ip 0 --drain-window 0s --ping-interval 10m \
                    --dev-client-publish 2>/dev/null & ;;
        tokio-tungstenite) taskset -c 0 $PEERS/peer-tokio-tungstenite --listen 127.0.0.1:$PORT 2>/dev/null & ;;
        fastwebsockets) taskset -c 0 $PEERS/peer-fastwebsockets --listen 127.0.0.1:$PORT 2>/dev/null & ;;
        uWebSockets)
            local bin=${UWS_ECHO:-}
            if [ "$kind" = hub ]; then bin=${UWS_HUB:-}; fi
            if [ -z "$bin" ]; then return 2; fi
            PORT=$PORT taskset -c 0 "$bin" >/dev/null 2>&1 & ;;
    esac
    SERVER_PID=$!
    for _ in $(seq 50); do
        if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "server $name did not start" >&2
    return 1
}

stop_server() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
}

run() { # round scenario server kind args...
    local round=$1 scenario=$2 server=$3 kind=$4
    shift 4
    SRC=$((SRC + 1))
    if [ $SRC -gt 250 ]; then SRC=21; fi
    local rc=0
    start_server "$server" "$kind" || rc=$?
    if [ $rc -eq 2 ]; then return 0; fi
    local json
    local args=("${@//@SERVER_PID/$SERVER_PID}")
    if [ $rc -eq 0 ] && json=$(timeout 120 taskset -c 1 $BENCH "${args[@]}" --server 127.0.0.1:$PORT \
            --first-source $SRC --server-pid "$SERVER_PID" --json 2>/dev/null); then
        echo "{\"round\":$round,\"scenario\":\"$scenario\",\"server\":\"$server\",\"result\":$json}" >> "$OUT/raw.jsonl"
        echo "  $scenario / $server: done" >&2
    else
        echo "  $scenario / $server: FAILED" >&2
        echo "{\"round\":$round,\"scenario\":\"$scenario\",\"server\":\"$server\",\"result\":null}" >> "$OUT/raw.jsonl"
    fi
    stop_server
}

TOTAL=$(( ROUNDS > LAT_ROUNDS ? ROUNDS : LAT_ROUNDS ))
for round in $(seq "$TOTAL"); do
    echo "round $round of $TOTAL" >&2
    for server in "${SERVERS[@]}"; do
        if [ "$round" -le "$ROUNDS" ]; then
            run "$round" "echo-throughput 32 B (100 conns x 8 in flight)" $server echo echo-throughput \
                --connections 100 --in-flight 8 --size 32 --duration "$DURATION"
            run "$round" "echo-throughput 16 KiB (10 conns x 4 in flight)" $server echo echo-throughput \
                --connections 10 --in-flight 4 --size 16384 --duration "$DURATION"
        fi
        if [ "$round" -le "$LAT_ROUNDS" ]; then
            run "$round" "echo-latency 32 B at 20k msgs/s (100 conns)" $server echo echo-latency \
                --connections 100 --rate 20000 --size 32 --duration "$DURATION"
        fi
        if [ "$round" -le "$ROUNDS" ]; then
            run "$round" "connect-rate (10k handshakes, 64 in flight)" $server echo connect-rate \
                --count 10000 --concurrency 64
            run "$round" "idle memory (5k connections)" $server echo idle \
                --connections 5000 --pid "@SERVER_PID" --hold 1s
            run "$round" "fanout $FANOUT_SUBS subscribers, $FANOUT_RATE publishes/s over /ws" $server hub fanout \
                --subscribers "$FANOUT_SUBS" --rate "$FANOUT_RATE" --duration "$DURATION" \
                --publish-via ws --channel bench
        fi
    done
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$OUT/raw.jsonl" "$LOAD_START" "$LOAD_END" "${SERVERS[@]}" > "$OUT/results.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
load_start, load_end = sys.argv[2], sys.argv[3]
servers = sys.argv[4:]
peers = servers[1:]
scenarios = list(dict.fromkeys(r["scenario"] for r in rows))

def get(r, *path):
    for k in path:
        if r is None: return None
        r = r.get(k)
    return r

def med(s, sv, *path):
    vals = [get(r["result"], *path) for r in rows if r["scenario"] == s and r["server"] == sv]
    vals = [v for v in vals if v is not None]
    return (statistics.median(vals), len(vals)) if vals else (None, 0)

def fmt_rate(v, unit="/s"):
    if v is None: return "—"
    if v >= 1e6: return "%.2f M%s" % (v / 1e6, unit)
    if v >= 1e3: return "%.0f k%s" % (v / 1e3, unit)
    return "%.0f%s" % (v, unit)

def fmt_us(v):
    if v is None: return "—"
    return "%.0f µs" % v if v < 10000 else "%.1f ms" % (v / 1000)

def ratio(a, b):
    if a is None or b is None or b == 0: return "—"
    return "%.2f" % (a / b) if a / b >= 0.1 else "%.4f" % (a / b)

def kind(s):
    return s.split(" ")[0]

print("### Side by side (medians)\n")
print("| scenario | " + " | ".join(servers) + " | " + " | ".join("wsedge / " + p for p in peers) + " |")
print("|---" * (1 + len(servers) + len(peers)) + "|")
for s in scenarios:
    k = kind(s)
    if k == "echo-throughput":
        m = {sv: med(s, sv, "msgs_per_sec")[0] for sv in servers}
        print(f"| {s} | " + " | ".join(fmt_rate(m[sv]) for sv in servers) + " | "
              + " | ".join(ratio(m["wsedge"], m[p]) for p in peers) + " |")
    elif k == "idle":
        m = {sv: med(s, sv, "bytes_per_connection")[0] for sv in servers}
        print(f"| {s}: server RSS per connection | " + " | ".join("—" if m[sv] is None else "%.0f B" % m[sv] for sv in servers) + " | "
              + " | ".join(ratio(m["wsedge"], m[p]) + " (lower is better)" for p in peers) + " |")
    elif k == "connect-rate":
        m = {sv: med(s, sv, "handshakes_per_sec")[0] for sv in servers}
        print(f"| {s} | " + " | ".join(fmt_rate(m[sv]) for sv in servers) + " | "
              + " | ".join(ratio(m["wsedge"], m[p]) for p in peers) + " |")
    else:
        key = "latency_us" if k == "echo-latency" else "delivery_us"
        p50 = {sv: med(s, sv, key, "p50")[0] for sv in servers}
        p99 = {sv: med(s, sv, key, "p99")[0] for sv in servers}
        what = "latency" if k == "echo-latency" else "delivery latency (deliveries/s)"
        rate = {sv: med(s, sv, "deliveries_per_sec")[0] for sv in servers}
        extra = lambda sv: "" if k == "echo-latency" or rate[sv] is None else f" ({fmt_rate(rate[sv])})"
        print(f"| {s}: {what} | " + " | ".join(f"p50 {fmt_us(p50[sv])}, p99 {fmt_us(p99[sv])}{extra(sv)}" for sv in servers)
              + " | " + " | ".join(f"p50 {ratio(p50['wsedge'], p50[p])}, p99 {ratio(p99['wsedge'], p99[p])} (lower is better)" for p in peers) + " |")

print("\n### Per server-CPU-second (medians; in brackets the server's CPU use, % of core 0)\n")
print("| scenario | " + " | ".join(servers) + " | " + " | ".join("wsedge / " + p for p in peers) + " |")
print("|---" * (1 + len(servers) + len(peers)) + "|")
for s in scenarios:
    k = kind(s)
    key = {"echo-throughput": "msgs_per_server_cpu_sec", "fanout": "deliveries_per_server_cpu_sec",
           "connect-rate": "handshakes_per_server_cpu_sec"}.get(k)
    if key is None: continue
    m = {sv: med(s, sv, key)[0] for sv in servers}
    u = {sv: med(s, sv, "server_cpu_util")[0] for sv in servers}
    cell = lambda sv: "—" if m[sv] is None else f"{fmt_rate(m[sv], '')} ({100 * (u[sv] or 0):.0f} %)"
    print(f"| {s} | " + " | ".join(cell(sv) for sv in servers) + " | "
          + " | ".join(ratio(m["wsedge"], m[p]) for p in peers) + " |")

print("\n### Client CPU (core 1, % over the measured interval, medians)\n")
print("| scenario | " + " | ".join(servers) + " |")
print("|---" * (1 + len(servers)) + "|")
for s in scenarios:
    u = {sv: med(s, sv, "client_cpu_util")[0] for sv in servers}
    print(f"| {s} | " + " | ".join("—" if u[sv] is None else f"{100 * u[sv]:.0f} %" for sv in servers) + " |")

fails = [f"{r['scenario']} / {r['server']} (round {r['round']})" for r in rows if r["result"] is None]
counts = sorted({sum(1 for r in rows if r["scenario"] == s and r["server"] == sv and r["result"])
                 for s in scenarios for sv in servers} - {0})
print(f"\nRuns per cell: {', '.join(map(str, counts))}; raw results in target/perf/raw.jsonl, chart in target/perf/chart.svg.")
print(f"Load average (1/5/15 min) at the start: {load_start}; at the end: {load_end} (2 cores; anything else running distorts the figures).")
if fails:
    print("Failed runs: " + "; ".join(fails))
PY
$PEERS/perf-chart "$OUT/raw.jsonl" "$OUT/chart.svg" || echo "chart failed" >&2
cat "$OUT/results.md"
