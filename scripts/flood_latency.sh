#!/bin/bash
# Latency cost of a flooding client for a well-behaved one on the same core
# (PERF.md). Server on core 0, both clients on core 1; 3 rounds; bounded.
set -u
cd "$(dirname "$0")/.."
B=./target/release/wsedge-bench
taskset -c 0 ./target/release/wsedge serve --listen 127.0.0.1:8092 --admin off --cores 1 --max-attempts-per-ip 0 --rate-msgs 1000 --rate-bytes 1000000 > /tmp/flood-server.log 2>&1 &
SP=$!
sleep 0.5
src=150
for r in 1 2 3; do
  src=$((src+1)); echo "quiet $r: $(taskset -c 1 $B echo-latency --server 127.0.0.1:8092 --connections 10 --rate 2000 --duration 4s --first-source $src --json)"
  src=$((src+1)); taskset -c 1 timeout 30 $B echo-throughput --server 127.0.0.1:8092 --connections 1 --in-flight 256 --size 16384 --duration 6s --first-source $src --json > /tmp/flooder.$r 2>&1 &
  FP=$!
  sleep 1
  src=$((src+1)); echo "flood $r: $(taskset -c 1 $B echo-latency --server 127.0.0.1:8092 --connections 10 --rate 2000 --duration 4s --first-source $src --json)"
  wait $FP; echo "flooder $r: $(cat /tmp/flooder.$r)"
done
grep -o "throttled.msgs=[0-9]* throttled.bytes=[0-9]*" /tmp/flood-server.log | tail -1
ps -o rss= -p $SP
kill $SP
