"""A plain TCP program for the tunnel tests (asyncio over kernel TCP, no rudp).

    python tests/tcp_peer.py server HOST PORT MODE [N]
    python tests/tcp_peer.py client HOST PORT MODE [N] [CONNECTIONS]

Modes (server side / client side), each ending with one JSON line on stdout:

* ``bulk N`` -- both sides send N pseudo-random bytes (seeded by role) while
  receiving, then half-close; each reports bytes and SHA-256 of what it sent and
  received. A half-close test in itself: each side's EOF arrives before the
  other's data ends.
* ``echo`` (server) / ``many N C`` (client) -- the server serves any number of
  connections: reads to EOF, answers with the SHA-256 of what it read, closes;
  the client opens C connections at once, sends N bytes on each, half-closes,
  checks every digest.
* ``reset`` (server: reads 1 byte, then closes with an RST) / ``expect-reset``
  (client: sends a byte, reports how the connection ended); and the mirror
  ``expect-reset`` (server) / ``reset`` (client).
* ``flood`` (server: writes until told to stop, printing its progress) /
  ``stall N`` (client: reads nothing until stdin gives a line, then reads to EOF).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import struct
import sys
from typing import Any

CHUNK = 256 * 1024


def _data(seed: str, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def _say(**kw: Any) -> None:
    print(json.dumps(kw), flush=True)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _bulk(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, me: str, n: int
) -> None:
    payload = _data(me, n)

    async def send() -> None:
        for off in range(0, n, CHUNK):
            writer.write(payload[off : off + CHUNK])
            await writer.drain()
        writer.write_eof()

    got = hashlib.sha256()
    count = 0
    sender = asyncio.ensure_future(send())
    while data := await reader.read(CHUNK):
        got.update(data)
        count += len(data)
    await sender
    writer.close()
    _say(sent=n, sent_sha=hashlib.sha256(payload).hexdigest(), received=count,
         received_sha=got.hexdigest())  # fmt: skip


async def _ending(reader: asyncio.StreamReader) -> str:
    try:
        data = await reader.read()
    except ConnectionResetError:
        return "reset"
    return f"eof after {len(data)} bytes"


async def server(host: str, port: int, mode: str, n: int) -> None:
    done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if mode == "bulk":
            await _bulk(reader, writer, "server", n)
        elif mode == "echo":
            h = hashlib.sha256()
            while data := await reader.read(CHUNK):
                h.update(data)
            writer.write(h.digest())
            await writer.drain()
            writer.close()
            return
        elif mode == "reset":
            await reader.readexactly(1)
            _reset(writer)
            _say(server="reset sent")
        elif mode == "expect-reset":
            _say(server=await _ending(reader))
        elif mode == "flood":
            block = bytes(CHUNK)
            sent = 0
            try:
                while True:
                    writer.write(block)
                    await writer.drain()
                    sent += len(block)
                    _say(flood=sent)
            except OSError:
                pass
        if not done.done():
            done.set_result(None)

    srv = await asyncio.start_server(handle, host, port)
    print("listening", flush=True)
    if mode == "echo":
        await asyncio.Future()
    await done
    srv.close()


async def client(host: str, port: int, mode: str, n: int, conns: int) -> None:
    if mode == "many":

        async def one(i: int) -> bool:
            reader, writer = await asyncio.open_connection(host, port)
            payload = _data(f"conn{i}", n)
            writer.write(payload)
            await writer.drain()
            writer.write_eof()
            digest = await reader.read()
            writer.close()
            return digest == hashlib.sha256(payload).digest()

        results = await asyncio.gather(*(one(i) for i in range(conns)))
        _say(ok=sum(results), total=conns)
        return
    reader, writer = await asyncio.open_connection(host, port)
    if mode == "bulk":
        await _bulk(reader, writer, "client", n)
    elif mode == "expect-reset":
        writer.write(b"x")
        await writer.drain()
        _say(client=await _ending(reader))
    elif mode == "reset":
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.2)  # let the byte cross before the RST overtakes it
        _reset(writer)
        _say(client="reset sent")
    elif mode == "stall":
        loop = asyncio.get_running_loop()
        _say(client="stalled")
        await loop.run_in_executor(None, sys.stdin.readline)
        total = 0
        while data := await reader.read(CHUNK):
            total += len(data)
            if total >= n:
                break
        _say(read=total)
        _reset(writer)


def main() -> None:
    role, host, port, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    n = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    if role == "server":
        asyncio.run(server(host, port, mode, n))
    else:
        conns = int(sys.argv[6]) if len(sys.argv) > 6 else 1
        asyncio.run(client(host, port, mode, n, conns))


if __name__ == "__main__":
    main()
