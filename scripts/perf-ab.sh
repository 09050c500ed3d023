#!/usr/bin/env bash
# A/B throughput of two wsedge builds (PERF.md "Fault isolation"): the same
# client against each server, alternating run by run, server pinned to
# core 0 (`--cores 1`), client (wsedge-bench, --server-pid) pinned to core
# 1. Scenarios: echo 32 B (100 connections x 8 in flight) and fan-out
# (1000 subscribers, FANOUT_RATE publishes/s over /ws, default 1000: about
# a million deliveries/s, near what one core of this machine delivers). Prints per scenario and
# build the median of msgs/s (deliveries/s) and of the rate per
# server-CPU-second, and the ratio B/A. Raw JSON lines: target/perf-ab.jsonl.
# Bounded: every run has a duration and a timeout; only the servers this
# script started are stopped, by PID.
#
# Usage: scripts/perf-ab.sh A_WSEDGE B_WSEDGE [BENCH]
#        ROUNDS=5 DURATION=5s scripts/perf-ab.sh old/wsedge target/release/wsedge
set -euo pipefail
cd "$(dirname "$0")/.."

A=$1
B=$2
BENCH=${3:-target/release/wsedge-bench}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
FANOUT_RATE=${FANOUT_RATE:-1000}
OUT=target/perf-ab.jsonl
: > "$OUT"
PORT=9400
SRC=20

run() { # round build bin scenario args...
    local round=$1 build=$2 bin=$3 scenario=$4
    shift 4
    PORT=$((PORT + 1))
    SRC=$((SRC + 1))
    if [ $SRC -gt 250 ]; then SRC=21; fi
    taskset -c 0 "$bin" serve --listen 127.0.0.1:$PORT --cores 1 --admin off \
        --max-attempts-per-ip 0 --drain-window 0s --ping-interval 10m \
        --dev-client-publish 2>/dev/null &
    local pid=$!
    for _ in $(seq 50); do
        if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then break; fi
        sleep 0.1
    done
    local json
    if json=$(timeout 120 taskset -c 1 "$BENCH" "$@" --server 127.0.0.1:$PORT \
            --first-source $SRC --server-pid "$pid" --json 2>/dev/null); then
        echo "{\"round\":$round,\"build\":\"$build\",\"scenario\":\"$scenario\",\"result\":$json}" >> "$OUT"
    else
        echo "  $scenario / $build: FAILED" >&2
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    # Alternate which build goes first.
    if [ $((round % 2)) -eq 1 ]; then order=("A $A" "B $B"); else order=("B $B" "A $A"); fi
    for entry in "${order[@]}"; do
        read -r build bin <<< "$entry"
        run "$round" "$build" "$bin" echo echo-throughput \
            --connections 100 --in-flight 8 --size 32 --duration "$DURATION"
        run "$round" "$build" "$bin" fanout fanout \
            --subscribers 1000 --rate "$FANOUT_RATE" --duration "$DURATION" --publish-via ws --channel bench
    done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$OUT" "$LOAD_START" "$LOAD_END" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"load average at start {sys.argv[2]}, at end {sys.argv[3]}")
keys = {"echo": ("msgs_per_sec", "msgs_per_server_cpu_sec"),
        "fanout": ("deliveries_per_sec", "deliveries_per_server_cpu_sec")}
print("| scenario | build | runs | rate (median) | per server-CPU-second (median) | server CPU (median) |")
print("|---|---|---|---|---|---|")
med = {}
for sc, (rate, eff) in keys.items():
    for b in ("A", "B"):
        rs = [r["result"] for r in rows if r["scenario"] == sc and r["build"] == b]
        if not rs:
            continue
        m = (statistics.median(x[rate] for x in rs),
             statistics.median(x[eff] for x in rs if x.get(eff)),
             statistics.median(x["server_cpu_util"] for x in rs if x.get("server_cpu_util") is not None))
        med[(sc, b)] = m
        runs = " / ".join(f"{x[eff] / 1e3:.0f}k" for x in rs if x.get(eff))
        print(f"| {sc} | {b} | {runs} | {m[0]:,.0f} | {m[1]:,.0f} | {100 * m[2]:.0f} % |")
for sc in keys:
    if (sc, "A") in med and (sc, "B") in med:
        a, b = med[(sc, "A")], med[(sc, "B")]
        print(f"{sc}: B/A rate {b[0] / a[0]:.3f}, per server-CPU-second {b[1] / a[1]:.3f}")
PY
