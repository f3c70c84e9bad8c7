"""The processes of a SYN flood over real sockets (run as scripts by
:mod:`benchmarks.synflood.run`; tests/test_hostile_real.py uses them too).

``python -m benchmarks.synflood.flood server [syncookies]``: a rudp echo server on 127.0.0.1 (a
free port). It prints one JSON line ``{"port": N}``, then answers each line read
on stdin with one JSON line: the endpoint's statistics plus ``rss`` and ``hwm``
(the process's resident set size now and at its peak, bytes). EOF ends it.

``python -m benchmarks.synflood.flood syns PORT COUNT RATE SOURCES SEED``: spoofed SYNs, as a
flooder with many source addresses would send them: ``SOURCES`` UDP sockets bound
to distinct 127.100.x.y addresses (all of 127.0.0.0/8 is local on Linux, so no raw
socket or root is needed), each SYN with a random TCP source port and ISN and
Linux's options (MSS, SACK-permitted, timestamps, window scale), ``RATE`` per
second (0: as fast as possible). The SYN,ACKs coming back are never read. Prints
``{"sent": N, "elapsed": seconds}`` at the end. A 7th argument ``until-eof`` keeps
the flood going after COUNT until stdin is closed (at most 10 x COUNT).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import select
import socket
import sys
import time

import rudp
from rudp import Config
from rudp.wire import SYN, build_segment
from rudp.wire.segment import encode_options


def _memory() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key = "rss" if line.startswith("VmRSS") else "hwm"
                out[key] = int(line.split()[1]) * 1024
    return out


async def _serve(mode: str) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    server = await rudp.start_server(echo, "127.0.0.1", 0, config=Config(syncookies=mode))
    (endpoint,) = server.endpoints
    print(json.dumps({"port": endpoint.local_address[1]}), flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        stats = {k: v for k, v in endpoint.stats().items() if isinstance(v, int)}
        print(json.dumps({**stats, **_memory()}), flush=True)
    server.close()


def _stdin_closed() -> bool:
    """True once the parent closed our stdin (non-blocking check)."""
    ready, _, _ = select.select([sys.stdin], [], [], 0)
    return bool(ready) and not sys.stdin.readline()


def _syns(
    port: int, count: int, rate: float, sources: int, seed: int, until_eof: bool = False
) -> None:
    rnd = random.Random(seed)
    socks = []
    for i in range(sources):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.100.{i >> 8 & 255}.{i & 255 or 1}", 0))
        socks.append(s)
    opts = encode_options(mss=1460, sack_perm=True, ts=(1, 0), wscale=7)
    target = ("127.0.0.1", port)
    start = time.monotonic()
    sent = 0
    # With until_eof the flood goes on after COUNT until stdin closes (at most
    # 10 x COUNT), so a client slowed down by a busy machine still meets it.
    while sent < count or (until_eof and sent < 10 * count and not _stdin_closed()):
        if rate:
            ahead = sent / rate - (time.monotonic() - start)
            if ahead > 0.001:
                time.sleep(ahead)
        for _ in range(50 if until_eof else min(50, count - sent)):
            data = build_segment(
                rnd.randrange(1024, 65536), 80, rnd.getrandbits(32), 0, SYN, 65535, b"", opts
            )
            with contextlib.suppress(OSError):  # a full buffer: a flood does not wait
                socks[sent % sources].sendto(data, target)
            sent += 1
    print(json.dumps({"sent": sent, "elapsed": time.monotonic() - start}), flush=True)


def main(argv: list[str]) -> None:
    if argv[0] == "server":
        asyncio.run(_serve(argv[1] if len(argv) > 1 else "auto"))
    elif argv[0] == "syns":
        port, count, rate, sources, seed = argv[1:6]
        until_eof = argv[6:7] == ["until-eof"]
        _syns(int(port), int(count), float(rate), int(sources), int(seed), until_eof)
    else:  # pragma: no cover
        raise SystemExit(f"unknown command {argv[0]!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
