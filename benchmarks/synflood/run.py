"""One SYN flood scenario: server process, flooder process, a client in this one."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from typing import Any

import rudp

#: The flood's processes: ``python -m benchmarks.synflood.flood ...``.
FLOOD = [sys.executable, "-m", "benchmarks.synflood.flood"]
#: Targets of issue 12.
TARGET_SECONDS = 3.0
TARGET_MEMORY = 32 * 1024 * 1024


class Server:
    """The rudp echo server process; :meth:`stats` asks it for its counters."""

    def __init__(self, mode: str = "auto") -> None:
        self.proc = subprocess.Popen(
            [*FLOOD, "server", mode], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.port = json.loads(self.proc.stdout.readline())["port"]

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())  # type: ignore[no-any-return]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            self.proc.kill()
            self.proc.wait()


async def client(port: int, timeout: float) -> tuple[float, dict[str, Any]]:
    """Connect, echo 100 KB; returns the time it took and the client's statistics."""
    t0 = time.monotonic()

    async def run() -> dict[str, Any]:
        reader, writer = await rudp.open_connection("127.0.0.1", port)
        payload = bytes(range(256)) * 400
        writer.write(payload)
        await writer.drain()
        echoed = await reader.readexactly(len(payload))
        if echoed != payload:
            raise AssertionError("echo differs")
        stats: dict[str, Any] = writer.get_extra_info(rudp.STATS_KEY)
        writer.close()
        await writer.wait_closed()
        return stats

    stats = await asyncio.wait_for(run(), timeout)
    return time.monotonic() - t0, stats


def flood_and_connect(
    count: int, rate: int, timeout: float = 30.0, until_done: bool = False
) -> dict[str, Any]:
    """Flood a fresh server with ``count`` spoofed SYNs at ``rate``/s from 1,000
    127.100.x.y addresses; once cookies go out, connect a client and echo. With
    ``until_done`` the flood goes on past ``count`` until the client is done."""
    server = Server()
    flood = None
    try:
        before = server.stats()
        flood = subprocess.Popen(
            [*FLOOD, "syns", str(server.port), str(count), str(rate), "1000", "1"]
            + (["until-eof"] if until_done else []),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        # Early (a few thousand cookies in), so that a machine slowed down by other
        # work still has most of the flood ahead when the client tries.
        deadline = time.monotonic() + 30
        while server.stats()["syncookies_sent"] < min(count // 50, rate // 5):
            if time.monotonic() > deadline or flood.poll() is not None:
                raise RuntimeError("the flood did not get going")
            time.sleep(0.02)
        took, client_stats = asyncio.run(client(server.port, timeout))
        during = flood.poll() is None  # the flood was still running
        assert flood.stdin is not None and flood.stdout is not None
        flood.stdin.close()  # with until_done: the flood may end now
        sent = json.loads(flood.stdout.readline())
        if flood.wait(timeout=60) != 0:
            raise RuntimeError("the flooder failed")
        # Let the server drain its socket, then read its counters and peak memory.
        deadline = time.monotonic() + 30
        while (after := server.stats())[
            "datagrams_received"
        ] < count and time.monotonic() < deadline:
            time.sleep(0.05)
            if server.stats()["datagrams_received"] == after["datagrams_received"]:
                break  # the rest was dropped by the kernel: nothing more will come
        return {
            "count": count,
            "until_done": until_done,
            "rate": rate,
            "took": took,
            "during": during,
            "client": client_stats,
            "sent": sent,
            "before": before,
            "after": after,
            "memory_growth": after["hwm"] - before["rss"],
        }
    finally:
        if flood is not None and flood.poll() is None:
            flood.kill()
            flood.wait()
        server.close()
