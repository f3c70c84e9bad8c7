"""The two hosts every interop test and benchmark run uses.

Side A (``10.213.0.1``, ``fd00:213::1``) is the sender in the benchmark: a kernel in
its own namespace, or the rudp engine through :class:`~.bridge.EngineBridge`. Side B
(``10.213.0.2``, ``fd00:213::2``) is always a kernel. Each kernel side is a
:class:`TunHost`: a network namespace whose TUN device ``rudp0`` holds the side's
addresses and routes the other side's into the device, so whatever reads the
descriptor (the engine bridge, or the forwarder towards the other namespace) is
the path. Both namespaces are fresh, so their TCP settings are the kernel's
defaults, plus ``tcp_no_metrics_save=1``: a connection must not start from the
ssthresh and RTT cached by the previous run to the same address.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from .netns import NetNs

__all__ = ["A4", "A6", "B4", "B6", "TUN_NAME", "TunHost", "drain"]

A4 = "10.213.0.1"
B4 = "10.213.0.2"
A6 = "fd00:213::1"
B6 = "fd00:213::2"
TUN_NAME = "rudp0"


class TunHost:
    """A namespace with TUN device :data:`TUN_NAME`: ``local`` addresses on it,
    ``peer`` addresses routed through it (IPv4 and, if given, IPv6)."""

    def __init__(
        self,
        local4: str,
        peer4: str,
        local6: str | None = None,
        peer6: str | None = None,
        *,
        mtu: int = 1500,
        txqueuelen: int = 1000,
    ) -> None:
        self.local4, self.peer4 = local4, peer4
        self.local6, self.peer6 = local6, peer6
        self.mtu = mtu
        self.txqueuelen = txqueuelen
        self.ns = NetNs()
        self.fd = -1

    @classmethod
    def side_a(cls, **kw: Any) -> TunHost:
        return cls(A4, B4, A6, B6, **kw)

    @classmethod
    def side_b(cls, **kw: Any) -> TunHost:
        return cls(B4, A4, B6, A6, **kw)

    def open(self) -> TunHost:
        ns = self.ns
        ns.create()
        try:
            ns.sysctl("net.ipv4.tcp_no_metrics_save", 1)
            self.fd = ns.open_tun(TUN_NAME, mtu=self.mtu, txqueuelen=self.txqueuelen)
            ns.ip("addr", "add", self.local4, "peer", self.peer4, "dev", TUN_NAME)
            if self.local6 and self.peer6:
                ns.ip(
                    "-6", "addr", "add", self.local6, "peer", self.peer6, "dev", TUN_NAME, "nodad"
                )
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self.ns.delete()

    def __enter__(self) -> TunHost:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tcp_socket(self, family: int = socket.AF_INET) -> socket.socket:
        """A non-blocking TCP socket in this namespace."""
        sock = self.ns.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        return sock

    def listener(self, port: int, family: int = socket.AF_INET) -> socket.socket:
        """A listening socket on this side's address."""
        sock = self.tcp_socket(family)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        host = self.local4 if family == socket.AF_INET else self.local6
        sock.bind((host, port))
        sock.listen(16)
        return sock

    def tun_stats(self) -> dict[str, int]:
        return self.ns.link_stats(TUN_NAME)


def drain(fd: int) -> int:
    """Read and discard every packet waiting in a TUN descriptor; return the count."""
    n = 0
    while True:
        try:
            os.read(fd, 65536)
        except (BlockingIOError, InterruptedError):
            return n
        n += 1
