"""Mint a wsedge connection token with only Python's standard library.

This is the snippet README.md shows for backends (e.g. a Django view that
hands the browser a token right before it connects).
Usage: mint_token.py KEY USER [SUBSCRIBE_PATTERN ...]
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time


def mint(key: bytes, user: str, subscribe=(), publish=(), ttl=300) -> str:
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    claims = {"sub": user, "exp": int(time.time()) + ttl, "jti": os.urandom(12).hex(),
              "subscribe": list(subscribe), "publish": list(publish)}
    body = "v1." + b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = hmac.new(key, body.encode(), hashlib.sha256).digest()
    return body + "." + b64(sig)


if __name__ == "__main__":
    print(mint(sys.argv[1].encode(), sys.argv[2], subscribe=sys.argv[3:]))
