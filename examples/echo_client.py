"""Echo client: ``python examples/echo_client.py [HOST] [PORT] [MESSAGE...]``.

The same code works with ``asyncio.open_connection`` over TCP; only the import differs.
"""

from __future__ import annotations

import asyncio
import sys

import rudp


async def main(host: str, port: int, messages: list[str]) -> None:
    reader, writer = await rudp.open_connection(host, port)
    for msg in messages:
        writer.write(msg.encode() + b"\n")
        await writer.drain()
        echoed = await reader.readline()
        print(echoed.decode().rstrip("\n"))
    writer.write_eof()  # half-close: the server sees EOF, we can still read
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


if __name__ == "__main__":
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 9000
    asyncio.run(main(host, port, sys.argv[3:] or ["hello", "rudp"]))
