#!/usr/bin/env bash
# Cross-node fan-out (PERF.md "Cluster: cross-node fan-out"): a private
# redis-server and three wsedge nodes (one core each) on loopback; three
# wsedge-bench fanout clients at once, each with SUBS subscribers on its own
# channel on node 1, 2 and 3, all publishing through node 1's admin API at
# RATE publishes/s. Node 1's channel is same-node, the others cross the
# broker. Also reports the broker's CPU time and its bytes in and out per
# publish, and the same with a channel that no node subscribes to (what a
# publish costs the broker when no other node has a subscriber).
# Bounded: every run has a duration; only processes this script started
# are stopped, by PID.
#
# Usage: scripts/perf_cluster.sh     (SUBS=3334 RATE=100 DURATION=10s BUS=redis)
#        BUS=nats scripts/perf_cluster.sh   (nats-server instead; bytes from its /varz)
set -euo pipefail
cd "$(dirname "$0")/.."
SUBS=${SUBS:-3334}
RATE=${RATE:-100}
DURATION=${DURATION:-10s}
BUS=${BUS:-redis}
OUT=target/perf-cluster-$BUS
mkdir -p "$OUT"
cargo build --release --bins
BIN=target/release/wsedge
BENCH=target/release/wsedge-bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

RPORT=$(free_port)
if [ "$BUS" = nats ]; then
    MPORT=$(free_port)
    NATS=$(command -v nats-server || echo /usr/sbin/nats-server)
    "$NATS" -a 127.0.0.1 -p "$RPORT" -m "$MPORT" >"$OUT/nats.log" 2>&1 &
    RPID=$!; pids+=("$RPID")
    for _ in $(seq 50); do curl -sf "http://127.0.0.1:$MPORT/varz" >/dev/null && break; sleep 0.1; done
    URL="nats://127.0.0.1:$RPORT"
else
    redis-server --port "$RPORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
    RPID=$!; pids+=("$RPID")
    for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
    URL="redis://127.0.0.1:$RPORT"
fi
declare -a WS ADMIN
for n in 1 2 3; do
    WS[$n]=127.0.0.1:$(free_port); ADMIN[$n]=127.0.0.1:$(free_port)
    "$BIN" serve --listen "${WS[$n]}" --admin "${ADMIN[$n]}" --cores 1 --broker "$URL" \
        --node-id "$n" --max-attempts-per-ip 0 --log-level warn >"$OUT/node$n.log" 2>&1 &
    pids+=("$!")
done
for n in 1 2 3; do
    for _ in $(seq 100); do curl -sf "http://${ADMIN[$n]}/readyz" | grep -q '^ready' && break; sleep 0.1; done
done

cpu_ticks() { awk '{print $14+$15}' "/proc/$RPID/stat"; }
net() {
    if [ "$BUS" = nats ]; then
        curl -s "http://127.0.0.1:$MPORT/varz" | python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["in_bytes"], v["out_bytes"])'
    else
        redis-cli -p "$RPORT" info stats | tr -d '\r' | awk -F: '/^total_net_input_bytes|^total_net_output_bytes/{printf "%s ", $2}'
    fi
}

# Broker cost of a publish nobody else subscribes to.
read -r IN0 OUT0 <<<"$(net)"
for i in $(seq 200); do curl -s -o /dev/null -X POST -H 'Content-Type: application/json' \
    --data '{"seq":1,"pad":"xxxxxxxxxxxxxxxxxxxxxxxx"}' "http://${ADMIN[1]}/api/channels/nobody/publish"; done
read -r IN1 OUT1 <<<"$(net)"
echo "no subscriber elsewhere: broker in $(( (IN1-IN0)/200 )) B/publish, out $(( (OUT1-OUT0)/200 )) B/publish" | tee "$OUT/results.txt"

T0=$(cpu_ticks); read -r IN0 OUT0 <<<"$(net)"
for n in 1 2 3; do
    "$BENCH" fanout --json --first-source $((n+1)) --server "${WS[$n]}" --admin "${ADMIN[1]}" --subscribers "$SUBS" --rate "$RATE" \
        --duration "$DURATION" --channel "bench$n" >"$OUT/bench$n.json" 2>"$OUT/bench$n.log" &
    bp[$n]=$!
done
for n in 1 2 3; do wait "${bp[$n]}" || echo "bench $n failed" >&2; done
T1=$(cpu_ticks); read -r IN1 OUT1 <<<"$(net)"
HZ=$(getconf CLK_TCK)
echo "broker CPU: $(( (T1-T0)*1000/HZ )) ms over the three runs; bytes in $((IN1-IN0)), out $((OUT1-OUT0))" | tee -a "$OUT/results.txt"
for n in 1 2 3; do echo "node $n subscribers (publisher on node 1): $(cat "$OUT/bench$n.json")" | tee -a "$OUT/results.txt"; done
for n in 1 2 3; do echo "node $n: $(curl -s "http://${ADMIN[$n]}/metrics" | grep '^wsedge_cluster_\(forwarded\|received\|not_forwarded\)' | tr '\n' ' ')" | tee -a "$OUT/results.txt"; done
