#!/usr/bin/env python3
"""Play API Gateway (i.e. what wsedge gateway mode must do) against the Django backend.

Sends exactly the HTTP_PROXY integration requests the package accepts, and checks the
replies the handler pushes to the (fake) management API.  Stdlib only.

usage: simulate_gateway.py --django http://127.0.0.1:8000 --mgmt http://127.0.0.1:9001
"""

import argparse
import http.client as httpclient
import json
import secrets
import sys
import time
import uuid
from urllib.parse import urlencode, urlsplit

FAILURES = []


def check(cond, what):
    print(("  ok   " if cond else "  FAIL ") + what)
    if not cond:
        FAILURES.append(what)


def http(method, url, body=b"", headers=None):
    u = urlsplit(url)
    conn = httpclient.HTTPConnection(u.hostname, u.port, timeout=30)
    path = u.path + (("?" + u.query) if u.query else "")
    # skip_host/skip_accept_encoding: we set every header ourselves
    conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    hdrs = {"Host": u.netloc, **(headers or {})}
    hdrs["Content-Length"] = str(len(body))  # ALWAYS sent, also 0 (required_headers)
    for k, v in hdrs.items():
        conn.putheader(k, v)
    conn.endheaders(body)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data.decode("utf-8", "replace"), hdrs


def new_connection_id():
    # AWS-style: 16 chars of base64 ending in "=", e.g. "L0SM9cOFvHcCIhw="
    import base64
    return base64.b64encode(secrets.token_bytes(10)).decode().replace("+", "A").replace("/", "B")


def gateway_headers(api_id, connection_id, client_ip="127.0.0.1", user_agent="wsedge-test-client/1.0"):
    """Headers every integration request carries (views.py:122-135 required_headers +
    additional_required_headers).  Content-Length is added by http()."""
    return {
        "connectionId": connection_id,
        "X-Amzn-Apigateway-Api-Id": api_id,
        "X-Amzn-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
        "X-Forwarded-For": client_ip,
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
        "X-Real-Ip": client_ip,
        "User-Agent": user_agent,
    }


def connect(cfg, tok, connection_id, channel="lobby", token=None, origin=None, extra=None):
    q = {"ws_token": token or tok["ws_token"]}
    if channel:
        q["channel"] = channel
    url = cfg["integrations"]["$connect"] + "?" + urlencode(q)
    h = gateway_headers(cfg["api_id"], connection_id)
    # headers of the client's upgrade request, passed through (views.py:136-142)
    h.update({
        "Origin": origin or tok["origin"],
        "Cookie": tok["cookie"],
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits",
    })
    h.update(extra or {})
    return http("POST", url, b"", h)


def message(cfg, connection_id, payload, route_key=None):
    body = json.dumps(payload).encode() if not isinstance(payload, bytes) else payload
    if route_key is None:
        try:
            route_key = json.loads(body).get("action")
        except Exception:
            route_key = None
    url = cfg["integrations"].get(route_key) or cfg["integrations"]["$default"]
    h = gateway_headers(cfg["api_id"], connection_id)
    h["Content-Type"] = "application/json"
    return http("POST", url, body, h)


def disconnect(cfg, connection_id):
    return http("POST", cfg["integrations"]["$disconnect"], b"", gateway_headers(cfg["api_id"], connection_id))


def get_json(url):
    st, body, _ = http("GET", url)
    return json.loads(body)


