"""SYN floods over real UDP sockets on loopback (issue 12, docs/security.md).

A rudp echo server runs in its own process (tests/flood.py server), a flooder in
another one sends spoofed SYNs from 1,000 source addresses of 127.0.0.0/8 with
random TCP ports, and a real client in this process connects while the flood runs.
The server's memory is read from /proc (resident set size before the flood, peak
after it).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import rudp

FLOOD = Path(__file__).with_name("flood.py")
#: Server memory growth allowed during a flood.
MEMORY_CAP = 32 * 1024 * 1024

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="binding many 127.x.y.z source addresses needs Linux's loopback",
)


class _Server:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(FLOOD), "server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
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


async def _client(port: int) -> tuple[float, dict[str, Any]]:
    """Connect, echo 100 KB; returns the time it took and the client's statistics."""
    t0 = time.monotonic()
    reader, writer = await rudp.open_connection("127.0.0.1", port, timeout=10)
    payload = bytes(range(256)) * 400
    writer.write(payload)
    await writer.drain()
    echoed = await reader.readexactly(len(payload))
    took = time.monotonic() - t0
    assert echoed == payload
    stats = writer.get_extra_info(rudp.STATS_KEY)
    writer.close()
    await writer.wait_closed()
    return took, stats


def _flood_and_connect(count: int, rate: int) -> dict[str, Any]:
    server = _Server()
    flood = None
    try:
        before = server.stats()
        flood = subprocess.Popen(
            [
                sys.executable,
                str(FLOOD),
                "syns",
                str(server.port),
                str(count),
                str(rate),
                "1000",
                "1",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        # Try once the flood is well under way: the queue full, cookies going out.
        deadline = time.monotonic() + 30
        while server.stats()["syncookies_sent"] < min(count // 4, 5 * rate):
            assert time.monotonic() < deadline and flood.poll() is None
            time.sleep(0.02)
        took, client_stats = asyncio.run(_client(server.port))
        during = flood.poll() is None  # the flood was still running
        assert flood.stdout is not None
        sent = json.loads(flood.stdout.readline())
        assert flood.wait(timeout=60) == 0
        # Let the server drain its socket, then read its counters and peak memory.
        deadline = time.monotonic() + 30
        while (after := server.stats())[
            "datagrams_received"
        ] < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return {
            "took": took,
            "during": during,
            "client": client_stats,
            "sent": sent,
            "before": before,
            "after": after,
        }
    finally:
        if flood is not None and flood.poll() is None:
            flood.kill()
            flood.wait()
        server.close()


def _check(r: dict[str, Any], count: int) -> None:
    after, before = r["after"], r["before"]
    assert r["during"], "the client finished after the flood ended"
    assert r["sent"]["sent"] == count
    assert r["took"] <= 3.0, r["took"]
    # The client was answered with a cookie and kept its options (timestamps carry
    # window scale and SACK-permitted).
    assert after["syncookies_ok"] >= 1
    assert r["client"]["sack"] and r["client"]["timestamps"]
    # Every SYN answered (state for the backlog, cookies for the rest) ...
    assert after["datagrams_received"] >= 0.99 * count
    assert after["syncookies_sent"] >= 0.99 * count - 128
    # ... with bounded state and memory.
    assert after["connections"] <= 128 + 2
    assert after["hwm"] - before["rss"] <= MEMORY_CAP, (after["hwm"] - before["rss"]) / 2**20


def test_flood_of_100k_spoofed_syns() -> None:
    """100,000 spoofed SYNs at 25,000/s (about what one server process answers on
    this machine; beyond it the kernel drops SYNs, the client's among them, and
    its SYN retransmission after 1 s gets through): a real client connects and
    echoes 100 KB within 3 s of trying, the server's memory grows by at most 32 MB."""
    r = _flood_and_connect(100_000, 25_000)
    _check(r, 100_000)


@pytest.mark.slow
def test_sustained_flood_10k_syns_per_second_for_10s() -> None:
    r = _flood_and_connect(100_000, 10_000)
    _check(r, 100_000)
    assert r["sent"]["elapsed"] >= 9.9
