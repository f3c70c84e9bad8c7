"""SYN floods over real UDP sockets on loopback (issue 12, docs/security.md).

A rudp echo server runs in its own process (benchmarks/synflood), a flooder in
another one sends spoofed SYNs from 1,000 source addresses of 127.0.0.0/8 with
random TCP ports, and a real client in this process connects while the flood runs.
The server's memory is read from /proc (resident set size before the flood, peak
after it).
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from benchmarks.synflood.run import TARGET_MEMORY, flood_and_connect

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="binding many 127.x.y.z source addresses needs Linux's loopback",
)


def _check(r: dict[str, Any], count: int) -> None:
    """What must hold on any machine; how fast the client got in (the issue's 3 s)
    is recorded by ``python -m benchmarks.synflood``, not asserted here."""
    after = r["after"]
    assert r["during"], "the client finished after the flood ended"
    assert r["sent"]["sent"] >= count
    # The client was answered with a cookie and kept its options (timestamps carry
    # window scale and SACK-permitted).
    assert after["syncookies_ok"] >= 1
    assert r["client"]["sack"] and r["client"]["timestamps"]
    # The server faced the flood (how much of it one process takes in before the
    # kernel drops the rest depends on the machine) and answered every SYN it took
    # in: state for the backlog, cookies for the rest ...
    assert after["datagrams_received"] >= min(count, 20_000)
    answered = after["syncookies_sent"] + after["rst_rate_limited"] + 128
    assert answered >= 0.99 * after["datagrams_received"]
    # ... with bounded state and memory.
    assert after["connections"] <= 128 + 2
    assert r["memory_growth"] <= TARGET_MEMORY, r["memory_growth"] / 2**20


def test_flood_of_100k_spoofed_syns() -> None:
    """100,000 spoofed SYNs at 25,000/s (about what one server process answers on
    an idle 2-core machine; beyond it the kernel drops SYNs, the client's among
    them): a real client connects and echoes 100 KB while the flood goes on (it
    continues past 100,000 until the client is done), the server's memory grows by
    at most 32 MB. ``python -m benchmarks.synflood`` records the time it took (0.03 s
    idle, 7 s on a loaded machine); the client is given 120 s, since on a machine
    shared with other work the kernel may drop its SYN several times (retried after
    1, 3, 7, 15, 31, 63 s)."""
    r = flood_and_connect(100_000, 25_000, timeout=120.0, until_done=True)
    _check(r, 100_000)


@pytest.mark.slow
def test_sustained_flood_10k_syns_per_second_for_10s() -> None:
    r = flood_and_connect(100_000, 10_000, timeout=120.0, until_done=True)
    _check(r, 100_000)
    assert r["sent"]["elapsed"] >= 9.9