def show(title, status, body, hdrs=None, url=None):
    print(f"\n>>> {title}")
    if url:
        print(f"    {url}")
    if hdrs:
        for k, v in hdrs.items():
            print(f"    {k}: {v}")
    print(f"<<< {status} {body[:300]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--django", default="http://127.0.0.1:8000")
    ap.add_argument("--mgmt", default="http://127.0.0.1:9001")
    a = ap.parse_args()

    cfg = get_json(a.django + "/test/setup")
    print("gateway config:", json.dumps(cfg, indent=2))
    tok = get_json(a.django + "/test/token?username=alice")
    print("token:", json.dumps(tok, indent=2))

    cid = new_connection_id()
    print(f"\n=== happy path, connectionId={cid}")
    st, body, h = connect(cfg, tok, cid)
    show("$connect", st, body, h, cfg["integrations"]["$connect"] + "?ws_token=...&channel=lobby")
    check(st == 200 and body == "{}", "$connect accepted with 200 {}")

    sess = get_json(a.django + f"/test/sessions?connection_id={cid}")["sessions"]
    check(len(sess) == 1 and sess[0]["connected"] and sess[0]["user"] == "alice"
          and sess[0]["channel_name"] == "lobby", "WebSocketSession row created (connected, user alice, channel lobby)")

    before = len(get_json(a.mgmt + "/__log"))
    st, body, h = message(cfg, cid, {"action": "sendMessage", "message": "hello wsedge"})
    show("sendMessage", st, body, h, cfg["integrations"]["sendMessage"])
    check(st == 200 and json.loads(body).get("handler") == "sendMessage", "sendMessage handler ran (200)")
    log = get_json(a.mgmt + "/__log")[before:]
    check(len(log) == 1, "exactly one management API call")
    if log:
        e = log[0]
        print("\n--- management API received:")
        print(f"    {e['method']} {e['raw_path']}")
        for k, v in e["headers"].items():
            print(f"    {k}: {v}")
        print(f"    body: {e['body']}")
        print("    canonical request:\n      " + e["sigv4"]["canonical_request"].replace("\n", "\n      "))
        check(e["method"] == "POST", "POST")
        check(e["stage"] == cfg["stage"], f"path starts with /{cfg['stage']}/@connections/")
        check(e["connection_id"] == cid, "connection id in path (percent-decoded) matches")
        check(e["sigv4_ok"], "SigV4 signature verifies with the shared secret")
        check(e["sigv4"].get("service") == "execute-api", "SigV4 service = execute-api")
        rep = json.loads(e["body"])
        check(rep.get("marker") == "django-aws-api-gateway-websockets says hi" and rep.get("echo") == "hello wsedge",
              "reply body is the handler's JSON")

    before = len(get_json(a.mgmt + "/__log"))
    st, body, h = message(cfg, cid, {"action": "whatever", "message": "to default"})
    show("$default (action not a route)", st, body, None, cfg["integrations"]["$default"])
    check(st == 200 and json.loads(body).get("handler") == "default", "$default handler ran")
    check(len(get_json(a.mgmt + "/__log")) == before + 1, "default handler also replied via management API")

    st, body, h = message(cfg, cid, {"message": "no action key"})
    show("message without action", st, body)
    check(st == 400, "body without action/handler -> 400")

    st, body, h = disconnect(cfg, cid)
    show("$disconnect", st, body, h, cfg["integrations"]["$disconnect"])
    check(st == 200 and body == "{}", "$disconnect accepted with 200 {}")
    sess = get_json(a.django + f"/test/sessions?connection_id={cid}")["sessions"]
    check(sess and not sess[0]["connected"] and sess[0]["disconnect_calls"] == 1,
          "session now connected=false, disconnect_calls == 1")

    st, body, h = message(cfg, cid, {"action": "sendMessage", "message": "after close"})
    show("message after $disconnect", st, body)
    check(st == 400 and "Invalid connection ID" in body, "message for a closed session -> 400 Invalid connection ID")

    print("\n=== negative $connect cases")
    cid2 = new_connection_id()
    st, body, _ = connect(cfg, tok, cid2)
    show("$connect reusing the spent token", st, body)
    check(st == 400 and "Invalid or expired token" in body, "token is single-use")

    tok2 = get_json(a.django + "/test/token?username=alice")
    st, body, _ = connect(cfg, tok2, cid2, origin="http://evil.example")
    show("$connect with foreign Origin", st, body)
    check(st == 400 and "Origin" in body, "Origin host must match Host")
    st, body, _ = connect(cfg, tok2, cid2, extra={"X-Amzn-Apigateway-Api-Id": "unknownapi"})
    show("$connect with unknown api id", st, body)
    check(st == 400 and "headers" in body, "unknown X-Amzn-Apigateway-Api-Id -> 400 Invalid request headers")
    h = gateway_headers(cfg["api_id"], cid2)
    del h["X-Real-Ip"]
    st, body, _ = http("POST", cfg["integrations"]["$connect"] + "?ws_token=" + tok2["ws_token"], b"", h)
    show("$connect missing X-Real-Ip", st, body)
    check(st == 400, "every required header must be present")

    print("\n=== GoneException path")
    tok3 = get_json(a.django + "/test/token?username=bob")
    cid3 = new_connection_id()
    st, body, _ = connect(cfg, tok3, cid3, channel=None)
    check(st == 200, "$connect (no channel)")
    http("POST", a.mgmt + "/__gone/" + cid3)
    st, body, _ = message(cfg, cid3, {"action": "sendMessage", "message": "x"})
    show("sendMessage while mgmt API says 410 Gone", st, body)
    check(st == 200, "handler still answers 200")
    sess = get_json(a.django + f"/test/sessions?connection_id={cid3}")["sessions"]
    check(sess and not sess[0]["connected"], "410 + x-amzn-ErrorType: GoneException marks the session disconnected")

    print("\nFAILURES:" if FAILURES else "\nALL CHECKS PASSED")
    for f in FAILURES:
        print("  - " + f)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
