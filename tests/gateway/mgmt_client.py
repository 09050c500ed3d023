#!/usr/bin/env python3
"""boto3's `apigatewaymanagementapi` client, driven one call at a time.

The driver of tests/gateway_boto3.rs: the Rust test holds the WebSocket
client and the backend, this process holds the real boto3 client, so each
step can be checked from both sides. One JSON command per line on stdin,
one JSON answer per line on stdout:

    {"op": "post", "id": "<connectionId>", "data": "text"}
    {"op": "get", "id": "<connectionId>"}
    {"op": "delete", "id": "<connectionId>"}
    any of them with "secret": "<other secret>" (and/or "key", "region")
    signs with that instead of the configured one

answered with

    {"ok": true, "status": 200, "result": {...}, "raw": {...}}
    {"ok": false, "status": 410, "code": "GoneException",
     "error_type_header": "GoneException", "is": ["GoneException"],
     "message": "..."}

`result` is what boto3 parsed (timestamps as ISO 8601 strings), `raw` the
JSON body exactly as wsedge sent it; `is` lists the modelled exception
classes of `client.exceptions` the error is an instance of (so "is a
`client.exceptions.GoneException`" is checked with boto3's own classes).
No retries: a 5xx or a dropped connection shows as it happened.

usage: mgmt_client.py --endpoint http://127.0.0.1:PORT/STAGE --key AKID
                      --secret SECRET [--region us-east-1]
"""

import argparse
import datetime
import json
import sys

import boto3
import botocore.config
import botocore.exceptions

MODELLED = (
    "ForbiddenException",
    "GoneException",
    "LimitExceededException",
    "PayloadTooLargeException",
)


def jsonable(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class Clients:
    def __init__(self, args):
        self.args = args
        self.cache = {}
        self.last_raw = None

    def get(self, key, secret, region):
        if (key, secret, region) not in self.cache:
            client = boto3.session.Session().client(
                "apigatewaymanagementapi",
                endpoint_url=self.args.endpoint,
                region_name=region,
                aws_access_key_id=key,
                aws_secret_access_key=secret,
                config=botocore.config.Config(
                    connect_timeout=5,
                    read_timeout=10,
                    retries={"mode": "standard", "max_attempts": 1},
                ),
            )
            client.meta.events.register("after-call.*", self.remember_raw)
            self.cache[(key, secret, region)] = client
        return self.cache[(key, secret, region)]

    def remember_raw(self, http_response=None, **_):
        self.last_raw = http_response.content if http_response is not None else None


def run(clients, cmd):
    client = clients.get(
        cmd.get("key", clients.args.key),
        cmd.get("secret", clients.args.secret),
        cmd.get("region", clients.args.region),
    )
    clients.last_raw = None
    op = cmd["op"]
    try:
        if op == "post":
            data = cmd["data"].encode("utf-8") if "data" in cmd else bytes.fromhex(cmd["hex"])
            resp = client.post_to_connection(ConnectionId=cmd["id"], Data=data)
        elif op == "get":
            resp = client.get_connection(ConnectionId=cmd["id"])
        elif op == "delete":
            resp = client.delete_connection(ConnectionId=cmd["id"])
        else:
            return {"ok": False, "code": "bad command", "message": op}
    except botocore.exceptions.ClientError as e:
        meta = e.response.get("ResponseMetadata", {})
        return {
            "ok": False,
            "status": meta.get("HTTPStatusCode"),
            "code": e.response.get("Error", {}).get("Code"),
            "message": e.response.get("Error", {}).get("Message"),
            "error_type_header": meta.get("HTTPHeaders", {}).get("x-amzn-errortype"),
            "is": [n for n in MODELLED if isinstance(e, getattr(client.exceptions, n))],
            "exception": type(e).__name__,
        }
    except botocore.exceptions.BotoCoreError as e:
        return {"ok": False, "code": type(e).__name__, "message": str(e), "is": []}
    raw = None
    if clients.last_raw:
        try:
            raw = json.loads(clients.last_raw)
        except ValueError:
            raw = clients.last_raw.decode("utf-8", "replace")
    return {
        "ok": True,
        "status": resp["ResponseMetadata"]["HTTPStatusCode"],
        "result": jsonable(resp),
        "raw": raw,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--region", default="us-east-1")
    clients = Clients(ap.parse_args())
    print(json.dumps({"ready": boto3.__version__}), flush=True)
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run(clients, json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
