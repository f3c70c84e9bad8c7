"""Network namespaces and TUN devices, from Python with no extra dependency.

A :class:`NetNs` is a named network namespace (``ip netns add``). The calling
thread can step into it for a moment (:meth:`NetNs.entered`, ``setns(2)``) to
create things that stay bound to it: a socket, or a TUN device
(:meth:`NetNs.open_tun`; the device lives in the namespace its
``/dev/net/tun`` file was opened in, while the file descriptor keeps working
from any namespace). Addresses, routes and links are set with iproute2's ``ip``.

Everything here needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) on Linux:
:func:`unavailable_reason` says why it cannot run, for tests to skip with.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["NetNs", "TcpSocketEntry", "open_tun", "unavailable_reason"]

CLONE_NEWNET = 0x40000000
# <linux/if_tun.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
# struct ifreq: 16-byte name, then a union whose first member we use (flags).
_IFREQ = struct.Struct("16sH22x")
TUN_DEVICE = "/dev/net/tun"

_libc: ctypes.CDLL | None = None


def _setns(fd: int) -> None:
    """setns(fd, CLONE_NEWNET) for the calling thread (os.setns on Python >= 3.12)."""
    setns = getattr(os, "setns", None)
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def open_tun(name: str) -> tuple[int, str]:
    """Create TUN device ``name`` (IFF_TUN | IFF_NO_PI: every read and write is one
    bare IP packet) in the calling thread's network namespace. Returns the
    non-blocking file descriptor and the name the kernel gave it. The device lasts
    as long as the descriptor (it is not persistent)."""
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        ifr = _IFREQ.pack(name.encode(), IFF_TUN | IFF_NO_PI)
        res = fcntl.ioctl(fd, TUNSETIFF, ifr)
    except BaseException:
        os.close(fd)
        raise
    return fd, res[:16].rstrip(b"\0").decode()


class TcpSocketEntry:
    """One line of ``/proc/net/tcp[6]``: a kernel TCP socket in a namespace."""

    __slots__ = ("local_port", "remote_port", "state")

    #: ``st`` values (include/net/tcp_states.h).
    STATES = {
        1: "ESTABLISHED",
        2: "SYN-SENT",
        3: "SYN-RECEIVED",
        4: "FIN-WAIT-1",
        5: "FIN-WAIT-2",
        6: "TIME-WAIT",
        7: "CLOSED",
        8: "CLOSE-WAIT",
        9: "LAST-ACK",
        10: "LISTEN",
        11: "CLOSING",
    }

    def __init__(self, local_port: int, remote_port: int, state: str) -> None:
        self.local_port = local_port
        self.remote_port = remote_port
        self.state = state

    def __repr__(self) -> str:
        return f"<tcp {self.local_port}>{self.remote_port} {self.state}>"


class NetNs:
    """A named network namespace, created by :meth:`create`, removed by :meth:`delete`
    (or on leaving a ``with`` block). ``name`` defaults to a unique one."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or f"rudplp{uuid.uuid4().hex[:8]}"
        self.created = False

    def __enter__(self) -> NetNs:
        self.create()
        return self

    def __exit__(self, *exc: object) -> None:
        self.delete()

    def create(self) -> None:
        subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True)
        self.created = True
        self.ip("link", "set", "lo", "up")

    def delete(self) -> None:
        """Remove the name. The namespace itself goes when nothing uses it any more
        (descriptors of its sockets and TUN devices keep it alive until closed)."""
        if self.created:
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
            self.created = False

    def ip(self, *args: str) -> str:
        """Run ``ip -n NAME ARGS...``; raise with ip's message if it fails."""
        res = subprocess.run(["ip", "-n", self.name, *args], capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"ip -n {self.name} {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    @contextlib.contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block with the calling thread inside this namespace. Sockets and TUN
        devices created in it stay there. Do not ``await`` inside: other tasks on the
        same thread would run in the namespace too."""
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            there = os.open(f"/run/netns/{self.name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(there)
            finally:
                os.close(there)
            try:
                yield
            finally:
                _setns(here)
        finally:
            os.close(here)

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM) -> socket.socket:
        """A socket in this namespace (usable from anywhere afterwards)."""
        with self.entered():
            return socket.socket(family, type)

    def open_tun(self, name: str = "rudp0", *, mtu: int = 1500, txqueuelen: int = 1000) -> int:
        """Create TUN device ``name`` in this namespace, set it up; return its fd."""
        with self.entered():
            fd, got = open_tun(name)
        try:
            self.ip("link", "set", "dev", got, "mtu", str(mtu), "txqueuelen", str(txqueuelen))
            self.ip("link", "set", "dev", got, "up")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def sysctl(self, key: str, value: str | int) -> None:
        """Write ``/proc/sys/KEY`` (dots or slashes) as seen from this namespace."""
        path = Path("/proc/sys") / key.replace(".", "/")
        with self.entered():
            path.write_text(f"{value}\n")

    def read_sysctl(self, key: str) -> str:
        path = Path("/proc/sys") / key.replace(".", "/")
        with self.entered():
            return path.read_text().strip()

    def tcp_sockets(self) -> list[TcpSocketEntry]:
        """Every TCP socket of the namespace, TIME-WAIT ones included (as ``ss -tan``)."""
        out: list[TcpSocketEntry] = []
        with self.entered():
            texts = [Path(f"/proc/thread-self/net/{f}").read_text() for f in ("tcp", "tcp6")]
        for text in texts:
            for line in text.splitlines()[1:]:
                fields = line.split()
                if len(fields) < 4:
                    continue
                local = int(fields[1].rsplit(":", 1)[1], 16)
                remote = int(fields[2].rsplit(":", 1)[1], 16)
                state = TcpSocketEntry.STATES.get(int(fields[3], 16), fields[3])
                out.append(TcpSocketEntry(local, remote, state))
        return out

    def link_stats(self, dev: str) -> dict[str, int]:
        """The device's counters (rx/tx packets, bytes, dropped...)."""
        with self.entered():
            base = Path(f"/sys/class/net/{dev}/statistics")
            if not base.is_dir():  # sysfs shows the namespace it was mounted in
                return self._link_stats_ip(dev)
            return {p.name: int(p.read_text()) for p in base.iterdir()}

    def _link_stats_ip(self, dev: str) -> dict[str, int]:
        import json

        data = json.loads(self.ip("-s", "-j", "link", "show", "dev", dev))
        stats = data[0].get("stats64", {}) if data else {}
        out: dict[str, int] = {}
        for direction in ("rx", "tx"):
            for key, value in stats.get(direction, {}).items():
                if isinstance(value, int):
                    out[f"{direction}_{key}"] = value
        return out


def unavailable_reason() -> str | None:
    """Why namespaces + TUN devices cannot be used here, or None if they can."""
    if not sys.platform.startswith("linux"):
        return "needs Linux (network namespaces, TUN devices)"
    if os.geteuid() != 0:
        return "needs root to create network namespaces and TUN devices"
    if not os.path.exists(TUN_DEVICE):
        return f"{TUN_DEVICE} does not exist (no TUN driver)"
    if shutil.which("ip") is None:
        return "iproute2 'ip' command not found"
    ns = NetNs()
    try:
        ns.create()
    except (OSError, subprocess.CalledProcessError) as exc:
        err = getattr(exc, "stderr", b"") or b""
        text = err.decode(errors="replace").strip() if isinstance(err, bytes) else str(err)
        return f"cannot create network namespaces: {text or exc}"
    try:
        fd = ns.open_tun("rudpprobe")
        os.close(fd)
    except OSError as exc:
        return f"cannot create a TUN device in a namespace: {exc}"
    except RuntimeError as exc:
        return f"cannot set up a TUN device: {exc}"
    finally:
        ns.delete()
    return None
