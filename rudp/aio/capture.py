"""``Config(pcap=path)``: the asyncio layer's capture of what its UDP sockets carry.

Every :class:`~rudp.aio.Endpoint` whose config names a pcap file records each
datagram it hands to its socket and each one it receives, with the real UDP
endpoints' IP addresses, timestamped with the wall clock (docs/pcap.md). The local
address is the one the datagram used (``IP_PKTINFO``) when the socket reports it,
else the bound address; for a socket bound to a wildcard address without that, it
is the source address the kernel's routing picks towards the peer (looked up once
per peer with a connected UDP socket, which sends nothing).

Endpoints of one process that name the same file share one
:class:`~rudp.pcap.PcapWriter` (a server and its clients, the CLI's several
endpoints, every endpoint of one ``Config``), so the file holds one capture, not
several overwriting each other. The file is created when the first endpoint opens
it and closed when the last one closes its socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterable
from typing import Any

from ..pcap import PcapWriter

Address = tuple[Any, ...]

__all__ = ["Capture", "open_capture"]


class Capture:
    """One pcap file shared by every endpoint of this process that names it."""

    __slots__ = ("_flush_at", "_routes", "key", "users", "writer")

    def __init__(self, key: str) -> None:
        self.key = key
        # Wall-clock timestamps (epoch 0: ``t`` is Unix time): endpoints on different
        # loops, uvloop's millisecond clock included, all agree in one file.
        self.writer = PcapWriter(key, epoch=0.0)
        self.users = 0
        #: Peer host -> our source address towards it (wildcard-bound sockets).
        self._routes: dict[Any, Address] = {}
        self._flush_at: asyncio.TimerHandle | None = None

    def _written(self) -> None:
        """Flush within FLUSH_DELAY of a write, so a running capture can be read
        (``tail -f``, ``tshark -r``) while costing one write per period, not per packet."""
        if self._flush_at is None:
            with contextlib.suppress(RuntimeError):  # no running loop: flushed at close
                self._flush_at = asyncio.get_running_loop().call_later(FLUSH_DELAY, self._flush)

    def _flush(self) -> None:
        self._flush_at = None
        with contextlib.suppress(OSError):
            self.writer.flush()

    def _local(self, me: Address, peer: Address) -> Address:
        """Our address towards ``peer`` when the socket is bound to a wildcard."""
        if me[0] not in _WILDCARDS:
            return me
        host = peer[0]
        addr = self._routes.get(host)
        if addr is None:
            addr = me
            family = socket.AF_INET6 if len(me) == 4 else socket.AF_INET
            with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(tuple(peer))  # a route lookup: nothing is sent
                addr = s.getsockname()
            if len(self._routes) >= _MAX_ROUTES:
                self._routes.clear()
            self._routes[host] = addr
        return addr

    def received(self, batch: Iterable[tuple[Any, Address, Address | None]], me: Address) -> None:
        """Record datagrams ``(payload, source, local address or None)``."""
        write = self.writer.write
        t = time.time()
        for payload, src, local in batch:
            write(t, src, local or self._local(me, src), payload)
        self._written()

    def sent(self, items: Iterable[tuple[bytes, Address, Address | None]], me: Address) -> None:
        """Record datagrams ``(payload, destination, local address or None)``."""
        write = self.writer.write
        t = time.time()
        for payload, dst, local in items:
            write(t, local or self._local(me, dst), dst, payload)
        self._written()

    def release(self) -> None:
        """One endpoint is done with the file; the last one closes it."""
        self.users -= 1
        if self.users <= 0:
            if _open.get(self.key) is self:
                del _open[self.key]
            if self._flush_at is not None:
                self._flush_at.cancel()
                self._flush_at = None
            self.writer.close()


#: Seconds after a write within which the file is flushed.
FLUSH_DELAY = 0.2
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_MAX_ROUTES = 4096  # cached peers (bounded memory whatever the peers)

#: Absolute path -> the capture writing it.
_open: dict[str, Capture] = {}


def open_capture(path: str | os.PathLike[str]) -> Capture:
    """The capture for ``path`` (opened, and the file truncated, on first use)."""
    key = os.path.abspath(os.fspath(path))
    cap = _open.get(key)
    if cap is None or cap.writer.closed:
        cap = _open[key] = Capture(key)
    cap.users += 1
    return cap
