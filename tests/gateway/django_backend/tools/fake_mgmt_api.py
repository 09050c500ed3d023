#!/usr/bin/env python3
"""A stand-in for wsedge's @connections management API, for testing the backend alone.

Logs every request boto3 sends (method, raw path, headers, body) as JSON lines, checks the
SigV4 signature independently of botocore, and answers like API Gateway does:

  POST   /{stage}/@connections/{id}  -> 200 (empty body)     | 410 GoneException
  GET    /{stage}/@connections/{id}  -> 200 {"connectedAt":..} | 410 GoneException
  DELETE /{stage}/@connections/{id}  -> 204                    | 410 GoneException

Extra endpoints for the test driver: GET /__log (all requests so far, JSON list),
POST /__gone/{id} (make {id} answer 410 from now on).

usage: fake_mgmt_api.py --port 9001 --secret wsedge-test-secret [--log file.jsonl]
"""

import argparse
import datetime
import hashlib
import hmac
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

LOG = []
GONE = set()
LOCK = threading.Lock()
ARGS = None


def _sign(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def verify_sigv4(method, raw_path, query, headers, body, secret):
    """Recompute AWS SigV4 (non-S3 rules) from what arrived on the wire.

    canonical URI = each path segment URI-encoded AGAIN (the path on the wire is
    already percent-encoded by botocore, so '=' arrives as %3D and is signed as %253D).
    """
    auth = headers.get("authorization", "")
    if not auth.startswith("AWS4-HMAC-SHA256 "):
        return {"ok": False, "reason": "no AWS4-HMAC-SHA256 Authorization header"}
    parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
    cred = parts["Credential"].split("/")
    access_key, date, region, service, terminator = cred
    signed_headers = parts["SignedHeaders"].split(";")
    canonical_uri = quote(raw_path, safe="/~")
    q = sorted(
        (quote(unquote(k), safe="-_.~"), quote(unquote(v), safe="-_.~"))
        for k, _, v in (x.partition("=") for x in query.split("&") if x)
    )
    canonical_query = "&".join(f"{k}={v}" for k, v in q)
    canonical_headers = "".join(
        f"{h}:{' '.join(headers.get(h, '').split())}\n" for h in signed_headers
    )
    payload_hash = hashlib.sha256(body).hexdigest()
    canonical_request = "\n".join(
        [method, canonical_uri, canonical_query, canonical_headers, ";".join(signed_headers), payload_hash]
    )
    amz_date = headers.get("x-amz-date", "")
    scope = f"{date}/{region}/{service}/{terminator}"
    string_to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    k = _sign(("AWS4" + secret).encode(), date)
    k = _sign(k, region)
    k = _sign(k, service)
    k = _sign(k, "aws4_request")
    expected = hmac.new(k, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "ok": hmac.compare_digest(expected, parts["Signature"]),
        "access_key_id": access_key,
        "region": region,
        "service": service,
        "signed_headers": signed_headers,
        "canonical_request": canonical_request,
        "string_to_sign": string_to_sign,
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # quiet default logging
        pass

    def _send(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        split = urlsplit(self.path)
        raw_path = split.path
        if raw_path == "/__log":
            with LOCK:
                return self._send(200, json.dumps(LOG).encode(), {"Content-Type": "application/json"})
        if raw_path.startswith("/__gone/"):
            GONE.add(unquote(raw_path[len("/__gone/"):]))
            return self._send(204)
        headers = {k.lower(): v for k, v in self.headers.items()}
        segs = raw_path.split("/")
        # ['', stage, '@connections', id]
        ok_shape = len(segs) == 4 and segs[2] == "@connections"
        conn_id = unquote(segs[3]) if ok_shape else None
        sig = verify_sigv4(self.command, raw_path, split.query, headers, body, ARGS.secret)
        entry = {
            "time": datetime.datetime.utcnow().isoformat() + "Z",
            "method": self.command,
            "raw_path": raw_path,
            "stage": segs[1] if ok_shape else None,
            "connection_id": conn_id,
            "headers": dict(self.headers.items()),
            "body": body.decode("utf-8", "replace"),
            "sigv4_ok": sig["ok"],
            "sigv4": sig,
        }
        with LOCK:
            LOG.append(entry)
        if ARGS.log:
            with open(ARGS.log, "a") as fh:
                fh.write(json.dumps(entry) + "\n")
        print(json.dumps({k: entry[k] for k in ("method", "raw_path", "connection_id", "body", "sigv4_ok")}), flush=True)

        if not ok_shape:
            return self._send(404, b'{"message":"Not Found"}', {"Content-Type": "application/json"})
        if not sig["ok"]:
            return self._send(
                403,
                b'{"message":"The request signature we calculated does not match the signature you provided."}',
                {"Content-Type": "application/json", "x-amzn-ErrorType": "ForbiddenException"},
            )
        if conn_id in GONE:
            return self._send(
                410, b'{"message":null}',
                {"Content-Type": "application/json", "x-amzn-ErrorType": "GoneException"},
            )
        if self.command == "POST":
            return self._send(200, b"", {"Content-Type": "application/json"})
        if self.command == "GET":
            now = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.000Z")
            doc = {"connectedAt": now, "lastActiveAt": now,
                   "identity": {"sourceIp": "127.0.0.1", "userAgent": "fake"}}
            return self._send(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})
        if self.command == "DELETE":
            return self._send(204)
        return self._send(405)

    do_GET = do_POST = do_DELETE = _handle


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=9001)
    ap.add_argument("--secret", default="wsedge-test-secret")
    ap.add_argument("--log")
    ARGS = ap.parse_args()
    srv = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    print(f"fake management API on http://127.0.0.1:{ARGS.port}", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
