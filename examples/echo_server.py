"""Echo server over rudp: ``python examples/echo_server.py [HOST] [PORT]``."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import rudp


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    peer = writer.get_extra_info("peername")
    async for line in reader:  # one line at a time until the client half-closes
        writer.write(line)
        await writer.drain()
    print(
        f"{peer} done, stats: {writer.get_extra_info('rudp_stats')['segments_received']} segments"
    )
    writer.close()
    await writer.wait_closed()


async def main(host: str, port: int) -> None:
    async with await rudp.start_server(handle, host, port) as server:
        print(f"listening on {server.addresses}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    host = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1"
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 9000
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(host, port))
