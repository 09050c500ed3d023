#!/usr/bin/env bash
# Side-by-side performance of wsedge and peer servers (PERF.md).
#
# Builds everything in release, then runs every scenario against wsedge and
# each peer alternately for ROUNDS rounds: server pinned to core 0 with one
# worker thread, the bundled client (wsedge-bench) pinned to core 1, same
# client for everyone. Writes medians and wsedge/peer ratios to
# target/perf/results.md (raw JSON lines in target/perf/raw.jsonl).
# Bounded: every run has a duration or a count and stops by itself; only
# processes this script started are stopped, by PID.
#
# Usage: scripts/perf.sh            (ROUNDS=3 DURATION=5s by default)
#        ROUNDS=5 DURATION=10s scripts/perf.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
OUT=target/perf
mkdir -p "$OUT"
: > "$OUT/raw.jsonl"

cargo build --release --bins
(cd benches/peers && cargo build --release)

BENCH=target/release/wsedge-bench
PORT=9300
SRC=20

start_server() { # name -> sets SERVER_PID
    local name=$1
    PORT=$((PORT + 1))
    case $name in
        wsedge) taskset -c 0 target/release/wsedge serve --listen 127.0.0.1:$PORT --cores 1 \
                    --admin off --max-attempts-per-ip 0 --ping-interval 10m 2>/dev/null & ;;
        tokio-tungstenite) taskset -c 0 benches/peers/target/release/peer-tokio-tungstenite \
                    --listen 127.0.0.1:$PORT 2>/dev/null & ;;
        fastwebsockets) taskset -c 0 benches/peers/target/release/peer-fastwebsockets \
                    --listen 127.0.0.1:$PORT 2>/dev/null & ;;
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

run() { # scenario server args...
    local scenario=$1 server=$2
    shift 2
    SRC=$((SRC + 1))
    if [ $SRC -gt 250 ]; then SRC=21; fi
    start_server "$server"
    local json
    if json=$(timeout 120 taskset -c 1 $BENCH "$@" --server 127.0.0.1:$PORT --first-source $SRC --json 2>/dev/null); then
        echo "{\"scenario\":\"$scenario\",\"server\":\"$server\",\"result\":$json}" >> "$OUT/raw.jsonl"
        echo "  $scenario / $server: done" >&2
    else
        echo "  $scenario / $server: FAILED" >&2
        echo "{\"scenario\":\"$scenario\",\"server\":\"$server\",\"result\":null}" >> "$OUT/raw.jsonl"
    fi
    stop_server
}

for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    for server in wsedge tokio-tungstenite fastwebsockets; do
        run "echo-throughput 32 B (100 conns x 8 in flight)" $server echo-throughput \
            --connections 100 --in-flight 8 --size 32 --duration "$DURATION"
        run "echo-throughput 16 KiB (10 conns x 4 in flight)" $server echo-throughput \
            --connections 10 --in-flight 4 --size 16384 --duration "$DURATION"
        run "echo-latency 32 B at 20k msgs/s (100 conns)" $server echo-latency \
            --connections 100 --rate 20000 --size 32 --duration "$DURATION"
        run "connect-rate (10k handshakes, 64 in flight)" $server connect-rate \
            --count 10000 --concurrency 64
    done
done

python3 - "$OUT/raw.jsonl" > "$OUT/results.md" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
servers = ["wsedge", "tokio-tungstenite", "fastwebsockets"]
scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
def metric(s, r):
    if r is None: return None
    if s.startswith("echo-throughput"): return r["msgs_per_sec"]
    if s.startswith("echo-latency"): return r["latency_us"]["p50"], r["latency_us"]["p99"]
    if s.startswith("connect-rate"): return r["handshakes_per_sec"]
def med(vals):
    vals = [v for v in vals if v is not None]
    if not vals: return None
    if isinstance(vals[0], tuple):
        return tuple(statistics.median(x) for x in zip(*vals))
    return statistics.median(vals)
print("| scenario | " + " | ".join(servers) + " | wsedge / tokio-tungstenite | wsedge / fastwebsockets |")
print("|---" * (len(servers) + 3) + "|")
for s in scenarios:
    m = {sv: med([metric(s, r["result"]) for r in rows if r["scenario"] == s and r["server"] == sv]) for sv in servers}
    def fmt(v):
        if v is None: return "failed"
        if isinstance(v, tuple): return "p50 %.0f µs, p99 %.0f µs" % v
        return "%.0f/s" % v
    def ratio(a, b):
        if a is None or b is None: return "—"
        if isinstance(a, tuple): return "p50 %.2f, p99 %.2f (lower is better)" % (a[0] / b[0], a[1] / b[1])
        return "%.2f" % (a / b)
    print(f"| {s} | " + " | ".join(fmt(m[sv]) for sv in servers)
          + f" | {ratio(m['wsedge'], m['tokio-tungstenite'])} | {ratio(m['wsedge'], m['fastwebsockets'])} |")
n = len(rows) // max(len(scenarios) * len(servers), 1)
print(f"\nMedians of {n} rounds; raw results in target/perf/raw.jsonl.")
PY
cat "$OUT/results.md"
