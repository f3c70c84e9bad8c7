"""Definitions shared by the orchestrator and the worker processes.

Nothing here imports rudp, uvloop, aioquic or rich, so every process can import
it cheaply and a broken optional dependency only fails the measurements that
need it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import resource
import socket
import sys
import time
from collections.abc import Awaitable
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

JSONDict = dict[str, Any]

#: Every measurement runs over loopback IPv4.
HOST = "127.0.0.1"
#: Sizes and rates use decimal units: 1 MB = 10**6 bytes, 1 GB = 10**9 bytes.
MB = 1_000_000
GB = 1_000_000_000
KiB = 1024

STACKS = ("rudp", "tcp", "aioquic", "udp", "udp-gso")
#: Variant suffix of the rudp bulk cases run without UDP GSO/GRO.
NO_GSO = "no-gso"
LOOPS = ("asyncio", "uvloop")
WORKLOADS = ("bulk", "rr", "setup", "idle")

#: MSS used by the workloads that do not sweep it (rr, setup, idle): rudp's default.
DEFAULT_MSS = 1400
#: A rudp data segment is the payload plus a 20-byte TCP header (no options).
TCP_HEADER = 20
#: Largest UDP payload over IPv4 (65535 - 20 IP - 8 UDP).
UDP_MAX_PAYLOAD = 65507
#: rudp.config.MAX_MSS, used if rudp cannot be imported (the udp peer still runs).
FALLBACK_RUDP_MAX_MSS = UDP_MAX_PAYLOAD - 60
#: aioquic refuses datagrams smaller than this (RFC 9000 §14).
QUIC_MIN_DATAGRAM = 1200
#: Datagram size handed to aioquic for a given MSS: mss + 20 (TCP) + 8 (UDP).
QUIC_DATAGRAM_OVERHEAD = 28
#: Socket buffer size requested for the UDP peer and aioquic sockets; rudp asks
#: for the same (rudp.aio.api.SOCKET_BUFFER), so no stack gets bigger buffers.
SOCKET_BUFFER = 4 * 1024 * 1024


T = TypeVar("T")


async def bounded(aw: Awaitable[T], timeout: float) -> T:
    """``await aw`` for at most ``timeout`` seconds (TimeoutError after). On Python
    3.11+ with ``asyncio.timeout``, in the caller's task: ``asyncio.wait_for``
    before 3.12 wraps ``aw`` in a task of its own, which costs every stack a task
    and a loop iteration per call."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(timeout):
            return await aw
    return await asyncio.wait_for(aw, timeout)


def tune_socket_buffers(transport: asyncio.BaseTransport) -> None:
    """Ask for :data:`SOCKET_BUFFER`-sized kernel buffers on a datagram transport."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)


#: Write size used by every bulk sender.
BULK_CHUNK = 64 * KiB
#: The server's reply once it has read the whole bulk transfer.
BULK_REPLY = b"GOT-ALL!"
assert len(BULK_REPLY) == 8


def rudp_max_mss() -> int:
    """rudp's largest MSS, clamped so that one segment fits one UDP datagram."""
    try:
        from rudp.config import MAX_MSS
    except Exception:  # rudp missing or broken: the udp peer still needs a size
        MAX_MSS = FALLBACK_RUDP_MAX_MSS
    return min(int(MAX_MSS), UDP_MAX_PAYLOAD - TCP_HEADER)


#: aioquic's "max": its largest working max_datagram_size. aioquic 1.x accepts any
#: value, but above ~16414 bytes transfers stall or die with "Failed to parse
#: frame" (bisected on loopback), so the largest round size that works is used.
QUIC_MAX_DATAGRAM = 16384


def quic_datagram_size(mss: int) -> int:
    """aioquic ``max_datagram_size`` matching a rudp MSS (clamped to QUIC's range)."""
    return max(QUIC_MIN_DATAGRAM, min(QUIC_MAX_DATAGRAM, mss + QUIC_DATAGRAM_OVERHEAD))


def resolve_mss(label: str, stack: str) -> int | None:
    """The MSS a stack uses for an ``--mss`` label; None where it does not apply (tcp)."""
    if stack == "tcp":
        return None
    if label == "max":
        if stack == "aioquic":
            return QUIC_MAX_DATAGRAM - QUIC_DATAGRAM_OVERHEAD
        return rudp_max_mss()
    return int(label)


@dataclass(frozen=True)
class Spec:
    """What one worker process does; passed on its command line as JSON."""

    role: str  # "server" or "client"
    stack: str
    workload: str
    loop: str
    mss: int | None
    params: JSONDict = field(default_factory=dict)
    host: str = HOST
    port: int = 0
    cpu: int | None = None  # pin the process to this CPU (None: no pinning)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Spec:
        data = json.loads(text)
        return cls(**data)


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; peak RSS elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class CpuTimer:
    """Wall time and this process's CPU time (user + system) over a window."""

    def __init__(self) -> None:
        self.wall0 = time.perf_counter()
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)

    def result(self) -> JSONDict:
        wall = time.perf_counter() - self.wall0
        ru = resource.getrusage(resource.RUSAGE_SELF)
        user = ru.ru_utime - self.ru0.ru_utime
        system = ru.ru_stime - self.ru0.ru_stime
        return {"wall": wall, "cpu": user + system, "cpu_user": user, "cpu_sys": system}


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of an already sorted list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100.0 * len(sorted_values))))
    return sorted_values[rank - 1]


def raise_fd_limit() -> None:
    """Idle workloads open ~1000 sockets per process: lift the soft fd limit."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = 65536 if hard == resource.RLIM_INFINITY else hard
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        pass
