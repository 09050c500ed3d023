#!/usr/bin/env bash
# A/B throughput of two wsedge builds (PERF.md "Fault isolation"): the same
# client against each server, alternating run by run, server pinned to
# core 0 (`--cores 1`), client (wsedge-bench, --server-pid) pinned to core
# 1. Scenarios: echo 32 B (100 connections x 8 in flight) and fan-out
# (1000 subscribers, FANOUT_RATE publishes/s over /ws, default 1000: about
# a million deliveries/s, near what one core of this machine delivers). Prints per scenario and
# build the median of msgs/s (deliveries/s) and of the rate per
# server-CPU-second, and the ratio B/A. Raw JSON lines: target/perf-ab.jsonl.
#
# INSTR=1 counts instead of timing: each server runs under valgrind
# (cachegrind, no cache simulation) and the script reports the server's
# user-space instructions per echoed message and per delivery (fan-out at
# 20 publishes/s there), from cachegrind's total and the counters the
# server logs at exit. Deterministic to a fraction of a percent, so it
# shows differences a noisy machine hides in the timings; it does not see
# the kernel (most of the CPU per message).
#
# Bounded: every run has a duration and a timeout; only the servers this
# script started are stopped, by PID.
#
# Usage: scripts/perf-ab.sh A_WSEDGE B_WSEDGE [BENCH]
#        ROUNDS=5 DURATION=5s scripts/perf-ab.sh old/wsedge target/release/wsedge
#        INSTR=1 ROUNDS=2 scripts/perf-ab.sh old/wsedge target/release/wsedge
set -euo pipefail
cd "$(dirname "$0")/.."

A=$1
B=$2
BENCH=${3:-target/release/wsedge-bench}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
INSTR=${INSTR:-0}
FANOUT_RATE=${FANOUT_RATE:-1000}
if [ "$INSTR" = 1 ]; then FANOUT_RATE=20; fi
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
    local wrap=() log=/dev/null cg=target/perf-ab.cg.out
    if [ "$INSTR" = 1 ]; then
        wrap=(valgrind --tool=cachegrind --cache-sim=no "--cachegrind-out-file=$cg")
        log=target/perf-ab.server.log
    fi
    taskset -c 0 "${wrap[@]}" "$bin" serve --listen 127.0.0.1:$PORT --cores 1 --admin off \
        --max-attempts-per-ip 0 --drain-window 0s --ping-interval 10m \
        --dev-client-publish 2>"$log" &
    local pid=$!
    for _ in $(seq 100); do
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
    if [ "$INSTR" = 1 ]; then
        # The exit line of the server's log has its counters.
        local ir stats
        ir=$(awk '/^summary:/ {print $2}' "$cg")
        stats=$(grep 'stopped; stats' "$log" | tail -1)
        echo "{\"round\":$round,\"build\":\"$build\",\"scenario\":\"$scenario\",\"instr\":{\"ir\":$ir,\"msgs_in\":$(echo "$stats" | grep -o 'msgs_in=[0-9]*' | cut -d= -f2),\"deliveries\":$(echo "$stats" | grep -o 'deliveries=[0-9]*' | cut -d= -f2)}}" >> "$OUT"
    fi
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    # Alternate which build goes first.
    if [ $((round % 2)) -eq 1 ]; then order=("A $A" "B $B"); else order=("B $B" "A $A"); fi
    for entry in "${order[@]}"; do
        read -r build bin <<< "$entry"
        if [ "$INSTR" = 1 ]; then
            run "$round" "$build" "$bin" echo echo-throughput \
                --connections 100 --in-flight 8 --size 32 --duration "$DURATION"
            run "$round" "$build" "$bin" fanout fanout \
                --subscribers 1000 --rate "$FANOUT_RATE" --duration "$DURATION" --publish-via ws --channel bench
            continue
        fi
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
instr = [r for r in rows if "instr" in r]
if instr:
    print("| scenario | build | instructions per message (runs) | median |")
    print("|---|---|---|---|")
    med = {}
    for sc, per in (("echo", "msgs_in"), ("fanout", "deliveries")):
        for b in ("A", "B"):
            xs = [r["instr"]["ir"] / r["instr"][per] for r in instr
                  if r["scenario"] == sc and r["build"] == b and r["instr"][per]]
            if xs:
                med[(sc, b)] = statistics.median(xs)
                print(f"| {sc} (per {per}) | {b} | {' / '.join(f'{x:.1f}' for x in xs)} | {med[(sc, b)]:.1f} |")
    for sc in ("echo", "fanout"):
        if (sc, "A") in med and (sc, "B") in med:
            a, b = med[(sc, "A")], med[(sc, "B")]
            print(f"{sc}: B - A {b - a:+.1f} instructions per message, B/A {b / a:.3f}")
    sys.exit(0)
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
