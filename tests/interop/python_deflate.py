"""Interop check of permessage-deflate with Python `websockets` (PyPI),
which offers it by default.

Usage: python_deflate.py ws://127.0.0.1:PORT/echo
       python_deflate.py wss://localhost:PORT/echo CA.pem   (trusting only that CA)
Prints the server's Sec-WebSocket-Extensions answer, then "deflate ok N"
(N: compressed frames received) only if every exchange round-trips and the
extension was negotiated.
"""
import asyncio
import json
import ssl
import sys

import websockets


async def main(url: str, ca: str | None = None) -> None:
    tls = ssl.create_default_context(cafile=ca) if ca else None
    async with websockets.connect(url, max_size=None, ssl=tls) as ws:
        if ca:
            print("tls:", ws.transport.get_extra_info("ssl_object").version())
        answer = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        print("answer:", answer)
        assert answer.startswith("permessage-deflate"), answer
        assert len(ws.protocol.extensions) == 1, ws.protocol.extensions

        # Count the compressed (RSV1) frames the server sends.
        ext = ws.protocol.extensions[0]
        decode = ext.decode
        seen = {"rsv1": 0}

        def counting(frame, *, max_size=None):
            if frame.rsv1:
                seen["rsv1"] += 1
            return decode(frame, max_size=max_size)

        ext.decode = counting

        # Small: below the server's min_size, echoed uncompressed.
        await ws.send("hi ✓")
        assert await ws.recv() == "hi ✓"

        # Realistic JSON, many times (context takeover makes repeats tiny).
        for i in range(20):
            msg = json.dumps({"type": "message", "channel": "prices",
                              "data": {"sym": "ABC", "bid": 101.25 + i, "seq": i,
                                       "note": "the quick brown fox " * 10}})
            await ws.send(msg)
            assert await ws.recv() == msg

        await ws.send(bytes(range(256)) * 8)
        assert await ws.recv() == bytes(range(256)) * 8

        # Fragmented (compressed once, split over frames).
        await ws.send(["frag", "mented ", "mëssage " * 50])
        assert await ws.recv() == "fragmented " + "mëssage " * 50

        big = bytes(i % 253 for i in range(2 * 1024 * 1024))
        await ws.send(big)
        assert await ws.recv() == big

        big_text = "é" * (600 * 1024)
        await ws.send(big_text)
        assert await ws.recv() == big_text

        await ws.close(code=1000, reason="done")
        assert ws.close_code == 1000, ws.close_code
        assert seen["rsv1"] >= 24, seen
    print("deflate ok", seen["rsv1"])


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1], *sys.argv[2:3]), 60))
