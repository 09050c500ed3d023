#!/usr/bin/env python3
"""Measure a WebSocket server's resident memory per idle connection.

Opens N connections to URL (upgrade completed, then silent), spreading the
source addresses over 127.0.0.2..127.0.0.K so the ephemeral port range is
not the limit, reads the server's VmRSS from /proc/PID/status before and
after, and prints bytes per connection. Bounded: gives up after --timeout
seconds; closes every socket it opened before exiting.

Usage: idle_rss.py --pid PID --url ws://127.0.0.1:8080/echo -n 20000
(Until the bundled load client has an `idle` mode, this is the tool.)
"""
import argparse
import base64
import os
import socket
import sys
import time
from urllib.parse import urlparse


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--url", default="ws://127.0.0.1:8080/echo")
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--per-source", type=int, default=20000)
    ap.add_argument("--first-source", type=int, default=2,
                    help="first 127.0.0.X source (vary it between runs: "
                         "closed client ports linger in TIME_WAIT)")
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--settle", type=float, default=2.0)
    a = ap.parse_args()
    u = urlparse(a.url)
    host, port, path = u.hostname, u.port or 80, u.path or "/"
    key = base64.b64encode(os.urandom(16)).decode()
    req = (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
           f"Sec-WebSocket-Key: {key}\r\n\r\n").encode()
    time.sleep(a.settle)
    before = rss_kib(a.pid)
    socks = []
    deadline = time.monotonic() + a.timeout
    try:
        for i in range(a.n):
            if time.monotonic() > deadline:
                print(f"timeout after {i} connections", file=sys.stderr)
                break
            src = f"127.0.0.{a.first_source + i // a.per_source}"
            s = socket.socket()
            s.settimeout(10)
            s.bind((src, 0))
            s.connect((host, port))
            s.sendall(req)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("server closed during upgrade")
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                raise RuntimeError(head[:40])
            socks.append(s)
        time.sleep(a.settle)
        after = rss_kib(a.pid)
        n = len(socks)
        per = (after - before) * 1024 / max(n, 1)
        print(f"connections={n} rss_before_kib={before} rss_after_kib={after} "
              f"bytes_per_connection={per:.0f}")
    finally:
        for s in socks:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
