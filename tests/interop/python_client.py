"""Interop check with a non-Rust client: Python `websockets` (PyPI).

Usage: python_client.py ws://127.0.0.1:PORT/echo
       python_client.py wss://localhost:PORT/echo CA.pem   (trusts only CA.pem)
Exits 0 and prints "interop ok" only if every exchange round-trips.
"""
import asyncio
import ssl
import sys

import websockets


async def main(url: str, ca: str | None = None) -> None:
    tls = ssl.create_default_context(cafile=ca) if ca else None
    async with websockets.connect(url, max_size=None, ssl=tls) as ws:
        if tls:
            version = ws.transport.get_extra_info("ssl_object").version()
            assert version in ("TLSv1.3", "TLSv1.2"), version
        await ws.send("hello from python ✓")
        assert await ws.recv() == "hello from python ✓"

        await ws.send(bytes(range(256)))
        assert await ws.recv() == bytes(range(256))

        # Fragmented text message (an iterable is sent as fragments).
        await ws.send(["frag", "mented ", "mëssage"])
        assert await ws.recv() == "fragmented mëssage"

        big = bytes(i % 253 for i in range(2 * 1024 * 1024))
        await ws.send(big)
        assert await ws.recv() == big

        big_text = "é" * (600 * 1024)
        await ws.send(big_text)
        assert await ws.recv() == big_text

        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)

        await ws.close(code=1000, reason="done")
        assert ws.close_code == 1000, ws.close_code
    print("interop ok")


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(main(sys.argv[1], *sys.argv[2:3]), 30))
