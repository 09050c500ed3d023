#!/usr/bin/env bash
# TLS against plain, the same build (PERF.md "TLS"): server pinned to core
# 0 (`--cores 1`), client (wsedge-bench) pinned to core 1, alternating
# plain / TLS run by run. Scenarios: idle memory (N idle upgraded
# connections, server RSS growth per connection), echo-throughput 32 B
# (100 connections x 8 in flight) and 16 KiB (10 x 4), rates per
# server-CPU-second. Prints the median per scenario and mode and the
# TLS / plain ratio. Raw JSON lines: target/tls-perf.jsonl.
#
# UWS_SSL=/path/to/EchoServer adds uWebSockets' EchoServer built with
# OpenSSL (PERF.md "TLS" says how) as a third mode, `uws-tls`, with the
# same certificate (its KEY and CERT variables), and the wsedge TLS /
# uWS TLS ratio.
#
# The certificate: a test CA and a P-256 leaf for localhost made here
# with openssl, in a temporary directory removed at exit.
#
# Bounded: every run has a duration and a timeout; only the servers this
# script started are stopped, by PID.
#
# Usage: scripts/tls_perf.sh [WSEDGE] [BENCH]
#        ROUNDS=3 DURATION=5s IDLE=10000 scripts/tls_perf.sh
#        UWS_SSL=/tmp/uws-ssl/EchoServer scripts/tls_perf.sh
set -euo pipefail
cd "$(dirname "$0")/.."

WSEDGE=${1:-target/release/wsedge}
BENCH=${2:-target/release/wsedge-bench}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
IDLE=${IDLE:-10000}
OUT=target/tls-perf.jsonl
: > "$OUT"
PORT=9500
SRC=40

DIR=$(mktemp -d)
SERVER=
cleanup() {
    if [ -n "$SERVER" ]; then kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; fi
    rm -rf "$DIR"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj /CN=wsedge-perf-ca -keyout "$DIR/ca.key" -out "$DIR/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -subj /CN=localhost -keyout "$DIR/key.pem" -out "$DIR/leaf.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > "$DIR/ext"
openssl x509 -req -in "$DIR/leaf.csr" -CA "$DIR/ca.pem" -CAkey "$DIR/ca.key" \
    -CAcreateserial -days 2 -extfile "$DIR/ext" -out "$DIR/cert.pem" 2>/dev/null

MODES=(plain tls)
if [ -n "${UWS_SSL:-}" ]; then MODES+=(uws-tls); fi

start_server() { # $1 = plain|tls|uws-tls
    PORT=$((PORT + 1))
    if [ "$1" = uws-tls ]; then
        PORT=$PORT KEY="$DIR/key.pem" CERT="$DIR/cert.pem" taskset -c 0 "$UWS_SSL" >/dev/null 2>&1 &
        SERVER=$!
        for _ in $(seq 100); do
            if (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return; fi
            sleep 0.05
        done
        echo "uWS did not start" >&2
        exit 1
    fi
    local tls=()
    if [ "$1" = tls ]; then tls=(--tls-cert "$DIR/cert.pem" --tls-key "$DIR/key.pem"); fi
    taskset -c 0 "$WSEDGE" serve --listen "127.0.0.1:$PORT" --admin off --cores 1 \
        --max-attempts-per-ip 0 --ping-interval 10m --handshake-timeout 60s \
        "${tls[@]}" 2>/dev/null &
    SERVER=$!
    for _ in $(seq 100); do
        if (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return; fi
        sleep 0.05
    done
    echo "server did not start" >&2
    exit 1
}

stop_server() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=
}

run() { # $1 = scenario, $2 = mode, rest = bench args
    local scenario=$1 mode=$2
    shift 2
    local tls=()
    if [ "$mode" != plain ]; then tls=(--tls-ca "$DIR/ca.pem"); fi
    start_server "$mode"
    SRC=$((SRC + 2))
    # PID in the arguments: the server just started.
    local args=("${@//PID/$SERVER}")
    local line
    line=$(timeout 180 taskset -c 1 "$BENCH" "${args[@]}" --server "127.0.0.1:$PORT" \
        --first-source "$SRC" --json "${tls[@]}" 2>/dev/null | tail -1) || line='{}'
    stop_server
    echo "{\"scenario\":\"$scenario\",\"mode\":\"$mode\",\"result\":$line}" >> "$OUT"
    echo "$scenario $mode: $line" >&2
}

for round in $(seq "$ROUNDS"); do
    echo "round $round" >&2
    for mode in "${MODES[@]}"; do
        run idle "$mode" idle --connections "$IDLE" --hold 1s --pid PID --server-pid PID
    done
    for mode in "${MODES[@]}"; do
        run echo32 "$mode" echo-throughput --connections 100 --in-flight 8 --size 32 \
            --duration "$DURATION" --server-pid PID
    done
    for mode in "${MODES[@]}"; do
        run echo16k "$mode" echo-throughput --connections 10 --in-flight 4 --size 16384 \
            --duration "$DURATION" --server-pid PID
    done
done

python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(scenario, mode, key):
    vals = [r["result"].get(key) for r in rows
            if r["scenario"] == scenario and r["mode"] == mode and r["result"].get(key) is not None]
    return statistics.median(vals) if vals else None
for scenario, keys in [("idle", ["bytes_per_connection"]),
                       ("echo32", ["msgs_per_sec", "msgs_per_server_cpu_sec"]),
                       ("echo16k", ["msgs_per_sec", "msgs_per_server_cpu_sec"])]:
    for key in keys:
        p, t, u = (med(scenario, m, key) for m in ("plain", "tls", "uws-tls"))
        ratio = f"{t / p:.3f}" if p and t else "-"
        line = f"{scenario:8} {key:26} plain {p}  tls {t}  tls/plain {ratio}"
        if u:
            line += f"  uws-tls {u}  tls/uws-tls {t / u:.3f}"
        print(line)
EOF
