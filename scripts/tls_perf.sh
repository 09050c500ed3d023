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
# OpenSSL (PERF.md "TLS" says how) as a mode, `uws-tls`, with the same
# certificate (its KEY and CERT variables). TT=/path/to/peer-tokio-tungstenite
# (benches/peers, built with `cargo build --release` there) adds
# tokio-tungstenite behind tokio-rustls, `tt-tls`, with the same
# certificate. MODES="tls uws-tls tt-tls" picks the modes (default: plain,
# tls and whichever peers are given; `tt-plain` is the peer without TLS).
# The mode order rotates round by round.
#
# Scenarios (SCENARIOS, default "idle echo32 echo16k connect"): the three
# above, and `connect`: handshakes per second, `wsedge-bench connect-rate`,
# COUNT (20000) connections, 64 in flight, each a TCP connect, a full TLS
# handshake (no resumption), the upgrade and the client's close after the
# 101. With TLS the client verifies the certificate and the server's
# handshake signature on the first connection only (`--tls-verify-once`,
# so its own ECDSA verifies do not cap the rate; VERIFY_ONCE=0 verifies
# every handshake).
#
# The load average is printed at the start of every round and recorded in
# the raw lines; the summary gives, per scenario and mode, the median and
# the runs, the server's and the client's CPU use (share of one core:
# near 1.0 for the server means the run was server-bound), and the
# ratios of wsedge TLS to every other mode.
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
#        UWS_SSL=/tmp/uws-ssl/EchoServer TT=benches/peers/target/release/peer-tokio-tungstenite \
#            MODES="tls uws-tls tt-tls" SCENARIOS="echo32 echo16k connect" ROUNDS=5 scripts/tls_perf.sh
set -euo pipefail
cd "$(dirname "$0")/.."

WSEDGE=${1:-target/release/wsedge}
BENCH=${2:-target/release/wsedge-bench}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
IDLE=${IDLE:-10000}
COUNT=${COUNT:-20000}
VERIFY_ONCE=${VERIFY_ONCE:-1}
SCENARIOS=${SCENARIOS:-idle echo32 echo16k connect}
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

if [ -n "${MODES:-}" ]; then
    read -r -a MODES <<< "$MODES"
else
    MODES=(plain tls)
    if [ -n "${UWS_SSL:-}" ]; then MODES+=(uws-tls); fi
    if [ -n "${TT:-}" ]; then MODES+=(tt-tls); fi
fi

start_server() { # $1 = plain|tls|uws-tls|tt-tls|tt-plain
    PORT=$((PORT + 1))
    local tls=()
    case "$1" in
        uws-tls)
            PORT=$PORT KEY="$DIR/key.pem" CERT="$DIR/cert.pem" taskset -c 0 "$UWS_SSL" >/dev/null 2>&1 &
            ;;
        tt-tls | tt-plain)
            if [ "$1" = tt-tls ]; then tls=(--tls-cert "$DIR/cert.pem" --tls-key "$DIR/key.pem"); fi
            taskset -c 0 "$TT" --listen "127.0.0.1:$PORT" "${tls[@]}" 2>/dev/null &
            ;;
        plain | tls)
            if [ "$1" = tls ]; then tls=(--tls-cert "$DIR/cert.pem" --tls-key "$DIR/key.pem"); fi
            taskset -c 0 "$WSEDGE" serve --listen "127.0.0.1:$PORT" --admin off --cores 1 \
                --max-attempts-per-ip 0 --ping-interval 10m --handshake-timeout 60s \
                "${tls[@]}" 2>/dev/null &
            ;;
        *)
            echo "unknown mode $1" >&2
            exit 1
            ;;
    esac
    SERVER=$!
    for _ in $(seq 100); do
        if (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return; fi
        sleep 0.05
    done
    echo "$1 server did not start" >&2
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
    case "$mode" in
        plain | tt-plain) ;;
        *)
            tls=(--tls-ca "$DIR/ca.pem")
            if [ "$scenario" = connect ] && [ "$VERIFY_ONCE" = 1 ]; then tls+=(--tls-verify-once); fi
            ;;
    esac
    start_server "$mode"
    SRC=$((SRC + 2))
    # PID in the arguments: the server just started.
    local args=("${@//PID/$SERVER}")
    local line
    line=$(timeout 180 taskset -c 1 "$BENCH" "${args[@]}" --server "127.0.0.1:$PORT" \
        --first-source "$SRC" --json "${tls[@]}" 2>/dev/null | tail -1) || line='{}'
    stop_server
    echo "{\"scenario\":\"$scenario\",\"mode\":\"$mode\",\"load\":\"$LOAD\",\"result\":$line}" >> "$OUT"
    echo "$scenario $mode: $line" >&2
}

LOAD=
for round in $(seq "$ROUNDS"); do
    LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
    echo "round $round (load average $LOAD)" >&2
    # Rotate the order of the modes each round.
    shift_by=$(((round - 1) % ${#MODES[@]}))
    order=("${MODES[@]:shift_by}" "${MODES[@]:0:shift_by}")
    for scenario in $SCENARIOS; do
        for mode in "${order[@]}"; do
            case "$scenario" in
                idle) run idle "$mode" idle --connections "$IDLE" --hold 1s --pid PID --server-pid PID ;;
                echo32) run echo32 "$mode" echo-throughput --connections 100 --in-flight 8 --size 32 \
                    --duration "$DURATION" --server-pid PID ;;
                echo16k) run echo16k "$mode" echo-throughput --connections 10 --in-flight 4 --size 16384 \
                    --duration "$DURATION" --server-pid PID ;;
                connect) run connect "$mode" connect-rate --count "$COUNT" --concurrency 64 \
                    --server-pid PID ;;
                *) echo "unknown scenario $scenario" >&2; exit 1 ;;
            esac
        done
    done
done
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

python3 - "$OUT" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
modes = list(dict.fromkeys(r["mode"] for r in rows))
def runs(scenario, mode, key):
    return [r["result"].get(key) for r in rows
            if r["scenario"] == scenario and r["mode"] == mode
            and r["result"].get(key) is not None]
def med(scenario, mode, key):
    vals = runs(scenario, mode, key)
    return statistics.median(vals) if vals else None
def fmt(v):
    return "-" if v is None else f"{v:.3g}" if abs(v) < 10 else f"{v:.0f}"
KEYS = {"idle": ["bytes_per_connection"],
        "echo32": ["msgs_per_server_cpu_sec", "msgs_per_sec", "server_cpu_util", "client_cpu_util"],
        "echo16k": ["msgs_per_server_cpu_sec", "msgs_per_sec", "server_cpu_util", "client_cpu_util"],
        "connect": ["handshakes_per_server_cpu_sec", "handshakes_per_sec", "server_cpu_util",
                    "client_cpu_util"]}
scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
for scenario in scenarios:
    for key in KEYS[scenario]:
        print(f"{scenario} {key}")
        for mode in modes:
            vals = runs(scenario, mode, key)
            if not vals:
                continue
            m = statistics.median(vals)
            line = f"  {mode:9} median {fmt(m):>9}  runs {', '.join(fmt(v) for v in vals)}"
            t = med(scenario, "tls", key)
            if mode != "tls" and t and m and not key.endswith("_util"):
                line += f"  tls/{mode} {t / m:.3f}"
            print(line)
for scenario in scenarios:
    for mode in modes:
        failed = [r["result"].get("failures") for r in rows
                  if r["scenario"] == scenario and r["mode"] == mode and r["result"].get("failures")]
        tls = {r["result"].get("tls") for r in rows
               if r["scenario"] == scenario and r["mode"] == mode and r["result"].get("tls")}
        if failed or tls:
            print(f"{scenario} {mode}: negotiated {sorted(tls)} failures {failed}")
loads = sorted({r.get("load") for r in rows if r.get("load")})
print("load averages at round starts:", "; ".join(loads))
EOF
